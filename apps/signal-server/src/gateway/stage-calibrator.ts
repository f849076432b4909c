import {
  type CalibrationSample,
  calibrate,
  type NumericClass,
  type ReputationBook,
  type StageSession,
  type ToleranceTable,
} from '@butterfly/core'
import { newGenerationId } from './generation-id.js'

export interface CalibratorComponents {
  /** The known input's exact states at every layer boundary (referenceBoundaries), computed once. */
  readonly boundaries: () => Promise<Float32Array[]>
  readonly tokens: readonly number[]
  readonly hiddenSize: number
  readonly reputation: ReputationBook
  readonly log?: (line: string) => void
}

export interface CalibrationReplica {
  readonly peerId: string
  readonly cls: NumericClass
  readonly session: StageSession
}

export interface StageCalibration {
  readonly table: ToleranceTable
  /** Replicas whose calibration output was accepted, in the order given. */
  readonly calibrated: CalibrationReplica[]
  /** Peers that failed the known-answer test (wrong output) or could not run it. */
  readonly rejected: Array<{ peerId: string; reason: string }>
}

/**
 * Join-time calibration of replicated stages: each replica runs the known input once per layer
 * range it serves, and the tolerances of its class (within and across classes) come from how far
 * the outputs lie from the float64 truth (core's calibrate()). A peer whose output is far from the
 * truth is refused and its bad answer recorded as a disagreement. Samples are kept per (peer,
 * layer range), so a re-plan only calibrates the peers that are new to their range.
 */
export class StageCalibrator {
  private readonly samples = new Map<string, CalibrationSample>()

  constructor(private readonly c: CalibratorComponents) {}

  async calibrate(
    range: { start: number; end: number; isFirst: boolean },
    replicas: readonly CalibrationReplica[],
  ): Promise<StageCalibration> {
    const boundaries = await this.c.boundaries()
    const { start, end, isFirst } = range
    const seqLen = this.c.tokens.length
    const failed: Array<{ peerId: string; reason: string }> = []
    await Promise.all(
      replicas.map(async (r) => {
        const key = `${r.peerId}|${start}|${end}`
        if (this.samples.has(key)) return
        const id = newGenerationId()
        try {
          const out = await r.session.step(id, {
            ...(isFirst ? { tokens: this.c.tokens } : { hidden: boundaries[start] as Float32Array }),
            seqLen,
            startPos: 0,
          })
          if (!(out.hidden instanceof Float32Array)) throw new Error('no hidden state')
          this.samples.set(key, { cls: r.cls, hidden: out.hidden, peerId: r.peerId })
        } catch (err) {
          failed.push({ peerId: r.peerId, reason: `calibration step failed: ${(err as Error).message}` })
        } finally {
          r.session.endGeneration(id)
        }
      }),
    )
    const keys = replicas.map((r) => `${r.peerId}|${start}|${end}`)
    const samples = keys
      .map((k) => this.samples.get(k))
      .filter((s): s is CalibrationSample => s !== undefined)
    const result = calibrate(samples, boundaries[end] as Float32Array, { hiddenSize: this.c.hiddenSize })
    const rejected = [
      ...failed,
      ...result.rejected.map((x) => ({ peerId: x.peerId ?? '?', reason: x.reason })),
    ]
    for (const x of result.rejected) {
      if (x.peerId === undefined) continue
      this.samples.delete(`${x.peerId}|${start}|${end}`)
      // Wrong against the exact answer, beyond what its class honestly produces: a proven lie.
      this.c.reputation.recordProven(x.peerId)
    }
    for (const x of rejected)
      this.c.log?.(`calibration of layers [${start}, ${end}) refused ${x.peerId}: ${x.reason}`)
    const refused = new Set(rejected.map((x) => x.peerId))
    return { table: result.table, calibrated: replicas.filter((r) => !refused.has(r.peerId)), rejected }
  }

  /** Drops what is known of a peer that left (its replacement under the same key recalibrates). */
  forget(peerId: string): void {
    for (const key of [...this.samples.keys()]) if (key.startsWith(`${peerId}|`)) this.samples.delete(key)
  }
}
