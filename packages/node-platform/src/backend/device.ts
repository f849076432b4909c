import { existsSync } from 'node:fs'
import { createRequire } from 'node:module'
import { dirname, join } from 'node:path'
import { OnnxGraph } from '@butterfly/core'
import * as ort from 'onnxruntime-node'
import { DeviceUnavailableError } from '../errors.js'

export type DeviceRequest = 'auto' | 'cpu' | 'cuda' | 'webgpu'
export type Device = 'cpu' | 'cuda' | 'webgpu'

/** A one-node model used only to ask onnxruntime whether an execution provider starts. */
function probeModel(): Uint8Array {
  const g = new OnnxGraph('probe')
  const x = g.input('x', 'float32', [4])
  g.output(g.op1('Relu', [x]), 'y', 'float32', [4])
  return g.toBytes()
}

/**
 * Cheap preconditions, so probing does not make onnxruntime or Dawn print load errors on
 * machines that plainly lack the device: the CUDA provider library next to the binding, and
 * (on Linux) a Vulkan loader for Dawn's WebGPU.
 */
function mightWork(device: Device): boolean {
  if (process.platform !== 'linux') return true
  if (device === 'cuda') {
    const binding = createRequire(import.meta.url).resolve('onnxruntime-node')
    const bin = join(dirname(binding), '..', 'bin', 'napi-v6', 'linux', process.arch)
    return existsSync(join(bin, 'libonnxruntime_providers_cuda.so'))
  }
  const dirs = [
    '/usr/lib/x86_64-linux-gnu',
    '/usr/lib/aarch64-linux-gnu',
    '/usr/lib64',
    '/usr/lib',
    '/usr/local/lib',
  ]
  return dirs.some((d) => existsSync(join(d, 'libvulkan.so.1')))
}

/** True when a session on `device` can be created and run. */
export async function deviceWorks(device: Device): Promise<boolean> {
  if (device === 'cpu') return true
  if (!mightWork(device)) return false
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
