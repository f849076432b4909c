import { createRequire } from 'node:module'
import { TransportError } from '@butterfly/core'
import ndcPolyfill from 'node-datachannel/polyfill'

/**
 * WebRTC for Node, in the shape simple-peer's `wrtc` option takes. Two implementations:
 * node-datachannel (libdatachannel; small, a dependency of this package) and @roamhq/wrtc
 * (Google's libwebrtc; large, only installed for measurements).
 */
export type WrtcKind = 'node-datachannel' | 'wrtc'

export interface NodeWrtcOptions {
  /**
   * Keep all traffic on 127.0.0.1, for tests and benches: node-datachannel binds its ICE
   * sockets there, and remote candidates on any other address are ignored (libwebrtc cannot
   * be told where to bind, so @roamhq/wrtc still gathers on every interface).
   */
  loopbackOnly?: boolean
}

export interface WrtcImplementation {
  readonly RTCPeerConnection: new (config?: Record<string, unknown>) => unknown
  readonly RTCSessionDescription: unknown
  readonly RTCIceCandidate: unknown
}

interface Description {
  type: string
  sdp: string
}

interface PeerConnectionLike {
  createOffer(options?: unknown): Promise<Description>
  createAnswer(options?: unknown): Promise<Description>
  addIceCandidate(candidate?: unknown): Promise<void>
}

interface Adaptation {
  extraConfig: Record<string, unknown>
  loopbackOnly: boolean
  /** node-datachannel's polyfill pastes TURN credentials into a URL unescaped. */
  escapeCredentials: boolean
}

type PeerConnectionClass = new (config?: Record<string, unknown>) => PeerConnectionLike

const cache = new Map<string, WrtcImplementation>()

export function nodeWrtc(
  kind: WrtcKind = 'node-datachannel',
  opts: NodeWrtcOptions = {},
): WrtcImplementation {
  const loopbackOnly = opts.loopbackOnly === true
  const key = `${kind}:${loopbackOnly}`
  const hit = cache.get(key)
  if (hit !== undefined) return hit
  let base: WrtcImplementation
  const how: Adaptation = { extraConfig: {}, loopbackOnly, escapeCredentials: false }
  if (kind === 'node-datachannel') {
    base = ndcPolyfill as unknown as WrtcImplementation
    how.escapeCredentials = true
    // The polyfill passes its whole config on to libdatachannel, which understands bindAddress.
    if (loopbackOnly) how.extraConfig = { bindAddress: '127.0.0.1' }
  } else if (kind === 'wrtc') {
    base = loadWrtc()
  } else {
    throw new TransportError(
      'ERR_TRANSPORT_OPTIONS',
      `unknown WebRTC implementation ${JSON.stringify(String(kind))}`,
    )
  }
  const impl: WrtcImplementation = {
    RTCPeerConnection: adapt(base.RTCPeerConnection as PeerConnectionClass, how),
    RTCSessionDescription: base.RTCSessionDescription,
    RTCIceCandidate: base.RTCIceCandidate,
  }
  cache.set(key, impl)
  return impl
}

function adapt(Base: PeerConnectionClass, how: Adaptation) {
  return class ButterflyPeerConnection extends Base {
    constructor(config: Record<string, unknown> = {}) {
      const servers = config.iceServers
      super({
        ...config,
        ...(how.escapeCredentials && Array.isArray(servers)
          ? { iceServers: servers.map(escapeCredentials) }
          : {}),
        ...how.extraConfig,
      })
    }

    // simple-peer assigns to `offer.sdp`; node-datachannel's descriptions have getters only.
    override async createOffer(options?: unknown): Promise<Description> {
      const d = await super.createOffer(options)
      return { type: d.type, sdp: d.sdp }
    }

    override async createAnswer(options?: unknown): Promise<Description> {
      const d = await super.createAnswer(options)
      return { type: d.type, sdp: d.sdp }
    }

    override addIceCandidate(candidate?: unknown): Promise<void> {
      if (how.loopbackOnly && !isLoopbackOrEnd(candidate)) return Promise.resolve()
      return super.addIceCandidate(candidate)
    }
  }
}

/**
 * The polyfill hands libdatachannel `turn:USER:PASS@host`, which libdatachannel URL-decodes; a
 * TURN REST username (`expiry:peer`) has a colon and its base64 password may hold '/' and '+',
 * so both are percent-encoded or libdatachannel authenticates as a truncated user.
 */
function escapeCredentials(server: unknown): unknown {
  if (typeof server !== 'object' || server === null) return server
  const { username, credential } = server as { username?: unknown; credential?: unknown }
  if (typeof username !== 'string' || typeof credential !== 'string') return server
  return { ...server, username: encodeURIComponent(username), credential: encodeURIComponent(credential) }
}

/** True for a 127.0.0.1 host candidate, or for the end-of-candidates marker. */
export function isLoopbackOrEnd(candidate: unknown): boolean {
  if (typeof candidate !== 'object' || candidate === null) return true
  const line = (candidate as { candidate?: unknown }).candidate
  if (typeof line !== 'string' || line === '') return true
  // "candidate:<foundation> <component> <transport> <priority> <address> <port> typ ...", maybe after "a=".
  const address = line.replace(/^a=/, '').trim().split(/\s+/)[4]
  return address === '127.0.0.1'
}

function loadWrtc(): WrtcImplementation {
  try {
    return createRequire(import.meta.url)('@roamhq/wrtc') as WrtcImplementation
  } catch (cause) {
    throw new TransportError(
      'ERR_TRANSPORT_OPTIONS',
      `@roamhq/wrtc is not installed or failed to load: ${String(cause)}`,
      {
        cause,
      },
    )
  }
}
