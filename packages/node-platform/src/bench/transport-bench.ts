import {
  createWebRtcTransport,
  type FrameChannel,
  MemorySignalingHub,
  MessageConnection,
  type ReceivedMessage,
  sendWithBackpressure,
  type Transport,
} from '@butterfly/core'
import { nodeWrtc, type WrtcKind } from '../mesh/node-wrtc.js'
import { median, percentile } from './stats.js'

/**
 * Data-channel figures for each Node WebRTC implementation, two peers in one process on
 * 127.0.0.1 (no STUN): raw frame throughput, message throughput through MessageConnection,
 * and the round trip of a 4 KiB hidden-state message (one hop out, one back).
 */
export interface TransportBenchOptions {
  kinds?: readonly WrtcKind[]
  /** Bytes pushed in each throughput run; default 64 MiB. */
  bytes?: number
  /** Timed round trips; default 1000 (after 50 untimed). */
  pings?: number
  highWaterMark?: number
}

const FRAME_BYTES = 64 * 1024
const MIB = 1024 * 1024

export async function transportBench(opts: TransportBenchOptions = {}): Promise<string[]> {
  const kinds = opts.kinds ?? ['node-datachannel', 'wrtc']
  const bytes = opts.bytes ?? 64 * MIB
  const pings = opts.pings ?? 1000
  const highWaterMark = opts.highWaterMark ?? MIB
  const lines = [
    `# transport bench: 2 peers in one process over 127.0.0.1, node ${process.version}`,
    `# throughput: ${bytes / MIB} MiB as ${FRAME_BYTES / 1024} KiB frames, high-water mark ${highWaterMark / 1024} KiB; RTT: 4 KiB message echoed, ${pings} round trips`,
    ['implementation', 'connect ms', 'raw MB/s', 'messages MB/s', 'RTT median ms', 'RTT p99 ms'].join('\t'),
  ]
  for (const kind of kinds) {
    let pair: Awaited<ReturnType<typeof connectPair>>
    try {
      pair = await connectPair(kind)
    } catch (err) {
      lines.push(`${kind}\tunavailable: ${err instanceof Error ? err.message : String(err)}`)
      continue
    }
    try {
      const raw = await within(rawThroughput(pair.ab, pair.ba, bytes, highWaterMark), 'raw throughput')
      const tx = new MessageConnection(pair.ab, { highWaterMark })
      const rx = new MessageConnection(pair.ba)
      const msg = await within(messageThroughput(tx, rx, bytes), 'message throughput')
      const rtt = await within(roundTrips(tx, rx, pings), 'round trips')
      const cells = [pair.connectMs.toFixed(1), mbps(bytes, raw), mbps(bytes, msg)]
      lines.push([kind, ...cells, median(rtt).toFixed(3), percentile(rtt, 99).toFixed(3)].join('\t'))
    } catch (err) {
      lines.push(`${kind}\tfailed: ${err instanceof Error ? err.message : String(err)}`)
    } finally {
      await Promise.all([pair.a.close(), pair.b.close()])
    }
  }
  return lines
}

async function connectPair(kind: WrtcKind) {
  const hub = new MemorySignalingHub()
  const wrtc = nodeWrtc(kind, { loopbackOnly: true })
  const a: Transport = createWebRtcTransport(
    { peerId: 'bench-a' },
    { signaling: hub.connect('bench-a'), wrtc },
  )
  const b: Transport = createWebRtcTransport(
    { peerId: 'bench-b' },
    { signaling: hub.connect('bench-b'), wrtc },
  )
  const incoming = new Promise<FrameChannel>((resolve) => b.onIncoming((_, channel) => resolve(channel)))
  const start = performance.now()
  const ab = await a.dial('bench-b')
  const ba = await incoming
  return { a, b, ab, ba, connectMs: performance.now() - start }
}

/** Milliseconds from the first frame sent until the last byte has arrived. */
async function rawThroughput(
  ab: FrameChannel,
  ba: FrameChannel,
  bytes: number,
  highWaterMark: number,
): Promise<number> {
  const count = Math.ceil(bytes / FRAME_BYTES)
  let received = 0
  const done = new Promise<void>((resolve) =>
    ba.onFrame((frame) => {
      received += frame.length
      if (received >= count * FRAME_BYTES) resolve()
    }),
  )
  const frame = new Uint8Array(FRAME_BYTES).fill(0x5a)
  const frames = (function* () {
    for (let i = 0; i < count; i++) yield frame
  })()
  const start = performance.now()
  const waitForLow = ab.waitForLow?.bind(ab)
  await sendWithBackpressure(ab, frames, {
    highWaterMark,
    ...(waitForLow === undefined ? {} : { waitForLow }),
  })
  await done
  return performance.now() - start
}

/** The same volume as 1 MiB hidden-state messages: encoding, reassembly and validation included. */
async function messageThroughput(
  tx: MessageConnection,
  rx: MessageConnection,
  bytes: number,
): Promise<number> {
  const count = Math.max(1, Math.round(bytes / MIB))
  const hidden = new Float32Array(MIB / 4).fill(0.25)
  let seen = 0
  const done = new Promise<void>((resolve) => {
    const off = rx.onMessage(() => {
      if (++seen === count) {
        off()
        resolve()
      }
    })
  })
  const start = performance.now()
  for (let i = 0; i < count; i++)
    await tx.send({ type: 'StepResult', generationId: 'bench', stepIndex: i, hidden })
  await done
  return performance.now() - start
}

/** Round trips of a 4 KiB StepResult echoed by the other side, in milliseconds. */
async function roundTrips(tx: MessageConnection, rx: MessageConnection, pings: number): Promise<number[]> {
  const offEcho = rx.onMessage((m) => {
    if (m.type === 'StepResult') void rx.send(m).catch(() => {})
  })
  const hidden = new Float32Array(1024).fill(1)
  let wake: (m: ReceivedMessage) => void = () => {}
  const offReply = tx.onMessage((m) => wake(m))
  const times: number[] = []
  for (let i = -50; i < pings; i++) {
    const reply = new Promise<ReceivedMessage>((resolve) => {
      wake = resolve
    })
    const start = performance.now()
    await tx.send({ type: 'StepResult', generationId: 'rtt', stepIndex: i + 50, hidden })
    await reply
    if (i >= 0) times.push(performance.now() - start)
  }
  offEcho()
  offReply()
  return times
}

/** A lost frame would hang a phase forever; a bench must report that instead. */
async function within<T>(work: Promise<T>, what: string, ms = 120_000): Promise<T> {
  let timer: NodeJS.Timeout | undefined
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} did not finish within ${ms / 1000} s`)), ms)
  })
  try {
    return await Promise.race([work, timeout])
  } finally {
    clearTimeout(timer)
  }
}

function mbps(bytes: number, ms: number): string {
  return (bytes / 1e6 / (ms / 1000)).toFixed(1)
}
