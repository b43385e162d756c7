import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import { test } from 'node:test'
import { defaultCrypto } from '@chainsafe/libp2p-noise/crypto'
import { Uint8ArrayList } from 'uint8arraylist'
import { nativeChacha } from '../../../src/compute/native.ts'
import { fastMessageId } from '../../../src/net/node.ts'
import { IN_PLACE, noiseCrypto, noiseCryptoStats, sealingInto, sealsInto } from '../../../src/net/noise-crypto.ts'

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

test("short noise messages (< 1,200 bytes) are encrypted by the addon when it is there: the default's bytes, a fresh buffer each", () => {
  const k = randomBytes(32)
  const rng = lcg(11)
  const before = noiseCryptoStats.sealedShort
  const outs: Uint8Array[] = []
  for (let i = 0; i < 200; i++) {
    const size = i < 3 ? [0, 1, 1199][i]! : Math.floor(rng() * 1200)
    const nonce = randomBytes(12)
    const ad = randomBytes(Math.floor(rng() * 3) * 16)
    const plain = randomBytes(size)
    const theirs = flat(defaultCrypto.chaCha20Poly1305Encrypt(plain, nonce, ad, k))
    const ours = flat(noiseCrypto.chaCha20Poly1305Encrypt(cut(plain, rng).list as never, nonce, ad, k))
    assert.deepEqual(Buffer.from(ours), Buffer.from(theirs), `short ${size}`)
    outs.push(ours)
  }
  assert.equal(new Set(outs.map((o) => o.buffer)).size, outs.length, 'no two messages share a buffer')
  assert.equal(noiseCryptoStats.sealedShort - before, process.env.MONNA_NATIVE === 'off' ? 0 : 200)
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

/** `bytes` cut at random points into a list of views of one copy of them (as socket reads hold a message). */
/** A small seeded generator of numbers in [0, 1). */
function lcg(seed: number): () => number {
  return () => {
    seed = (seed * 1_103_515_245 + 12_345) % 2_147_483_648
    return seed / 2_147_483_648
  }
}

function assertAddon(): void {
  assert.ok(nativeChacha() !== undefined, 'the native addon with OpenSSL ChaCha20-Poly1305 is not available: run npm run build:native (or MONNA_NATIVE=off)')
}

function cut(bytes: Uint8Array, rng: () => number): { list: Uint8ArrayList; copy: Uint8Array } {
  const copy = Uint8Array.from(bytes)
  const list = new Uint8ArrayList()
  for (let at = 0; at < copy.byteLength; ) {
    const next = Math.min(copy.byteLength, at + 1 + Math.floor(rng() * (rng() < 0.5 ? 40 : 70_000)))
    list.append(copy.subarray(at, next))
    at = next
  }
  return { list, copy }
}

test('noise decryption in place (IN_PLACE): the plaintext over the ciphertext, flat and cut at random points (tag included), tampering refused', () => {
  // the addon is built by npm install (CI included); MONNA_NATIVE=off runs the suite without it, and then IN_PLACE must change nothing
  if (process.env.MONNA_NATIVE === 'off') {
    assert.equal(nativeChacha(), undefined)
    const k = randomBytes(32)
    const nonce = randomBytes(12)
    const plain = randomBytes(65_519)
    const sealed = Uint8Array.from(flat(defaultCrypto.chaCha20Poly1305Encrypt(plain, nonce, new Uint8Array(0), k)))
    const out = flat(noiseCrypto.chaCha20Poly1305Decrypt(sealed, nonce, new Uint8Array(0), k, IN_PLACE))
    assert.deepEqual(Buffer.from(out), plain)
    assert.notEqual(out.buffer, sealed.buffer, 'without the addon, a fresh buffer')
    return
  }
  assertAddon()
  const rng = lcg(7)
  const k = randomBytes(32)
  const before = noiseCryptoStats.inPlace
  let inPlace = 0
  for (let i = 0; i < 60; i++) {
    // short messages too (< 1,200 bytes: certificates, echoes, gossip), which the addon also opens in place
    const size = i < 8 ? [0, 1, 500, 1199, 1200, 1201, 65_519, 4096][i]! : i % 3 === 0 ? Math.floor(rng() * 1200) : Math.floor(rng() * 65_520)
    const nonce = randomBytes(12)
    const ad = randomBytes(Math.floor(rng() * 3) * 16)
    const plain = randomBytes(size)
    const sealed = flat(defaultCrypto.chaCha20Poly1305Encrypt(plain, nonce, ad, k))
    // flat: the plaintext is a view of the ciphertext's own bytes
    const one = Uint8Array.from(sealed)
    const out = noiseCrypto.chaCha20Poly1305Decrypt(one, nonce, ad, k, IN_PLACE)
    assert.ok(out instanceof Uint8Array && out.buffer === one.buffer && out.byteOffset === one.byteOffset, `flat ${size}: decrypted in place`)
    assert.deepEqual(Buffer.from(out), plain, `flat ${size}`)
    assert.deepEqual(Buffer.from(one.subarray(size)), Buffer.from(sealed.subarray(size)), `flat ${size}: the tag untouched`)
    // cut into pieces: each piece's bytes decrypted where they are
    const { list, copy } = cut(sealed, rng)
    const listed = noiseCrypto.chaCha20Poly1305Decrypt(list as never, nonce, ad, k, IN_PLACE)
    assert.deepEqual(Buffer.from(flat(listed)), plain, `listed ${size} in ${list.length} pieces`)
    assert.deepEqual(Buffer.from(copy.subarray(0, size)), plain, `listed ${size}: in place`)
    inPlace += 2
    // one bit flipped anywhere (body, tag) or the wrong additional data: refused, like Node's cipher
    const bad = Uint8Array.from(sealed)
    bad[Math.floor(rng() * bad.byteLength)]! ^= 1 << Math.floor(rng() * 8)
    assert.throws(() => noiseCrypto.chaCha20Poly1305Decrypt(bad, nonce, ad, k, IN_PLACE), /unable to authenticate/)
    assert.throws(() => noiseCrypto.chaCha20Poly1305Decrypt(cut(bad, rng).list as never, nonce, ad, k, IN_PLACE), /unable to authenticate/)
    assert.throws(() => noiseCrypto.chaCha20Poly1305Decrypt(Uint8Array.from(sealed), nonce, Uint8Array.from([...ad, 0]), k, IN_PLACE), /unable to authenticate/)
  }
  assert.equal(noiseCryptoStats.inPlace - before, inPlace)
  // shorter than the tag: refused as the default refuses it, nothing read out of bounds
  const nonce = randomBytes(12)
  assert.throws(() => noiseCrypto.chaCha20Poly1305Decrypt(randomBytes(15), nonce, new Uint8Array(0), k, IN_PLACE))
  const sealed = flat(defaultCrypto.chaCha20Poly1305Encrypt(randomBytes(500), nonce, new Uint8Array(0), k))
  // bad arguments to the addon are refused, not read out of bounds
  const addon = nativeChacha()!
  assert.throws(() => addon.chachaOpenInPlace(k.subarray(1), nonce, new Uint8Array(0), [Uint8Array.from(sealed)], new Uint8Array(16)), /key 32 bytes/)
  assert.throws(() => addon.chachaOpenInPlace(k, nonce, new Uint8Array(0), [new Float32Array(4) as never], new Uint8Array(16)), /Uint8Array/)
})

test('noise encryption into a given buffer (sealingInto): the same bytes as the default, flat and listed; one call only; short or mis-sized ones as before', () => {
  const k = randomBytes(32)
  const zero = new Uint8Array(0)
  if (process.env.MONNA_NATIVE === 'off') {
    // without the addon nothing is written into the buffer and the result is the default's
    assert.equal(sealsInto(65_519), false)
    const plain = randomBytes(65_519)
    const nonce = randomBytes(12)
    const dst = new Uint8Array(65_535)
    const out = sealingInto(dst, () => noiseCrypto.chaCha20Poly1305Encrypt(plain, nonce, zero, k))
    assert.notEqual(out, dst)
    assert.deepEqual(Buffer.from(flat(out)), Buffer.from(flat(defaultCrypto.chaCha20Poly1305Encrypt(plain, nonce, zero, k))))
    assert.ok(dst.every((b) => b === 0))
    return
  }
  assertAddon()
  const rng = lcg(11)
  const before = noiseCryptoStats.sealedInto
  let sealed = 0
  for (let i = 0; i < 60; i++) {
    const size = i < 4 ? [1200, 1201, 65_519, 4096][i]! : 1200 + Math.floor(rng() * 64_320)
    assert.equal(sealsInto(size), true)
    const nonce = randomBytes(12)
    const ad = randomBytes(Math.floor(rng() * 3) * 16)
    const plain = randomBytes(size)
    const expected = Buffer.from(flat(defaultCrypto.chaCha20Poly1305Encrypt(plain, nonce, ad, k)))
    // a buffer with bytes around the destination: only the destination is written
    const around = randomBytes(size + 16 + 40)
    const guard = Buffer.from(around)
    const dst = around.subarray(20, 20 + size + 16)
    const out = sealingInto(dst, () => noiseCrypto.chaCha20Poly1305Encrypt(plain, nonce, ad, k))
    assert.equal(out, dst, `flat ${size}: the destination itself`)
    assert.deepEqual(Buffer.from(dst), expected, `flat ${size}: ciphertext and tag as the default's`)
    assert.deepEqual(around.subarray(0, 20), guard.subarray(0, 20))
    assert.deepEqual(around.subarray(20 + size + 16), guard.subarray(20 + size + 16))
    // the plaintext cut into pieces at random points
    const { list } = cut(plain, rng)
    const dst2 = new Uint8Array(size + 16)
    assert.equal(
      sealingInto(dst2, () => noiseCrypto.chaCha20Poly1305Encrypt(list as never, nonce, ad, k)),
      dst2,
    )
    assert.deepEqual(Buffer.from(dst2), expected, `listed ${size} in ${list.length} pieces`)
    // and it opens with the library's decryption
    assert.deepEqual(Buffer.from(flat(defaultCrypto.chaCha20Poly1305Decrypt(Uint8Array.from(dst2), nonce, ad, k))), Buffer.from(plain))
    sealed += 2
  }
  assert.equal(noiseCryptoStats.sealedInto - before, sealed)
  const nonce = randomBytes(12)
  const plain = randomBytes(5000)
  const expected = Buffer.from(flat(defaultCrypto.chaCha20Poly1305Encrypt(plain, nonce, zero, k)))
  // a destination is for one call: the next encryption, outside sealingInto, returns its own buffers
  const dst = new Uint8Array(5016)
  sealingInto(dst, () => noiseCrypto.chaCha20Poly1305Encrypt(plain, nonce, zero, k))
  const again = noiseCrypto.chaCha20Poly1305Encrypt(plain, nonce, zero, k)
  assert.ok(!(again instanceof Uint8Array && again.buffer === dst.buffer))
  assert.deepEqual(Buffer.from(flat(again)), expected)
  // a destination of the wrong size, a short plaintext: not written, the result as before
  for (const [text, size] of [
    [plain, 5015],
    [plain, 5017],
    [randomBytes(500), 516],
  ] as const) {
    const wrong = new Uint8Array(size)
    const out = sealingInto(wrong, () => noiseCrypto.chaCha20Poly1305Encrypt(text, nonce, zero, k))
    assert.notEqual(out, wrong)
    assert.ok(wrong.every((b) => b === 0), `${text.byteLength} into ${size}: untouched`)
    assert.deepEqual(Buffer.from(flat(out)), Buffer.from(flat(defaultCrypto.chaCha20Poly1305Encrypt(text, nonce, zero, k))))
  }
  assert.equal(sealsInto(1199), false)
  // a throwing encryption leaves no destination behind
  assert.throws(() => sealingInto(new Uint8Array(5016), () => assert.fail('boom')), /boom/)
  const after = noiseCrypto.chaCha20Poly1305Encrypt(plain, nonce, zero, k)
  assert.deepEqual(Buffer.from(flat(after)), expected)
  // bad arguments to the addon are refused, not written out of bounds
  const addon = nativeChacha()!
  assert.throws(() => addon.chachaSealInto(k.subarray(1), nonce, zero, [plain], new Uint8Array(5016)), /key 32 bytes/)
  assert.throws(() => addon.chachaSealInto(k, nonce, zero, [plain], new Uint8Array(5015)), /plaintext's length plus 16/)
  assert.throws(() => addon.chachaSealInto(k, nonce, zero, [new Float32Array(4) as never], new Uint8Array(32)), /Uint8Array/)
  assert.throws(() => addon.chachaSealInto(k, nonce, zero, 'x' as never, new Uint8Array(16)), /array of Uint8Arrays/)
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
