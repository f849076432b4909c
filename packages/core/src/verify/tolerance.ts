import { VerifyError } from '../errors.js'

/**
 * Numeric class of a replica: "backend/precision", e.g. 'cpu/fp32', 'cpu/fp16w' (fp32 compute on
 * fp16-rounded weights), 'webgpu/fp16', 'cuda/fp16'. Honest replicas of one class agree closely;
 * across classes they can differ by far more, so replicas are compared within a class unless the
 * calibrated tolerances say two classes are interchangeable (BOINC's homogeneous redundancy).
 */
export type NumericClass = string

const NUMERIC_CLASS = /^[a-z0-9][a-z0-9._-]{0,31}\/[a-z0-9][a-z0-9._-]{0,31}$/

export function isNumericClass(x: unknown): x is NumericClass {
  return typeof x === 'string' && NUMERIC_CLASS.test(x)
}

/**
 * How far two honest hidden states may be apart.
 * - `relative`: largest allowed per-row relative L2 deviation |a - b| / max(|a|, |b|), worst row.
 * - `indexOverlap`: smallest allowed fraction of shared top-k |value| indices per row.
 */
export interface Tolerance {
  readonly relative: number
  readonly indexOverlap: number
}

export const DEFAULT_INDEX_OVERLAP = 0.75
/** Cross-class tolerance may be at most this many times the tighter within-class one. */
export const DEFAULT_HOMOGENEITY_RATIO = 2

export function validateTolerance(tol: unknown): Tolerance {
  const t = (typeof tol === 'object' && tol !== null ? tol : {}) as Record<string, unknown>
  const { relative, indexOverlap } = t
  if (!(typeof relative === 'number' && Number.isFinite(relative) && relative > 0 && relative <= 10)) {
    throw new VerifyError(
      'ERR_VERIFY_INPUT',
      `tolerance.relative must be in (0, 10], got ${String(relative)}`,
    )
  }
  if (!(typeof indexOverlap === 'number' && indexOverlap >= 0 && indexOverlap <= 1)) {
    throw new VerifyError(
      'ERR_VERIFY_INPUT',
      `tolerance.indexOverlap must be in [0, 1], got ${String(indexOverlap)}`,
    )
  }
  return tol as Tolerance
}

function checkClass(cls: unknown): NumericClass {
  if (!isNumericClass(cls)) {
    throw new VerifyError(
      'ERR_VERIFY_INPUT',
      `not a numeric class (backend/precision): ${String(cls).slice(0, 80)}`,
    )
  }
  return cls
}

function pairKey(a: NumericClass, b: NumericClass): string {
  return a <= b ? `${a}|${b}` : `${b}|${a}`
}

export interface ToleranceEntry {
  readonly a: NumericClass
  readonly b: NumericClass
  readonly tolerance: Tolerance
}

/**
 * Symmetric tolerances per (class, class) pair. Every class needs its within-class entry (a, a);
 * a missing cross pair means the two classes are never compared.
 */
export class ToleranceTable {
  readonly homogeneityRatio: number
  private readonly pairs = new Map<string, Tolerance>()
  private readonly known = new Set<NumericClass>()

  constructor(entries: Iterable<ToleranceEntry>, options: { homogeneityRatio?: number } = {}) {
    const ratio = options.homogeneityRatio ?? DEFAULT_HOMOGENEITY_RATIO
    if (!(typeof ratio === 'number' && ratio >= 1)) {
      throw new VerifyError('ERR_VERIFY_INPUT', `homogeneityRatio must be >= 1, got ${ratio}`)
    }
    this.homogeneityRatio = ratio
    for (const { a, b, tolerance } of entries) {
      checkClass(a)
      checkClass(b)
      const t = validateTolerance(tolerance)
      this.pairs.set(pairKey(a, b), { relative: t.relative, indexOverlap: t.indexOverlap })
      if (a === b) this.known.add(a)
    }
    for (const key of this.pairs.keys()) {
      const [a, b] = key.split('|') as [string, string]
      if (!this.known.has(a) || !this.known.has(b)) {
        throw new VerifyError(
          'ERR_VERIFY_INPUT',
          `tolerance for ${a} vs ${b} given without both within-class entries`,
        )
      }
    }
  }

  /** One tolerance for every pair of the given classes (a mesh that needs no calibration, tests). */
  static uniform(classes: readonly NumericClass[], tolerance: Tolerance): ToleranceTable {
    const entries: ToleranceEntry[] = []
    for (const a of classes) for (const b of classes) if (a <= b) entries.push({ a, b, tolerance })
    return new ToleranceTable(entries, { homogeneityRatio: Number.POSITIVE_INFINITY })
  }

  classes(): NumericClass[] {
    return [...this.known].sort()
  }

  has(cls: NumericClass): boolean {
    return this.known.has(cls)
  }

  tryGet(a: NumericClass, b: NumericClass): Tolerance | undefined {
    return this.pairs.get(pairKey(a, b))
  }

  /** Throws VerifyError ERR_VERIFY_CLASS when the pair was never calibrated. */
  get(a: NumericClass, b: NumericClass): Tolerance {
    const t = this.tryGet(a, b)
    if (t === undefined) throw new VerifyError('ERR_VERIFY_CLASS', `no calibrated tolerance for ${a} vs ${b}`)
    return t
  }

  /**
   * Whether replicas of classes a and b may vote together: the cross tolerance is at most
   * `homogeneityRatio` times the tighter within-class one. Otherwise a liar of the tighter class
   * could hide inside the looser cross-class tolerance, so replicas must be grouped by class.
   */
  homogeneous(a: NumericClass, b: NumericClass): boolean {
    if (!this.known.has(a) || !this.known.has(b)) return false
    if (a === b) return true
    const cross = this.tryGet(a, b)
    if (cross === undefined) return false
    const within = Math.min(this.get(a, a).relative, this.get(b, b).relative)
    return cross.relative <= this.homogeneityRatio * within
  }

  /** Partitions classes into groups whose members are pairwise homogeneous (greedy, in order). */
  homogeneousGroups(classes: readonly NumericClass[]): NumericClass[][] {
    const groups: NumericClass[][] = []
    for (const cls of new Set(classes)) {
      if (!this.known.has(cls)) continue
      const group = groups.find((g) => g.every((other) => this.homogeneous(cls, other)))
      if (group === undefined) groups.push([cls])
      else group.push(cls)
    }
    return groups
  }

  entries(): ToleranceEntry[] {
    return [...this.pairs].map(([key, tolerance]) => {
      const [a, b] = key.split('|') as [string, string]
      return { a, b, tolerance }
    })
  }
}
