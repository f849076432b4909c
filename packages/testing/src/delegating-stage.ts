import type { StageSession, StageStepInput, StageStepOutput } from '@butterfly/core'

/**
 * A stage that forwards everything to `inner`, with inner's layer range: the shape a test stage
 * that wraps a real one starts from. Subclasses override what they change (and add fetchHidden or
 * provenance where they have them: the base leaves those optional members out).
 * (Once @butterfly/core exports ShapedStage, this extends it instead of copying the four fields.)
 */
export class DelegatingStage<S extends StageSession = StageSession> implements StageSession {
  readonly layerStart: number
  readonly layerEnd: number
  readonly isFirst: boolean
  readonly isLast: boolean

  constructor(protected readonly inner: S) {
    this.layerStart = inner.layerStart
    this.layerEnd = inner.layerEnd
    this.isFirst = inner.isFirst
    this.isLast = inner.isLast
  }

  get activeGenerations(): number {
    return this.inner.activeGenerations
  }

  step(generationId: string, input: StageStepInput, signal?: AbortSignal): Promise<StageStepOutput> {
    return this.inner.step(generationId, input, signal)
  }

  endGeneration(generationId: string): void {
    this.inner.endGeneration(generationId)
  }

  dispose(): Promise<void> {
    return this.inner.dispose()
  }
}
