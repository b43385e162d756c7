/** Options of the signed echo broadcast: the typed object, its defaults (with their reasons) and the validator. */
import type { Libp2p, PrivateKey } from '@libp2p/interface'
import { peerIdFromString } from '@libp2p/peer-id'
import type { Registry } from 'prom-client'
import { InvalidConfigError } from '../errors.ts'
import type { Logger } from '../logger.ts'
import { type Membership, validateMembership } from '../net/membership.ts'
import type { EchoJournal } from './journal.ts'
import type { PenaltyOptions } from './penalties.ts'

export interface EchoBroadcastOptions {
  node: Libp2p
  privateKey: PrivateKey
  membership: Membership
  /** Membership epoch number of `membership` (signed in every statement; default 0). */
  epoch?: number
  /**
   * First round of that epoch (its activation; default 0). A member that joins with a later epoch
   * takes certificates of earlier rounds under their own (earlier) epoch, checked against the
   * members it knows: they are its evidence of where the swarm is.
   */
  epochFrom?: number
  /**
   * W: SENDs are echoed for rounds in [ref − W, ref + W], where ref is the newest round that
   * f + 1 distinct members have certified (or this member's own newest round, or its floor).
   */
  roundWindow?: number
  /**
   * Largest payload accepted or sent. A node derives it from its model (d · 4 bytes); the
   * default only serves library users that have no model.
   */
  maxPayloadBytes?: number
  /**
   * SEND payload bytes a peer may have here at once, held undelivered or still arriving (default
   * 4·maxPayloadBytes + 1 MiB: an honest peer's SENDs of the current and next rounds, and of rounds
   * whose FINAL is late; at 2·P + 1 MiB, 8 LeNet members in one process refused each other's SENDs
   * and a round took 65 s instead of 1 s).
   */
  maxPendingBytesPerPeer?: number
  /** Delay between attempts to reach a member we could not dial (ms). */
  retryIntervalMs?: number
  /** Time allowed for one PULL, QUERY or FETCH exchange with one peer, and the idle time after which an inbound stream is closed (ms). */
  requestTimeoutMs?: number
  /** An echoed instance still without FINAL after this long is QUERYed from its sender (ms). */
  finalQueryMs?: number
  /**
   * A certified instance whose SEND has not started arriving is PULLed only after this long while
   * its sender is connected: its push normally follows (ms; see `defaultEchoBroadcastOptions`).
   */
  pullGraceMs?: number
  /**
   * When our FINAL also goes on the gossip topic: 'unreached' (default) only once a push ended
   * without writing it on the member's stream, so gossip relays it to members we could not reach;
   * 'always' for every FINAL (see sender.ts, `maybeGossip`).
   */
  finalGossip?: 'unreached' | 'always'
  /**
   * fetchRound asks one peer, and one more each time the peers asked so far have all gone this
   * long without progress (a complete frame, or 64 KiB of one): a peer that stays silent or
   * trickles holds a catch-up up for this long, not `requestTimeoutMs` (ms).
   */
  fetchIdleMs?: number
  /** Slowest rate a frame may arrive at before its stream is cut (`slow`), bytes per second. */
  minBytesPerSecond?: number
  /**
   * FETCH/PULL service per peer: payloads served per second after the burst; default (n + 1)/4.
   * A member catching up fetches one round (n − 1 payloads) from several members at once, so
   * the burst covers it; a peer asking again and again gets a quarter of a round per second.
   */
  servePayloadsPerSecond?: number
  /** FETCH/PULL burst per peer, payloads; default 2(n + 1) (two whole rounds). */
  serveBurstPayloads?: number
  /**
   * Peers whose frames earn `threshold` penalised rejections (bad signatures, malformed frames,
   * equivocation, …) within `windowMs` are banned for `banMs`: their connections are closed and
   * refused both ways, member or not (`banPeer` of src/net). `false` turns bans off.
   */
  penalties?: PenaltyOptions | false
  /** Echo records kept across restarts (see journal.ts); default: in memory only. */
  journal?: EchoJournal
  logger?: Logger
  registry?: Registry
}

