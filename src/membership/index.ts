/**
 * Membership epochs: changing who is in a running swarm (add / remove members, change f)
 * without restarting anyone.
 *
 * Trust model. The swarm file may name a swarm **admin** (`admin: <PeerId of an Ed25519 key>`).
 * Because the admin is part of the swarm file, it is part of the swarm id (the hash of the
 * file), so every member agrees on who the admin is. Only the admin can change the
 * membership: it signs an epoch `{ swarmId, epoch, activation, f, members }`; epoch 0 is the
 * swarm file itself. Any member (or the admin's CLI through a member's HTTP endpoint) may
 * relay a signed epoch: members gossip them on the swarm's pubsub namespace and each verifies
 * the admin signature itself, so relays need no trust. A verified epoch takes effect at the
 * first round ≥ `activation` on every honest member (a round boundary fixed in the signed
 * statement, not by local clocks), and the swarm id stays the genesis one across epochs.
 * Every epoch must keep n ≥ 3f + 1 (the signed echo broadcast's bound); a change that breaks
 * it is refused both when it is proposed (CLI) and when it is received (members).
 * An epoch must also reach every member before its activation round: members that ran that
 * round with the old membership cannot re-run it, so they would disagree about n, f and the
 * quorum for it. A new epoch whose activation round has come is refused (`checkActivation`):
 * by the CLI and by a member the admin hands it to when activation ≤ the round that member runs
 * (it still has to spread), and by a member it is relayed to when activation ≤ the newest round
 * that member ran itself. Epochs already known, given at start-up or stored in the data
 * directory are not checked again.
 * Members cannot change the membership; the admin cannot forge models or certificates (it is
 * not a member unless also listed). A compromised admin key can replace the membership: keep
 * it offline; it is needed only to sign epochs.
 */
import type { PrivateKey } from '@libp2p/interface'
import { peerIdFromPrivateKey, peerIdFromString } from '@libp2p/peer-id'
import { canonicalJson, type MemberConfig, type SwarmConfig, swarmId } from '../config/schema.ts'
import { InvalidConfigError, MonnaError } from '../errors.ts'

/** One membership epoch (what the admin signs). */
export interface MembershipEpoch {
  swarmId: string
  /** 0 = the swarm file; each change increases it by one */
  epoch: number
  /** first round run with this membership */
  activation: number
  f: number
  members: MemberConfig[]
}

/** An epoch with the admin's signature (base64 of an Ed25519 signature over `epochStatement`). */
export interface SignedEpoch extends MembershipEpoch {
  admin: string
  signature: string
}

/** What a change asks for. */
export interface MembershipChange {
  add?: MemberConfig[]
  remove?: string[]
  f?: number
  activation: number
}

/** A change would leave n < 3f + 1 members (the broadcast's bound). */
export class FaultBoundError extends MonnaError {
  override name = 'FaultBoundError'
  readonly n: number
  readonly f: number
  constructor(n: number, f: number) {
    super(`an epoch with n = ${n} members cannot tolerate f = ${f}: the signed echo broadcast needs n ≥ 3f + 1 (at most f = ${Math.max(0, Math.floor((n - 1) / 3))}); add members or lower f first`)
    this.n = n
    this.f = f
  }
}

/** A signed epoch failed verification; `reason` says which check. */
export class EpochRejectedError extends MonnaError {
  override name = 'EpochRejectedError'
  readonly reason: 'no-admin' | 'wrong-swarm' | 'wrong-admin' | 'bad-signature' | 'malformed' | 'fault-bound' | 'stale' | 'conflict' | 'activation'
  readonly epoch: number | undefined
  constructor(reason: EpochRejectedError['reason'], message: string, epoch?: number) {
    super(message)
    this.reason = reason
    this.epoch = epoch
  }
}

