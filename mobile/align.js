// The face crop and the paste-back, as expr3d/imaging/blazeface.py (crop_geometry, face_crop) and
// expr3d/deploy/paste.py do them in Python. The numbers come from the export's manifest.json ("crop", "paste").
//
// A crop is a similarity from photo to crop pixels. Canvas transforms work in continuous coordinates (pixel edges at
// integers), so the matrices here are continuous: p' = L p + t. The index-convention centre c of Python is c + 0.5.

export function eyeAngle(face) {
  const [[lx, ly], [rx, ry]] = face.eyes;
  return Math.atan2(-(ry - ly), rx - lx) * 180 / Math.PI;
}

// {centre: [x, y] (index convention), side (photo pixels), angle (degrees, counter-clockwise on screen)}
export function cropGeometry(face, crop) {
  const [x, y, w, h] = face.box;
  const side = Math.max(w, h);
  const angle = eyeAngle(face);
  const theta = angle * Math.PI / 180;
  const up = [-Math.sin(theta), -Math.cos(theta)];
  return {
    centre: [x + w / 2 - 0.5 + crop.shift_up_per_box * side * up[0], y + h / 2 - 0.5 + crop.shift_up_per_box * side * up[1]],
    side: crop.side_per_box * side,
    angle,
  };
}

// Continuous 2x3 [a, b, c, d, e, f] (canvas order: x' = a x + c y + e, y' = b x + d y + f), photo -> crop of `size`.
export function cropMatrix(geometry, size) {
  const scale = size / geometry.side;
  const theta = geometry.angle * Math.PI / 180;
  const cos = scale * Math.cos(theta);
  const sin = scale * Math.sin(theta);
  // L = [[cos, -sin], [sin, cos]] turns clockwise on screen by the angle, levelling the eye line.
  const cx = geometry.centre[0] + 0.5;
  const cy = geometry.centre[1] + 0.5;
  const e = size / 2 - (cos * cx - sin * cy);
  const f = size / 2 - (sin * cx + cos * cy);
  return [cos, sin, -sin, cos, e, f];
}

export function invert([a, b, c, d, e, f]) {
  const det = a * d - b * c;
  return [d / det, -b / det, -c / det, a / det, (c * f - d * e) / det, (b * e - a * f) / det];
}

// The matrix in OpenCV's index convention [[m00, m01, m02], [m10, m11, m12]] (what Python's FaceCrop.matrix holds).
export function indexMatrix([a, b, c, d, e, f]) {
  // i' + 0.5 = L (i + 0.5) + t  ->  i' = L i + (L 0.5 + t - 0.5)
  return [[a, c, a * 0.5 + c * 0.5 + e - 0.5], [b, d, b * 0.5 + d * 0.5 + f - 0.5]];
}

// A black square canvas of `size` to draw a scaled picture into (smoothly resampled), with its context.
export function blackCanvas(size) {
  const canvas = new OffscreenCanvas(size, size);
  const ctx = canvas.getContext('2d', {willReadFrequently: true});
  ctx.fillStyle = '#000';
  ctx.fillRect(0, 0, size, size);
  ctx.imageSmoothingEnabled = true;
  ctx.imageSmoothingQuality = 'high';
  return {canvas, ctx};
}

// The crop as an RGBA canvas of `size` (bilinear; outside the photo is black).
export function warpToCrop(source, matrix, size) {
  const {canvas, ctx} = blackCanvas(size);
  ctx.setTransform(...matrix);
  ctx.drawImage(source, 0, 0);
  return canvas;
}

export function toFloatRgb(canvas) {
  const {width, height} = canvas;
  const rgba = canvas.getContext('2d', {willReadFrequently: true}).getImageData(0, 0, width, height).data;
  const out = new Float32Array(width * height * 3);
  for (let i = 0, j = 0; i < rgba.length; i += 4, j += 3) {
    out[j] = rgba[i] / 127.5 - 1;
    out[j + 1] = rgba[i + 1] / 127.5 - 1;
    out[j + 2] = rgba[i + 2] / 127.5 - 1;
  }
  return out;
}

// A float image in [-1, 1] (HWC) as an RGBA canvas, rounded to uint8 as expr3d.imaging.pixels.to_uint8 does.
export function fromFloatRgb(data, size) {
  const canvas = new OffscreenCanvas(size, size);
  const ctx = canvas.getContext('2d');
  const image = ctx.createImageData(size, size);
  for (let i = 0, j = 0; j < data.length; i += 4, j += 3) {
    for (let k = 0; k < 3; k++) image.data[i + k] = Math.min(255, Math.max(0, Math.round((data[j + k] + 1) * 127.5)));
    image.data[i + 3] = 255;
  }
  ctx.putImageData(image, 0, 0);
  return canvas;
}

// The feathered ellipse of expr3d/deploy/paste.py as the alpha of a `size` canvas: 1 inside, fading out over about
// 4 feather sigmas before the crop's border.
export function featheredMask(size, paste) {
  const canvas = new OffscreenCanvas(size, size);
  const ctx = canvas.getContext('2d');
  const sigma = Math.max(0.5, paste.feather * size);
  const ax = Math.max(1, paste.mask_radii[0] * size - 2 * paste.feather * size);
  const ay = Math.max(1, paste.mask_radii[1] * size - 2 * paste.feather * size);
  ctx.filter = `blur(${sigma}px)`;
  ctx.fillStyle = '#fff';
  ctx.beginPath();
  ctx.ellipse(size / 2, size / 2, ax, ay, 0, 0, 2 * Math.PI);
  ctx.fill();
  return canvas;
}

// `photo` (canvas) with `face` (a canvas of the generator's output) blended back through the inverse crop matrix.
export function pasteBack(photo, face, geometry, paste) {
  const side = Math.max(16, Math.min(1024, Math.round(geometry.side)));
  const layer = new OffscreenCanvas(side, side);
  const ctx = layer.getContext('2d');
  ctx.imageSmoothingEnabled = true;
  ctx.imageSmoothingQuality = 'high';
  ctx.drawImage(face, 0, 0, side, side);
  ctx.globalCompositeOperation = 'destination-in';
  ctx.drawImage(featheredMask(side, paste), 0, 0);
  const out = new OffscreenCanvas(photo.width, photo.height);
  const octx = out.getContext('2d');
  octx.drawImage(photo, 0, 0);
  octx.imageSmoothingEnabled = true;
  octx.setTransform(...invert(cropMatrix(geometry, side)));
  octx.drawImage(layer, 0, 0);
  return out;
}
