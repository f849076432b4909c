#!/usr/bin/env node
// onnxruntime-web loads its WASM runtime (and the .mjs glue that instantiates it) at run time
// from `ort.env.wasm.wasmPaths`; copy them next to the app so the server serves them at /ort/.
import { copyFile, mkdir, readdir } from 'node:fs/promises'
import { createRequire } from 'node:module'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'

const dist = join(dirname(createRequire(import.meta.url).resolve('onnxruntime-web')), '.')
const out = fileURLToPath(new URL('../public/ort/', import.meta.url))
await mkdir(out, { recursive: true })
for (const f of await readdir(dist)) {
  if (/^ort-wasm-simd-threaded(\.jsep)?\.(wasm|mjs)$/.test(f)) await copyFile(join(dist, f), join(out, f))
}