/**
 * Whether a member may still take up a signed epoch it did not know; throws EpochRejectedError
 * ('stale') when the epoch's activation round has come for it.
 * - `admin`: the epoch is handed to a member (`monna swarm … --publish`, POST /epoch) or about to
 *   be signed (`--via`); `round` is the round that member runs (or runs next). Refused when
 *   activation ≤ round: the epoch still has to spread to the others by gossip, and those that
 *   finish the activation round first run it with the old membership.
 * - `relay`: the epoch arrives from another member; `lastRun` is the newest round this member
 *   ran itself (−1: none). Refused when activation ≤ lastRun: that round was decided with the
 *   old n − f. An epoch for the round being run is taken (the engine switches to it before it
 *   completes the round, as the others did at the boundary), and so is one for rounds this
 *   member skipped by catching up (it switches at its next round).
 */
export function checkActivation(e: MembershipEpoch, at: { source: 'admin'; round: number; who?: string } | { source: 'relay'; lastRun: number }): void {
  if (at.source === 'admin') {
    if (e.activation > at.round) return
    throw new EpochRejectedError(
      'stale',
      `epoch ${e.epoch} activates at round ${e.activation} but ${at.who ?? 'this member'} is already at round ${at.round}; choose --activation ≥ ${at.round + 1}, a few rounds more so that every member learns it first (--via <member url> --in <rounds> counts from its round)`,
      e.epoch,
    )
  }
  if (e.activation > at.lastRun) return
  throw new EpochRejectedError(
    'stale',
    `epoch ${e.epoch} activates at round ${e.activation} but this member already ran round ${at.lastRun} with the membership it had; the admin must sign a change with a later activation`,
    e.epoch,
  )
}

/** The change names a member that is not in the epoch (remove) or already is (add). */
export class MemberChangeError extends MonnaError {
  override name = 'MemberChangeError'
  readonly member: string
  constructor(member: string, message: string) {
    super(message)
    this.member = member
  }
}

const DOMAIN = 'monna/membership-epoch/v1\0'

/** The bytes the admin signs: a domain tag and the canonical JSON of the epoch. */
export function epochStatement(e: MembershipEpoch): Uint8Array {
  const body = { swarmId: e.swarmId, epoch: e.epoch, activation: e.activation, f: e.f, members: e.members.map((m) => normaliseMember(m)) }
  return new TextEncoder().encode(DOMAIN + canonicalJson(body))
}

function normaliseMember(m: MemberConfig): MemberConfig {
  return { id: m.id, ...(m.name !== undefined ? { name: m.name } : {}), addresses: [...(m.addresses ?? [])] }
}

/** Epoch 0: the swarm file's own membership. */
export function genesisEpoch(swarm: SwarmConfig): MembershipEpoch {
  return { swarmId: swarmId(swarm), epoch: 0, activation: 0, f: swarm.f, members: swarm.members.map(normaliseMember) }
}

/** Throws FaultBoundError / MemberChangeError when the epoch's member list or f is not usable. */
export function checkEpochShape(e: MembershipEpoch): void {
  if (!Number.isInteger(e.f) || e.f < 0) throw new InvalidConfigError('f', `must be an integer ≥ 0, got ${e.f}`)
  const ids = new Set<string>()
  for (const m of e.members) {
    if (ids.has(m.id)) throw new MemberChangeError(m.id, `member ${m.id} is listed twice`)
    ids.add(m.id)
    let type: string
    try {
      type = peerIdFromString(m.id).type
    } catch {
      throw new MemberChangeError(m.id, `${m.id} is not a PeerId (print one with \`monna keygen\`)`)
    }
    if (type !== 'Ed25519') throw new MemberChangeError(m.id, `${m.id} is a ${type} PeerId; members need Ed25519 identities`)
  }
  if (e.members.length < 3 * e.f + 1) throw new FaultBoundError(e.members.length, e.f)
}

