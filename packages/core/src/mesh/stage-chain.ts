import { StageError } from '../errors.js'
import type { MessageConnection } from '../transport/message-connection.js'

/**
 * A chained stage (r=1 meshes, wire/step-route.ts): a RemoteStage whose requests enter at its
 * connection's peer and hop peer to peer over worker-to-worker channels; the route's last peer
 * answers the coordinator, and any peer on the route may answer with an error. Hidden states
 * then never come back to the coordinator: K+1 messages per token instead of 2K.
 */
export interface StageChain {
  /** The peers after the entry peer, in layer order. */
  readonly route: readonly string[]
  /** This coordinator's peer id, where the route's last peer sends its results. */
  readonly replyTo: string
  /** This coordinator's connections to the route's peers, in its order. */
  readonly connections: readonly MessageConnection[]
}

/** Every connection of a stage: the entry, then a chain's later peers (checked against the route). */
export function chainLinks(entry: MessageConnection, chain: StageChain | undefined): MessageConnection[] {
  if (chain === undefined) return [entry]
  const { route, connections } = chain
  if (route.length < 1 || connections.length !== route.length || new Set(route).size !== route.length) {
    throw new StageError('ERR_STAGE_REPLY', 'a chain needs a route of distinct peers, one connection each')
  }
  return [entry, ...connections]
}

/**
 * Chained steps cancelled in flight (`generation:position`). The coordinator's EndGeneration
 * reaches a later peer directly, possibly before the cancelled step does, and that step would then
 * build a KV cache nobody frees. So the step's late answer (it reached the end, or failed
 * somewhere) prompts a second EndGeneration, which arrives after the step everywhere. Only
 * answers to those very steps count: the same connections carry other sessions' steps of the
 * same generation (a relayed pipeline after a fallback), which must not end it.
 */
export class LateEnds {
  private readonly keys = new Set<string>()

  constructor(private readonly cap = 4096) {}

  note(key: string): void {
    this.keys.add(key)
    // The oldest are dropped first: a step that late has timed out on every peer anyway.
    if (this.keys.size > this.cap) this.keys.delete(this.keys.values().next().value as string)
  }

  /** Whether this answer is a cancelled step's (once). */
  take(key: string): boolean {
    return this.keys.delete(key)
  }
}
