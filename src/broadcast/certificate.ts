/**
 * Certificates of the signed echo broadcast: Q signatures of distinct members over the ECHO
 * statement of (instance, hash). Transferable: `verifyCertificate` checks one alone, against the
 * membership of the epoch its round belongs to.
 */
import { type Membership, quorum } from '../net/membership.ts'
import { bytesEqual, checksForOneMember, statement, toHex, verify } from './crypto.ts'
import { BroadcastRejectError } from './errors.ts'
import type { SignatureEntry } from './wire.ts'

export interface Certificate {
  swarmId: string
  /** membership epoch of the round (signed in every echo) */
  epoch: number
  round: number
  sender: string
  hash: Uint8Array
  /** Q signatures of distinct members over the ECHO statement of (instance, hash). */
  signatures: SignatureEntry[]
}

export function sameSignatures(a: SignatureEntry[], b: SignatureEntry[]): boolean {
  return a.length === b.length && a.every((e, i) => e.signer === b[i]!.signer && bytesEqual(e.signature, b[i]!.signature))
}

/**
 * Checks a certificate alone (transferability) against the membership of its epoch. Throws
 * BroadcastRejectError with the reason. `trusted` skips the verification of entries known valid.
 * Returns the process's own copy of the certificate's entries (equal to `cert.signatures`, to be
 * read only), for the caller to keep instead of its decoded ones: in one process the members then
 * hold one copy of each certificate, not one each (n² certificates of Q signatures per round).
 */
export function verifyCertificate(cert: Certificate, membership: Membership, opts: { trusted?: (e: SignatureEntry) => boolean; blameShort?: boolean } = {}): SignatureEntry[] {
  const members = memberSet(membership)
  if (cert.swarmId !== membership.swarmId) throw new BroadcastRejectError('wrong-swarm', `certificate of swarm ${cert.swarmId}`)
  if (!members.has(cert.sender)) throw new BroadcastRejectError('non-member', `certificate for non-member sender ${cert.sender}`)
  const q = quorum(membership.members.length, membership.f)
  const seen = new Set<string>()
  for (const e of cert.signatures) {
    if (seen.has(e.signer)) throw new BroadcastRejectError('duplicate-signer', `${e.signer} signs the certificate twice`)
    seen.add(e.signer)
    if (!members.has(e.signer)) throw new BroadcastRejectError('non-member', `certificate signer ${e.signer} is not a member`)
  }
  // blamed only when the caller knows the certificate's own epoch (`blameShort`): checked against
  // another epoch's members and quorum (an epoch this member has not received yet removed some;
  // a member that joined with a later epoch judging a round before it, whose quorum was smaller),
  // an honest certificate can look short — then it is refused as of an epoch we cannot judge
  if (seen.size < q) {
    if (opts.blameShort === true) throw new BroadcastRejectError('malformed', `certificate has ${seen.size} signatures, quorum is ${q}`)
    throw new BroadcastRejectError('wrong-epoch', `certificate of epoch ${cert.epoch} has ${seen.size} signatures; judged against another epoch (quorum ${q}), it cannot be checked here`)
  }
  // the signatures' validity is a function of these exact bytes: a certificate any member of this
  // process verified already needs no signature looked up again (see `processCertificates`)
  const key = `${cert.swarmId}\0${cert.epoch}/${cert.sender}/${cert.round}/${toHex(cert.hash)}`
  const known = processCertificates.get(key)
  if (known !== undefined && sameSignatures(known, cert.signatures)) {
    processCertificateStats.hits++
    return known
  }
  const stmt = statement('ECHO', cert, cert.hash)
  for (const e of cert.signatures) {
    if (opts.trusted?.(e) === true) continue
    if (!verify(e.signer, stmt, e.signature)) throw new BroadcastRejectError('bad-signature', `invalid echo signature of ${e.signer} in certificate`)
  }
  // every entry valid: verified here, or known valid to the caller (`trusted`)
  if (processCertificates.size >= (checksForOneMember() ? MEMBER_CERTIFICATES : PROCESS_CERTIFICATES)) processCertificates.clear()
  const own = cert.signatures.map((e) => ({ signer: e.signer, signature: e.signature.slice() }))
  processCertificates.set(key, own)
  return own
}

/**
 * Certificates whose every signature this process verified, by (swarm, epoch, sender, round,
 * hash) — which fixes the signed statement — with the exact entries checked. In one process (an
 * in-process swarm) each member checks each certificate: n² certificates of Q signatures a round,
 * each signature found in `verify`'s cache, cost 8 % of a round's CPU at n = 26 (bench:inprocess
 * profile); one lookup per certificate replaces Q. The membership checks above still run for
 * each member (its own epoch's members and quorum).
 */
const PROCESS_CERTIFICATES = 8192
/**
 * A member alone in its process (`verifyCacheFor('member')`) never finds a certificate here that
 * it did not check itself (0 hits in an 8-process `bench:round`; its own `VerifiedCertificates`
 * answers repeats); at n = 26 one certificate held here is ≈ 5.7 KB of V8 heap (4,000 measured:
 * 22.8 MB, docs/memory.md), 8,192 ≈ 47 MB, reached after ≈ 315 rounds.
 */
const MEMBER_CERTIFICATES = 256
const processCertificates = new Map<string, SignatureEntry[]>()
/** Hits of the certificate cache in this process (tests, benchmarks). */
export const processCertificateStats = { hits: 0 }
/** Certificates the process cache holds now (tests). */
export function processCertificateCount(): number {
  return processCertificates.size
}

const memberSets = new WeakMap<Membership, { list: readonly string[]; length: number; set: Set<string> }>()

/** The members of `membership` as a set, built once per membership object (and again if its list changed). */
function memberSet(membership: Membership): Set<string> {
  const known = memberSets.get(membership)
  if (known !== undefined && known.list === membership.members && known.length === membership.members.length) return known.set
  const set = new Set(membership.members)
  memberSets.set(membership, { list: membership.members, length: membership.members.length, set })
  return set
}

/** Certificates verified already, by (epoch, sender, round, hash), with the exact signatures checked. */
export class VerifiedCertificates {
  private readonly map = new Map<string, { round: number; signatures: SignatureEntry[] }>()
  private readonly limit: number
  constructor(limit: number) {
    this.limit = limit
  }
  private key(c: { epoch: number; sender: string; round: number; hash: Uint8Array }): string {
    return `${c.epoch}/${c.sender}/${c.round}/${toHex(c.hash)}`
  }
  has(c: Certificate): boolean {
    const known = this.map.get(this.key(c))
    return known !== undefined && sameSignatures(known.signatures, c.signatures)
  }
  add(c: Certificate): void {
    if (this.map.size >= this.limit) this.map.clear()
    this.map.set(this.key(c), { round: c.round, signatures: c.signatures })
  }
  /**
   * Forgets the certificates of rounds below `low`: the store refuses those rounds for good, so
   * their certificates are never checked again. (Kept up to the size limit instead, they were
   * n(2W + 1)·64 certificates per member — an in-process swarm's heap grew by ≈ 2 MB a round and
   * its rounds slowed down with it: 3.0 → 4.5–5 s over 40 rounds of paper-mnist-none.)
   */
  collect(low: number): void {
    for (const [k, v] of this.map) if (v.round < low) this.map.delete(k)
  }
  get size(): number {
    return this.map.size
  }
  clear(): void {
    this.map.clear()
  }
}