/** The next epoch after `current` with `change` applied; refuses changes that break n ≥ 3f + 1. */
export function proposeEpoch(current: MembershipEpoch, change: MembershipChange): MembershipEpoch {
  if (!Number.isInteger(change.activation) || change.activation <= current.activation) {
    throw new InvalidConfigError('activation', `must be a round after the current epoch's activation (${current.activation}), got ${change.activation}`)
  }
  let members = current.members.map(normaliseMember)
  for (const id of change.remove ?? []) {
    if (!members.some((m) => m.id === id)) throw new MemberChangeError(id, `${id} is not a member of epoch ${current.epoch}; nothing to remove`)
    members = members.filter((m) => m.id !== id)
  }
  for (const m of change.add ?? []) {
    if (members.some((x) => x.id === m.id)) throw new MemberChangeError(m.id, `${m.id} is already a member of epoch ${current.epoch}`)
    members.push(normaliseMember(m))
  }
  const next: MembershipEpoch = { swarmId: current.swarmId, epoch: current.epoch + 1, activation: change.activation, f: change.f ?? current.f, members }
  checkEpochShape(next)
  return next
}

const b64 = (u: Uint8Array): string => Buffer.from(u).toString('base64')

/** Signs an epoch with the admin key. */
export async function signEpoch(e: MembershipEpoch, adminKey: PrivateKey): Promise<SignedEpoch> {
  checkEpochShape(e)
  const signature = await adminKey.sign(epochStatement(e))
  return { ...e, members: e.members.map(normaliseMember), admin: peerIdFromPrivateKey(adminKey).toString(), signature: b64(signature) }
}

/** Bounds on what a received epoch may hold before anything is verified. */
export const epochLimits = { maxMembers: 1024, maxBytes: 1024 * 1024 } as const

/** Parses and checks a signed epoch (from JSON text, a file, or pubsub); throws EpochRejectedError. */
export async function verifyEpoch(input: unknown, swarm: SwarmConfig): Promise<SignedEpoch> {
  if (swarm.admin === undefined) throw new EpochRejectedError('no-admin', 'this swarm file names no admin, so its membership cannot change (add `admin: <PeerId>` when creating the swarm)')
  const e = parseSignedEpoch(input)
  const id = swarmId(swarm)
  if (e.swarmId !== id) throw new EpochRejectedError('wrong-swarm', `epoch ${e.epoch} is for swarm ${e.swarmId}, this is ${id}`, e.epoch)
  if (e.admin !== swarm.admin) throw new EpochRejectedError('wrong-admin', `epoch ${e.epoch} is signed by ${e.admin}, the swarm's admin is ${swarm.admin}`, e.epoch)
  try {
    checkEpochShape(e)
  } catch (err) {
    throw new EpochRejectedError('fault-bound', `epoch ${e.epoch}: ${(err as Error).message}`, e.epoch)
  }
  const key = peerIdFromString(swarm.admin).publicKey
  if (key === undefined) throw new EpochRejectedError('no-admin', `admin ${swarm.admin} is not an Ed25519 PeerId`)
  const ok = await key.verify(epochStatement(e), Buffer.from(e.signature, 'base64'))
  if (!ok) throw new EpochRejectedError('bad-signature', `epoch ${e.epoch}: the admin signature does not verify`, e.epoch)
  return e
}

function parseSignedEpoch(input: unknown): SignedEpoch {
  const bad = (what: string): never => {
    throw new EpochRejectedError('malformed', `not a signed membership epoch: ${what}`)
  }
  const o = (typeof input === 'string' ? safeJson(input) : input) as Record<string, unknown> | null
  if (o === null || typeof o !== 'object') return bad('expected a JSON object')
  const int = (k: string): number => {
    const v = o[k]
    if (typeof v !== 'number' || !Number.isInteger(v) || v < 0) bad(`${k} must be an integer ≥ 0`)
    return v as number
  }
  const str = (k: string, max = 4096): string => {
    const v = o[k]
    if (typeof v !== 'string' || v.length === 0 || v.length > max) bad(`${k} must be a non-empty string`)
    return v as string
  }
  if (!Array.isArray(o.members) || o.members.length === 0 || o.members.length > epochLimits.maxMembers) bad(`members must be a list of 1..${epochLimits.maxMembers}`)
  const members = (o.members as unknown[]).map((m, i) => {
    const r = m as Record<string, unknown> | null
    if (r === null || typeof r !== 'object' || typeof r.id !== 'string') return bad(`members[${i}].id missing`)
    const addresses = Array.isArray(r.addresses) ? r.addresses.filter((a): a is string => typeof a === 'string' && a.length <= 256).slice(0, 16) : []
    return { id: r.id, ...(typeof r.name === 'string' ? { name: r.name.slice(0, 64) } : {}), addresses }
  })
  return { swarmId: str('swarmId', 128), epoch: int('epoch'), activation: int('activation'), f: int('f'), members, admin: str('admin', 128), signature: str('signature', 256) }
}

