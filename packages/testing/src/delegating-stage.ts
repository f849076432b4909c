import { ShapedStage, type StageSession, type StageStepInput, type StageStepOutput } from '@butterfly/core'

/**
 * A stage that forwards everything to `inner`, with inner's layer range: the shape a test stage
 * that wraps a real one starts from. Subclasses override what they change (and add fetchHidden or
 * provenance where they have them: the base leaves those optional members out).
 */
export class DelegatingStage<S extends StageSession = StageSession>
  extends ShapedStage
  implements StageSession
{
  constructor(protected readonly inner: S) {
    super(inner)
  }

  get activeGenerations(): number {
    return this.inner.activeGenerations
  }

  step(generationId: string, input: StageStepInput, signal?: AbortSignal): Promise<StageStepOutput> {
    return this.inner.step(generationId, input, signal)
  }

  truncate(generationId: string, length: number, signal?: AbortSignal): Promise<void> {
    return this.inner.truncate(generationId, length, signal)
  }

  endGeneration(generationId: string): void {
    this.inner.endGeneration(generationId)
  }

  dispose(): Promise<void> {
    return this.inner.dispose()
  }
}
