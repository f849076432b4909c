import type { StageStepInput, StageStepOutput } from '../../engine/inference-backend.js'
import { compareHidden, firstDisagreeingRow, rowMatchesFingerprint } from '../../verify/compare-hidden.js'
import type { HiddenFingerprint } from '../../verify/fingerprint.js'
import { type TokenRows, tokenAgrees } from '../../verify/token-rows.js'
import type { Tolerance } from '../../verify/tolerance.js'
import { exclusive, type Member, mergeSteps, stepWithTimeout, syncTo } from './replica-set.js'
import { inputsBetween, type StepRecord } from './step-history.js'
import type { VoteContext } from './vote-step.js'

/**
 * A verifier's account of a window of positions: for each merged chunk it replayed, a
 * fingerprint of every row (hidden stages), its per-row candidates (the last stage), or, from a
 * replica that cannot fingerprint, its full output or the token of each single step.
 */
export interface Claim {
  readonly startPos: number
  readonly seqLen: number
  readonly fingerprint?: HiddenFingerprint
  readonly hidden?: Float32Array
  readonly tokenRows?: TokenRows
  readonly token?: number
}

/**
 * Replays positions [from, to) of the generation on a verifier: it first catches up to `from`
 * (confirmed history, outputs discarded), then computes the window as merged chunks, one pass
 * over its weights each, and answers each under a fresh secret challenge.
 */
export function replayWindow(
  c: VoteContext,
  m: Member,
  generationId: string,
  steps: readonly StepRecord<Member>[],
  from: number,
  to: number,
  signal: AbortSignal | undefined,
): Promise<Claim[]> {
  return exclusive(m, generationId, async () => {
    c.stats.replayedSteps += await syncTo(m, generationId, steps, from, c.stepTimeoutMs, signal)
    const claims: Claim[] = []
    const canFingerprint = c.fingerprints && typeof m.session.fetchHidden === 'function'
    const ask = (input: StageStepInput) => stepWithTimeout(m, generationId, input, c.stepTimeoutMs, signal)
    for (const { input } of mergeSteps(inputsBetween(steps, from, to))) {
      const end = input.startPos + input.seqLen
      const at = { startPos: input.startPos, seqLen: input.seqLen }
      if (c.isLast && !canFingerprint) {
        // Without per-row candidates, each step of the chunk is replayed on its own.
        for (const one of inputsBetween(steps, input.startPos, end)) {
          const out = await ask(one)
          claims.push({ startPos: one.startPos, seqLen: one.seqLen, token: c.tokenOf(out) })
          m.synced.set(generationId, one.startPos + one.seqLen)
        }
        continue
      }
      let out: StageStepOutput
      if (canFingerprint) {
        c.stats.fingerprints++
        out = await ask({ ...input, fingerprint: { challenge: c.challenge() } })
      } else out = await ask(input)
      m.synced.set(generationId, end)
      claims.push(
        c.isLast
          ? { ...at, ...(out.tokenRows ? { tokenRows: out.tokenRows } : {}) }
          : out.fingerprint !== undefined
            ? { ...at, fingerprint: out.fingerprint }
            : { ...at, ...(out.hidden ? { hidden: out.hidden } : {}) },
      )
    }
    return claims
  })
}

/**
 * The first position where a verifier's claims disagree with what the stage returned (the
 * records), or Infinity when every checked row agrees. A claim of the wrong shape, or missing,
 * disagrees at its first position. The last stage checks the rows tokens were sampled from: the
 * last row of each step.
 */
