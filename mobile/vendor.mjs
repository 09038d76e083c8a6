// Copies the runtime files the page loads out of node_modules into vendor/ (run by `npm ci` as postinstall), so the
// app has no build step and the server serves only vendor/, never node_modules.
import {cpSync, existsSync, mkdirSync, rmSync} from 'node:fs';
import {dirname, join} from 'node:path';
import {fileURLToPath} from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const FILES = [
  ['@litertjs/core/dist/index.js', 'litertjs-core/index.js'],
  ['@litertjs/core/wasm', 'litertjs-core/wasm'],
  ['@litertjs/wasm-utils/dist/index.js', 'litertjs-wasm-utils/index.js'],
];
const out = join(here, 'vendor');
rmSync(out, {recursive: true, force: true});
for (const [from, to] of FILES) {
  const source = join(here, 'node_modules', from);
  if (!existsSync(source)) {
    console.error(`vendor.mjs: ${source} is missing; run \`npm ci\` in ${here}`);
    process.exit(1);
  }
  mkdirSync(dirname(join(out, to)), {recursive: true});
  cpSync(source, join(out, to), {recursive: true});
}
console.log(`vendor.mjs: copied LiteRT.js into ${out}`);
