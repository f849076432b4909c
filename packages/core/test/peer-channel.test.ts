import { describe, expect, test } from 'vitest'
import { PeerChannel, type SimplePeerLike } from '../src/transport/peer-channel.js'

/** The little of simple-peer PeerChannel touches; `message` plays the data channel's event. */
class FakePeer {
  destroyed = false
  readonly _channel = null
  readonly listeners = new Map<string, (arg: unknown) => void>()
  /** simple-peer's own handler: pushes into its stream, which would emit 'data'. */
  _onChannelMessage: ((event: { readonly data: unknown }) => void) | undefined = (event) =>
    this.listeners.get('data')?.(event.data)
  signal(): void {}
  send(): void {}
  destroy(): void {
    this.destroyed = true
  }
  on(event: string, listener: (arg: unknown) => void): void {
    this.listeners.set(event, listener)
  }
  message(data: unknown): void {
    this._onChannelMessage?.({ data })
  }
}

const asPeer = (p: FakePeer) => p as unknown as SimplePeerLike

describe('PeerChannel', () => {
  test("takes frames straight from the message event, in order, past simple-peer's stream", () => {
    const peer = new FakePeer()
    const ch = new PeerChannel(asPeer(peer), 1024)
    const got: number[][] = []
    ch.onFrame((f) => got.push([...f]))
    const ab = new Uint8Array([1, 2, 3]).buffer
    peer.message(ab)
    peer.message(new Uint8Array([4, 5]))
    expect(got).toEqual([
      [1, 2, 3],
      [4, 5],
    ])
    // simple-peer's stream is never fed, so it never emits 'data' (nor schedules its housekeeping).
    expect(peer.listeners.has('data')).toBe(false)
  })

  test('holds frames that arrive before anyone listens, and ignores a destroyed peer', () => {
    const peer = new FakePeer()
    const ch = new PeerChannel(asPeer(peer), 1024)
    peer.message(new Uint8Array([9]).buffer)
    const got: number[][] = []
    ch.onFrame((f) => got.push([...f]))
    expect(got).toEqual([[9]])
    peer.destroyed = true
    peer.message(new Uint8Array([10]).buffer)
    expect(got).toEqual([[9]])
  })

  test("falls back to the 'data' event for a peer without the message hook", () => {
    const peer = new FakePeer()
    peer._onChannelMessage = undefined
    const ch = new PeerChannel(asPeer(peer), 1024)
    const got: number[][] = []
    ch.onFrame((f) => got.push([...f]))
    peer.listeners.get('data')?.(new Uint8Array([7, 8]))
    expect(got).toEqual([[7, 8]])
  })
})
