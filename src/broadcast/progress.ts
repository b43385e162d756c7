/**
 * Evidence that the swarm has moved on, which no f members can forge: the newest round that
 * f + 1 distinct members have broadcast with a certificate. Every "the swarm is ahead" decision
 * (the echo window's reference, the engine's catch-up) follows it, so one Byzantine member
 * certifying a round far ahead — or f of them — moves nobody (issue 12: one message used to stop
 * every honest member).
 */
export class ProgressEvidence {
  /** newest round certified for each sender */
  private readonly bySender = new Map<string, number>()
  private newest = -1

  /** The newest round certified by f + 1 distinct senders (−1 before that); never decreases. */
  get round(): number {
    return this.newest
  }

  /**
   * `sender` broadcast `round` with a certificate. `members` and `f`: the newest epoch's (a sender
   * no longer a member does not count). Returns true when the evidence moved.
   */
  note(sender: string, round: number, members: ReadonlySet<string>, f: number): boolean {
    if ((this.bySender.get(sender) ?? -1) >= round) return false
    this.bySender.set(sender, round)
    // at most f senders were above `newest` (it is the (f + 1)-th newest); one more at or below
    // it keeps that so: nothing moves, and the scan below (n per call, n calls a round) is skipped
    if (round <= this.newest) return false
    const above: number[] = []
    for (const [s, r] of this.bySender) if (r > this.newest && members.has(s)) above.push(r)
    if (above.length <= f) return false
    above.sort((a, b) => b - a)
    const p = above[f]!
    this.newest = p
    return true
  }
}
