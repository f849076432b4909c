import type {
  InferenceBackend,
  RawTensor,
  StageSession,
  StageStepInput,
  StageStepOutput,
} from '@butterfly/core'
import { proxy, type Remote, wrap } from 'comlink'
import type { Device, StageWorkerApi } from './stage-worker.js'

/**
 * The tab's InferenceBackend: stages run with onnxruntime-web inside one Web Worker (WebGPU when
 * the browser has an adapter, WASM otherwise), so inference never blocks the page. Weights are
 * read on the page (they come from the server, checked against the manifest) and handed to the
 * worker one tensor at a time.
 */
export function createWorkerBackend(device: Device): InferenceBackend & { terminate(): void } {
  const worker = new Worker(new URL('./stage-worker.ts', import.meta.url), { type: 'module' })
  const api: Remote<StageWorkerApi> = wrap(worker)
  const threads = globalThis.crossOriginIsolated ? Math.min(4, navigator.hardwareConcurrency || 2) : 1
  const ready = api.init({ wasmPaths: new URL('/ort/', location.href).href, threads, device })
  let nextId = 1
  return {
    name: `onnxruntime-web/${device}`,
    async createStage(init, weights) {
      await ready
      const id = nextId++
      await api.createStage(
        id,
        {
          config: init.config,
          layerStart: init.layerStart,
          layerEnd: init.layerEnd,
          ...(init.topK ? { topK: init.topK } : {}),
        },
        proxy(async (name: string, shape: readonly number[]): Promise<RawTensor> => weights(name, shape)),
      )
      return new WorkerStage(api, id, init.layerStart, init.layerEnd, init.config.numLayers)
    },
    terminate: () => worker.terminate(),
  }
}

class WorkerStage implements StageSession {
  readonly isFirst: boolean
  readonly isLast: boolean
  private readonly generations = new Set<string>()

  constructor(
    private readonly api: Remote<StageWorkerApi>,
    private readonly id: number,
    readonly layerStart: number,
    readonly layerEnd: number,
    numLayers: number,
  ) {
    this.isFirst = layerStart === 0
    this.isLast = layerEnd === numLayers
  }

  get activeGenerations(): number {
    return this.generations.size
  }

  async step(generationId: string, input: StageStepInput): Promise<StageStepOutput> {
    this.generations.add(generationId)
    return (await this.api.step(this.id, generationId, input)) as StageStepOutput
  }

  async truncate(generationId: string, length: number, signal?: AbortSignal): Promise<void> {
    signal?.throwIfAborted()
    // The worker's OrtStage queues it behind the steps already posted, and validates the length.
    await this.api.truncate(this.id, generationId, length)
  }

  endGeneration(generationId: string): void {
    this.generations.delete(generationId)
    void this.api.endGeneration(this.id, generationId)
  }

  async dispose(): Promise<void> {
    this.generations.clear()
    await this.api.dispose(this.id)
  }
}
