import { type BodyReader, type BodyWriter, payloadError, utf8Bytes } from './body.js'

/**
 * The route of a chained step (r=1 meshes): instead of answering, the peer sends its output as a
 * StepRequest to `route[0]` with the rest of the route, and the peer with an empty route answers
 * `replyTo` (the coordinator) over its own connection to it. So hidden states go stage to stage and
 * only the last stage's top-k returns: K+1 messages per token instead of 2K.
 *
 *   route  id replyTo, u8 hops, hops x id (each: u8 length, ASCII bytes, pad to 4)
 *
 * It follows a StepRequest's body, announced by FrameFlag.Route.
 */
export interface StepRoute {
  /** The peers still to run the step's later stages, in order; empty at the last stage. */
  route: string[]
  /** The coordinator: the peer the last stage answers, and errors anywhere on the route go to. */
  replyTo: string
}

/** A route longer than any sane pipeline is refused (and keeps a request's size bounded). */
export const MAX_ROUTE_HOPS = 64
/** Peer ids as the control protocol writes them. */
const PEER_ID = /^[A-Za-z0-9._-]{1,64}$/

export function writeRoute(w: BodyWriter, r: StepRoute): void {
  writePeer(w, r.replyTo)
  w.u8(r.route.length).align4()
  for (const hop of r.route) writePeer(w, hop)
}

export function readRoute(r: BodyReader): StepRoute {
  const replyTo = readPeer(r)
  const hops = r.u8()
  r.align4()
  const route: string[] = []
  for (let i = 0; i < hops; i++) route.push(readPeer(r))
  return { route, replyTo }
}

/** Checks a StepRequest's route fields: both or neither, valid ids, no peer twice. */
export function checkRoute(m: Record<string, unknown>): void {
  const { route, replyTo } = m
  if (route === undefined && replyTo === undefined) return
  if (!Array.isArray(route) || typeof replyTo !== 'string') {
    throw payloadError('StepRequest.route and replyTo come together: an array and a peer id')
  }
  if (!PEER_ID.test(replyTo)) throw payloadError('StepRequest.replyTo is not a peer id')
  if (route.length > MAX_ROUTE_HOPS) {
    throw payloadError(`StepRequest.route has ${route.length} hops, over ${MAX_ROUTE_HOPS}`)
  }
  const seen = new Set<string>([replyTo])
  for (const hop of route) {
    if (typeof hop !== 'string' || !PEER_ID.test(hop))
      throw payloadError('StepRequest.route holds a bad peer id')
    if (seen.has(hop)) throw payloadError('StepRequest.route names a peer twice (or the coordinator)')
    seen.add(hop)
  }
  // A fingerprinted step keeps its output for a FetchHidden on the same connection: not chainable.
  if (m.fingerprintChallenge !== undefined) {
    throw payloadError('StepRequest with a route cannot carry a fingerprint challenge')
  }
}

function writePeer(w: BodyWriter, id: string): void {
  w.u8(id.length).bytes(utf8Bytes(id)).align4()
}

function readPeer(r: BodyReader): string {
  const id = r.ascii(r.u8())
  r.align4()
  return id
}
