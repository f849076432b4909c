import {
  createWebRtcTransport,
  type FrameChannel,
  MemorySignalingHub,
  MessageConnection,
  type SignalData,
  type Signaling,
  TransportError,
} from '@butterfly/core'
import { runTransportCompliance } from '@butterfly/testing'
import { describe, expect, test } from 'vitest'
import { isLoopbackOrEnd, nodeWrtc, type WrtcKind } from '../src/mesh/node-wrtc.js'

// Real peer connections in one process, ICE on 127.0.0.1 only, signaling through memory.
function webrtcPair(kind: WrtcKind, opts: { dialTimeoutMs?: number } = {}) {
  return async () => {
    const hub = new MemorySignalingHub()
    const wrtc = nodeWrtc(kind, { loopbackOnly: true })
    const a = createWebRtcTransport({ peerId: 'alice', ...opts }, { signaling: hub.connect('alice'), wrtc })
    const b = createWebRtcTransport({ peerId: 'bob', ...opts }, { signaling: hub.connect('bob'), wrtc })
    return {
      a,
      b,
      async cleanup() {
        await Promise.all([a.close(), b.close()])
      },
    }
  }
}

runTransportCompliance('WebRTC (node-datachannel)', webrtcPair('node-datachannel'))
runTransportCompliance('WebRTC (@roamhq/wrtc)', webrtcPair('wrtc'))

/** Signaling whose incoming side the test drives by hand, as a hostile server or peer would. */
class HandSignaling implements Signaling {
  readonly sent: [string, SignalData][] = []
  private handler: (from: string, data: SignalData) => void = () => {}
  send(to: string, data: SignalData): void {
    this.sent.push([to, data])
  }
  onSignal(handler: (from: string, data: SignalData) => void): () => void {
    this.handler = handler
    return () => {}
  }
  inject(from: unknown, data: unknown): void {
    this.handler(from as string, data as SignalData)
  }
}

describe('WebRTC transport', () => {
  test('ignores and reports malformed signals without touching the peer connection', async () => {
    const signaling = new HandSignaling()
    const t = createWebRtcTransport(
      { peerId: 'bob' },
      { signaling, wrtc: nodeWrtc('node-datachannel', { loopbackOnly: true }) },
    )
    const errors: [string, string][] = []
    t.onSignalError((err, from) => {
      expect(err).toBeInstanceOf(TransportError)
      errors.push([err.code, from])
    })
    const bad: [unknown, unknown][] = [
      ['mallory', null],
      ['mallory', 'v=0'],
      ['mallory', [1, 2]],
      ['mallory', {}],
      ['mallory', { type: 'pranswer', sdp: 'v=0' }],
      ['mallory', { type: 'offer' }],
      ['mallory', { type: 'offer', sdp: 42 }],
      ['mallory', { type: 'answer', sdp: '' }],
      ['mallory', { type: 'candidate' }],
      ['mallory', { type: 'candidate', candidate: { candidate: 7 } }],
      ['mallory', { type: 'candidate', candidate: { candidate: 'c', sdpMLineIndex: -1 } }],
      ['mallory', { type: 'renegotiate' }],
      ['mallory', { type: 'transceiverRequest', transceiverRequest: { kind: 'data' } }],
      ['mallory', { type: 'offer', sdp: 'x'.repeat(70_000) }],
      ['', { type: 'offer', sdp: 'v=0' }],
      [42, { type: 'offer', sdp: 'v=0' }],
      ['bob', { type: 'offer', sdp: 'v=0' }],
    ]
    for (const [from, data] of bad) expect(() => signaling.inject(from, data)).not.toThrow()
    expect(errors.map(([code]) => code)).toEqual(bad.map(() => 'ERR_SIGNAL_INVALID'))
    expect(errors[0]?.[1]).toBe('mallory')
    // Nothing was answered: no peer connection was created for any of them.
    expect(signaling.sent).toEqual([])
    await t.close()
  })

  test('a dial nobody answers fails with ERR_DIAL_TIMEOUT', async () => {
    const { a, cleanup } = await webrtcPair('node-datachannel', { dialTimeoutMs: 300 })()
    await expect(a.dial('nobody')).rejects.toMatchObject({ name: 'TransportError', code: 'ERR_DIAL_TIMEOUT' })
    await cleanup()
  })

  test('simultaneous dials from both sides end in one working channel', async () => {
    const { a, b, cleanup } = await webrtcPair('node-datachannel')()
    const [ab, ba] = (await Promise.all([a.dial('bob'), b.dial('alice')])) as [FrameChannel, FrameChannel]
    const got = new Promise<Uint8Array>((r) => ba.onFrame(r))
    ab.send(Uint8Array.from([4, 2]))
    expect(Array.from(await got)).toEqual([4, 2])
    const back = new Promise<Uint8Array>((r) => ab.onFrame(r))
    ba.send(Uint8Array.from([2, 4]))
    expect(Array.from(await back)).toEqual([2, 4])
    await cleanup()
  })

  test.each([
    ['node-datachannel', 'wrtc'],
    ['wrtc', 'node-datachannel'],
  ] as const)('interoperates: %s dials %s', async (x, y) => {
    const hub = new MemorySignalingHub()
    const a = createWebRtcTransport(
      { peerId: 'alice' },
      { signaling: hub.connect('alice'), wrtc: nodeWrtc(x, { loopbackOnly: true }) },
    )
    const b = createWebRtcTransport(
      { peerId: 'bob' },
      { signaling: hub.connect('bob'), wrtc: nodeWrtc(y, { loopbackOnly: true }) },
    )
    const incoming = new Promise<FrameChannel>((r) => b.onIncoming((_, channel) => r(channel)))
    const tx = new MessageConnection(await a.dial('bob'))
    const rx = new MessageConnection(await incoming)
    const hidden = Float32Array.from({ length: 100_000 }, (_, i) => i / 7)
    const got = new Promise((r) => rx.onMessage(r))
    await tx.send({ type: 'StepResult', generationId: 'interop', stepIndex: 3, hidden })
    expect(await got).toEqual({ type: 'StepResult', generationId: 'interop', stepIndex: 3, hidden })
    await Promise.all([a.close(), b.close()])
  })

  test.each([
    ['candidate:1 1 UDP 2114977791 127.0.0.1 34443 typ host', true],
    ['a=candidate:1 1 UDP 2114977791 127.0.0.1 34443 typ host', true],
    ['candidate:3229573512 1 udp 2122194687 192.0.2.2 48122 typ host generation 0', false],
    ['candidate:559267639 1 udp 2122136831 ::1 58739 typ host', false],
    ['', true],
  ])('loopback filter: %s → %s', (candidate, keep) => {
    expect(isLoopbackOrEnd({ candidate, sdpMid: '0' })).toBe(keep)
  })
})
