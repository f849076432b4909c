import { OnnxGraph } from '@butterfly/core'
import * as ort from 'onnxruntime-node'
import { DeviceUnavailableError } from './errors.js'

export type DeviceRequest = 'auto' | 'cpu' | 'cuda' | 'webgpu'
export type Device = 'cpu' | 'cuda' | 'webgpu'

/** A one-node model used only to ask onnxruntime whether an execution provider starts. */
function probeModel(): Uint8Array {
  const g = new OnnxGraph('probe')
  const x = g.input('x', 'float32', [4])
  g.output(g.op1('Relu', [x]), 'y', 'float32', [4])
  return g.toBytes()
}

/** True when a session on `device` can be created and run. */
export async function deviceWorks(device: Device): Promise<boolean> {
  if (device === 'cpu') return true
  try {
    const session = await ort.InferenceSession.create(probeModel(), {
      executionProviders: [device],
      logSeverityLevel: 4,
    })
    await session.run({ x: new ort.Tensor('float32', Float32Array.of(-1, 2, -3, 4), [4]) })
    await session.release()
    return true
  } catch {
    return false
  }
}

/**
 * `auto` picks CUDA when onnxruntime-node has its CUDA provider installed, else WebGPU when
 * an adapter exists, else CPU. Asking for a device that is not there is an error.
 */
export async function resolveDevice(request: DeviceRequest): Promise<Device> {
  if (request === 'cpu') return 'cpu'
  if (request !== 'auto') {
    if (await deviceWorks(request)) return request
    const hint =
      request === 'cuda'
        ? 'install the CUDA provider: ONNXRUNTIME_NODE_INSTALL_CUDA=v12 npm rebuild onnxruntime-node (needs network)'
        : 'no WebGPU adapter was found'
    throw new DeviceUnavailableError(`device ${request} is not available: ${hint}`)
  }
  for (const d of ['cuda', 'webgpu'] as const) if (await deviceWorks(d)) return d
  return 'cpu'
}
