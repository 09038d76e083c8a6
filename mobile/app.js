// expr3d's web app: photo (file or camera) -> face detection -> aligned crop -> the TFLite generator -> feathered
// paste-back, all in the browser. The model folder is a web export (`python -m expr3d.export ... --web`) served at
// ./model/ by `python -m expr3d.mobile`.
import {detectFaces} from './detect.js';
import {cropGeometry, cropMatrix, fromFloatRgb, indexMatrix, pasteBack, toFloatRgb, warpToCrop} from './align.js';
import {ModelError, loadDetector, loadGenerator, loadReader, loadRuntime, runtimeInfo} from './runtime.js';

const MODEL_DIR = './model/';
const MANIFEST_FORMAT = 'expr3d web v1';
const MAX_SIDE = 1024;  // photos are downscaled to this before detection: bounded memory on a 50-megapixel photo

const $ = (id) => document.getElementById(id);
const state = {manifest: null, detector: null, generators: {}, reader: null, variant: 'int8', photo: null,
               face: null, geometry: null, crop: null, busy: false};
// Hooks for the browser tests and for anyone debugging on a phone (read-only use).
const hooks = {state, last: null, errors: [], firstResultMs: null, faces: null, read: null, runtime: runtimeInfo()};
window.expr3d = hooks;

function setStatus(text, kind = 'info') {
  const status = $('status');
  status.textContent = text;
  status.className = kind;
  if (kind === 'error') hooks.errors.push(text);
}

async function fetchManifest() {
  let response;
  try {
    response = await fetch(MODEL_DIR + 'manifest.json');
  } catch (error) {
    throw new ModelError(`cannot reach the model folder (${error.message})`);
  }
  if (!response.ok) {
    throw new ModelError('the model folder has no manifest.json: it is not a web export of this version. ' +
                         'Export it with `python -m expr3d.export --model_dir=RUN --output=saved_models/NAME --web`.');
  }
  let manifest;
  try {
    manifest = await response.json();
  } catch (error) {
    throw new ModelError(`manifest.json is not JSON (${error.message})`);
  }
  if (manifest.format !== MANIFEST_FORMAT) {
    throw new ModelError(`manifest.json has format "${manifest.format}", expected "${MANIFEST_FORMAT}": re-export with --web`);
  }
  return manifest;
}

function describeModel(manifest) {
  const trained = manifest.trained_on || {};
  const parts = [`${manifest.image_size} px`, manifest.condition === 'action_units' ? 'action units' : 'expressions'];
  if (trained.dataset) parts.push(`trained on ${trained.dataset}`);
  return parts.join(' · ');
}

function buildControls(manifest) {
  const buttons = $('expressions');
  buttons.replaceChildren();
  if (manifest.condition === 'action_units') {
    const sliders = $('action-units');
    sliders.hidden = false;
    sliders.replaceChildren();
    manifest.action_units.forEach((name, index) => {
      const label = document.createElement('label');
      label.textContent = name;
      const input = document.createElement('input');
      // step 'any': a slider set to the face's own reading keeps it exactly (a 0.05 step would round it)
      Object.assign(input, {type: 'range', min: 0, max: 1, step: 'any', value: 0});
      input.dataset.index = index;
      input.addEventListener('change', () => translate(actionUnitVector(), 'action units'));
      label.append(input);
      sliders.append(label);
    });
    const apply = document.createElement('button');
    apply.textContent = 'Apply';
    apply.addEventListener('click', () => translate(actionUnitVector(), 'action units'));
    buttons.append(apply);
    if (state.reader) {  // the exemplar transfer: another photo's AUs, as the reader reads them, asked of this face
      const copy = document.createElement('label');
      copy.className = 'button';
      copy.textContent = 'Copy the expression of a photo';
      const input = Object.assign(document.createElement('input'), {type: 'file', accept: 'image/*', hidden: true,
                                                                     id: 'exemplar', disabled: true});
      input.addEventListener('change', (event) => {
        const [file] = event.target.files;
        if (file) copyExpression(file);
      });
      copy.append(input);
      buttons.append(copy);
    }
    return;
  }
  manifest.expressions.forEach((name, index) => {
    const button = document.createElement('button');
    button.type = 'button';
    button.textContent = name;
    button.dataset.expression = name;
    button.disabled = true;
    button.addEventListener('click', () => {
      const vector = new Array(manifest.expressions.length).fill(0);
      vector[index] = 1;
      translate(vector, name);
    });
    buttons.append(button);
  });
}

