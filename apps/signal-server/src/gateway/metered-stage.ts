import type { ConfirmResult, StageSession, StageStepInput, StageStepOutput } from '@butterfly/core'
import type { ServerMetrics } from '../control/server-metrics.js'

/** Records per-stage step latency and the bytes the coordinator sends, around any stage. */
export class MeteredStage implements StageSession {
  constructor(
    private readonly inner: StageSession,
    private readonly labels: {
      mesh: string
      stage: string
      metrics: ServerMetrics
      /**
       * Every step that succeeded: its milliseconds, the tokens it carried, and the most steps
       * that were in flight on this stage at once while it ran, itself included (the claim check).
       */
      observe?: ((ms: number, tokens: number, overlapping: number) => void) | undefined
    },
  ) {}

  /** Per step in flight, the most steps in flight at once during its life. */
  private readonly inFlight = new Set<{ most: number }>()

  get layerStart() {
    return this.inner.layerStart
  }
  get layerEnd() {
    return this.inner.layerEnd
  }
  get isFirst() {
    return this.inner.isFirst
  }
  get isLast() {
    return this.inner.isLast
  }
  get activeGenerations() {
    return this.inner.activeGenerations
  }

  async step(id: string, input: StageStepInput, signal?: AbortSignal): Promise<StageStepOutput> {
    const { metrics, mesh, stage } = this.labels
    const end = metrics.stageStep.startTimer({ mesh, stage })
    const sent = input.hidden?.byteLength ?? (input.tokens?.length ?? 0) * 4
    const start = performance.now()
    const mine = { most: 0 }
    this.inFlight.add(mine)
    const now = this.inFlight.size
    for (const other of this.inFlight) other.most = Math.max(other.most, now)
    try {
      const out = await this.inner.step(id, input, signal)
      this.labels.observe?.(performance.now() - start, input.seqLen, mine.most)
      return out
    } finally {
      this.inFlight.delete(mine)
      end()
      metrics.bytesSent.inc({ mesh }, sent)
    }
  }

  provenance(id: string, position?: number) {
    return this.inner.provenance?.(id, position)
  }

  confirmedLength(id: string): number {
    return this.inner.confirmedLength?.(id) ?? Number.POSITIVE_INFINITY
  }

  confirmDue(id: string): boolean {
    return this.inner.confirmDue?.(id) ?? false
  }

  async confirm(id: string, signal?: AbortSignal): Promise<ConfirmResult> {
    const result = (await this.inner.confirm?.(id, signal)) ?? { ok: true }
    if (!result.ok) this.labels.metrics.rollbacks.inc({ mesh: this.labels.mesh, stage: this.labels.stage })
    return result
  }

  truncate(id: string, length: number, signal?: AbortSignal): Promise<void> {
    return this.inner.truncate(id, length, signal)
  }

  endGeneration(id: string): void {
    this.inner.endGeneration(id)
  }

  dispose(): Promise<void> {
    return this.inner.dispose()
  }
}
