import { test } from 'vitest'
import { MemorySignalingHub } from '../../core/src/transport/memory-transport.js'
import { createWebRtcTransport } from '../../core/src/transport/webrtc-transport.js'
import { nodeWrtc } from '../src/node-wrtc.js'

test('loop', async () => {
  const kind = (process.env.KIND ?? 'node-datachannel') as any
  const times: number[] = []
  const errs: string[] = []
  const sigErrs: string[] = []
  for (let i = 0; i < 40; i++) {
    const hub = new MemorySignalingHub()
    const wrtc = nodeWrtc(kind, { loopbackOnly: true })
    const a = createWebRtcTransport({ peerId: 'alice', dialTimeoutMs: 5000 }, { signaling: hub.connect('alice'), wrtc })
    const b = createWebRtcTransport({ peerId: 'bob', dialTimeoutMs: 5000 }, { signaling: hub.connect('bob'), wrtc })
    a.onSignalError((e) => sigErrs.push(e.message)); b.onSignalError((e) => sigErrs.push(e.message))
    const t0 = performance.now()
    try { await a.dial('bob'); times.push(Math.round(performance.now() - t0)) } catch (e) { errs.push(String(e)) }
    await Promise.all([a.close(), b.close()])
  }
  console.log('times', times.join(' '))
  console.log('errs', errs, sigErrs)
}, 300_000)