function actionUnitVector() {
  return [...document.querySelectorAll('#action-units input')].map((input) => Number(input.value));
}

function enableControls(enabled) {
  document.querySelectorAll('#expressions button, #action-units input, #exemplar').forEach((el) => {
    el.disabled = !enabled;
  });
}

async function generator(variant) {
  if (!state.generators[variant]) {
    const entry = state.manifest.models[variant];
    if (!entry) throw new ModelError(`the export has no ${variant} generator`);
    state.generators[variant] = await loadGenerator(MODEL_DIR + entry.file, state.manifest);
  }
  return state.generators[variant];
}

async function init() {
  const started = performance.now();
  try {
    const manifest = await fetchManifest();
    state.manifest = manifest;
    $('model-info').textContent = describeModel(manifest);
    await loadRuntime();
    state.detector = await loadDetector(MODEL_DIR + manifest.detector.file, manifest.detector);
    if (manifest.condition === 'action_units' && manifest.reader) {
      state.reader = await loadReader(MODEL_DIR + manifest.reader.file, manifest);
    }
    const model = await generator(state.variant);
    // One run on a blank face while the page loads: WebAssembly's first run is slow (~90 ms here), the user's
    // first edit should not be.
    const size = manifest.image_size;
    const units = manifest.condition === 'action_units' ? manifest.action_units.length : manifest.expressions.length;
    await model.run(new Float32Array(size * size * 3), new Array(units).fill(0));
    buildControls(manifest);
    if (manifest.trained_on?.kind === 'procedural') {
      const notice = $('notice');
      notice.hidden = false;
      notice.textContent = `This model was trained on procedural 3D faces (${manifest.trained_on.dataset ?? 'synthetic'}, ` +
        `${manifest.image_size} px), not on photos: on a real face expect a blurred, low-resolution edit.`;
    }
    hooks.loadMs = performance.now() - started;
    hooks.readyMs = performance.now();  // since navigation started
    setStatus('Choose a photo or use the camera.');
  } catch (error) {
    setStatus(error instanceof ModelError ? `Model failed to load: ${error.message}` :
              `Could not start: ${error.message ?? error}`, 'error');
    throw error;
  }
}

function drawPhoto(canvas) {
  const view = $('photo');
  view.width = canvas.width;
  view.height = canvas.height;
  view.getContext('2d').drawImage(canvas, 0, 0);
}

// A decoded image (bitmap, video) as a canvas no larger than MAX_SIDE.
function toPhotoCanvas(source, width, height) {
  const scale = Math.min(1, MAX_SIDE / Math.max(width, height));
  const w = Math.max(1, Math.round(width * scale));
  const h = Math.max(1, Math.round(height * scale));
  const canvas = new OffscreenCanvas(w, h);
  const ctx = canvas.getContext('2d', {willReadFrequently: true});
  ctx.imageSmoothingEnabled = true;
  ctx.imageSmoothingQuality = 'high';
  ctx.drawImage(source, 0, 0, w, h);
  return canvas;
}

