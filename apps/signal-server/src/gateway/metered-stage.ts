import type { StageSession, StageStepInput, StageStepOutput } from '@butterfly/core'
import type { ServerMetrics } from '../control/server-metrics.js'

/** Records per-stage step latency and the bytes the coordinator sends, around any stage. */
export class MeteredStage implements StageSession {
  constructor(
    private readonly inner: StageSession,
    private readonly labels: { mesh: string; stage: string; metrics: ServerMetrics },
  ) {}

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
    try {
      return await this.inner.step(id, input, signal)
    } finally {
      end()
      metrics.bytesSent.inc({ mesh }, sent)
    }
  }

  provenance(id: string) {
    return this.inner.provenance?.(id)
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
