import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import { test } from 'node:test'
import { defaultCrypto } from '@chainsafe/libp2p-noise/crypto'
import { Uint8ArrayList } from 'uint8arraylist'
import { noiseCrypto } from '../../../src/net/noise-crypto.ts'

const flat = (b: Uint8Array | { subarray(): Uint8Array }): Uint8Array => (b instanceof Uint8Array ? b : b.subarray())

test('noise ChaCha20-Poly1305 with cached keys is byte-identical to the default, both ways, flat and listed', () => {
  const k = randomBytes(32)
  const ad = randomBytes(32)
  for (const size of [0, 100, 1199, 1200, 4096, 65_519]) {
    const nonce = randomBytes(12)
    const plain = randomBytes(size)
    const ours = flat(noiseCrypto.chaCha20Poly1305Encrypt(plain, nonce, ad, k))
    const theirs = flat(defaultCrypto.chaCha20Poly1305Encrypt(plain, nonce, ad, k))
    assert.deepEqual(Buffer.from(ours), Buffer.from(theirs), `encrypt ${size}`)
    const listed = flat(noiseCrypto.chaCha20Poly1305Encrypt(new Uint8ArrayList(plain.subarray(0, size >> 1), plain.subarray(size >> 1)) as never, nonce, ad, k))
    assert.deepEqual(Buffer.from(listed), Buffer.from(theirs), `encrypt listed ${size}`)
    assert.deepEqual(Buffer.from(flat(noiseCrypto.chaCha20Poly1305Decrypt(Uint8Array.from(theirs), nonce, ad, k))), plain, `decrypt ${size}`)
    const split = new Uint8ArrayList(theirs.subarray(0, 7), theirs.subarray(7))
    assert.deepEqual(Buffer.from(flat(noiseCrypto.chaCha20Poly1305Decrypt(split as never, nonce, ad, k))), plain, `decrypt listed ${size}`)
  }
})

test('noise decryption with a cached key refuses a tampered frame and a key rewritten in place', () => {
  const k = randomBytes(32)
  const nonce = randomBytes(12)
  const plain = randomBytes(65_519)
  const sealed = Uint8Array.from(flat(noiseCrypto.chaCha20Poly1305Encrypt(plain, nonce, new Uint8Array(0), k)))
  sealed[5]! ^= 1
  assert.throws(() => noiseCrypto.chaCha20Poly1305Decrypt(sealed, nonce, new Uint8Array(0), k))
  sealed[5]! ^= 1
  k[0]! ^= 1 // the same array, other bytes: the cached key must not be used
  assert.throws(() => noiseCrypto.chaCha20Poly1305Decrypt(sealed, nonce, new Uint8Array(0), k))
  k[0]! ^= 1
  assert.deepEqual(Buffer.from(flat(noiseCrypto.chaCha20Poly1305Decrypt(sealed, nonce, new Uint8Array(0), k))), plain)
})