export const defaultEchoBroadcastOptions = {
  /**
   * MoNNA waits for n − f deliveries, so honest members are at most a few rounds apart;
   * 8 rounds of slack keeps a lagging member echoing while bounding memory to 2W + 1 instances per sender.
   */
  roundWindow: 8,
  /** For library use without a model only: a node passes its model's size (issue 12). */
  maxPayloadBytes: 256 * 1024 * 1024,
  retryIntervalMs: 500,
  requestTimeoutMs: 30_000,
  fetchIdleMs: 2000,
  /**
   * A FINAL normally follows the echo within one round trip plus the slowest of Q echoes; 3 s
   * is well above that on loopback with 1.7 MB payloads (bench:broadcast) and costs one small
   * request per lost FINAL.
   */
  finalQueryMs: 3000,
  /**
   * A sender certifies once Q members echoed, while its pushes to the others are still on their
   * way; a member that then gets the FINAL (gossip) before the SEND and pulled at once fetched the
   * payload twice — 36–40 % of member/instance pairs at n = 26…100 in one process (bench:scale).
   * Waiting this long while the sender is connected lets the push arrive; a sender that never
   * pushes to us (Byzantine, or unreachable) only delays its own instance by this much. No wait
   * once a SEND of the instance came with another hash (an equivocating sender's other version).
   * Off (0) by default: bench:inprocess at n = 26 sent 45.5 instead of 56.8 MB per member per
   * round with 2000, but in a CI rehearsal the wait changed which models the fast members of the
   * scenario suite aggregated (under optimal-foe, with a member slowed by 2 s, the Byzantine model
   * reached none of them); a grace that does not shift the round's race is not chosen yet.
   */
  pullGraceMs: 0,
  finalGossip: 'unreached' as 'unreached' | 'always',
  minBytesPerSecond: 64 * 1024,
  /**
   * An honest member earns no penalised rejection at all; 64 in a minute is far from an accident
   * (a fuzzing or forging peer reaches it in milliseconds) and leaves room for a peer on a buggy
   * but honest build. Five minutes, then it may reconnect and is judged afresh.
   */
  penalties: { threshold: 64, windowMs: 60_000, banMs: 300_000 } as PenaltyOptions | false,
}

/** Validates the options; throws InvalidConfigError naming the field and the rule. */
export function validateEchoBroadcastOptions(opts: EchoBroadcastOptions): void {
  validateMembership(opts.membership, opts.logger)
  const W = opts.roundWindow ?? defaultEchoBroadcastOptions.roundWindow
  if (!Number.isInteger(W) || W < 1 || W > 1024) throw new InvalidConfigError('roundWindow', `must be an integer in 1..1024, got ${W}`)
  if (opts.epoch !== undefined && (!Number.isInteger(opts.epoch) || opts.epoch < 0 || opts.epoch > 0xffff_ffff)) {
    throw new InvalidConfigError('epoch', `must be an integer in 0..${0xffff_ffff}, got ${opts.epoch}`)
  }
  const maxPayload = opts.maxPayloadBytes ?? defaultEchoBroadcastOptions.maxPayloadBytes
  if (!Number.isInteger(maxPayload) || maxPayload < 0 || maxPayload > 0xffff_ffff) {
    throw new InvalidConfigError('maxPayloadBytes', `must be an integer in 0..${0xffff_ffff}, got ${maxPayload}`)
  }
  if (opts.maxPendingBytesPerPeer !== undefined && (!Number.isInteger(opts.maxPendingBytesPerPeer) || opts.maxPendingBytesPerPeer < maxPayload)) {
    throw new InvalidConfigError('maxPendingBytesPerPeer', 'must be an integer ≥ maxPayloadBytes (a peer must be able to send one payload)')
  }
  for (const k of ['retryIntervalMs', 'requestTimeoutMs', 'finalQueryMs', 'pullGraceMs', 'fetchIdleMs', 'minBytesPerSecond', 'servePayloadsPerSecond', 'serveBurstPayloads'] as const) {
    const v = opts[k]
    if (v !== undefined && (!Number.isFinite(v) || v <= 0)) throw new InvalidConfigError(k, `must be a positive number, got ${v}`)
  }
  if (opts.finalGossip !== undefined && opts.finalGossip !== 'unreached' && opts.finalGossip !== 'always') {
    throw new InvalidConfigError('finalGossip', `must be 'unreached' or 'always', got ${String(opts.finalGossip)}`)
  }
  const pen = opts.penalties
  if (pen !== undefined && pen !== false) {
    if (typeof pen !== 'object' || pen === null) throw new InvalidConfigError('penalties', 'must be { threshold, windowMs, banMs } or false')
    if (!Number.isInteger(pen.threshold) || pen.threshold < 1) throw new InvalidConfigError('penalties.threshold', `must be a positive integer, got ${pen.threshold}`)
    for (const k of ['windowMs', 'banMs'] as const) {
      if (!Number.isFinite(pen[k]) || pen[k] <= 0) throw new InvalidConfigError(`penalties.${k}`, `must be a positive number of milliseconds, got ${pen[k]}`)
    }
  }
  const me = opts.node.peerId.toString()
  if (me !== peerIdFromString(me).toString() || !opts.membership.members.includes(me)) {
    throw new InvalidConfigError('membership.members', `this node (${me}) is not a member of swarm ${opts.membership.swarmId}`)
  }
}
