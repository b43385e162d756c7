/**
 * What the echo broadcast does with a refused frame: counts it by reason, reports it, and —
 * when its peer is to blame, or keeps meeting a bound an honest member meets only now and then —
 * penalises, cuts off or bans that peer. Independent of libp2p: the caller passes how to ban.
 */
import type { Counter } from 'prom-client'
import type { Logger } from '../logger.ts'
import { BroadcastRejectError, penalises, type RejectReason, rejectReasons } from './errors.ts'
import { TokenBuckets } from './limits.ts'
import { type BanEvent, Penalties, type PenaltyOptions } from './penalties.ts'

export interface Rejection {
  reason: RejectReason
  peer?: string
  penalise: boolean
  detail: string
}

/**
 * Refusals without blame (over-capacity, rate-limited, cut frames) tolerated per peer: a burst of this many
 * per member (n + 1 in all), then REFUSALS_PER_SECOND. An honest member meets those bounds only
 * while it retries an uncertified SEND (back-off from 500 ms, stopping once certified) or
 * catches up (one FETCH per peer asked), a few times per round at most.
 */
export const REFUSAL_BURST_PER_MEMBER = 2
export const REFUSALS_PER_SECOND = 1
/**
 * Refusals without blame that count against the tolerance: a full bound (over-capacity), a rate
 * (rate-limited), and a frame cut by the end of its stream (`malformed` without blame: an honest
 * sender cuts one only when its request times out or its connection resets — a few at a time —
 * so a stream of them is a flood that makes this member read and drop bytes).
 */
const COUNTED: ReadonlySet<RejectReason> = new Set<RejectReason>(['over-capacity', 'rate-limited', 'malformed'])
/** The first cool-off of a flooding peer; each further one in the penalty window lasts 4× longer. */
export const COOL_OFF_MS = 1000

/** A peer cut off for a while (event 'cool-off'): its refusals without blame went past the tolerance. */
export interface CoolOffEvent {
  peer: string
  reason: string
  until: number
  /** cool-offs of this peer within the penalty window, this one included */
  count: number
}

export interface DisciplineOptions {
  /** this member: never penalised */
  self: string
  /** members of the swarm (sets the refusal tolerance; `setMembers` changes it) */
  members: number
  /** false: nobody is ever penalised, cut off or banned (benchmarks of the worst case, fuzzing) */
  penalties: PenaltyOptions | false
  log: Logger
  /** closes `peer`'s connections and refuses it for `ms` */
  ban: (peer: string, ms: number) => Promise<void>
  isBanned: (peer: string) => boolean
  emit: (type: 'reject' | 'ban' | 'cool-off', detail: Rejection | BanEvent | CoolOffEvent) => void
  /** runs a background task the owner waits for on stop */
  track: (p: Promise<unknown>) => void
  metrics?: { rejections: Counter<'reason'>; coolOffs: Counter }
  now?: () => number
}

export class PeerDiscipline {
  /** refusals by reason so far */
  readonly rejected: Record<string, number> = Object.fromEntries(rejectReasons.map((r) => [r, 0]))
  /** cool-offs so far (all peers) */
  coolOffCount = 0
  private readonly o: DisciplineOptions
  private readonly penalties: Penalties | undefined
  private readonly refusals: TokenBuckets
  private members: number
  private readonly coolOffs = new Map<string, { count: number; at: number }>()
  private readonly now: () => number

  constructor(o: DisciplineOptions) {
    this.o = o
    this.penalties = o.penalties === false ? undefined : new Penalties(o.penalties)
    this.members = o.members
    this.refusals = new TokenBuckets(this.tolerance(), REFUSALS_PER_SECOND)
    this.now = o.now ?? Date.now
  }

  /** Refusals without blame tolerated in a burst: 2(n + 1). */
  tolerance(): number {
    return REFUSAL_BURST_PER_MEMBER * (this.members + 1)
  }