function safeJson(text: string): unknown {
  if (text.length > epochLimits.maxBytes) throw new EpochRejectedError('malformed', `${text.length} bytes is too large for an epoch`)
  try {
    return JSON.parse(text)
  } catch {
    throw new EpochRejectedError('malformed', 'not JSON')
  }
}

/**
 * The epochs a member knows, in order: epoch 0 (the swarm file) and verified later ones.
 * Epoch k + 1 must activate after epoch k; two different epochs with one number are a
 * conflict (only a misbehaving admin can produce one) and the second is refused.
 */
export class EpochBook {
  private readonly list: (MembershipEpoch | SignedEpoch)[]
  constructor(genesis: MembershipEpoch) {
    this.list = [genesis]
  }

  /** Adds a verified epoch; returns false if it was already known. Throws EpochRejectedError on a conflict or a bad ordering. */
  add(e: SignedEpoch): boolean {
    const known = this.list.find((x) => x.epoch === e.epoch)
    if (known !== undefined) {
      if (canonicalJson(epochStatementObject(known)) === canonicalJson(epochStatementObject(e))) return false
      throw new EpochRejectedError('conflict', `two different epochs numbered ${e.epoch} (the admin signed both); keeping the first`, e.epoch)
    }
    if (e.epoch === 0) throw new EpochRejectedError('malformed', 'epoch 0 is the swarm file; signed epochs start at 1', 0)
    const before = this.list.filter((x) => x.epoch < e.epoch).at(-1)
    const after = this.list.find((x) => x.epoch > e.epoch)
    if ((before !== undefined && e.activation <= before.activation) || (after !== undefined && e.activation >= after.activation)) {
      throw new EpochRejectedError('activation', `epoch ${e.epoch} activates at round ${e.activation}, out of order with its neighbours`, e.epoch)
    }
    this.list.push(e)
    this.list.sort((a, b) => a.epoch - b.epoch)
    return true
  }

  /** Whether this very epoch (same number and statement) is known. */
  has(e: MembershipEpoch): boolean {
    const known = this.list.find((x) => x.epoch === e.epoch)
    return known !== undefined && canonicalJson(epochStatementObject(known)) === canonicalJson(epochStatementObject(e))
  }

  /** The epoch in force at `round` (the newest known epoch whose activation ≤ round). */
  at(round: number): MembershipEpoch {
    let cur = this.list[0]!
    for (const e of this.list) if (e.activation <= round) cur = e
    return cur
  }

  latest(): MembershipEpoch {
    return this.list.at(-1)!
  }

  /** Every known epoch, oldest first. */
  all(): readonly MembershipEpoch[] {
    return this.list
  }

  /** The signed ones (what members relay). */
  signed(): SignedEpoch[] {
    return this.list.filter((e): e is SignedEpoch => 'signature' in e)
  }

  /** The first epoch (oldest) that lists `member`, if any. */
  firstWith(member: string): MembershipEpoch | undefined {
    return this.list.find((e) => e.members.some((m) => m.id === member))
  }
}

function epochStatementObject(e: MembershipEpoch): unknown {
  return { swarmId: e.swarmId, epoch: e.epoch, activation: e.activation, f: e.f, members: e.members.map(normaliseMember) }
}
