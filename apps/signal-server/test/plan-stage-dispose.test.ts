import { MessageConnection, type PlanStage, ReputationBook, type StageSession } from '@butterfly/core'
import { describe, expect, it } from 'vitest'
import type { Mesh } from '../src/control/mesh.js'
import { SlowClaimCheck } from '../src/gateway/claim-check.js'
import { allOrDispose, planPipeline } from '../src/gateway/plan-stage.js'
import type { StageCalibrator } from '../src/gateway/stage-calibrator.js'

// A plan whose stages open partly: the sessions that opened hold listeners on connections the
// dialer keeps for later plans, so they must be disposed when another stage fails to open.

class IdleChannel {
  readonly bufferedAmount = 0
  closed = false
  send(): void {}
  onFrame(): void {}
  onClose(): void {}
  close(): void {
    this.closed = true
  }
}

const mesh = {
  name: 'm',
  config: { hiddenSize: 8 },
  publicKey: () => undefined,
  workers: () => [],
} as unknown as Mesh

const stage = (peerId: string, start: number, end: number): PlanStage =>
  ({ peerId, start, end }) as unknown as PlanStage

describe('a plan that cannot open every stage', () => {
  it('disposes the stages it opened and rethrows the failure', async () => {
    const conns = new Map(['a', 'c'].map((id) => [id, new MessageConnection(new IdleChannel())]))
    const refused = new Error('dial refused')
    const components = {
      mesh,
      connection: async (peerId: string) => {
        const conn = conns.get(peerId)
        if (conn === undefined) throw refused
        return conn
      },
      // Replicated stages only; this plan has none.
      calibrator: {} as StageCalibrator,
      reputation: new ReputationBook(),
      claims: new SlowClaimCheck(),
      stepTimeoutMs: 1000,
      verification: 'every-step' as const,
      window: 8,
      hiddenDtype: 'fp32' as const,
    }
    const plan = [stage('a', 0, 1), stage('b', 1, 2), stage('c', 2, 3)]
    await expect(planPipeline(components, plan, 64, undefined)).rejects.toBe(refused)
    for (const [id, conn] of conns) expect(conn.messageListeners, `listeners on ${id}`).toBe(0)

    // The same plan once every peer answers: its stages listen, one each.
    conns.set('b', new MessageConnection(new IdleChannel()))
    const built = await planPipeline(components, plan, 64, undefined)
    for (const [id, conn] of conns) expect(conn.messageListeners, `listeners on ${id}`).toBe(1)
    await Promise.all(built.pipeline.stages.map((s) => s.dispose()))
  })

  it('allOrDispose keeps every value when all open, and disposes none', async () => {
    let disposed = 0
    const session = { dispose: async () => void disposed++ } as unknown as StageSession
    const got = await allOrDispose([Promise.resolve(1), Promise.resolve(2)], () => session)
    expect(got).toEqual([1, 2])
    expect(disposed).toBe(0)
    await expect(
      allOrDispose([Promise.resolve(1), Promise.reject(new Error('no')), Promise.resolve(3)], () => session),
    ).rejects.toThrow('no')
    expect(disposed).toBe(2)
  })
})
