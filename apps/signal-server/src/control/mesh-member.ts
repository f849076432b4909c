import type { PeerCapabilities, PlanMessage, SignalData } from '@butterfly/core'

/** How the mesh reaches one member: a socket.io client or an in-process peer. */
export interface MemberSink {
  signal(from: string, data: SignalData): void
  plan(plan: PlanMessage): void
  peerLeft(peerId: string): void
  /** Cut the member off after the mesh dropped it (heartbeat timeout, mesh closed). */
  drop?(reason: PeerLeftReason): void
}

export interface LocalPeerHandlers {
  onSignal(from: string, data: SignalData): void
  /** Called with the current plan before addLocalPeer returns, then on every change. */
  onPlan(plan: PlanMessage): void
  onPeerLeft?(peerId: string): void
}

export interface LocalPeerHandle {
  readonly peerId: string
  /** Throws ControlError: ERR_CONTROL_INPUT (bad envelope), ERR_PEER_UNKNOWN, ERR_NOT_JOINED. */
  sendSignal(to: string, data: SignalData): void
  leave(): void
}

/** A peer that hosts layers, as /health shows it. */
export interface WorkerInfo extends PeerCapabilities {
  readonly id: string
}

export type PeerLeftReason = 'leave' | 'disconnect' | 'timeout' | 'close'
