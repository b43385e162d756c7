/**
 * Ed25519 verification of echo-broadcast signatures: libsodium's (through sodium-native's
 * prebuilt addon), or — where that addon does not load, or with `MONNA_SODIUM=off` — Node's
 * OpenSSL after the same extra checks, so that both accept exactly the same signatures.
 *
 * Why libsodium: a member of the 26-process reference swarm checks ≈ 400 signatures a round
 * (n certificates of Q = 16), ≈ 10 % of its CPU on OpenSSL (docs/scale.md); libsodium's
 * verification takes half as long on this project's machine (`npm run bench:certificates`).
 *
 * Why the same acceptance matters: a member forwards a certified FINAL on gossip only after
 * checking it, and a receiver that finds a bad signature in one bans the forwarder (finals.ts).
 * Members that disagree on an edge-case signature would ban each other. Both backends check
 * RFC 8032's equation [S]B = R + [k]A unbatched, without the cofactor, and compare R byte for
 * byte; libsodium also refuses (i) a public key that is not canonically encoded or is of small
 * order and (ii) an R of small order, with the encodings listed in `SMALL_ORDER`, sign bit
 * ignored. Those refusals are added in front of OpenSSL here. No honest signature is refused
 * by them: an honest key is a multiple of B, never of small order, and so is an honest R.
 */
import { createPublicKey, type KeyObject, verify as nodeVerify } from 'node:crypto'
import { createRequire } from 'node:module'
import * as ed from '@noble/ed25519'

interface Sodium {
  crypto_sign_verify_detached(signature: Uint8Array, message: Uint8Array, publicKey: Uint8Array): boolean
}

function loadSodium(): Sodium | null {
  if (process.env.MONNA_SODIUM === 'off') return null
  try {
    const s = createRequire(import.meta.url)('sodium-native') as Partial<Sodium>
    return typeof s.crypto_sign_verify_detached === 'function' ? (s as Sodium) : null
  } catch {
    return null
  }
}

const sodium = loadSodium()

/** Which implementation `verifyEd25519` runs in this process. */
export const ed25519Backend: 'libsodium' | 'openssl' = sodium === null ? 'openssl' : 'libsodium'

const P = 2n ** 255n - 19n
/** y of the two order-8 points' pairs (the other is P − this) */
const Y8 = 2707385501144840649318225287225658788936804267575313519463743609750303402022n

function le32(y: bigint): Uint8Array {
  const b = new Uint8Array(32)
  for (let i = 0, v = y; i < 32; i++, v >>= 8n) b[i] = Number(v & 0xffn)
  return b
}

/**
 * The encodings of the points of small order (the 8-torsion): every y they have (1: the
 * identity; P − 1: order 2; 0: order 4; Y8 and P − Y8: order 8) and the two non-canonical ones
 * below 2^255 (P: 0, P + 1: 1). Compared with the sign bit ignored, which covers both x of each.
 */
export const SMALL_ORDER: readonly Uint8Array[] = [0n, 1n, Y8, P - Y8, P - 1n, P, P + 1n].map(le32)

/** Whether the 32 bytes encode a point of small order (any sign bit, canonical or not). */
export function smallOrderEncoding(b: Uint8Array): boolean {
  return SMALL_ORDER.some((s) => {
    for (let i = 0; i < 31; i++) if (b[i] !== s[i]) return false
    return (b[31]! & 0x7f) === s[31]
  })
}

/** Whether libsodium takes `pk` as a public key: a canonical encoding of a curve point, not of small order. */
export function acceptableKey(pk: Uint8Array): boolean {
  if (pk.length !== 32 || smallOrderEncoding(pk)) return false
  try {
    // strict (RFC 8032) decoding: y < P, on the curve, no x = 0 with the sign bit set
    ed.Point.fromBytes(pk, false)
    return true
  } catch {
    return false
  }
}

const openSslKeys = new Map<string, KeyObject | null>()

/** OpenSSL's key object for `pk`; null for a key `acceptableKey` refuses (or OpenSSL does). */
function openSslKey(pk: Uint8Array): KeyObject | null {
  const id = Buffer.from(pk.buffer, pk.byteOffset, pk.byteLength).toString('base64url')
  let ko = openSslKeys.get(id)
  if (ko !== undefined) return ko
  ko = null
  if (acceptableKey(pk)) {
    try {
      ko = createPublicKey({ key: { kty: 'OKP', crv: 'Ed25519', x: id }, format: 'jwk' })
    } catch {
      ko = null
    }
  }
  if (openSslKeys.size > 4096) openSslKeys.clear()
  openSslKeys.set(id, ko)
  return ko
}

/** libsodium's `crypto_sign_verify_detached`; throws where its addon does not load. */
export function verifySodium(pk: Uint8Array, msg: Uint8Array, signature: Uint8Array): boolean {
  if (sodium === null) throw new Error('sodium-native is not loaded in this process')
  if (pk.length !== 32 || signature.length !== 64) return false
  return sodium.crypto_sign_verify_detached(signature, msg, pk)
}

/** OpenSSL's verification behind libsodium's refusals (an acceptable key, an R not of small order). */
export function verifyOpenSsl(pk: Uint8Array, msg: Uint8Array, signature: Uint8Array): boolean {
  if (signature.length !== 64 || smallOrderEncoding(signature.subarray(0, 32))) return false
  const ko = openSslKey(pk)
  if (ko === null) return false
  try {
    return nodeVerify(null, msg, ko, signature)
  } catch {
    return false
  }
}

/** Ed25519 verification by this process's backend (`ed25519Backend`); both accept the same signatures. */
export const verifyEd25519: (pk: Uint8Array, msg: Uint8Array, signature: Uint8Array) => boolean = sodium === null ? verifyOpenSsl : verifySodium