  /**
   * A membership epoch with `members` members: the tolerance becomes 2(n + 1) for it. A peer's
   * refusals so far still count (its bucket is not refilled); above the new tolerance it is cut
   * to it, below it it refills at the same rate.
   */
  setMembers(members: number): void {
    this.members = members
    this.refusals.setCapacity(this.tolerance())
  }

  /**
   * Counts and reports a refusal of `peer`'s frame (`err`: a BroadcastRejectError; anything else
   * is `malformed`) and applies its consequences. `conclusive`: the rejection proves `peer` faulty
   * by itself (banned at once); `relayed`: gossip `peer` forwarded, so a bound it hit is not its own.
   */
  reject(peer: string | undefined, err: unknown, o: { conclusive?: boolean; relayed?: boolean } = {}): Rejection {
    let r: Rejection
    if (err instanceof BroadcastRejectError) r = { reason: err.reason, peer, penalise: err.penalise, detail: err.message }
    else r = { reason: 'malformed', peer, penalise: penalises('malformed'), detail: err instanceof Error ? err.message : String(err) }
    // a bound an honest member may meet now and then under lag (refused without blame), met again
    // and again — far beyond what retries with back-off produce — is a flood: those count as
    // penalties. Not for relayed gossip: its forwarder is not the one that hit the bound.
    let flood = false
    if (!r.penalise && o.relayed !== true && peer !== undefined && peer !== this.o.self && COUNTED.has(r.reason)) {
      if (this.refusals.available(peer, this.now()) >= 1) this.refusals.take(peer, 1)
      else {
        flood = true
        r = { ...r, penalise: true, detail: `${r.detail} (refused ${this.tolerance()} times, then more than ${REFUSALS_PER_SECOND} per second: a flood)` }
      }
    }
    this.rejected[r.reason] = (this.rejected[r.reason] ?? 0) + 1
    this.o.metrics?.rejections.inc({ reason: r.reason })
    this.o.log.debug('rejected', { ...r })
    this.o.emit('reject', r)
    if (r.penalise && peer !== undefined && peer !== this.o.self && this.penalties !== undefined) {
      const ban = this.penalties.record(peer, r.reason, this.now(), o.conclusive === true)
      if (ban !== undefined) {
        const banMs = (this.o.penalties as PenaltyOptions).banMs
        this.o.log.warn('peer banned for its rejected frames', { peer, banMs, ...ban.reasons })
        this.o.emit('ban', ban)
        this.o.track(this.o.ban(peer, banMs))
      } else if (flood) this.coolOff(peer, r.reason)
    }
    return r
  }

  /**
   * A peer whose refusals without blame went past the tolerance is cut off for a while: its
   * connections are closed and refused for 1 s, then 4 s, 16 s … (up to the ban's length) for
   * each further flood within the penalty window. Every refused stream still costs its bytes in
   * flight (up to a stream window) and the stream's set-up, so counting penalties alone let a
   * flood of refused large frames run for most of the 64 it takes to ban (bench:adversary,
   * concurrent large frames: no ban in 10 s at n = 7). A lagging honest member that met a bound
   * again and again loses one peer for a second, which its retries and catch-up absorb.
   */
  private coolOff(peer: string, reason: string): void {
    if (this.o.isBanned(peer)) return
    const p = this.o.penalties as PenaltyOptions
    const now = this.now()
    const prev = this.coolOffs.get(peer)
    const count = prev !== undefined && now - prev.at < p.windowMs ? prev.count + 1 : 1
    if (!this.coolOffs.has(peer) && this.coolOffs.size >= 4096) this.coolOffs.clear()
    this.coolOffs.set(peer, { count, at: now })
    const ms = Math.min(p.banMs, COOL_OFF_MS * 4 ** (count - 1))
    this.coolOffCount++
    this.o.metrics?.coolOffs.inc()
    this.o.log.info('peer cut off for a flood of refused frames', { peer, reason, ms, count })
    this.o.emit('cool-off', { peer, reason, until: now + ms, count })
    this.o.track(this.o.ban(peer, ms))
  }
}