export function firstDisagreement(
  c: VoteContext,
  steps: readonly StepRecord<Member>[],
  claims: readonly Claim[],
  tol: Tolerance,
): number {
  for (const claim of claims) {
    const end = claim.startPos + claim.seqLen
    const records = steps.filter((s) => s.input.startPos >= claim.startPos && s.input.startPos < end)
    if (c.isLast) {
      for (const r of records) {
        if (r.out.topk === undefined) continue
        const last = r.input.startPos + r.input.seqLen - 1
        const token = c.tokenOf(r.out)
        const agrees =
          claim.tokenRows !== undefined
            ? claim.tokenRows.seqLen === claim.seqLen &&
              tokenAgrees(claim.tokenRows, last - claim.startPos, token)
            : claim.token === token && claim.seqLen === r.input.seqLen
        if (!agrees) return last
      }
      continue
    }
    const full = concatHidden(records, claim.seqLen * c.hiddenSize)
    if (full === undefined) return claim.startPos
    if (claim.fingerprint !== undefined) {
      const fp = claim.fingerprint
      if (fp.seqLen !== claim.seqLen || fp.hiddenSize !== c.hiddenSize) return claim.startPos
      const row = firstDisagreeingRow(full, fp, tol)
      if (row >= 0) return claim.startPos + row
    } else if (claim.hidden !== undefined && claim.hidden.length === full.length) {
      const h = c.hiddenSize
      for (let row = 0; row < claim.seqLen; row++) {
        const a = full.subarray(row * h, (row + 1) * h)
        const b = claim.hidden.subarray(row * h, (row + 1) * h)
        if (!compareHidden(a, b, h, tol).agree) return claim.startPos + row
      }
    } else return claim.startPos
  }
  return Number.POSITIVE_INFINITY
}

/** The records' hidden outputs end to end, or undefined when one is missing or misshapen. */
function concatHidden(records: readonly StepRecord<Member>[], length: number): Float32Array | undefined {
  const out = new Float32Array(length)
  let at = 0
  for (const r of records) {
    const h = r.out.hidden
    if (h === undefined || at + h.length > length) return undefined
    out.set(h, at)
    at += h.length
  }
  return at === length ? out : undefined
}

/** What one peer said about a disputed position, kept until a vote on that position settles it. */
export interface DisputeClaim {
  readonly peerId: string
  /** Hidden stages: the leader's full row, or a verifier's fingerprint and its row in it. */
  readonly row?: Float32Array
  readonly fingerprint?: HiddenFingerprint
  readonly fingerprintRow?: number
  /** The last stage: the token the peer's answer yields there (or, from rows, whether it agrees). */
  readonly token?: number
  readonly tokenRows?: TokenRows
  readonly tokenRow?: number
}

/**
 * A window check that found a mismatch at `position`. After the rollback the stage votes that
 * position afresh (without the leader first); the accepted output then settles who was wrong,
 * provided the position's input came back the same (an earlier stage's lie changes it, and then
 * no one here can be blamed).
 */
export interface Dispute {
  readonly position: number
  readonly leader: string
  /** The input row at `position`: a token id, or the hidden row. */
  readonly input: number | Float32Array
  readonly claims: readonly DisputeClaim[]
  readonly tol: Tolerance
}

/** Per peer of a dispute: whether its claim matches the output accepted at the position. */
export function settleDispute(
  d: Dispute,
  accepted: StageStepOutput,
  tokenOf: (out: StageStepOutput) => number,
  hiddenSize: number,
): Array<{ peerId: string; agrees: boolean }> {
  const row = accepted.hidden?.subarray(0, hiddenSize)
  const token = accepted.topk !== undefined ? tokenOf(accepted) : -1
  return d.claims.map((cl) => {
    let agrees = false
    if (cl.row !== undefined && row !== undefined)
      agrees = compareHidden(cl.row, row, hiddenSize, d.tol).agree
    else if (cl.fingerprint !== undefined && row !== undefined)
      agrees = rowMatchesFingerprint(row, cl.fingerprint, cl.fingerprintRow ?? -1, d.tol)
    else if (cl.tokenRows !== undefined) agrees = tokenAgrees(cl.tokenRows, cl.tokenRow ?? -1, token)
    else if (cl.token !== undefined) agrees = cl.token === token && token >= 0
    return { peerId: cl.peerId, agrees }
  })
}

/** Whether the re-run's first input row is the one the disputed position had. */
export function sameInput(d: Dispute, input: StageStepInput, hiddenSize: number): boolean {
  if (typeof d.input === 'number') return input.tokens?.[0] === d.input
  const row = input.hidden?.subarray(0, hiddenSize)
  return row !== undefined && compareHidden(d.input, row, hiddenSize, d.tol).agree
}
