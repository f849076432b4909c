import { type PlacedPeer, peerName } from './mesh-groups.js'

/** The selected peer: id, role, backend, memory, round trip, votes and state. */
export function PeerDetails({ placed }: { placed: PlacedPeer }) {
  const { peer, id, role, votes, rttMs } = placed
  return (
    <dl className="facts peer-details" aria-live="polite" data-testid="peer-details">
      <dt>peer</dt>
      <dd>
        {peerName(placed)} <code>{id}</code>
      </dd>
      <dt>role</dt>
      <dd>{role}</dd>
      <dt>backend</dt>
      <dd>{peer ? `${peer.backend} (${peer.numericClass})` : 'left the mesh'}</dd>
      <dt>memory</dt>
      <dd>{peer ? `${(peer.memoryBytes / 2 ** 30).toFixed(1)} GiB` : '–'}</dd>
      <dt>speed</dt>
      <dd>{peer ? `${peer.layerStepsPerSec.toFixed(0)} layer-steps/s` : '–'}</dd>
      <dt>round trip</dt>
      <dd>{rttMs === undefined ? 'not measured yet' : `${rttMs.toFixed(1)} ms`}</dd>
      <dt>votes</dt>
      <dd>
        {votes
          ? `${votes.agreements} agreed, ${votes.disagreements} disagreed, ${votes.timeouts} timed out`
          : 'none yet'}
      </dd>
      <dt>state</dt>
      <dd>
        {placed.state === 'excluded' ? `excluded (${peer?.excludedReason ?? 'outvoted'})` : placed.state}
      </dd>
    </dl>
  )
}
