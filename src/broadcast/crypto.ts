/**
 * What members sign, and with what. Signatures are Ed25519 (@noble/ed25519) with the member's
 * libp2p identity key, so a signer id is its PeerId string and its public key is inside it.
 * We sign 32-byte hashes of payloads, never payloads.
 *
 * Signed statement (domain-separated, versioned):
 *   "monna/echo-broadcast/v2" 0x00 | kind ("SEND" | "ECHO") | u8 len swarmId | swarmId
 *   | u32 epoch | u32 round | u8 len sender | sender | hash (32 bytes)
 *
 * The membership epoch is signed: an echo for round r under epoch e never counts towards a
 * certificate checked against another epoch's members and quorum.
 */
import { createHash, createPrivateKey, type KeyObject, sign as nodeSign } from 'node:crypto'
import type { PrivateKey } from '@libp2p/interface'
import { peerIdFromString } from '@libp2p/peer-id'
import * as ed from '@noble/ed25519'
import { sha512 } from '@noble/hashes/sha2.js'
import { verifyEd25519 } from './ed25519.ts'
import { smallBytes, smallCopy } from './small-bytes.ts'
import { type Instance, putU32, utf8 } from './wire.ts'

ed.hashes.sha512 = sha512

const DOMAIN = new TextEncoder().encode('monna/echo-broadcast/v2\0')

export type StatementKind = 'SEND' | 'ECHO'

export function statement(kind: StatementKind, i: Instance, hash: Uint8Array): Uint8Array {
  const swarm = utf8(i.swarmId)
  const sender = utf8(i.sender)
  const k = utf8(kind)
  const out = smallBytes(DOMAIN.length + k.length + 1 + swarm.length + 8 + 1 + sender.length + hash.length)
  let o = 0
  out.set(DOMAIN, o)
  o += DOMAIN.length
  out.set(k, o)
  o += k.length
  out[o++] = swarm.length
  out.set(swarm, o)
  o += swarm.length
  putU32(out, o, i.epoch)
  o += 4
  putU32(out, o, i.round)
  o += 4
  out[o++] = sender.length
  out.set(sender, o)
  o += sender.length
  out.set(hash, o)
  return out
}

/**
 * SHA-256 of a payload. This is the same function as @noble/hashes' sha256 (a unit test checks
 * they agree); we call Node's native one because it is ≈11× faster on this project's machine
 * (1.7 MB: 4.1 ms vs 46 ms, measured 2026-11-27) and every member hashes n payloads per round.
 */
export function hashPayload(payload: Uint8Array): Uint8Array {
  const t0 = performance.now()
  const h = smallCopy(createHash('sha256').update(payload).digest())
  hashStats.ms += performance.now() - t0
  return h
}

/** Milliseconds this process spent hashing payloads (benchmarks). */
export const hashStats = { ms: 0 }

/** The 32-byte Ed25519 seed of a libp2p Ed25519 private key (its `raw` is seed ‖ public key). */
export function signingSeed(key: PrivateKey): Uint8Array {
  if (key.type !== 'Ed25519') throw new TypeError('the echo broadcast needs an Ed25519 identity key')
  return key.raw.subarray(0, 32)
}

/** OpenSSL private keys by seed array (a broadcast keeps its seed for its lifetime) */
const signingKeys = new WeakMap<Uint8Array, { seed: Uint8Array; key: KeyObject }>()
const PKCS8_ED25519 = Buffer.from('302e020100300506032b657004220420', 'hex')

/**
 * Ed25519 signature of `msg` by `seed`. Ed25519 is deterministic (RFC 8032): OpenSSL's signature
 * is byte for byte noble's (a unit test checks), ≈ 20× faster — each member signs an echo for
 * every SEND it receives (n − 1 per round).
 */
export function sign(seed: Uint8Array, msg: Uint8Array): Uint8Array {
  let k = signingKeys.get(seed)
  if (k === undefined || !bytesEqual(k.seed, seed)) {
    k = { seed: Uint8Array.from(seed), key: createPrivateKey({ key: Buffer.concat([PKCS8_ED25519, seed]), format: 'der', type: 'pkcs8' }) }
    signingKeys.set(seed, k)
  }
  return new Uint8Array(nodeSign(null, msg, k.key))
}

/** noble's own `sign` (reference for tests). */
export function signReference(seed: Uint8Array, msg: Uint8Array): Uint8Array {
  return ed.sign(msg, seed)
}

const publicKeys = new Map<string, Uint8Array | null>()

