/**
 * Per-peer resource bounds of the echo broadcast.
 *
 * - `Budget`: bytes of payload a peer may have here at once — held undelivered, or announced by
 *   a frame header and still arriving — charged when the header is accepted, before any payload
 *   byte is buffered. So concurrent streams of one peer cannot multiply what it may make us hold.
 * - `TokenBuckets`: the rate at which we serve a peer's FETCH and PULL requests (in payloads).
 */
import { BroadcastRejectError } from './errors.ts'

export class Budget {
  private readonly used = new Map<string, number>()
  readonly limit: number
  constructor(limit: number) {
    this.limit = limit
  }
  /** Charges `bytes` to `peer` or throws `over-capacity` (not blamed); returns the release (idempotent). */
  reserve(peer: string, bytes: number): () => void {
    const held = this.used.get(peer) ?? 0
    if (held + bytes > this.limit) {
      throw new BroadcastRejectError('over-capacity', `${peer} already has ${held} payload bytes here; ${bytes} more exceeds the per-peer budget of ${this.limit}`)
    }
    this.used.set(peer, held + bytes)
    let released = false
    return () => {
      if (released) return
      released = true
      const left = (this.used.get(peer) ?? 0) - bytes
      if (left > 0) this.used.set(peer, left)
      else this.used.delete(peer)
    }
  }
  of(peer: string): number {
    return this.used.get(peer) ?? 0
  }
  total(): number {
    let s = 0
    for (const v of this.used.values()) s += v
    return s
  }
}

export class TokenBuckets {
  private readonly buckets = new Map<string, { tokens: number; at: number }>()
  private capacity: number
  private readonly perSecond: number
  constructor(capacity: number, perSecond: number) {
    this.capacity = capacity
    this.perSecond = perSecond
  }
  /**
   * A new burst size from now on: buckets above it are cut to it when next read; buckets below it
   * refill to it at the same rate (nobody's bucket is refilled by the change).
   */
  setCapacity(capacity: number): void {
    this.capacity = capacity
  }
  /** Tokens available to `peer` now (refilled). */
  available(peer: string, now = performance.now()): number {
    let b = this.buckets.get(peer)
    if (b === undefined) {
      if (this.buckets.size >= 4096) this.buckets.clear()
      b = { tokens: this.capacity, at: now }
      this.buckets.set(peer, b)
    }
    b.tokens = Math.min(this.capacity, b.tokens + ((now - b.at) / 1000) * this.perSecond)
    b.at = now
    return b.tokens
  }
  take(peer: string, n: number): void {
    const b = this.buckets.get(peer)
    if (b !== undefined) b.tokens -= n
  }
}
