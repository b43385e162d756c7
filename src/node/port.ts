/**
 * The engine's view of the broadcast: a structural subset of contract §3's `EchoBroadcast`, so
 * the same round engine runs on the signed echo broadcast over libp2p (TCP, or libp2p's memory
 * transport in one process) and, in unit tests, on test doubles (test/support/memory-hub.ts).
 * Nothing here knows about learning.
 */
import type { BroadcastStats, FetchOptions } from '../broadcast/types.ts'

/** The broadcast's statistics: one type with src/broadcast (test doubles fill the required fields only). */
export type { BroadcastStats, FetchOptions }

/** A swarm's membership (same shape as `Membership` in src/net). */
export interface Membership {
  swarmId: string
  /** PeerId strings, no duplicates; a member's index is its position here. */
  members: string[]
  /** Declared upper bound on Byzantine members. */
  f: number
}

/** A certified delivery of one broadcast instance (swarm, round, sender). */
export interface Delivery {
  swarmId: string
  round: number
  sender: string
  payload: Uint8Array
  hash: Uint8Array
  certificate: unknown
}

/** A message the broadcast refused (same vocabulary as contract §3's Rejection). */
export interface Rejection {
  reason: string
  peer?: string
  penalise: boolean
  detail: string
}

/** A SEND seen before its certification (optional event; lets a rushing adversary look early). */
export interface SendSeen {
  round: number
  sender: string
  payload: Uint8Array
}

/**
 * Events: `'deliver'` CustomEvent<Delivery>, `'reject'` CustomEvent<Rejection>, and optionally
 * `'send'` CustomEvent<SendSeen> (a not-yet-certified SEND, used only by Byzantine behaviours).
 */
export interface BroadcastPort extends EventTarget {
  /**
   * Broadcasts our model of `round`; resolves once our own instance is certified and delivered
   * locally. `handOver`: the caller never writes `payload` afterwards (no private copy is made).
   */
  broadcast(round: number, payload: Uint8Array, opts?: { signal?: AbortSignal; handOver?: boolean }): Promise<void>
  /** Deliveries of `round` still held. */
  delivered(round: number): Delivery[]
  /** Rounds below `round` may be garbage-collected. */
  setFloor(round: number): void
  /**
   * The newest round that f + 1 distinct members have broadcast with a certificate (at least one
   * honest member reached it), −1 if none: the engine's only evidence that the swarm is ahead,
   * so no f members can make it catch up or skip rounds.
   */
  newestCertifiedRound(): number
  /**
   * Asks peers for the certified deliveries of `round` (catch-up); returns the verified ones, once
   * `want` are held if given (else once every member's are, or every member was asked).
   */
  fetchRound(round: number, opts?: FetchOptions): Promise<Delivery[]>
  stats(): BroadcastStats
  /**
   * Membership epochs: the members and f (quorum) of rounds ≥ `fromRound`; earlier rounds keep
   * theirs (optional: a test double may have a fixed membership).
   */
  setMembership?(m: Membership, fromRound?: number, epoch?: number): void
  /**
   * An epoch of later rounds, received before this member reaches them: frames of those rounds
   * are judged under it (optional, like `setMembership`).
   */
  knowEpoch?(m: Membership, fromRound: number, epoch: number): void
  /** A SEND to selected members only (Byzantine equivocation on test doubles; on libp2p the adversary toolkit does it — see src/adversary). */
  sendTo?(peers: string[], round: number, payload: Uint8Array): Promise<void>
  stop(): Promise<void>
}

/** Broadcast ports of a swarm without a network (test doubles): one per member. */
export interface PortProvider {
  port(self: string, opts: { roundWindow: number }): BroadcastPort
}