/** Raw 32-byte Ed25519 public key inside an Ed25519 PeerId string; null if it is not one. */
export function publicKeyOf(peer: string): Uint8Array | null {
  let pk = publicKeys.get(peer)
  if (pk !== undefined) return pk
  try {
    const id = peerIdFromString(peer)
    pk = id.type === 'Ed25519' && id.publicKey !== undefined ? id.publicKey.raw : null
  } catch {
    pk = null
  }
  if (publicKeys.size > 10_000) publicKeys.clear()
  publicKeys.set(peer, pk)
  return pk
}

/**
 * Ed25519 verification of `signer`'s signature by Node's OpenSSL (RFC 8032: canonical S < L,
 * strict point decoding), behind the checks that make members on any OpenSSL build accept the
 * same signatures (ed25519.ts: no small-order key or R). OpenSSL's is ≈ 30× faster than noble's
 * (0.58 ms vs 17 ms per verification, measured 2026-11-27 on this project's 2-core machine under
 * load); verification is the hot path (a member checks n certificates of Q signatures every
 * round). Unit tests check it agrees with noble's `verify` on valid and tampered signatures.
 */
export function verify(signer: string, msg: Uint8Array, signature: Uint8Array): boolean {
  if (signature.length !== 64) return false
  // the result of a verification is a function of these exact bytes: members of one process
  // (an in-process swarm) verify each certificate once between them, not once each. Looked up
  // by the signature, then the signer and the statement compared (a key built of all three
  // bytes was ≈ 3 % of an in-process round's CPU)
  const key = Buffer.from(signature.buffer, signature.byteOffset, signature.byteLength).toString('base64')
  const known = verified.get(key)
  if (known !== undefined && known.signer === signer && bytesEqual(known.msg, msg)) {
    verifyCacheStats.hits++
    return known.ok
  }
  const pk = publicKeyOf(signer)
  let ok = false
  if (pk !== null) {
    const t0 = performance.now()
    ok = verifyEd25519(pk, msg, signature)
    verifyCacheStats.ms += performance.now() - t0
  }
  verifyCacheStats.misses++
  if (verified.size >= verifyCacheLimit()) verified.clear()
  verified.set(key, { signer, msg: msg.slice(), ok })
  return ok
}

/**
 * Verifications kept, by signature, with the signer and statement they were for: ≈ 400 bytes each
 * (V8 heap and array buffers), ≈ 26 MB when full. The cache is for members of one process, which
 * check the same certificates; a member alone in its process checks each signature once (0 hits
 * in ≈ 200 verifications per member of an 8-process `bench:round`, and none in the certificate
 * cache either, docs/memory.md). There it keeps a few (`verifyCacheFor('member')`), or a long
 * run's member would carry ≈ 32 MB of verifications nobody asks for again (≈ 400 a round at
 * n = 26: full after ≈ 160 rounds).
 */
const VERIFY_CACHE_SHARED = 65_536
const VERIFY_CACHE_MEMBER = 1_024
/** `unset` until a swarm node says what this process runs: the shared sizes, as before */
let checkCaches: 'unset' | 'shared' | 'member' = 'unset'
const verified = new Map<string, { signer: string; msg: Uint8Array; ok: boolean }>()

/**
 * Sizes this process's caches of checks (verifications here, certificates in certificate.ts):
 * `shared` (members of one process, on the memory transport) keeps them large and stays so for the
 * process; `member` (a member over TCP) keeps them small unless a shared swarm asked for more.
 */
export function verifyCacheFor(use: 'shared' | 'member'): void {
  if (checkCaches !== 'shared') checkCaches = use
  if (verified.size > verifyCacheLimit()) verified.clear()
}

/** Whether this process's caches of checks are sized for a member alone (`verifyCacheFor('member')`). */
export function checksForOneMember(): boolean {
  return checkCaches === 'member'
}

function verifyCacheLimit(): number {
  return checksForOneMember() ? VERIFY_CACHE_MEMBER : VERIFY_CACHE_SHARED
}

/** Verifications the cache holds now, and how many it may hold (tests). */
export function verifyCacheSize(): { size: number; limit: number } {
  return { size: verified.size, limit: verifyCacheLimit() }
}
/** Cache hits and misses of `verify` in this process, and the milliseconds the verifications run took (benchmarks, in-process reports). */
export const verifyCacheStats = { hits: 0, misses: 0, ms: 0 }

/** noble's own `verify` (reference for tests). */
export function verifyReference(signer: string, msg: Uint8Array, signature: Uint8Array): boolean {
  const pk = publicKeyOf(signer)
  if (pk === null || signature.length !== 64) return false
  try {
    return ed.verify(signature, msg, pk)
  } catch {
    return false
  }
}

export function toHex(b: Uint8Array): string {
  return Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString('hex')
}

