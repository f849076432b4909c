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
 * Generations a chain ended while a step of theirs may still travel. The coordinator's
 * EndGeneration reaches a later peer directly, possibly before the step does, and that step
 * would then build a KV cache nobody frees. So a late answer (the step reached the end, or failed
 * somewhere) prompts a second EndGeneration, which arrives after the step everywhere.
 */
export class LateEnds {
  private readonly ids = new Set<string>()

  constructor(private readonly cap = 4096) {}

  note(generationId: string): void {
    this.ids.add(generationId)
    // The oldest are dropped first: a step that late has timed out on every peer anyway.
    if (this.ids.size > this.cap) this.ids.delete(this.ids.values().next().value as string)
  }

  /** Whether a late answer for this generation should end it again (once). */
  take(generationId: string): boolean {
    return this.ids.delete(generationId)
  }
}
