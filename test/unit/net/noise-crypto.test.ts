import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import { test } from 'node:test'
import { defaultCrypto } from '@chainsafe/libp2p-noise/crypto'
import { Uint8ArrayList } from 'uint8arraylist'
import { fastMessageId } from '../../../src/net/node.ts'
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

test('gossipsub fast message id: equal for equal messages, different when any field differs', () => {
  const m = { from: randomBytes(38), seqno: randomBytes(8), signature: randomBytes(64), key: undefined, data: randomBytes(2000), topic: '/monna/x/final/2' }
  assert.equal(fastMessageId(m), fastMessageId({ ...m, data: Uint8Array.from(m.data) }))
  for (const other of [
    { ...m, data: randomBytes(2000) },
    { ...m, signature: randomBytes(64) },
    { ...m, seqno: randomBytes(8) },
    { ...m, from: randomBytes(38) },
    { ...m, topic: '/monna/x/final/3' },
    { ...m, key: new Uint8Array(0) },
    // moving bytes between fields changes the id (fields are length-prefixed)
    { ...m, from: m.from.subarray(0, 37), seqno: Buffer.concat([m.from.subarray(37), m.seqno]) },
  ]) {
    assert.notEqual(fastMessageId(other), fastMessageId(m))
  }
})
