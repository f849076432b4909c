import { ButterflyError } from '@butterfly/core'

/** The server was configured with something it cannot run: duplicate meshes, bad options. */
export class ServerConfigError extends ButterflyError {
  override readonly name = 'ServerConfigError'
  constructor(message: string, options?: { cause?: unknown }) {
    super('ERR_SERVER_CONFIG', message, options)
  }
}

/** The join-token file (--join-token-file) cannot be read, parsed or written. */
export class JoinTokenFileError extends ButterflyError {
  override readonly name = 'JoinTokenFileError'
  constructor(message: string, options?: { cause?: unknown }) {
    super('ERR_JOIN_TOKEN_FILE', message, options)
  }
}

export type JoinRefusedCode =
  /** The per-peer token is not one this server issued. */
  | 'ERR_JOIN_TOKEN_UNKNOWN'
  /** The per-peer token was revoked. */
  | 'ERR_JOIN_TOKEN_REVOKED'
  /** The per-peer token is past its expiry. */
  | 'ERR_JOIN_TOKEN_EXPIRED'
  /** The per-peer token was issued for another mesh. */
  | 'ERR_JOIN_TOKEN_MESH'
  /** The per-peer token is bound to another peer identity. */
  | 'ERR_JOIN_TOKEN_BOUND'
  /** --require-peer-tokens: the shared mesh token alone admits nobody. */
  | 'ERR_PEER_TOKEN_REQUIRED'
  /** Too many live members from this source address (--max-peers-per-address). */
  | 'ERR_PEERS_PER_ADDRESS'
  /** Too many join attempts from this source address (--join-rate). */
  | 'ERR_JOIN_RATE'

/**
 * A join refused by the server's admission rules (per-peer tokens, per-address limits). It
 * crosses the wire as `{name, code, message}`; a rate refusal also says when to retry.
 */
export class JoinRefusedError extends ButterflyError {
  override readonly name = 'JoinRefusedError'
  readonly retryAfterMs: number | undefined
  constructor(code: JoinRefusedCode, message: string, retryAfterMs?: number) {
    super(code, message)
    this.retryAfterMs = retryAfterMs
  }
}

export type ClusterErrorCode =
  /** A record or message from Redis or another server that does not parse, or is too large. */
  | 'ERR_CLUSTER_PAYLOAD'
  /** A plan not newer than the one this server holds (a replay). */
  | 'ERR_CLUSTER_STALE'
  /** A plan from a server that does not hold the planning lease. */
  | 'ERR_CLUSTER_NOT_PLANNER'
  /** A record or signal naming a peer its sender does not hold (or under another peer's key). */
  | 'ERR_CLUSTER_SESSION'
  /** A value or message without the seal of the cluster's shared secret (--cluster-secret). */
  | 'ERR_CLUSTER_FORGED'
  /** Redis could not be reached, or a command on it failed. */
  | 'ERR_REDIS'

/**
 * What goes wrong between the servers of a cluster. Never sent to peers: a server counts these
 * (butterfly_cluster_rejected_total) and goes on with what it knew.
 */
export class ClusterError extends ButterflyError {
  override readonly name = 'ClusterError'
  constructor(code: ClusterErrorCode, message: string, options?: { cause?: unknown }) {
    super(code, message, options)
  }
}
