/**
 * Inbound connections from the address of a banned peer, throttled before their handshake.
 *
 * The connection gater learns who dials only after the Noise handshake (an X25519 key pair, two
 * Diffie–Hellman computations, a signature and its check): a banned or cut-off member that dials
 * again and again costs its target a full handshake per attempt (bench:adversary, held max-size
 * SENDs at n = 4: 60 ms of CPU per second in handshakes the gater then refused). What is known
 * before the handshake is the remote IP, so while a peer is refused, inbound connections from the
 * IPs it was connected from are admitted at RATE per second (a burst of BURST) and the rest are
 * closed — after being held for a second, a few at a time (TARPIT_MS). Another member behind the
 * same IP (one host running several members, a shared NAT) still connects, at that rate, for as
 * long as the ban lasts.
 */

/** Connections admitted per second from a throttled IP, after a burst of BURST. */
export const THROTTLE_RATE = 1
export const THROTTLE_BURST = 4
/**
 * A refused connection is held this long before it is closed, up to TARPIT_PER_IP at a time per
 * IP (the rest are closed at once). A libp2p dialer has one dial in flight per peer and redials
 * when it fails: closed at once, a banned member's loop came back hundreds of times a second
 * (bench:adversary, cut frames at n = 4: 35 ms of CPU per second accepting and resetting its
 * sockets); held for a second, it comes back about once a second. Holding costs a socket and a
 * timer, nothing is read from it.
 */
export const TARPIT_MS = 1000
export const TARPIT_PER_IP = 4
/** Throttled IPs tracked at most (oldest forgotten first): bans of distinct peers cannot grow it. */
const MAX_HOSTS = 4096

interface Entry {
  until: number
  tokens: number
  at: number
}

export class HostThrottle {
  private readonly hosts = new Map<string, Entry>()
  /** refused connections held open per IP (the tarpit) */
  private readonly held = new Map<string, number>()
  /** inbound connections closed before their handshake */
  refused = 0

  /** Throttles inbound connections from `ip` until `until` (ms since the epoch; a later time wins). */
  mark(ip: string, until: number, now = Date.now()): void {
    const e = this.hosts.get(ip)
    if (e !== undefined) {
      e.until = Math.max(e.until, until)
      return
    }
    if (this.hosts.size >= MAX_HOSTS) {
      for (const [h, x] of this.hosts) if (x.until <= now) this.hosts.delete(h)
      if (this.hosts.size >= MAX_HOSTS) this.hosts.delete(this.hosts.keys().next().value as string)
    }
    this.hosts.set(ip, { until, tokens: THROTTLE_BURST, at: now })
  }

  /** Whether an inbound connection from `ip` may go on to its handshake now (counts a refusal if not). */
  admit(ip: string, now = Date.now()): boolean {
    const e = this.hosts.get(ip)
    if (e === undefined) return true
    if (now >= e.until) {
      this.hosts.delete(ip)
      return true
    }
    e.tokens = Math.min(THROTTLE_BURST, e.tokens + ((now - e.at) / 1000) * THROTTLE_RATE)
    e.at = now
    if (e.tokens >= 1) {
      e.tokens -= 1
      return true
    }
    this.refused++
    return false
  }

  /**
   * Takes one of `ip`'s tarpit places (see TARPIT_MS); false when all are taken. The caller gives
   * it back with `untarpit` once it closed the connection.
   */
  tarpit(ip: string): boolean {
    const held = this.held.get(ip) ?? 0
    if (held >= TARPIT_PER_IP) return false
    if (held === 0 && this.held.size >= MAX_HOSTS) return false
    this.held.set(ip, held + 1)
    return true
  }

  untarpit(ip: string): void {
    const held = (this.held.get(ip) ?? 1) - 1
    if (held <= 0) this.held.delete(ip)
    else this.held.set(ip, held)
  }

  /** Lifts the throttle of `ip` (a ban lifted). */
  clear(ip: string): void {
    this.hosts.delete(ip)
  }
}
