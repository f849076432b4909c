import { nodeWrtc } from '@butterfly/node-platform'
import { afterAll, beforeAll, describe, expect, test } from 'vitest'
import { type ChainMesh, startChainMesh } from './chain-mesh.js'
import { meshTokens, referenceTokens } from './mesh-harness.js'

// Chained stages whose workers cannot open channels to each other (real WebRTC in this process:
// the workers' RTCPeerConnection refuses to make offers, so they can answer the gateway's dials
// but never dial a peer). The first generation's chained step fails with ERR_CHAIN_LINK, the
// gateway moves it onto the same plan relayed through itself, and it still gives the reference.

const PROMPT = [1, 40, 75, 80, 75, 35, 110, 120]
const TOKENS = 16

/** node-datachannel's RTCPeerConnection, except that it cannot make an offer (dial out). */
function answerOnlyWrtc(): unknown {
  const base = nodeWrtc()
  const Base = base.RTCPeerConnection as new (
    config?: Record<string, unknown>,
  ) => {
    createOffer(...args: unknown[]): Promise<unknown>
  }
  class AnswerOnly extends Base {
    override createOffer(): Promise<unknown> {
      return Promise.reject(new Error('this peer may not dial out'))
    }
  }
  return { ...base, RTCPeerConnection: AnswerOnly }
}

let mesh: ChainMesh

beforeAll(async () => {
  mesh = await startChainMesh({}, [
    { name: 'w1', wrtc: answerOnlyWrtc() },
    { name: 'w2', wrtc: answerOnlyWrtc() },
  ])
}, 120_000)

afterAll(async () => mesh?.close())

describe('a chain whose workers cannot reach each other', () => {
  test('falls back to relaying through the gateway, with the reference tokens, once', async () => {
    const { modelDir, logs, gateway: served } = mesh
    const reference = await referenceTokens(modelDir, PROMPT, TOKENS)
    expect(await meshTokens(served, PROMPT, TOKENS)).toEqual(reference)
    expect(logs.filter((l) => /plan \d+ connected \(2 stages, chained\)/.test(l))).not.toHaveLength(0)
    expect(logs.filter((l) => l.includes('worker-to-worker link failed'))).toHaveLength(1)
    // Later generations start on the relayed pipeline: no second failure, same tokens.
    expect(await meshTokens(served, PROMPT, TOKENS)).toEqual(reference)
    expect(logs.filter((l) => l.includes('worker-to-worker link failed'))).toHaveLength(1)
    // The chain it left was disposed once that generation ended; the relayed one is current.
    const stats = await new Promise((resolve) => setImmediate(() => resolve(served.pipelineStats())))
    expect(stats).toMatchObject({ retiring: 0, held: 0, disposed: 1 })
  }, 120_000)
})
