import { WireProtocolError } from '../errors.js'

/** The part of RTCDataChannel (browser, node-datachannel, @roamhq/wrtc) we need. */
export interface BufferedChannel {
  send(data: Uint8Array): void
  readonly bufferedAmount: number
}

/** Resolves after `ms`, or as soon as `signal` aborts (it never rejects). */
export type Sleep = (ms: number, signal: AbortSignal) => Promise<void>

export interface BackpressureOptions {
  /** Wait while more than this many bytes are queued; default 1 MiB. */
  highWaterMark?: number
  /** How often to re-read bufferedAmount while waiting; default 10 ms. */
  pollMs?: number
  /** Aborting rejects the send with the signal's reason; frames already sent stay sent. */
  signal?: AbortSignal
  /**
   * Resolves on the channel's `bufferedamountlow` event. Optional and never trusted alone:
   * @roamhq/wrtc never fires it, so we always poll as well. Must stop listening when its
   * signal aborts.
   */
  waitForLow?: (signal: AbortSignal) => Promise<void>
  /** Timer used for polling; injectable so core needs no environment and tests need no clock. */
  sleep?: Sleep
}

export const DEFAULT_HIGH_WATER_MARK = 1024 * 1024
export const DEFAULT_POLL_MS = 10

/** Sends frames in order, waiting whenever the channel's send queue is above the high-water mark. */
export async function sendWithBackpressure(
  channel: BufferedChannel,
  frames: Iterable<Uint8Array>,
  opts: BackpressureOptions = {},
): Promise<void> {
  const highWaterMark = opts.highWaterMark ?? DEFAULT_HIGH_WATER_MARK
  const pollMs = opts.pollMs ?? DEFAULT_POLL_MS
  if (!(Number.isFinite(highWaterMark) && highWaterMark >= 0)) {
    throw new WireProtocolError(
      'ERR_WIRE_OPTIONS',
      `highWaterMark must be a finite number >= 0, got ${highWaterMark}`,
    )
  }
  if (!(Number.isFinite(pollMs) && pollMs > 0)) {
    throw new WireProtocolError('ERR_WIRE_OPTIONS', `pollMs must be a finite number > 0, got ${pollMs}`)
  }
  const { signal, waitForLow } = opts
  const sleep = opts.sleep ?? defaultSleep

  for (const frame of frames) {
    signal?.throwIfAborted()
    // An event that fires without the queue actually draining must not spin us in microtasks,
    // which would starve the I/O that drains it: after such a wake, the next wait only polls.
    let useEvent = waitForLow !== undefined
    while (channel.bufferedAmount > highWaterMark) {
      const woke = await waitOnce(pollMs, sleep, useEvent ? waitForLow : undefined, signal)
      signal?.throwIfAborted()
      useEvent = woke !== 'event' && waitForLow !== undefined
    }
    channel.send(frame)
  }
}

/**
 * Sends frames from `start` on while the channel holds at most `highWaterMark` bytes, never
 * waiting; returns the index of the first frame left unsent (`frames.length` once all went).
 * The wait-free part of sendWithBackpressure, for callers that only set up a wait when one is due.
 */
export function sendWhileBelow(
  channel: BufferedChannel,
  frames: readonly Uint8Array[],
  highWaterMark: number,
  start = 0,
): number {
  let i = start
  while (i < frames.length && channel.bufferedAmount <= highWaterMark) channel.send(frames[i++] as Uint8Array)
  return i
}

async function waitOnce(
  pollMs: number,
  sleep: Sleep,
  waitForLow: ((signal: AbortSignal) => Promise<void>) | undefined,
  signal: AbortSignal | undefined,
): Promise<'poll' | 'event' | 'abort'> {
  const inner = new AbortController()
  const onAbort = (): void => inner.abort(signal?.reason)
  signal?.addEventListener('abort', onAbort, { once: true })
  try {
    const waits: Promise<'poll' | 'event' | 'abort'>[] = [
      sleep(pollMs, inner.signal).then(() => 'poll' as const),
      new Promise((resolve) =>
        inner.signal.addEventListener('abort', () => resolve('abort'), { once: true }),
      ),
    ]
    if (waitForLow !== undefined) {
      const event = new Promise<void>((resolve, reject) => {
        waitForLow(inner.signal).then(resolve, reject)
      })
      // Once we stop waiting, a late rejection (e.g. from our own abort) is nobody's business.
      event.catch(() => {})
      waits.push(event.then(() => 'event' as const))
    }
    if (signal?.aborted) return 'abort'
    return await Promise.race(waits)
  } finally {
    signal?.removeEventListener('abort', onAbort)
    inner.abort()
  }
}

export function defaultSleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal.aborted) {
      resolve()
      return
    }
    const done = (): void => {
      clearTimeout(timer)
      signal.removeEventListener('abort', done)
      resolve()
    }
    const timer = setTimeout(done, ms)
    signal.addEventListener('abort', done, { once: true })
  })
}
