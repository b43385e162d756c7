/**
 * Ed25519 verification of echo-broadcast signatures: Node's OpenSSL, behind the checks that make
 * every member accept the same signatures whatever OpenSSL its Node links.
 *
 * Why they must agree: a member forwards a certified FINAL on gossip only after checking it, and
 * a receiver that finds a bad signature in one bans the forwarder (finals.ts: `bad-signature` is
 * conclusive). OpenSSL builds differ on signatures that hold RFC 8032's equation
 * [S]B = R + [k]A only through points of small order: OpenSSL 3.0.19 (Node 20) accepts a
 * small-order public key and a small-order R, OpenSSL 3.5.8 (Node 24.21) refuses both
 * (test/unit/broadcast/ed25519.test.ts builds such signatures). A Byzantine member whose key
 * has a torsion part could then sign echoes that members on one Node take and members on
 * another ban them for forwarding. So before OpenSSL checks the equation (unbatched, without the
 * cofactor, R compared byte for byte, S < L), the signature is refused here when (i) the public
 * key is not a canonical encoding of a curve point or is of small order, or (ii) R is of small
 * order — libsodium's rules, with its list of small-order encodings (`SMALL_ORDER`, sign bit
 * ignored). No honest signature is refused by them: an honest key is a multiple of B, never of
 * small order, and so is an honest R.
 */
import { createPublicKey, type KeyObject, verify as nodeVerify } from 'node:crypto'
import * as ed from '@noble/ed25519'

const P = 2n ** 255n - 19n
/** y of one pair of order-8 points (the other pair's is P − this) */
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

/** Whether `pk` may sign: a canonical encoding of a curve point, not of small order. */
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

/** OpenSSL's key to check the signature with, or null when the checks in front of it refuse it. */
function keyFor(pk: Uint8Array, signature: Uint8Array): KeyObject | null {
  if (signature.length !== 64 || smallOrderEncoding(signature.subarray(0, 32))) return null
  return openSslKey(pk)
}

/** Whether the checks in front of OpenSSL refuse the signature (a key `acceptableKey` refuses, or an R of small order). */
export function refusedBeforeOpenSsl(pk: Uint8Array, signature: Uint8Array): boolean {
  return keyFor(pk, signature) === null
}

/**
 * OpenSSL's key objects by public-key array: `publicKeyOf` (crypto.ts) hands out one array per
 * signer, so a signer's key is decoded and checked once, and goes with its array.
 */
const openSslKeys = new WeakMap<Uint8Array, KeyObject | null>()

/** OpenSSL's key object for `pk`, cached; null for a key `acceptableKey` refuses (or OpenSSL does). */
function openSslKey(pk: Uint8Array): KeyObject | null {
  let ko = openSslKeys.get(pk)
  if (ko !== undefined) return ko
  ko = null
  if (acceptableKey(pk)) {
    try {
      ko = createPublicKey({ key: { kty: 'OKP', crv: 'Ed25519', x: Buffer.from(pk.buffer, pk.byteOffset, pk.byteLength).toString('base64url') }, format: 'jwk' })
    } catch {
      ko = null
    }
  }
  openSslKeys.set(pk, ko)
  return ko
}

/** Ed25519 verification: the checks above, then Node's OpenSSL. `pk` is read once and cached by identity: never written afterwards. */
export function verifyEd25519(pk: Uint8Array, msg: Uint8Array, signature: Uint8Array): boolean {
  const ko = keyFor(pk, signature)
  if (ko === null) return false
  try {
    return nodeVerify(null, msg, ko, signature)
  } catch {
    return false
  }
}
