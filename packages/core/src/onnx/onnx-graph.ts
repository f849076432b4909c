import onnxProto from 'onnx-proto'
import { GraphBuildError } from '../errors.js'

const { onnx } = onnxProto

/** ONNX element types we emit. */
export type OnnxElemType = 'float32' | 'float16' | 'int64' | 'int32' | 'uint8'

const ELEM: Record<OnnxElemType, number> = {
  float32: onnx.TensorProto.DataType.FLOAT,
  float16: onnx.TensorProto.DataType.FLOAT16,
  int64: onnx.TensorProto.DataType.INT64,
  int32: onnx.TensorProto.DataType.INT32,
  uint8: onnx.TensorProto.DataType.UINT8,
}

export type AttrValue = number | string | number[] | { float: number }

/** A symbolic or fixed dimension of a graph input/output. */
export type Dim = number | string

const MS_DOMAIN = 'com.microsoft'
const PAGE = 4096

/**
 * A thin, typed layer over the ONNX protobuf messages. Names are unique per graph; the
 * builder hands out fresh names so callers never collide by accident.
 */
export class OnnxGraph {
  private readonly nodes: InstanceType<typeof onnx.NodeProto>[] = []
  private readonly initializers: InstanceType<typeof onnx.TensorProto>[] = []
  private readonly inputs: InstanceType<typeof onnx.ValueInfoProto>[] = []
  private readonly outputs: InstanceType<typeof onnx.ValueInfoProto>[] = []
  private readonly names = new Set<string>()
  /** Names handed out by fresh() that no node has produced yet. */
  private readonly reserved = new Set<string>()
  private counter = 0

  constructor(private readonly graphName: string) {}

  fresh(hint: string): string {
    let name = `${hint}_${this.counter++}`
    while (this.names.has(name)) name = `${hint}_${this.counter++}`
    this.names.add(name)
    this.reserved.add(name)
    return name
  }

  private claim(name: string): string {
    if (this.reserved.delete(name)) return name
    if (this.names.has(name)) throw new GraphBuildError(`duplicate value name ${name}`)
    this.names.add(name)
    return name
  }

  input(name: string, type: OnnxElemType, dims: readonly Dim[]): string {
    this.inputs.push(valueInfo(this.claim(name), type, dims))
    return name
  }

  /** Marks an existing value as a graph output, renaming it through Identity when needed. */
  output(value: string, name: string, type: OnnxElemType, dims: readonly Dim[]): void {
    if (value !== name) this.op('Identity', [value], { outputs: [name] })
    this.outputs.push(valueInfo(name, type, dims))
  }

  /** Adds an initializer from little-endian bytes. */
  constant(hint: string, type: OnnxElemType, dims: readonly number[], bytes: Uint8Array): string {
    const name = this.claim(this.fresh(hint))
    this.initializers.push(
      onnx.TensorProto.create({ name, dataType: ELEM[type], dims: [...dims], rawData: bytes }),
    )
    return name
  }

  constantInt64(hint: string, values: readonly number[]): string {
    const data = new BigInt64Array(values.map((v) => BigInt(v)))
    return this.constant(hint, 'int64', [values.length], new Uint8Array(data.buffer))
  }

  constantFloat(hint: string, values: readonly number[]): string {
    const data = new Float32Array(values)
    return this.constant(hint, 'float32', [values.length], new Uint8Array(data.buffer))
  }

  /**
   * Adds a node. Returns its outputs; `outputs` may name them explicitly, otherwise
   * `outputCount` fresh names are made. An empty string input means "optional, absent".
   */
  op(
    opType: string,
    inputs: readonly string[],
    opts: {
      attrs?: Record<string, AttrValue>
      outputs?: readonly string[]
      outputCount?: number
      ms?: boolean
    } = {},
  ): string[] {
    const outputs =
      opts.outputs?.map((o) => this.claim(o)) ??
      Array.from({ length: opts.outputCount ?? 1 }, () => this.claim(this.fresh(opType.toLowerCase())))
    const attribute = Object.entries(opts.attrs ?? {}).map(([name, v]) => attr(name, v))
    this.nodes.push(
      onnx.NodeProto.create({
        opType,
        input: [...inputs],
        output: outputs,
        name: this.claim(this.fresh(`n_${opType}`)),
        attribute,
        ...(opts.ms ? { domain: MS_DOMAIN } : {}),
      }),
    )
    return outputs
  }

  /** Single-output convenience. */
  op1(opType: string, inputs: readonly string[], attrs?: Record<string, AttrValue>, ms = false): string {
    const [out] = this.op(opType, inputs, { ...(attrs ? { attrs } : {}), ms })
    if (out === undefined) throw new GraphBuildError(`${opType} produced no output`)
    return out
  }

  /** Serialises the model with every initializer inline (fine below protobuf's 2 GB limit). */
  toBytes(): Uint8Array {
    return this.encode()
  }

  /**
   * Serialises the model with initializers of at least `threshold` bytes moved to one
   * external data blob, page-aligned so ONNX Runtime can map it. Needed past 2 GB, and
   * faster to load well before that.
   */
  toExternal(
    location: string,
    threshold = 1024,
  ): { model: Uint8Array; data: Uint8Array[]; dataBytes: number } {
    const data: Uint8Array[] = []
    let offset = 0
    for (const t of this.initializers) {
      const raw = t.rawData
      if (raw.byteLength < threshold) continue
      const pad = (PAGE - (offset % PAGE)) % PAGE
      if (pad > 0) data.push(new Uint8Array(pad))
      offset += pad
      data.push(raw)
      t.rawData = new Uint8Array(0)
      t.dataLocation = onnx.TensorProto.DataLocation.EXTERNAL
      t.externalData = [
        { key: 'location', value: location },
        { key: 'offset', value: String(offset) },
        { key: 'length', value: String(raw.byteLength) },
      ]
      offset += raw.byteLength
    }
    return { model: this.encode(), data, dataBytes: offset }
  }

  private encode(): Uint8Array {
    const graph = onnx.GraphProto.create({
      name: this.graphName,
      node: this.nodes,
      initializer: this.initializers,
      input: this.inputs,
      output: this.outputs,
    })
    const model = onnx.ModelProto.create({
      irVersion: 8,
      producerName: 'butterfly',
      producerVersion: '0.1.0',
      opsetImport: [
        { domain: '', version: 17 },
        { domain: MS_DOMAIN, version: 1 },
      ],
      graph,
    })
    return onnx.ModelProto.encode(model).finish()
  }
}

function valueInfo(name: string, type: OnnxElemType, dims: readonly Dim[]) {
  return onnx.ValueInfoProto.create({
    name,
    type: {
      tensorType: {
        elemType: ELEM[type],
        shape: { dim: dims.map((d) => (typeof d === 'number' ? { dimValue: d } : { dimParam: d })) },
      },
    },
  })
}

function attr(name: string, v: AttrValue) {
  const T = onnx.AttributeProto.AttributeType
  if (typeof v === 'number') {
    if (!Number.isInteger(v)) throw new GraphBuildError(`attribute ${name}: use { float } for ${v}`)
    return onnx.AttributeProto.create({ name, type: T.INT, i: v })
  }
  if (typeof v === 'string') {
    return onnx.AttributeProto.create({ name, type: T.STRING, s: new TextEncoder().encode(v) })
  }
  if (Array.isArray(v)) return onnx.AttributeProto.create({ name, type: T.INTS, ints: v })
  return onnx.AttributeProto.create({ name, type: T.FLOAT, f: v.float })
}
