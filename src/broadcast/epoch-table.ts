/**
 * The membership epochs of the echo broadcast, by first round: which members, f and quorum judge
 * the frames of each round. Independent of libp2p.
 */
import { InvalidConfigError } from '../errors.ts'
import type { Logger } from '../logger.ts'
import { type Membership, quorum, validateMembership } from '../net/membership.ts'
import { BroadcastRejectError } from './errors.ts'
import { MAX_ROUND } from './wire.ts'

export interface EpochEntry {
  epoch: number
  from: number
  membership: Membership
  members: Set<string>
  /** each member's index in `membership.members` (certificates name signers by it on the wire) */
  index: ReadonlyMap<string, number>
  q: number
}

export function validateRound(round: number, path: string): void {
  if (!Number.isInteger(round) || round < 0 || round > MAX_ROUND) throw new InvalidConfigError(path, `round must be an integer in 0..${MAX_ROUND}, got ${round}`)
}

function entry(m: Membership, epoch: number, from: number): EpochEntry {
  const membership = { ...m, members: [...m.members] }
  const members = new Set(membership.members)
  const index = new Map(membership.members.map((id, i) => [id, i]))
  return { epoch, from, membership, members, index, q: quorum(members.size, m.f) }
}

export class EpochTable {
  readonly swarmId: string
  /** epochs by first round, ascending; the first one also covers every earlier round */
  private list: EpochEntry[]
  private readonly log: Logger

  constructor(m: Membership, epoch: number, from: number, log: Logger) {
    this.swarmId = m.swarmId
    this.list = [entry(m, epoch, from)]
    this.log = log
  }

  /** The epoch that round `round` belongs to. */
  at(round: number): EpochEntry {
    for (let i = this.list.length - 1; i > 0; i--) if (this.list[i]!.from <= round) return this.list[i]!
    return this.list[0]!
  }

  /** The newest epoch known (possibly one of later rounds, from `know`). */
  newest(): EpochEntry {
    return this.list[this.list.length - 1]!
  }

  /** Checks that a frame's epoch is the one its round belongs to here (not blamed: one side may lag). */
  check(f: { epoch: number; round: number }): EpochEntry {
    const e = this.at(f.round)
    // a round before the first epoch this member knows (it joined with a later one): the frame's
    // own earlier epoch is taken, checked against the members it knows (founders sign there too)
    if (f.round < this.list[0]!.from && f.epoch <= this.list[0]!.epoch) return e
    if (f.epoch !== e.epoch) throw new BroadcastRejectError('wrong-epoch', `round ${f.round} belongs to epoch ${e.epoch} here, the frame names epoch ${f.epoch}`)
    return e
  }

  /** A member of any epoch still in use (rounds ≥ the floor). */
  knownPeer(peer: string): boolean {
    return this.list.some((e) => e.members.has(peer))
  }

  /** Members of the largest epoch in use. */
  largest(): number {
    return Math.max(...this.list.map((e) => e.members.size))
  }

  /** Drops the epochs wholly below `floor`. */
  prune(floor: number): void {
    while (this.list.length > 1 && this.list[1]!.from <= floor) this.list.shift()
  }

  /** `knowEpoch`: adds an epoch of later rounds; false when known already or not later than the newest. */
  know(m: Membership, fromRound: number, epochNumber: number): boolean {
    this.checkArgs(m, fromRound, epochNumber)
    const last = this.newest()
    if (fromRound <= last.from || epochNumber <= last.epoch) return false
    this.list.push(entry(m, epochNumber, fromRound))
    return true
  }

  /** `setMembership`: `m` from `fromRound` on (replacing later epochs), or every round without it. */
  set(m: Membership, fromRound: number | undefined, epochNumber: number | undefined, floor: number): void {
    const last = this.newest()
    const number = epochNumber ?? (fromRound === undefined ? last.epoch : last.epoch + 1)
    this.checkArgs(m, fromRound, number)
    const e = entry(m, number, fromRound ?? 0)
    if (fromRound === undefined) this.list = [e]
    else {
      this.list = this.list.filter((x) => x.from < fromRound)
      this.list.push(e)
      this.prune(floor)
    }
  }

  /** What `know` and `set` take: a valid membership of this swarm, a round, an epoch number in 0..2³² − 1. */
  private checkArgs(m: Membership, fromRound: number | undefined, epochNumber: number): void {
    validateMembership(m, this.log)
    if (m.swarmId !== this.swarmId) throw new InvalidConfigError('membership.swarmId', 'a membership epoch cannot change the swarm id (create a new broadcast)')
    if (fromRound !== undefined) validateRound(fromRound, 'fromRound')
    if (!Number.isInteger(epochNumber) || epochNumber < 0 || epochNumber > 0xffff_ffff) throw new InvalidConfigError('epoch', `must be an integer in 0..${0xffff_ffff}, got ${epochNumber}`)
  }
}
