import type { Pipeline } from '@butterfly/core'
import type { BuiltPipeline } from './plan-stage.js'

export interface PipelineLeaseStats {
  /** Pipelines replaced (by a re-plan, a relay switch or a chain's fallback) that generations still run on. */
  readonly retiring: number
  /** Pipelines whose stages were disposed since the gateway started. */
  readonly disposed: number
  /** Generations holding a pipeline, current or retiring. */
  readonly held: number
}

/**
 * The generations on each pipeline the gateway built. A generation keeps the pipeline it started
 * on, so a pipeline that is replaced is retired, not dropped, and its stages are disposed once
 * the last generation on it lets go. Disposing matters because the stages of every pipeline
 * share the gateway's connections: before this, each re-plan or relay switch left its
 * RemoteStages subscribed to the reused connections, so every later message was parsed once per
 * pipeline the gateway had ever built, and their maps were never freed.
 */
export class PipelineLeases<R extends BuiltPipeline = BuiltPipeline> {
  private ready: R | undefined
  private readonly holders = new Map<Pipeline, number>()
  private readonly retired = new Set<Pipeline>()
  private disposedCount = 0

  constructor(private readonly onError: (err: unknown) => void = () => undefined) {}

  /** The pipeline new generations start on. */
  get current(): R | undefined {
    return this.ready
  }

  /** Makes `next` the current pipeline; the one it replaces is retired. */
  adopt(next: R): void {
    const old = this.ready
    this.ready = next
    if (old !== undefined) this.retireBuilt(old, next.pipeline)
  }

  /** Retires a plan's pipeline and its relayed twin (if built), but not `keep`. */
  retireBuilt(built: BuiltPipeline, keep?: Pipeline): void {
    if (built.pipeline !== keep) this.retire(built.pipeline)
    built.relayedIfBuilt?.()?.then(
      (relayed) => {
        if (relayed !== keep && relayed !== this.ready?.pipeline) this.retire(relayed)
      },
      () => undefined,
    )
  }

  /** A generation starts on `pipeline`; call the returned function (once is enough) when it ends or moves. */
  acquire(pipeline: Pipeline): () => void {
    this.holders.set(pipeline, (this.holders.get(pipeline) ?? 0) + 1)
    let held = true
    return () => {
      if (!held) return
      held = false
      const n = (this.holders.get(pipeline) ?? 1) - 1
      if (n > 0) {
        this.holders.set(pipeline, n)
        return
      }
      this.holders.delete(pipeline)
      if (this.retired.has(pipeline)) this.dispose(pipeline)
    }
  }

  /** No new generation will start on `pipeline`: dispose it soon, or when its last generation ends. */
  retire(pipeline: Pipeline): void {
    if (this.retired.has(pipeline)) return
    this.retired.add(pipeline)
    // Checked after this task: a generation that was handed the pipeline a moment ago (its await
    // resumes in a microtask) takes its lease before the pipeline can go.
    setImmediate(() => {
      if (this.retired.has(pipeline) && !this.holders.has(pipeline)) this.dispose(pipeline)
    })
  }

  stats(): PipelineLeaseStats {
    let held = 0
    for (const n of this.holders.values()) held += n
    return { retiring: this.retired.size, disposed: this.disposedCount, held }
  }

  private dispose(pipeline: Pipeline): void {
    this.retired.delete(pipeline)
    this.disposedCount++
    for (const stage of pipeline.stages) {
      // A stage that cannot dispose cleanly is reported; the others still go.
      stage.dispose().catch(this.onError)
    }
  }
}
