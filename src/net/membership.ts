/**
 * Swarm membership: a named set of members (libp2p PeerId strings of Ed25519 keys) and the
 * fault bound f. The signed echo broadcast needs n ≥ 3f + 1 (Cachin, Guerraoui, Rodrigues,
 * "Signed Echo Broadcast"); MoNNA's convergence argument wants a smaller fraction, so we warn
 * above f/n = 1/5 (ALGORITHMS §1: the authors ran f/n ≈ 0.19).
 */
import { peerIdFromString } from '@libp2p/peer-id'
import { InvalidConfigError } from '../errors.ts'
import type { Logger } from '../logger.ts'

export interface Membership {
  swarmId: string
  /** PeerId strings (Ed25519 identities), no duplicates. */
  members: string[]
  /** Declared upper bound on Byzantine members. */
  f: number
}

/** Largest swarm id we accept (it travels in every frame and topic name). */
export const MAX_SWARM_ID_BYTES = 64

/** Fraction of Byzantine members above which we warn (MoNNA's analysis; ALGORITHMS §1). */
export const WARN_FAULT_FRACTION = 1 / 5

/** Q = ⌊(n + f)/2⌋ + 1: any two quorums intersect in more than f members (so in an honest one). */
export function quorum(n: number, f: number): number {
  return Math.floor((n + f) / 2) + 1
}

const SWARM_ID = /^[A-Za-z0-9._-]+$/

/**
 * Throws InvalidConfigError when the membership cannot run the broadcast (n < 3f + 1, bad or
 * duplicate PeerIds, non-Ed25519 identities, bad swarm id); warns through `logger` when f/n > 1/5.
 */
export function validateMembership(m: Membership, logger?: Logger): void {
  if (typeof m !== 'object' || m === null) throw new InvalidConfigError('membership', 'must be an object { swarmId, members, f }')
  if (typeof m.swarmId !== 'string' || m.swarmId.length === 0 || !SWARM_ID.test(m.swarmId)) {
    throw new InvalidConfigError('membership.swarmId', 'must be a non-empty string of letters, digits, ".", "_" or "-"')
  }
  if (new TextEncoder().encode(m.swarmId).length > MAX_SWARM_ID_BYTES) {
    throw new InvalidConfigError('membership.swarmId', `must be at most ${MAX_SWARM_ID_BYTES} bytes`)
  }
  if (!Number.isInteger(m.f) || m.f < 0) throw new InvalidConfigError('membership.f', `must be an integer ≥ 0, got ${m.f}`)
  if (!Array.isArray(m.members) || m.members.length === 0) throw new InvalidConfigError('membership.members', 'must be a non-empty list of PeerIds')
  const seen = new Set<string>()
  m.members.forEach((id, i) => {
    const path = `membership.members[${i}]`
    if (typeof id !== 'string') throw new InvalidConfigError(path, 'must be a PeerId string')
    if (seen.has(id)) throw new InvalidConfigError(path, `duplicate member ${id}`)
    seen.add(id)
    let type: string
    try {
      type = peerIdFromString(id).type
    } catch (err) {
      throw new InvalidConfigError(path, `${JSON.stringify(id)} is not a PeerId`, { cause: err })
    }
    if (type !== 'Ed25519') throw new InvalidConfigError(path, `${id} is a ${type} PeerId; members must have Ed25519 identities`)
  })
  const n = m.members.length
  if (n < 3 * m.f + 1) {
    throw new InvalidConfigError(
      'membership.f',
      `n = ${n} members tolerate at most f = ${Math.floor((n - 1) / 3)} (need n ≥ 3f + 1 for the signed echo broadcast); lower f or add members`,
    )
  }
  // once per swarm, n and f in a process: the member, its libp2p node and its broadcast all
  // check the membership they are given (and an in-process swarm has n members)
  const key = `${m.swarmId}|${n}|${m.f}`
  if (m.f / n > WARN_FAULT_FRACTION && logger !== undefined && !warnedFaultFraction.has(key)) {
    if (warnedFaultFraction.size >= 1024) warnedFaultFraction.clear()
    warnedFaultFraction.add(key)
    logger.warn('f/n is above 1/5: the broadcast is safe (n ≥ 3f+1) but MoNNA convergence needs a smaller Byzantine fraction', {
      n,
      f: m.f,
      fraction: m.f / n,
    })
  }
}

const warnedFaultFraction = new Set<string>()

/** All pubsub topics of a swarm start with this prefix, so two swarms never mix. */
export function swarmTopicPrefix(swarmId: string): string {
  return `/monna/${swarmId}/`
}

/** A topic namespaced by swarm: `/monna/<swarmId>/<name>/<version>`. */
export function swarmTopic(swarmId: string, name: string, version = 1): string {
  return `${swarmTopicPrefix(swarmId)}${name}/${version}`
}

/** A stream protocol id namespaced by swarm: `/monna/<swarmId>/<name>/<version>`. */
export function swarmProtocol(swarmId: string, name: string, version = '1.0.0'): string {
  return `/monna/${swarmId}/${name}/${version}`
}
