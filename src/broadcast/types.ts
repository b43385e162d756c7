/** The echo broadcast's public types: what it delivers, reports and offers (see echo-broadcast.ts). */
import type { Membership } from '../net/membership.ts'
import type { Certificate } from './certificate.ts'
import type { CoolOffEvent, Rejection } from './discipline.ts'
import type { BanEvent } from './penalties.ts'

export interface Delivery {
  swarmId: string
  epoch: number
  round: number
  sender: string
  payload: Uint8Array
  hash: Uint8Array
  certificate: Certificate
}

/** Two conflicting SENDs signed by one sender for one instance (transferable evidence). */
export interface EquivocationEvidence {
  swarmId: string
  epoch: number
  round: number
  sender: string
  first: { hash: Uint8Array; signature?: Uint8Array }
  second: { hash: Uint8Array; signature: Uint8Array }
}

/**
 * What a broadcast reports of itself: one type for the signed echo broadcast, whose `stats()`
 * fills every field (`Required<BroadcastStats>`), and for the engine's port (src/node/port.ts),
 * whose test doubles (test/support/memory-hub.ts) fill only the first three.
 */
export interface BroadcastStats {
  bytesSent: number
  bytesReceived: number
  rejected: Record<string, number>
  delivered?: number
  equivocations?: number
  /** signatures checked (SEND, ECHO and certificate entries) */
  signaturesVerified?: number
  /** SENDs written whole again after a broken or refused transfer, and payloads served to PULL/FETCH requests (each a whole payload on the wire) */
  sendsRepeated?: number
  payloadsServed?: number
  /** of payloadsServed, those in replies to FETCH (the rest answered PULLs) */
  payloadsServedToFetch?: number
  /** payload bytes held undelivered or arriving, over all peers (bounded by n · maxPendingBytesPerPeer) */
  pendingBytes?: number
  /** payload bytes of delivered instances still held (rounds ≥ the floor) */
  deliveredBytes?: number
  /** peers cut off for a while for a flood of refused frames (event 'cool-off') */
  coolOffs?: number
}

export interface EchoBroadcastEvents {
  deliver: CustomEvent<Delivery>
  reject: CustomEvent<Rejection>
  equivocation: CustomEvent<EquivocationEvidence>
  ban: CustomEvent<BanEvent>
  'cool-off': CustomEvent<CoolOffEvent>
}

export interface EchoBroadcast extends EventTarget {
  /** `handOver`: the caller never writes `payload` afterwards, so the broadcast keeps it rather than a copy */
  broadcast(round: number, payload: Uint8Array, opts?: { signal?: AbortSignal; handOver?: boolean }): Promise<void>
  delivered(round: number): Delivery[]
  setFloor(round: number): void
  /**
   * The newest round that f + 1 distinct members have broadcast with a certificate (so at least
   * one honest member reached it); −1 before that. No f members can move it.
   */
  newestCertifiedRound(): number
  /**
   * Asks members one by one for the certified deliveries of `round` it lacks; returns the verified
   * ones once it holds every other member's, or `want` of them (the engine needs n − f), or every
   * member was asked — or `peers` of them (see FetchOptions).
   */
  fetchRound(round: number, opts?: FetchOptions): Promise<Delivery[]>
  /**
   * A new membership epoch. With `fromRound`, instances of earlier rounds keep being checked
   * against the epochs they belong to (a late certificate of the last round before a switch is
   * still valid); without it, `m` replaces every epoch. `epoch` is its number (default: the
   * previous one + 1), signed in every statement of its rounds.
   */
  setMembership(m: Membership, fromRound?: number, epoch?: number): void
  /**
   * An epoch of later rounds (from `fromRound`), received before this member reaches them: their
   * frames are judged under it at once; the switch itself is still `setMembership` at the boundary.
   */
  knowEpoch(m: Membership, fromRound: number, epoch: number): void
  /** The epoch number of `round` (what its statements sign). */
  epochOf(round: number): number
  /** every field filled */
  stats(): Required<BroadcastStats>
  stop(): Promise<void>
  /** Protocol id of the streams. */
  readonly protocol: string
  /** Gossipsub topic of FINAL announcements. */
  readonly topic: string
  readonly peerId: string
  /** Equivocation evidence collected so far (bounded). */
  evidence(): EquivocationEvidence[]
}

/** Options of `fetchRound`. */
export interface FetchOptions {
  signal?: AbortSignal
  /** stop once this many deliveries of the round are held (the engine needs n − f) */
  want?: number
  /**
   * Ask at most this many members (a positive integer). Each such call starts with the member
   * after the last one the previous call asked, so successive calls go round every member: a
   * member polling a round it is short of asks a few members each time instead of every one
   * (n − 1 FETCH streams per poll, from every member waiting, were most of a round at n = 140 in
   * one process — `bench:scale`).
   */
  peers?: number
}
