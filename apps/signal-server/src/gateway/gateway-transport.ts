import { createWebRtcTransport, type WebRtcTransport } from '@butterfly/core'
import type { LocalPeerHandle } from '../control/mesh.js'
import type { IceFor } from '../control/turn-credentials.js'

type SignalHandler = (from: string, data: Readonly<Record<string, unknown>>) => void

/**
 * The gateway's own WebRTC peer, signalling through the in-process mesh member. Its ICE servers
 * are asked for per connection, so a long-running gateway never dials with expired TURN credentials.
 */
export function createGatewayTransport(
  peer: () => LocalPeerHandle,
  signalHandlers: Set<SignalHandler>,
  components: { wrtc: unknown; iceFor?: IceFor | undefined },
): WebRtcTransport {
  const { iceFor } = components
  const peerId = peer().peerId
  return createWebRtcTransport(
    {
      peerId,
      ...(iceFor === undefined
        ? {}
        : {
            iceServers: () => iceFor(peerId).iceServers,
            iceTransportPolicy: iceFor(peerId).iceTransportPolicy,
          }),
    },
    {
      signaling: {
        send: (to, data) => peer().sendSignal(to, data),
        onSignal: (h) => {
          signalHandlers.add(h)
          return () => signalHandlers.delete(h)
        },
      },
      wrtc: components.wrtc,
    },
  )
}
