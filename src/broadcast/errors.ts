import { MonnaError } from '../errors.ts'

/** Why a message from the network was refused (contract §3). */
export type RejectReason =
  | 'non-member'
  | 'bad-signature'
  | 'hash-mismatch'
  | 'oversized'
  | 'malformed'
  | 'out-of-window'
  | 'duplicate-signer'
  | 'equivocation'
  | 'wrong-swarm'
  | 'unknown-version'
  | 'wrong-epoch'
  | 'over-capacity'
  | 'slow'
  | 'rate-limited'

export const rejectReasons: readonly RejectReason[] = [
  'non-member',
  'bad-signature',
  'hash-mismatch',
  'oversized',
  'malformed',
  'out-of-window',
  'duplicate-signer',
  'equivocation',
  'wrong-swarm',
  'unknown-version',
  'wrong-epoch',
  'over-capacity',
  'slow',
  'rate-limited',
]

/**
 * Reasons whose sender is to be penalised (REJECT in lodestar's vocabulary); the others are
 * dropped without blame (IGNORE): a peer on another protocol version or swarm, or lagging.
 */
const PENALISE: Record<RejectReason, boolean> = {
  // a member added by a membership epoch this member has not received yet looks like one:
  // refused (the frame cannot be checked) but not blamed, or lagging members would ban it
  'non-member': false,
  'bad-signature': true,
  'hash-mismatch': true,
  oversized: true,
  malformed: true,
  'out-of-window': false,
  'duplicate-signer': true,
  equivocation: true,
  'wrong-swarm': false,
  'unknown-version': false,
  // a member that has not received an epoch yet (or the sender has not) names another epoch
  'wrong-epoch': false,
  // a per-sender or per-peer bound is full: refused, but an honest member can meet it under lag
  'over-capacity': false,
  // a frame that does not arrive at the minimum rate: a bad link looks the same as a trickler
  'slow': false,
  // FETCH/PULL above the per-peer serving rate: answered with END
  'rate-limited': false,
}

export function penalises(reason: RejectReason): boolean {
  return PENALISE[reason]
}

/** A frame or message from the network was refused. `penalise`: the sender misbehaved. */
export class BroadcastRejectError extends MonnaError {
  override name = 'BroadcastRejectError'
  readonly reason: RejectReason
  readonly penalise: boolean
  constructor(reason: RejectReason, message: string, penalise = penalises(reason)) {
    super(`${reason}: ${message}`)
    this.reason = reason
    this.penalise = penalise
  }
}

/** `broadcast(round)` was called twice for one round (that would be equivocating). */
export class AlreadyBroadcastError extends MonnaError {
  override name = 'AlreadyBroadcastError'
  readonly round: number
  constructor(round: number) {
    super(`round ${round} was already broadcast by this member; a second SEND would be equivocation`)
    this.round = round
  }
}

/** The broadcast was used after `stop()`. */
export class BroadcastStoppedError extends MonnaError {
  override name = 'BroadcastStoppedError'
  constructor() {
    super('the echo broadcast is stopped')
  }
}

/** `broadcast`/`sendTo`: the round is outside the window this member keeps. */
export class RoundOutOfWindowError extends MonnaError {
  override name = 'RoundOutOfWindowError'
  readonly round: number
  readonly floor: number
  constructor(round: number, floor: number) {
    super(`round ${round} is below the garbage-collection floor ${floor} or not a uint32`)
    this.round = round
    this.floor = floor
  }
}