export function bytesEqual(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false
  if (a === b) return true
  // payloads (megabytes): memcmp, ≈ 50× the JS loop; short arrays (hashes, signatures): the loop
  if (a.length > 256) return Buffer.compare(asBuffer(a), asBuffer(b)) === 0
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false
  return true
}

function asBuffer(b: Uint8Array): Buffer {
  return Buffer.from(b.buffer, b.byteOffset, b.byteLength)
}

/**
 * Payloads whose SHA-256 was checked in this process, by that hash (hex). Members of one process
 * (an in-process swarm) each receive their own copy of every payload — n − 1 copies of 1.7 MB
 * per sender and round at n = 26, held for about three rounds. Identical bytes hash alike, so
 * a copy equal to a checked payload needs no hash of its own (a comparison is ≈ 20× cheaper
 * than SHA-256), and every member keeps that one object instead of its own copy.
 */
const checkedPayloads = new Map<string, WeakRef<Uint8Array>>()
const forgetPayload = new FinalizationRegistry<string>((key) => {
  if (checkedPayloads.get(key)?.deref() === undefined) checkedPayloads.delete(key)
})
/**
 * `checkedPayload` calls answered by an identical payload already checked / by hashing;
 * `knownPayload` answers from views of the checked bytes / by comparing copies (benchmarks)
 */
export const payloadCacheStats = { hits: 0, misses: 0, views: 0, compared: 0 }

/**
 * The payload already checked under `hash` when `parts` (in order, `length` bytes in all) hold
 * exactly its bytes — compared in place, so a member reading a copy off its stream need not
 * join the pieces into a payload of its own; undefined otherwise (then the caller joins them
 * and checks the result as usual).
 */
export function knownPayload(parts: Iterable<Uint8Array>, length: number, hash: Uint8Array): Uint8Array | undefined {
  const known = checkedPayloads.get(toHex(hash))?.deref()
  if (known === undefined || known.byteLength !== length) return undefined
  const whole = asBuffer(known)
  let o = 0
  let compared = false
  for (const part of parts) {
    if (o + part.byteLength > length) return undefined
    // a view of the checked bytes themselves, at their own place: the same bytes, nothing to
    // compare (the memory transport hands a receiver views of the sender's payload)
    if (part.buffer !== known.buffer || part.byteOffset !== known.byteOffset + o) {
      if (whole.compare(asBuffer(part), 0, part.byteLength, o, o + part.byteLength) !== 0) return undefined
      compared = true
    }
    o += part.byteLength
  }
  if (o !== length) return undefined
  if (compared) payloadCacheStats.compared++
  else payloadCacheStats.views++
  return known
}

/**
 * Our own payload, about to be broadcast under `hash`: a copy made here and hashed here, which
 * nothing writes afterwards (the caller keeps its array; receivers are handed this one, to be
 * read only) — so it is known to hash to `hash` and becomes the process's checked payload of
 * that hash. Members of one process then receive views of these very bytes (the memory
 * transport does not copy), which `knownPayload` recognises without comparing, hashing or
 * joining them. Returns the copy and its hash. `copy: false`: the caller hands `payload` over
 * (it never writes it afterwards) and it is used as it is.
 */
export function ownPayload(payload: Uint8Array, opts: { copy?: boolean } = {}): { payload: Uint8Array; hash: Uint8Array } {
  const copy = opts.copy === false ? payload : Uint8Array.from(payload)
  const hash = hashPayload(copy)
  const key = toHex(hash)
  const known = checkedPayloads.get(key)?.deref()
  if (known !== undefined && bytesEqual(known, copy)) return { payload: known, hash }
  checkedPayloads.set(key, new WeakRef(copy))
  forgetPayload.register(copy, key)
  return { payload: copy, hash }
}

/**
 * `payload` if it hashes to `hash`, or an identical payload that did (the one other members of
 * this process hold); undefined when it does not. The result must only be read.
 */
export function checkedPayload(payload: Uint8Array, hash: Uint8Array): Uint8Array | undefined {
  const key = toHex(hash)
  const known = checkedPayloads.get(key)?.deref()
  if (known !== undefined && bytesEqual(known, payload)) {
    payloadCacheStats.hits++
    return known
  }
  payloadCacheStats.misses++
  if (!bytesEqual(hashPayload(payload), hash)) return undefined
  if (known === undefined) {
    checkedPayloads.set(key, new WeakRef(payload))
    forgetPayload.register(payload, key)
  }
  return payload
}

export function fromHex(s: string): Uint8Array {
  return new Uint8Array(Buffer.from(s, 'hex'))
}
