import type { GeneratedToken, VerificationHealth } from '@butterfly/core'
import type { ServerMetrics } from '../control/server-metrics.js'

/**
 * Counts, per mesh, how every token sent to a client was confirmed (voted, or run ahead and
 * checked in a window) and the rollbacks before them, for /health and /metrics.
 */
export class VerificationTally {
  private readonly tokensConfirmed = { vote: 0, window: 0, unreplicated: 0 }
  private rollbacks = 0
  private rolledBackPositions = 0
  private readonly recent: Array<{ at: string; positions: number }> = []

  constructor(
    private readonly mesh: string,
    private readonly metrics: ServerMetrics | undefined,
  ) {}

  /**
   * Notes one token sent; `rolledBack` is the generation's count before it (its tokens carry a
   * running total). Returns the new total.
   */
  note(token: GeneratedToken, rolledBack: number): number {
    const stages = token.provenance ?? []
    const how = stages.some((p) => p?.verification === 'window')
      ? 'window'
      : stages.some((p) => p?.verification === 'vote')
        ? 'vote'
        : 'unreplicated'
    this.tokensConfirmed[how]++
    this.metrics?.tokensConfirmed.inc({ mesh: this.mesh, verification: how })
    const now = token.rolledBack ?? 0
    if (now > rolledBack) {
      const positions = now - rolledBack
      this.rollbacks++
      this.rolledBackPositions += positions
      this.recent.push({ at: new Date().toISOString(), positions })
      if (this.recent.length > 20) this.recent.shift()
      this.metrics?.rolledBackPositions.inc({ mesh: this.mesh }, positions)
    }
    return now
  }

  snapshot(mode: VerificationHealth['mode'], window: number): VerificationHealth {
    return {
      mode,
      window,
      tokensConfirmed: { ...this.tokensConfirmed },
      rollbacks: this.rollbacks,
      rolledBackPositions: this.rolledBackPositions,
      recentRollbacks: [...this.recent],
    }
  }
}
