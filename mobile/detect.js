// BlazeFace (MediaPipe's short-range face detector) decoding in the browser: letterbox, SSD anchors, box and keypoint
// regression, weighted non-maximum suppression. The same steps, line for line, as expr3d/imaging/blazeface.py; the
// numbers (input size, strides, thresholds) come from the export's manifest.json, not from here.
//
// Coordinates: photo pixels, index convention (pixel centres at integers); boxes [x, y, w, h] are continuous.
import {blackCanvas, toFloatRgb} from './align.js';

export function anchors(inputSize, strides) {
  const centres = [];
  let layer = 0;
  while (layer < strides.length) {
    const stride = strides[layer];
    let perCell = 0;
    // Layers with the same stride share one feature map; each adds two anchors per cell (fixed size 1).
    while (layer < strides.length && strides[layer] === stride) {
      perCell += 2;
      layer += 1;
    }
    const cells = Math.floor(inputSize / stride);
    for (let y = 0; y < cells; y++) {
      for (let x = 0; x < cells; x++) {
        for (let k = 0; k < perCell; k++) centres.push([(x + 0.5) / cells, (y + 0.5) / cells]);
      }
    }
  }
  return centres;
}

// The photo fitted into the detector's square input: the longer side scaled to `inputSize`, the shorter one centred
// between black bars, RGB in [-1, 1]. Photo pixel p maps to input pixel (p + 0.5) * scale - 0.5 + pad.
export function letterbox(source, width, height, inputSize) {
  const scale = inputSize / Math.max(width, height);
  const newW = Math.max(1, Math.round(width * scale));
  const newH = Math.max(1, Math.round(height * scale));
  const padX = Math.floor((inputSize - newW) / 2);
  const padY = Math.floor((inputSize - newH) / 2);
  const {canvas, ctx} = blackCanvas(inputSize);
  ctx.drawImage(source, 0, 0, width, height, padX, padY, newW, newH);
  return {data: toFloatRgb(canvas), scaleX: newW / width, scaleY: newH / height, padX, padY};
}

export function decode(regressors, logits, anchorCentres, inputSize, minScore, rawScoreLimit) {
  const out = [];
  for (let i = 0; i < anchorCentres.length; i++) {
    const logit = Math.min(rawScoreLimit, Math.max(-rawScoreLimit, logits[i]));
    const score = 1 / (1 + Math.exp(-logit));
    if (score < minScore) continue;
    const [ax, ay] = anchorCentres[i];
    const r = regressors.subarray(i * 16, i * 16 + 16);
    const cx = r[0] / inputSize + ax;
    const cy = r[1] / inputSize + ay;
    const w = r[2] / inputSize;
    const h = r[3] / inputSize;
    const points = [];
    for (let k = 0; k < 6; k++) points.push([r[4 + 2 * k] / inputSize + ax, r[5 + 2 * k] / inputSize + ay]);
    out.push({score, box: [cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], points});
  }
  return out;
}

function iou(a, b) {
  const ix = Math.max(0, Math.min(a[2], b[2]) - Math.max(a[0], b[0]));
  const iy = Math.max(0, Math.min(a[3], b[3]) - Math.max(a[1], b[1]));
  const inter = ix * iy;
  const union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter;
  return union > 0 ? inter / union : 0;
}

// MediaPipe's weighted suppression: each kept face is the score-weighted mean of the boxes and keypoints that
// overlap the best remaining one by more than `threshold` IoU; its score is the best one's.
export function weightedSuppression(candidates, threshold) {
  let remaining = [...candidates].sort((a, b) => b.score - a.score);
  const kept = [];
  while (remaining.length) {
    const best = remaining[0];
    const overlapping = remaining.filter((c) => iou(best.box, c.box) > threshold);
    remaining = remaining.filter((c) => iou(best.box, c.box) <= threshold);
    let total = 0;
    const box = [0, 0, 0, 0];
    const points = best.points.map(() => [0, 0]);
    for (const c of overlapping) {
      total += c.score;
      for (let k = 0; k < 4; k++) box[k] += c.score * c.box[k];
      c.points.forEach((p, k) => { points[k][0] += c.score * p[0]; points[k][1] += c.score * p[1]; });
    }
    kept.push({score: best.score, box: box.map((v) => v / total), points: points.map(([x, y]) => [x / total, y / total])});
  }
  return kept;
}

// Faces in `source` (an image, canvas or video frame of `width` x `height`), best score first:
// [{score, box: [x, y, w, h], keypoints: [[x, y] x 6], eyes: [left-in-image, right-in-image]}].
export async function detectFaces(runner, source, width, height, config) {
  const size = config.input_size;
  const input = letterbox(source, width, height, size);
  const {regressors, logits} = await runner(input.data);
  const faces = weightedSuppression(
    decode(regressors, logits, anchors(size, config.strides), size, config.min_score, config.raw_score_limit),
    config.suppression_iou);
  const toPhoto = ([u, v]) => [(u * size - input.padX) / input.scaleX - 0.5, (v * size - input.padY) / input.scaleY - 0.5];
  return faces.map((f) => {
    const [x0, y0] = toPhoto([f.box[0], f.box[1]]);
    const [x1, y1] = toPhoto([f.box[2], f.box[3]]);
    const keypoints = f.points.map(toPhoto);
    const eyes = keypoints[0][0] <= keypoints[1][0] ? [keypoints[0], keypoints[1]] : [keypoints[1], keypoints[0]];
    return {score: f.score, box: [x0 + 0.5, y0 + 0.5, x1 - x0, y1 - y0], keypoints, eyes};
  });
}
