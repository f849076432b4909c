import { VerifyError } from '../errors.js'
import {
  type Comparison,
  compareFingerprints,
  compareHidden,
  compareToFingerprint,
} from './compare-hidden.js'
import { type HiddenFingerprint, validateFingerprint } from './fingerprint.js'
import { isNumericClass, type NumericClass, ToleranceTable } from './tolerance.js'

/**
 * Votes over the r = 2f + 1 replicas of one pipeline step; f + 1 agreeing replies win, so up to f
 * liars (colluding or not) can neither get a lie accepted nor block the honest majority.
 *
 * Hidden states: some replies carry the full state, the rest a fingerprint. Each full state is a
 * candidate; every other reply is compared with it (full vs full exactly, fingerprint vs full by
 * compareToFingerprint), using the tolerance of the two replicas' classes. Replies whose class is
 * not homogeneous with the candidate's are not counted for or against it. When the only full
 * state is a lie, honest fingerprints all disagree with it and there is no quorum: the result
 * names the peers to ask for a full state next, and the caller votes again with it added.
 *
 * The caller must give every fingerprinting replica its own random challenge and never reveal
 * them to the primary; otherwise a lying primary could shape its lie around the sketch.
 */

export interface HiddenReply {
  readonly peerId: string
  readonly cls: NumericClass
  readonly full?: Float32Array
  readonly fingerprint?: HiddenFingerprint
}

export interface HiddenShape {
  readonly seqLen: number
  readonly hiddenSize: number
}

export interface VoteLists {
  /** Replies that agree with the accepted (or, without quorum, the best-supported) output. */
  readonly agreeing: string[]
  /** Replies that disagree with it, plus every invalid reply. */
  readonly disagreeing: string[]
  /** Replies of a class not comparable with it, or not calibrated at all: neither for nor against. */
  readonly incomparable: string[]
  /** Replies that are wrong whatever the truth: bad shape, non-finite, malformed or self-inconsistent. */
  readonly invalid: string[]
}

export interface HiddenQuorum extends VoteLists {
  readonly ok: true
  readonly accepted: { readonly peerId: string; readonly hidden: Float32Array }
}

export interface HiddenNoQuorum extends VoteLists {
  readonly ok: false
  readonly accepted?: undefined
  /** The full state with the most support, which the lists refer to; it may be the lie. */
  readonly best?: string
  /** Peers without a full state in this vote, most promising first: ask them for it and vote again. */
  readonly askFullFrom: string[]
}

export type HiddenVote = HiddenQuorum | HiddenNoQuorum

export interface TokenReply {
  readonly peerId: string
  readonly token: number
}

export interface TokenQuorum {
  readonly ok: true
  readonly token: number
  readonly agreeing: string[]
  readonly disagreeing: string[]
}

export interface TokenNoQuorum {
  readonly ok: false
  readonly token?: undefined
  /** The largest group (it may be the liars); no group reached f + 1, or two did. */
  readonly agreeing: string[]
  readonly disagreeing: string[]
  /** Every valid token proposed, largest group first. */
  readonly groups: Array<{ readonly token: number; readonly peers: string[] }>
}

export type TokenVote = TokenQuorum | TokenNoQuorum

const MAX_PEER_ID_LENGTH = 256

function inputError(message: string): VerifyError {
  return new VerifyError('ERR_VERIFY_INPUT', message)
}

function checkF(f: number): void {
  if (!(Number.isInteger(f) && f >= 0)) throw inputError(`f must be a non-negative integer, got ${String(f)}`)
}

function checkPeerIds(replies: ReadonlyArray<{ peerId: unknown }>): void {
  if (!Array.isArray(replies)) throw inputError('replies must be an array')
  const seen = new Set<string>()
  for (const r of replies) {
    const id = (r as { peerId?: unknown } | null)?.peerId
    if (!(typeof id === 'string' && id.length > 0 && id.length <= MAX_PEER_ID_LENGTH)) {
      throw inputError(`every reply needs a peerId of 1..${MAX_PEER_ID_LENGTH} chars`)
    }
    if (seen.has(id)) throw inputError(`peer ${id} replied twice`)
    seen.add(id)
  }
}

interface Checked {
  readonly peerId: string
  readonly cls: NumericClass
  readonly full: Float32Array | undefined
  readonly fingerprint: HiddenFingerprint | undefined
}

/** Sorts a reply into valid, invalid (provably wrong) or of unknown class; never throws on peer data. */
function checkReply(
  r: HiddenReply,
  shape: HiddenShape,
  table: ToleranceTable,
): Checked | 'invalid' | 'unknown-class' {
  if (!isNumericClass(r.cls) || !table.has(r.cls)) return 'unknown-class'
  const { full, fingerprint } = r
  if (full === undefined && fingerprint === undefined) return 'invalid'
  if (full !== undefined) {
    if (!(full instanceof Float32Array) || full.length !== shape.seqLen * shape.hiddenSize) return 'invalid'
    for (let i = 0; i < full.length; i++) if (!Number.isFinite(full[i] as number)) return 'invalid'
  }
  if (fingerprint !== undefined) {
    try {
      validateFingerprint(fingerprint)
    } catch {
      return 'invalid'
    }
    if (fingerprint.seqLen !== shape.seqLen || fingerprint.hiddenSize !== shape.hiddenSize) return 'invalid'
    // A peer that sends both must be consistent with itself: it cannot fingerprint the truth and
    // ship a lie when asked for its full state.
    if (full !== undefined && !compareToFingerprint(full, fingerprint, table.get(r.cls, r.cls)).agree) {
      return 'invalid'
    }
  }
  return { peerId: r.peerId, cls: r.cls, full, fingerprint }
}

