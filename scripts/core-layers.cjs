// packages/core's layers, lowest first. A folder may import its own layer and those below it,
// never one above. index.ts, errors.ts and globals.d.ts sit at the root.
module.exports = [
  ['errors\\.ts', 'base'],
  ['weights', 'tokenizers', 'model', 'wire', 'identity', 'transport', 'formats', 'quant'],
  ['onnx'],
  ['verify', 'remote'],
  ['engine'],
  ['mesh', 'placement'],
]
