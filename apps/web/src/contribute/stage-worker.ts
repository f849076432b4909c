/// <reference lib="webworker" />
import {
  createOrtStage,
  type OrtRuntime,
  type RawTensor,
  type StageInit,
  type StageSession,
  type StageStepInput,
} from '@butterfly/core'
import { expose, transfer } from 'comlink'
import * as ort from 'onnxruntime-web'

// A Web Worker that runs pipeline stages with onnxruntime-web, so inference never blocks the
// page. The page drives it through comlink; weights come from the page one tensor at a time.

export type Device = 'wasm' | 'webgpu'

const stages = new Map<number, StageSession>()
let device: Device = 'wasm'

const api = {
  /** Runtime settings, once: where the WASM files are, threads, and the execution provider. */
  init(opts: { wasmPaths: string; threads: number; device: Device }): void {
    ort.env.wasm.wasmPaths = opts.wasmPaths
    ort.env.wasm.numThreads = opts.threads
    device = opts.device
  },
  async createStage(
    id: number,
    init: StageInit,
    weights: (name: string, shape: readonly number[]) => Promise<RawTensor>,
  ): Promise<void> {
    const stage = await createOrtStage(
      init,
      { ort: ort as unknown as OrtRuntime, weights: (name, shape) => weights(name, [...shape]) },
      { sessionOptions: { executionProviders: [device], graphOptimizationLevel: 'basic' } },
    )
    stages.set(id, stage)
  },
  async step(id: number, generationId: string, input: StageStepInput) {
    // input.allRows (a boolean) crosses comlink as is; out.rowTopk comes back with its arrays.
    const out = await get(id).step(generationId, input)
    const { hidden, topk, rowTopk } = out
    const arrays = [hidden, topk?.values, topk?.ids, rowTopk?.values, rowTopk?.ids, rowTopk?.logSumExp]
    // A buffer may be listed once only (structured clone throws on duplicates).
    const buffers = new Set(
      arrays.map((a) => a?.buffer).filter((b): b is ArrayBuffer => b instanceof ArrayBuffer),
    )
    return transfer(out, [...buffers])
  },
  async truncate(id: number, generationId: string, length: number): Promise<void> {
    await get(id).truncate(generationId, length)
  },
  endGeneration(id: number, generationId: string): void {
    stages.get(id)?.endGeneration(generationId)
  },
  activeGenerations(id: number): number {
    return stages.get(id)?.activeGenerations ?? 0
  },
  async dispose(id: number): Promise<void> {
    const stage = stages.get(id)
    stages.delete(id)
    await stage?.dispose()
  },
}

function get(id: number): StageSession {
  const stage = stages.get(id)
  if (stage === undefined) throw new Error(`no stage ${id} in this worker`)
  return stage
}

export type StageWorkerApi = typeof api
expose(api)
