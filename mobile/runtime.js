// LiteRT.js: the WebAssembly runtime (vendored from npm @litertjs/core by vendor.mjs) and the models of a web export:
// the face detector, the generator and, for AU exports with a reader, the reader of the face's own AUs.
import {loadLiteRt, loadAndCompile, Tensor} from '@litertjs/core';

export class ModelError extends Error {}

let runtime = null;

export function loadRuntime() {
  // The threaded build needs SharedArrayBuffer, which the server's cross-origin isolation headers enable (measured:
  // 1.5x faster than the single-threaded build on 2 cores). `self.expr3dWasmThreads = false` (set before the page's
  // scripts run) picks the single-threaded build, for benchmarks/bench_mobile.py's comparison.
  runtime ??= loadLiteRt(new URL('./vendor/litertjs-core/wasm/', import.meta.url).href,
                         {threads: self.crossOriginIsolated === true && self.expr3dWasmThreads !== false});
  return runtime;
}

export function runtimeInfo() {
  return {threads: self.crossOriginIsolated === true, hardwareConcurrency: navigator.hardwareConcurrency};
}

async function fetchModel(url, what) {
  let response;
  try {
    response = await fetch(url);
  } catch (error) {
    throw new ModelError(`${what}: cannot fetch ${url} (${error.message})`);
  }
  if (!response.ok) throw new ModelError(`${what}: ${url} answered ${response.status} ${response.statusText}`);
  const bytes = new Uint8Array(await response.arrayBuffer());
  // Every .tflite is a FlatBuffer with the identifier "TFL3" at byte 4: anything else is not a model.
  const tag = String.fromCharCode(...bytes.subarray(4, 8));
  if (tag !== 'TFL3') throw new ModelError(`${what}: ${url} is not a TFLite model (no TFL3 identifier)`);
  return bytes;
}

async function compile(url, what) {
  const bytes = await fetchModel(url, what);
  try {
    return {model: await loadAndCompile(bytes, {accelerator: 'wasm'}), bytes: bytes.length};
  } catch (error) {
    throw new ModelError(`${what}: LiteRT.js could not load ${url} (${error.message ?? error})`);
  }
}

function byShape(details, shape) {
  return details.find((d) => d.shape.length === shape.length && d.shape.every((v, i) => v === shape[i]));
}

async function release(outputs) {
  for (const t of Object.values(outputs)) t.delete();
}

export async function loadDetector(url, config) {
  const {model, bytes} = await compile(url, 'face detector');
  const size = config.input_size;
  const input = model.getInputDetails()[0];
  const outputs = model.getOutputDetails();
  const regressors = byShape(outputs, [1, 896, 16]);
  const scores = byShape(outputs, [1, 896, 1]);
  if (!input || !regressors || !scores) throw new ModelError(`face detector: ${url} is not the short-range BlazeFace model`);
  const run = async (data) => {
    const tensor = new Tensor(data, [1, size, size, 3]);
    const out = await model.run({[input.name]: tensor});
    tensor.delete();
    const result = {regressors: new Float32Array(await out[regressors.name].data()),
                    logits: new Float32Array(await out[scores.name].data())};
    await release(out);
    return result;
  };
  return {run, bytes};
}

export async function loadGenerator(url, manifest) {
  const {model, bytes} = await compile(url, 'generator');
  const size = manifest.image_size;
  const [imageName, conditionName] = manifest.input_order;
  const inputs = model.getInputDetails();
  const image = inputs.find((d) => d.name === imageName);
  const condition = inputs.find((d) => d.name === conditionName);
  if (!image || !condition || image.shape[0] !== 1 || image.shape[1] !== size) {
    throw new ModelError(`generator: ${url} does not take ${manifest.inputs.image} (found ` +
                         `${inputs.map((d) => `${d.name} [${Array.from(d.shape)}]`).join(', ')})`);
  }
  const run = async (face, vector) => {
    const a = new Tensor(face, [1, size, size, 3]);
    const b = new Tensor(Float32Array.from(vector), [1, vector.length]);
    const out = await model.run({[imageName]: a, [conditionName]: b});
    a.delete();
    b.delete();
    const first = Object.values(out)[0];
    const result = new Float32Array(await first.data());
    await release(out);
    return result;
  };
  return {run, bytes};
}

export async function loadReader(url, manifest) {
  const {model, bytes} = await compile(url, 'AU reader');
  const size = manifest.image_size;
  const [imageName] = manifest.reader.input_order;
  const image = model.getInputDetails().find((d) => d.name === imageName);
  if (!image || image.shape[0] !== 1 || image.shape[1] !== size) {
    throw new ModelError(`AU reader: ${url} does not take ${manifest.inputs.image}`);
  }
  const run = async (face) => {
    const a = new Tensor(face, [1, size, size, 3]);
    const out = await model.run({[imageName]: a});
    a.delete();
    const result = new Float32Array(await Object.values(out)[0].data());
    await release(out);
    return result;
  };
  return {run, bytes};
}
