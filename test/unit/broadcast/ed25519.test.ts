/**
 * The echo broadcast's Ed25519 verification (src/broadcast/ed25519.ts) takes what OpenSSL takes
 * on valid and randomly tampered signatures, and refuses — by its own checks, before OpenSSL is
 * asked — the edge cases on which OpenSSL builds differ: signatures under small-order keys and
 * with a small-order R, each built here so that RFC 8032's equation [S]B = R + [k]A holds
 * (checked with noble's arithmetic). OpenSSL 3.0.19 (Node 20) accepts them, 3.5.8 (Node 24.21)
 * refuses them; members must agree whatever their build.
 */
import assert from 'node:assert/strict'
import { createHash, createPublicKey, verify as nodeVerify, randomBytes } from 'node:crypto'
import { describe, it } from 'node:test'
import * as ed from '@noble/ed25519'
import { sha512 } from '@noble/hashes/sha2.js'
import { acceptableKey, refusedBeforeOpenSsl, SMALL_ORDER, smallOrderEncoding, verifyEd25519 } from '../../../src/broadcast/ed25519.ts'
import { Rng } from '../../../src/rng.ts'

ed.hashes.sha512 = sha512

const L = 2n ** 252n + 27742317777372353535851937790883648493n
const le = (b: Uint8Array): bigint => b.reduceRight((v, x) => (v << 8n) | BigInt(x), 0n)
const le32 = (y: bigint): Uint8Array => Uint8Array.from({ length: 32 }, (_, i) => Number((y >> BigInt(8 * i)) & 0xffn))
const cat = (...parts: Uint8Array[]): Uint8Array => Uint8Array.from(Buffer.concat(parts))

/** Plain OpenSSL, without the checks monna runs in front of it. */
function plainOpenSsl(pk: Uint8Array, msg: Uint8Array, sig: Uint8Array): boolean {
  try {
    const key = createPublicKey({ key: { kty: 'OKP', crv: 'Ed25519', x: Buffer.from(pk).toString('base64url') }, format: 'jwk' })
    return nodeVerify(null, msg, key, sig)
  } catch {
    return false
  }
}

/** k = SHA-512(R ‖ A ‖ M) mod L (RFC 8032). */
const challenge = (r: Uint8Array, a: Uint8Array, m: Uint8Array): bigint => le(createHash('sha512').update(cat(r, a, m)).digest()) % L

/** Whether [S]B = R + [k]A holds for the signature, without the cofactor (the equation OpenSSL checks). */
function equationHolds(pk: Uint8Array, msg: Uint8Array, sig: Uint8Array): boolean {
  const sb = times(ed.Point.BASE, le(sig.subarray(32)))
  return sb.equals(ed.Point.fromBytes(sig.subarray(0, 32), true).add(times(ed.Point.fromBytes(pk, true), challenge(sig.subarray(0, 32), pk, msg))))
}

/** [n]P for any n ≥ 0 (noble's multiply takes 1 ≤ n < L). */
const times = (p: ed.Point, n: bigint): ed.Point => (n % L === 0n ? ed.Point.ZERO : p.multiply(n % L))

/** A point of order 8 (from the first entry of SMALL_ORDER of that order). */
const T8 = ed.Point.fromBytes(SMALL_ORDER[2]!, false)

/** An edge case: the equation holds, monna refuses it, and by its own checks (whatever OpenSSL would say). */
function refusedEdgeCase(pk: Uint8Array, msg: Uint8Array, sig: Uint8Array): void {
  assert.ok(equationHolds(pk, msg, sig), 'the equation holds (else this case tests nothing)')
  assert.equal(verifyEd25519(pk, msg, sig), false)
  assert.ok(refusedBeforeOpenSsl(pk, sig))
}

