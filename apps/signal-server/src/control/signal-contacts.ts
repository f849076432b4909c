/**
 * Who has exchanged signals with whom in one mesh. A WebRTC connection is negotiated through
 * the relay, so these are the peers that can hold one to a peer that leaves: they, not all
 * members, are told of the departure (telling every member made churn O(members) emits each).
 */
export class SignalContacts {
  private readonly byPeer = new Map<string, Set<string>>()

  /** Records a signal between `a` and `b` (either direction). */
  add(a: string, b: string): void {
    this.of(a).add(b)
    this.of(b).add(a)
  }

  /** Forgets `peer` and returns the peers it exchanged signals with. */
  drop(peer: string): ReadonlySet<string> {
    const contacts = this.byPeer.get(peer) ?? new Set<string>()
    this.byPeer.delete(peer)
    for (const other of contacts) this.byPeer.get(other)?.delete(peer)
    return contacts
  }

  private of(peer: string): Set<string> {
    let set = this.byPeer.get(peer)
    if (set === undefined) {
      set = new Set()
      this.byPeer.set(peer, set)
    }
    return set
  }
}
