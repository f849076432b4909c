import { ModelFileError } from '../errors.js'
import { type ByteSource, readExact } from '../weights/byte-source.js'
import { fromFloat32, toFloat32 } from '../weights/float16.js'
import { canDequantize, dequantizeGgml } from './ggml-dequant.js'
import type { GgufFile, GgufTensorInfo } from './gguf-reader.js'
import { type ImportTensor, metaToHfRows } from './import-source.js'

/** ggml types whose bytes are already what a safetensors file stores. */
const PLAIN: Readonly<Record<string, 'F32' | 'F16' | 'BF16'>> = { F32: 'F32', F16: 'F16', BF16: 'BF16' }
const ELEMENT_BYTES = { F32: 4, F16: 2, BF16: 2 } as const

/** How a GGUF tensor becomes its Hugging Face counterpart. */
export interface GgufTensorRead {
  /** Rows in Meta's interleaved RoPE order (llama arch q/k): permute back for this many heads. */
  readonly ropeHeads?: number
  readonly headDim?: number
  /** Subtracted from every element (Gemma's converter stores norm weights as 1 + w). */
  readonly offset?: number
}

/** A GGUF tensor as an import tensor of HF name `hfName` and PyTorch shape `shape`. */
export function ggufTensor(
  file: GgufFile,
  info: GgufTensorInfo,
  hfName: string,
  shape: readonly number[],
  how: GgufTensorRead = {},
): ImportTensor {
  const fail = (code: 'ERR_MODEL_FILE_SHAPE' | 'ERR_MODEL_FILE_DTYPE', msg: string) =>
    new ModelFileError(code, file.source.name, msg, { tensor: info.name })
  const plain = Object.hasOwn(PLAIN, info.type.name) ? PLAIN[info.type.name] : undefined
  if (plain === undefined && !canDequantize(info.type)) {
    throw fail(
      'ERR_MODEL_FILE_DTYPE',
      `ggml type ${info.type.name} is not supported (F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, Q4_K, Q5_K, Q6_K are)`,
    )
  }
  // ggml lists dims innermost first; PyTorch outermost first.
  const torchShape = [...info.dims].reverse()
  if (torchShape.length !== shape.length || torchShape.some((d, i) => d !== shape[i])) {
    throw fail(
      'ERR_MODEL_FILE_SHAPE',
      `expected shape [${shape.join(', ')}], file has [${torchShape.join(', ')}]`,
    )
  }
  const outShape = [...shape]
  return {
    name: hfName,
    shape: outShape,
    sourceType: info.type.name,
    sourceBytes: info.end - info.begin,
    async read(signal) {
      const bytes = await readGgufTensorBytes(file.source, info, signal)
      let dtype = plain ?? 'F32'
      let data = plain === undefined ? fromFloat32(dequantizeGgml(info.type, bytes), 'F32') : bytes
      if (how.offset !== undefined) {
        // A copy: toFloat32 may view the source's own bytes (an in-memory file), never edit them.
        const x = Float32Array.from(toFloat32({ dtype, shape: outShape, data }))
        for (let i = 0; i < x.length; i++) x[i] = (x[i] as number) - how.offset
        dtype = 'F32'
        data = fromFloat32(x, 'F32')
      }
      // A bias (1-D) permutes element by element; a matrix row by row.
      const rowBytes = (shape.length === 1 ? 1 : (shape[shape.length - 1] as number)) * ELEMENT_BYTES[dtype]
      if (how.ropeHeads !== undefined) {
        data = metaToHfRows(data, how.ropeHeads, how.headDim ?? 0, rowBytes)
      }
      return { dtype, shape: outShape, data }
    },
  }
}

function readGgufTensorBytes(
  source: ByteSource,
  info: GgufTensorInfo,
  signal?: AbortSignal,
): Promise<Uint8Array> {
  return readExact(source, info.begin, info.end - info.begin, { what: `tensor ${info.name}`, signal })
}

/** A small tensor (rope factors) read whole as float32. */
export async function readGgufFloats(file: GgufFile, info: GgufTensorInfo): Promise<Float32Array> {
  const bytes = await readGgufTensorBytes(file.source, info)
  const plain = Object.hasOwn(PLAIN, info.type.name) ? PLAIN[info.type.name] : undefined
  if (plain === undefined) {
    if (!canDequantize(info.type)) {
      throw new ModelFileError(
        'ERR_MODEL_FILE_DTYPE',
        file.source.name,
        `ggml type ${info.type.name} is not supported`,
        {
          tensor: info.name,
        },
      )
    }
    return dequantizeGgml(info.type, bytes)
  }
  return toFloat32({ dtype: plain, shape: [...info.dims].reverse(), data: bytes })
}

export function tensorInfo(file: GgufFile, name: string): GgufTensorInfo {
  const info = file.tensors.get(name)
  if (info === undefined) {
    throw new ModelFileError('ERR_MODEL_TENSOR_MISSING', file.source.name, 'tensor not in file', {
      tensor: name,
    })
  }
  return info
}
