// Worker-thread entry: computes gradients and losses for the shards the main thread sends.
import { parentPort, workerData } from 'node:worker_threads'
import type { ModelConfig } from '@butterfly/core'
import type { Window } from './corpus.js'
import { ShardComputer } from './shard-computer.js'

export interface WorkerInit {
  readonly config: ModelConfig
  readonly ids: SharedArrayBuffer
  readonly params: SharedArrayBuffer
  readonly grads: readonly SharedArrayBuffer[]
  readonly batch: number
  readonly seqLen: number
}

export type WorkerTask =
  | {
      readonly id: number
      readonly kind: 'grad'
      readonly shard: number
      readonly starts: number[]
      readonly scale: number
    }
  | { readonly id: number; readonly kind: 'loss'; readonly windows: Window[] }

export type WorkerReply =
  | { readonly id: number; readonly loss: number }
  | { readonly id: number; readonly error: string }

if (parentPort !== null) {
  const port = parentPort
  const init = workerData as WorkerInit
  const computer = new ShardComputer(
    init.config,
    new Uint16Array(init.ids),
    new Float32Array(init.params),
    init.batch,
    init.seqLen,
  )
  const grads = init.grads.map((b) => new Float32Array(b))
  port.on('message', (task: WorkerTask) => {
    try {
      const loss =
        task.kind === 'grad'
          ? computer.grad(task.starts, grads[task.shard] as Float32Array, task.scale)
          : computer.loss(task.windows)
      port.postMessage({ id: task.id, loss } satisfies WorkerReply)
    } catch (err) {
      port.postMessage({ id: task.id, error: (err as Error).stack ?? String(err) } satisfies WorkerReply)
    }
  })
}