function compareReply(
  candidate: Checked & { full: Float32Array },
  r: Checked,
  table: ToleranceTable,
  h: number,
) {
  const tol = table.get(r.cls, candidate.cls)
  const c: Comparison =
    r.full !== undefined
      ? compareHidden(r.full, candidate.full, h, tol)
      : compareToFingerprint(candidate.full, r.fingerprint as HiddenFingerprint, tol)
  return c.agree
}

export function voteHidden(
  replies: ReadonlyArray<HiddenReply>,
  f: number,
  tolerances: ToleranceTable,
  shape: HiddenShape,
): HiddenVote {
  checkF(f)
  checkPeerIds(replies)
  if (!(tolerances instanceof ToleranceTable)) throw inputError('tolerances must be a ToleranceTable')
  const { seqLen, hiddenSize } = shape ?? {}
  if (!(Number.isInteger(seqLen) && seqLen >= 1 && Number.isInteger(hiddenSize) && hiddenSize >= 1)) {
    throw inputError('shape needs positive integer seqLen and hiddenSize')
  }
  const valid: Checked[] = []
  const invalid: string[] = []
  const unknown: string[] = []
  for (const r of replies) {
    const c = checkReply(r, shape, tolerances)
    if (c === 'invalid') invalid.push(r.peerId)
    else if (c === 'unknown-class') unknown.push(r.peerId)
    else valid.push(c)
  }

  let best: { peerId: string; hidden: Float32Array; lists: Omit<VoteLists, 'invalid'> } | undefined
  for (const candidate of valid) {
    if (candidate.full === undefined) continue
    const full = candidate.full
    const agreeing = [candidate.peerId]
    const disagreeing: string[] = []
    const incomparable = [...unknown]
    for (const r of valid) {
      if (r === candidate) continue
      if (!tolerances.homogeneous(r.cls, candidate.cls)) incomparable.push(r.peerId)
      else if (compareReply({ ...candidate, full }, r, tolerances, hiddenSize)) agreeing.push(r.peerId)
      else disagreeing.push(r.peerId)
    }
    if (best === undefined || agreeing.length > best.lists.agreeing.length) {
      best = { peerId: candidate.peerId, hidden: full, lists: { agreeing, disagreeing, incomparable } }
    }
  }

  if (best !== undefined && best.lists.agreeing.length >= f + 1) {
    const { agreeing, disagreeing, incomparable } = best.lists
    return {
      ok: true,
      accepted: { peerId: best.peerId, hidden: best.hidden },
      agreeing,
      disagreeing: [...disagreeing, ...invalid],
      incomparable,
      invalid,
    }
  }
  return {
    ok: false,
    ...(best === undefined ? {} : { best: best.peerId }),
    agreeing: best?.lists.agreeing ?? [],
    disagreeing: [...(best?.lists.disagreeing ?? []), ...invalid],
    incomparable: best?.lists.incomparable ?? unknown,
    invalid,
    askFullFrom: rankForFullState(valid, tolerances),
  }
}

/**
 * Fingerprint-only peers ordered by how many other fingerprints agree with theirs: the honest
 * majority's fingerprints agree with each other, so its members come first.
 */
function rankForFullState(valid: Checked[], table: ToleranceTable): string[] {
  const pending = valid.filter((r) => r.full === undefined)
  const support = pending.map((r) => {
    let n = 0
    for (const other of pending) {
      if (other === r || !table.homogeneous(r.cls, other.cls)) continue
      const tol = table.get(r.cls, other.cls)
      if (
        compareFingerprints(r.fingerprint as HiddenFingerprint, other.fingerprint as HiddenFingerprint, tol)
          .agree
      )
        n++
    }
    return n
  })
  return pending
    .map((r, i) => ({ peerId: r.peerId, n: support[i] as number, i }))
    .sort((a, b) => b.n - a.n || a.i - b.i)
    .map((x) => x.peerId)
}

/** Exact agreement on the sampled token; f + 1 matching replies win. */
export function voteToken(replies: ReadonlyArray<TokenReply>, f: number): TokenVote {
  checkF(f)
  checkPeerIds(replies)
  const groups = new Map<number, string[]>()
  const invalid: string[] = []
  for (const { peerId, token } of replies) {
    if (!(Number.isSafeInteger(token) && token >= 0)) {
      invalid.push(peerId)
      continue
    }
    const g = groups.get(token) ?? []
    g.push(peerId)
    groups.set(token, g)
  }
  const sorted = [...groups]
    .map(([token, peers]) => ({ token, peers }))
    .sort((a, b) => b.peers.length - a.peers.length || a.token - b.token)
  const top = sorted[0]
  const others = (token: number | undefined) => [
    ...sorted.filter((g) => g.token !== token).flatMap((g) => g.peers),
    ...invalid,
  ]
  const quorums = sorted.filter((g) => g.peers.length >= f + 1).length
  if (top !== undefined && quorums === 1) {
    return { ok: true, token: top.token, agreeing: top.peers, disagreeing: others(top.token) }
  }
  return { ok: false, agreeing: top?.peers ?? [], disagreeing: others(top?.token), groups: sorted }
}

/**
 * The vote's result when it reached quorum; otherwise throws VerifyError ERR_NO_QUORUM carrying
 * the stage and the peers that disagreed with the best-supported output.
 */
export function requireQuorum<V extends HiddenVote | TokenVote>(
  vote: V,
  stage: number,
): Extract<V, { ok: true }> {
  if (vote.ok) return vote as Extract<V, { ok: true }>
  const support = vote.agreeing.length
  throw new VerifyError(
    'ERR_NO_QUORUM',
    `stage ${stage}: no quorum (best output has ${support} supporting repl${support === 1 ? 'y' : 'ies'}, ` +
      `${vote.disagreeing.length} disagree)`,
    { stage, peers: vote.disagreeing },
  )
}