async function usePhoto(canvas, name) {
  state.photo = canvas;
  state.face = null;
  enableControls(false);
  drawPhoto(canvas);
  const faces = await detectFaces(state.detector.run, canvas, canvas.width, canvas.height, state.manifest.detector);
  hooks.faces = faces;
  if (!faces.length) {
    setStatus(`No face found in ${name}. Try a photo where one face looks at the camera and fills more of the frame.`,
              'error');
    return;
  }
  state.face = faces[0];
  state.geometry = cropGeometry(state.face, state.manifest.crop);
  const size = state.manifest.image_size;
  state.matrix = cropMatrix(state.geometry, size);
  state.crop = toFloatRgb(warpToCrop(canvas, state.matrix, size));
  let ask = 'Pick an expression.';
  if (state.reader) {
    // The sliders start where the face is: moving one changes that AU and keeps the others as the face shows them.
    hooks.read = Array.from(await state.reader.run(state.crop));
    document.querySelectorAll('#action-units input').forEach((input, index) => { input.value = hooks.read[index]; });
    ask = 'The sliders show its action units as read: move one.';
  } else if (state.manifest.condition === 'action_units') {
    ask = 'Set the action units.';
  }
  enableControls(true);
  const more = faces.length > 1 ? ` ${faces.length} faces found: editing the most confident one (score ` +
    `${faces[0].score.toFixed(2)}).` : '';
  setStatus(`Face found in ${name}.${more} ${ask}`);
}

// A chosen file as a photo canvas, or null (and the status says why).
async function decodeFile(file) {
  let bitmap;
  try {
    bitmap = await createImageBitmap(file);
  } catch (error) {
    setStatus(`${file.name} is not an image this browser can read (${file.type || 'unknown type'}).`, 'error');
    return null;
  }
  const canvas = toPhotoCanvas(bitmap, bitmap.width, bitmap.height);
  bitmap.close();
  return canvas;
}

async function loadFile(file) {
  const canvas = await decodeFile(file);
  if (canvas) await usePhoto(canvas, file.name);
}

// The exemplar transfer on the device: the face of another photo read by the AU reader, and this face drawn with
// those AUs (the sliders show them, to adjust further).
async function copyExpression(file) {
  if (!state.face || !state.reader) return;
  const canvas = await decodeFile(file);
  if (!canvas) return;
  const faces = await detectFaces(state.detector.run, canvas, canvas.width, canvas.height, state.manifest.detector);
  if (!faces.length) {
    setStatus(`No face found in ${file.name} to copy the expression of. Try a photo where one face looks at the ` +
              'camera.', 'error');
    return;
  }
  const size = state.manifest.image_size;
  const crop = toFloatRgb(warpToCrop(canvas, cropMatrix(cropGeometry(faces[0], state.manifest.crop), size), size));
  const read = Array.from(await state.reader.run(crop));
  hooks.exemplar = {name: file.name, crop: Array.from(crop), read};
  document.querySelectorAll('#action-units input').forEach((input, index) => { input.value = read[index]; });
  await translate(read, `the expression of ${file.name}`);
}

async function translate(vector, label) {
  if (!state.face || state.busy) return;
  state.busy = true;
  try {
    const started = performance.now();
    const model = await generator(state.variant);
    const t0 = performance.now();
    const output = await model.run(state.crop, vector);
    const generatorMs = performance.now() - t0;
    const size = state.manifest.image_size;
    const result = pasteBack(state.photo, fromFloatRgb(output, size), state.geometry, state.manifest.paste);
    drawPhoto(result);
    const totalMs = performance.now() - started;
    hooks.firstResultMs ??= performance.now();
    hooks.last = {label, vector, variant: state.variant, generatorMs, totalMs, crop: Array.from(state.crop),
                  output: Array.from(output), face: state.face, matrix: indexMatrix(state.matrix)};
    const threads = hooks.runtime.threads ? `${hooks.runtime.hardwareConcurrency} threads` : '1 thread';
    $('timing').textContent = `${label}: generator ${generatorMs.toFixed(1)} ms (${state.variant}, WebAssembly, ` +
      `${threads}) · whole edit ${totalMs.toFixed(1)} ms`;
    setStatus(`Showing "${label}". Pick another expression or another photo.`);
  } catch (error) {
    setStatus(`The generator failed: ${error.message ?? error}`, 'error');
  } finally {
    state.busy = false;
  }
}

