import { existsSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import { Worker } from 'node:worker_threads'
import type { ModelConfig } from '@butterfly/core'
import type { Corpus, Window } from './corpus.js'
import { TrainError } from './errors.js'
import { ShardComputer } from './shard-computer.js'
import type { WorkerInit, WorkerReply, WorkerTask } from './train-worker.js'

// Resolves to the compiled worker both from dist/ and from src/ (tests run the sources).
const WORKER_FILE = fileURLToPath(new URL('../dist/train-worker.js', import.meta.url))

export interface GradPoolOptions {
  readonly config: ModelConfig
  readonly corpus: Corpus
  /** Parameters, in a SharedArrayBuffer so workers read the optimizer's latest values in place. */
  readonly params: Float32Array
  /** Windows per shard. */
  readonly batch: number
  readonly seqLen: number
  /** Shards per step; fixed, so the summed gradient is the same bits for any thread count. */
  readonly shards: number
  readonly threads: number
}

interface Executor {
  run(task: WorkerTask): Promise<number>
  close(): Promise<void>
}

/**
 * Data parallelism: a step's batch is cut into `shards` fixed shards; shard s runs on thread
 * s % threads and writes its own gradient buffer; the caller sums them in shard order. One
 * thread runs in-process; more start worker threads sharing params and corpus memory.
 */
export class GradPool {
  readonly grads: Float32Array[]
  private readonly executors: Executor[]
  private nextId = 0

  constructor(private readonly o: GradPoolOptions) {
    if (!(o.threads >= 1 && o.threads <= o.shards)) {
      throw new TrainError('ERR_TRAIN_CONFIG', `threads must be from 1 to the shard count ${o.shards}`)
    }
    if (
      !(o.params.buffer instanceof SharedArrayBuffer) ||
      !(o.corpus.ids.buffer instanceof SharedArrayBuffer)
    ) {
      throw new TrainError('ERR_TRAIN_CONFIG', 'params and corpus must live in SharedArrayBuffers')
    }
    const gradBuffers = Array.from({ length: o.shards }, () => new SharedArrayBuffer(o.params.length * 4))
    this.grads = gradBuffers.map((b) => new Float32Array(b))
    if (o.threads === 1) {
      const computer = new ShardComputer(o.config, o.corpus.ids, o.params, o.batch, o.seqLen)
      this.executors = [
        {
          run: async (task) =>
            task.kind === 'grad'
              ? computer.grad(task.starts, this.grads[task.shard] as Float32Array, task.scale)
              : computer.loss(task.windows),
          close: async () => undefined,
        },
      ]
      return
    }
    if (!existsSync(WORKER_FILE)) {
      throw new TrainError('ERR_TRAIN_WORKER', `${WORKER_FILE} is missing; build the workspace (npx tsc -b)`)
    }
    const init: WorkerInit = {
      config: o.config,
      ids: o.corpus.ids.buffer,
      params: o.params.buffer,
      grads: gradBuffers,
      batch: o.batch,
      seqLen: o.seqLen,
    }
    this.executors = Array.from({ length: o.threads }, (_, i) => workerExecutor(init, i))
  }

  /** Gradients of every shard (shard s from starts[s]), each scaled by `scale`; returns their losses. */
  async grad(starts: readonly number[][], scale: number): Promise<number[]> {
    return Promise.all(
      starts.map((s, shard) =>
        this.exec(shard % this.executors.length, { id: 0, kind: 'grad', shard, starts: s, scale }),
      ),
    )
  }

  /** Summed loss over `windows`, in chunks of up to `batch` spread over the threads, added in order. */
  async loss(windows: readonly Window[]): Promise<number> {
    const chunks: Window[][] = []
    for (const w of windows) {
      const last = chunks.at(-1)
      if (last !== undefined && last.length < this.o.batch && last[0]?.firstRow === w.firstRow) last.push(w)
      else chunks.push([w])
    }
    const losses = await Promise.all(
      chunks.map((c, i) => this.exec(i % this.executors.length, { id: 0, kind: 'loss', windows: c })),
    )
    return losses.reduce((a, b) => a + b, 0)
  }

  async close(): Promise<void> {
    await Promise.all(this.executors.map((e) => e.close()))
  }

  private exec(thread: number, task: WorkerTask): Promise<number> {
    return (this.executors[thread] as Executor).run({ ...task, id: this.nextId++ })
  }
}

/** A worker thread that runs one task at a time, in the order given. */
function workerExecutor(init: WorkerInit, index: number): Executor {
  const worker = new Worker(WORKER_FILE, { workerData: init, name: `butterfly-train-${index}` })
  const pending = new Map<number, { resolve: (loss: number) => void; reject: (e: Error) => void }>()
  let failure: Error | undefined
  let closing = false
  const failAll = (err: Error) => {
    failure ??= err
    for (const p of pending.values()) p.reject(failure)
    pending.clear()
  }
  worker.on('message', (reply: WorkerReply) => {
    const p = pending.get(reply.id)
    pending.delete(reply.id)
    if ('error' in reply) p?.reject(new TrainError('ERR_TRAIN_WORKER', `worker ${index}: ${reply.error}`))
    else p?.resolve(reply.loss)
  })
  worker.on('error', (err) =>
    failAll(new TrainError('ERR_TRAIN_WORKER', `worker ${index} failed: ${err.message}`)),
  )
  worker.on('exit', (code) => {
    if (!closing) failAll(new TrainError('ERR_TRAIN_WORKER', `worker ${index} exited with code ${code}`))
  })
  return {
    run: (task) =>
      new Promise<number>((resolve, reject) => {
        if (failure !== undefined) return reject(failure)
        pending.set(task.id, { resolve, reject })
        worker.postMessage(task)
      }),
    close: async () => {
      closing = true
      await worker.terminate()
    },
  }
}