describe('Ed25519 verification', () => {
  it('the small-order list is the 8-torsion: every multiple of an order-8 point, either sign; random keys are not in it', () => {
    assert.ok(T8.double().double().double().equals(ed.Point.ZERO) && !T8.double().double().equals(ed.Point.ZERO))
    for (let i = 0n; i < 8n; i++) {
      const e = times(T8, i).toBytes()
      assert.ok(smallOrderEncoding(e), `[${i}]T8`)
      const flipped = e.slice()
      flipped[31]! ^= 0x80
      assert.ok(smallOrderEncoding(flipped), `[${i}]T8, sign bit flipped`)
      assert.equal(acceptableKey(e), false)
    }
    // each canonical entry decodes to a point of small order
    for (const s of SMALL_ORDER) if (le(s) < 2n ** 255n - 19n) assert.ok(ed.Point.fromBytes(s, true).isSmallOrder())
    const rng = new Rng('ed25519-keys')
    for (let i = 0; i < 50; i++) {
      const pk = ed.getPublicKey(Uint8Array.from({ length: 32 }, () => rng.int(256)))
      assert.equal(smallOrderEncoding(pk), false)
      assert.ok(acceptableKey(pk))
      // a key with a torsion part (not of small order) is a key like any other
      const mixed = ed.Point.fromBytes(pk, false).add(T8).toBytes()
      assert.equal(smallOrderEncoding(mixed), false)
      assert.ok(acceptableKey(mixed))
    }
    // not canonical: y = P + 2 … (2^255 − 1) is refused whether or not it is a point
    assert.equal(acceptableKey(le32(2n ** 255n - 1n)), false)
  })

  it('agrees with plain OpenSSL and with noble on valid and randomly tampered signatures', () => {
    const rng = new Rng(process.env.TEST_SEED ?? 'ed25519-tamper')
    let accepted = 0
    for (let i = 0; i < 300; i++) {
      const seed = Uint8Array.from({ length: 32 }, () => rng.int(256))
      const pk = ed.getPublicKey(seed)
      const msg = Uint8Array.from({ length: 1 + rng.int(200) }, () => rng.int(256))
      const sig = ed.sign(msg, seed)
      const what = rng.int(4)
      const [p, m, s] = [pk.slice(), msg.slice(), sig.slice()]
      // 0: untouched; 1: a bit of the signature; 2: of the message; 3: of the key
      if (what === 1) s[rng.int(64)]! ^= 1 << rng.int(8)
      if (what === 2) m[rng.int(m.length)]! ^= 1 << rng.int(8)
      if (what === 3) p[rng.int(32)]! ^= 1 << rng.int(8)
      const plain = plainOpenSsl(p, m, s)
      assert.equal(verifyEd25519(p, m, s), plain, `case ${i} (${what})`)
      assert.equal(plain, what === 0 ? true : ed.verify(s, m, p, { zip215: false }), `case ${i} (${what}): noble`)
      if (plain) accepted++
    }
    assert.ok(accepted >= 60, `${accepted} accepted`)
  })

  it('refuses the identity key with R = identity, S = 0 (the equation holds for any message)', () => {
    const pk = le32(1n)
    const sig = cat(le32(1n), new Uint8Array(32))
    for (let i = 0; i < 5; i++) {
      const msg = randomBytes(40)
      refusedEdgeCase(pk, msg, sig)
    }
  })

  it('refuses signatures under a small-order key (the equation holding)', () => {
    // A = T8, R = [r]B − [j]T8, S = r: [S]B = R + [k]A holds when k ≡ j (mod 8)
    const pk = T8.toBytes()
    let built = 0
    for (let tries = 0; built < 4 && tries < 2000; tries++) {
      const msg = randomBytes(24)
      const nonce = le(randomBytes(32)) % L
      for (let j = 0n; j < 8n; j++) {
        const r = times(ed.Point.BASE, nonce).add(times(T8, 8n - j)).toBytes()
        if (challenge(r, pk, msg) % 8n !== j) continue
        refusedEdgeCase(pk, msg, cat(r, le32(nonce)))
        built++
        break
      }
    }
    assert.equal(built, 4)
  })

  it('refuses a small-order R under a key with a torsion part (the equation holding)', () => {
    // A = [a]B + T8; R = −[j]T8 and S = k·a: [S]B = R + [k]A holds when k ≡ j (mod 8)
    const a = le(randomBytes(32)) % L
    const pk = times(ed.Point.BASE, a).add(T8).toBytes()
    let built = 0
    for (let tries = 0; built < 4 && tries < 2000; tries++) {
      const msg = randomBytes(24)
      for (let j = 0n; j < 8n; j++) {
        const r = times(T8, 8n - j).toBytes()
        const k = challenge(r, pk, msg)
        if (k % 8n !== j) continue
        refusedEdgeCase(pk, msg, cat(r, le32((k * a) % L)))
        built++
        break
      }
    }
    assert.equal(built, 4)
    // a signature made as an honest signer makes them (R = [r]B, S = r + k·a) holds without the
    // cofactor only when k ≡ 0 (mod 8): the key itself is not refused, and the verdict is the equation's
    for (let i = 0; i < 16; i++) {
      const msg = randomBytes(24)
      const nonce = le(randomBytes(32)) % L
      const r = times(ed.Point.BASE, nonce).toBytes()
      const k = challenge(r, pk, msg)
      const sig = cat(r, le32((nonce + k * a) % L))
      assert.equal(equationHolds(pk, msg, sig), k % 8n === 0n)
      assert.equal(refusedBeforeOpenSsl(pk, sig), false)
      assert.deepEqual([verifyEd25519(pk, msg, sig), plainOpenSsl(pk, msg, sig)], [k % 8n === 0n, k % 8n === 0n])
    }
  })

  it('refuses a non-canonical S (S + L), as plain OpenSSL does', () => {
    const seed = randomBytes(32)
    const pk = ed.getPublicKey(seed)
    const msg = randomBytes(30)
    const sig = ed.sign(msg, seed)
    const high = cat(sig.subarray(0, 32), le32(le(sig.subarray(32)) + L))
    assert.ok(verifyEd25519(pk, msg, sig))
    assert.deepEqual([verifyEd25519(pk, msg, high), plainOpenSsl(pk, msg, high)], [false, false])
  })

  it('refuses wrong lengths', () => {
    const seed = randomBytes(32)
    const pk = ed.getPublicKey(seed)
    const msg = randomBytes(30)
    const sig = ed.sign(msg, seed)
    assert.equal(verifyEd25519(pk, msg, sig.subarray(0, 63)), false)
    assert.equal(verifyEd25519(pk.subarray(0, 31), msg, sig), false)
  })
})