// --- camera -----------------------------------------------------------------------------------------------------

let stream = null;

async function startCamera() {
  if (!navigator.mediaDevices?.getUserMedia) {
    setStatus('The camera needs a secure page (https://, or http://127.0.0.1 on this computer). Choose a photo instead.',
              'error');
    return;
  }
  try {
    stream = await navigator.mediaDevices.getUserMedia({video: {facingMode: 'user'}, audio: false});
  } catch (error) {
    const denied = error.name === 'NotAllowedError' || error.name === 'SecurityError';
    setStatus(denied ? 'Camera access was denied. Allow it in the browser\'s site settings, or choose a photo instead.'
                     : `No camera could be opened (${error.name}). Choose a photo instead.`, 'error');
    return;
  }
  const video = $('video');
  video.srcObject = stream;
  video.hidden = false;
  $('snap').hidden = false;
  await video.play();
  setStatus('Frame your face, then take the photo.');
}

async function snap() {
  const video = $('video');
  const canvas = toPhotoCanvas(video, video.videoWidth, video.videoHeight);
  stream?.getTracks().forEach((track) => track.stop());
  stream = null;
  video.hidden = true;
  $('snap').hidden = true;
  await usePhoto(canvas, 'the camera photo');
}

// --- wiring -----------------------------------------------------------------------------------------------------

$('file').addEventListener('change', (event) => {
  const [file] = event.target.files;
  hooks.photoChosenMs ??= performance.now();
  if (file) loadFile(file);
});
$('camera').addEventListener('click', startCamera);
$('snap').addEventListener('click', snap);
$('variant').addEventListener('change', async (event) => {
  state.variant = event.target.value;
  try {
    await generator(state.variant);
  } catch (error) {
    setStatus(`Model failed to load: ${error.message}`, 'error');
  }
});

hooks.ready = init().then(() => true, () => false);

// Timing for benchmarks/bench_mobile.py: median milliseconds of `repeats` generator runs on the current crop (after
// one warm-up run), and of the face detection on the current photo.
hooks.time = async (variant, repeats) => {
  const model = await generator(variant);
  const vector = new Array(state.manifest.condition === 'action_units' ? state.manifest.action_units.length : 8).fill(0);
  vector[1] = 1;
  const median = (values) => values.sort((a, b) => a - b)[Math.floor(values.length / 2)];
  await model.run(state.crop, vector);
  const generatorMs = [];
  for (let i = 0; i < repeats; i++) {
    const t0 = performance.now();
    await model.run(state.crop, vector);
    generatorMs.push(performance.now() - t0);
  }
  const detectionMs = [];
  for (let i = 0; i < Math.max(3, Math.floor(repeats / 4)); i++) {
    const t0 = performance.now();
    await detectFaces(state.detector.run, state.photo, state.photo.width, state.photo.height, state.manifest.detector);
    detectionMs.push(performance.now() - t0);
  }
  return {generatorMs: median(generatorMs), detectionMs: median(detectionMs)};
};

// Offline once loaded: the service worker caches every file this page loaded (hooks.offlineReady turns true).
hooks.offlineReady = false;
if ('serviceWorker' in navigator && window.isSecureContext) {
  navigator.serviceWorker.addEventListener('message', (event) => {
    if (event.data?.cached) hooks.offlineReady = true;
  });
  navigator.serviceWorker.register('./sw.js').then(async () => {
    if (!(await hooks.ready)) return;
    const worker = (await navigator.serviceWorker.ready).active;
    const urls = [location.href, ...performance.getEntriesByType('resource').map((entry) => entry.name)];
    worker.postMessage({cache: [...new Set(urls)].filter((url) => new URL(url).origin === location.origin)});
  }).catch(() => {});
}
