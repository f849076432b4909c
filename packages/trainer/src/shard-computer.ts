import type { ModelConfig } from '@butterfly/core'
import { BOS_ID, type Window } from './corpus.js'
import { ParamLayout } from './param-layout.js'
import { Transformer } from './transformer.js'

/**
 * One thread's share of a step: gathers windows of the corpus into a batch and runs the model
 * over it. The same class runs in the main thread (one thread) and in each worker, so the
 * arithmetic, and therefore every bit of the result, does not depend on where it runs.
 */
export class ShardComputer {
  private readonly model: Transformer
  private readonly inputs: Int32Array
  private readonly targets: Int32Array
  private readonly bos: number

  constructor(
    config: ModelConfig,
    private readonly ids: Uint16Array,
    private readonly params: Float32Array,
    private readonly batch: number,
    private readonly seqLen: number,
  ) {
    this.model = new Transformer(new ParamLayout(config), batch, seqLen)
    this.bos = config.bosTokenId ?? BOS_ID
    this.inputs = new Int32Array(batch * seqLen)
    this.targets = new Int32Array(batch * seqLen)
  }

  /** Overwrites `grads` with gradScale x the gradient of the summed loss; returns the summed loss. */
  grad(starts: readonly number[], grads: Float32Array, gradScale: number): number {
    const n = this.gather(starts)
    grads.fill(0)
    const loss = this.model.forward(this.params, this.inputs, this.targets, n, this.seqLen, { gradScale })
    this.model.backward(this.params, grads)
    return loss
  }

  /** Summed loss over windows that share one firstRow (at most `batch` of them). */
  loss(windows: readonly Window[]): number {
    const n = this.gather(windows.map((w) => w.start))
    const firstRow = windows[0]?.firstRow ?? 0
    return this.model.forward(this.params, this.inputs, this.targets, n, this.seqLen, { firstRow })
  }

  /**
   * Window s predicts ids[s, s + T) from `<s>` followed by ids[s, s + T - 1): every sequence
   * starts with BOS because every prompt the engines run does (they encode with addBos).
   */
  private gather(starts: readonly number[]): number {
    const T = this.seqLen
    if (starts.length < 1 || starts.length > this.batch) throw new RangeError(`need 1..${this.batch} windows`)
    starts.forEach((s, b) => {
      if (!Number.isInteger(s) || s < 0 || s + T > this.ids.length)
        throw new RangeError(`window ${s} out of range`)
      this.inputs[b * T] = this.bos
      for (let t = 0; t < T; t++) {
        if (t > 0) this.inputs[b * T + t] = this.ids[s + t - 1] as number
        this.targets[b * T + t] = this.ids[s + t] as number
      }
    })
    return starts.length
  }
}
