import assert from 'node:assert/strict'
import { test } from 'node:test'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { sha256 } from '@noble/hashes/sha2.js'
import { bytesEqual, checkedPayload, hashPayload, knownPayload, ownPayload, payloadCacheStats, sign, signingSeed, signReference, statement, verify, verifyCacheFor, verifyCacheSize, verifyCacheStats, verifyReference } from '../../../src/broadcast/crypto.ts'
import { peerIdOfKey } from '../../../src/net/index.ts'
import { Rng } from '../../../src/rng.ts'

test('payload hash equals @noble/hashes sha256', () => {
  const rng = new Rng(1)
  for (const size of [0, 1, 63, 64, 65, 1000, 100_003]) {
    const p = new Uint8Array(size).map(() => rng.int(256))
    assert.deepEqual(hashPayload(p), sha256(p))
  }
})

test('OpenSSL verification agrees with noble verify on valid and tampered signatures', async () => {
  const rng = new Rng(2)
  const keys = await Promise.all([0, 1, 2].map(() => generateKeyPair('Ed25519')))
  const ids = keys.map(peerIdOfKey)
  let valid = 0
  for (let it = 0; it < 60; it++) {
    const i = it % 3
    const hash = new Uint8Array(32).map(() => rng.int(256))
    const msg = statement('ECHO', { swarmId: 's', epoch: 0, round: it, sender: ids[(i + 1) % 3]! }, hash)
    const sig = sign(signingSeed(keys[i]!), msg)
    const flip = (b: Uint8Array): Uint8Array => {
      const c = b.slice()
      c[rng.int(c.length)]! ^= 1 << rng.int(8)
      return c
    }
    const cases: Array<[string, Uint8Array, Uint8Array]> = [
      [ids[i]!, msg, sig],
      [ids[(i + 1) % 3]!, msg, sig],
      [ids[i]!, flip(msg), sig],
      [ids[i]!, msg, flip(sig)],
      [ids[i]!, msg, new Uint8Array(64).map(() => rng.int(256))],
    ]
    for (const [who, m, s] of cases) {
      const a = verify(who, m, s)
      assert.equal(a, verifyReference(who, m, s))
      if (a) valid++
    }
  }
  assert.equal(valid, 60) // exactly the untampered ones
  assert.equal(verify('not-a-peer-id', new Uint8Array(1), new Uint8Array(64)), false)
})

test('checkedPayload: a payload that hashes to the hash, shared by identical copies; never one that does not', () => {
  const rng = new Rng(7)
  const p = new Uint8Array(100_000).map(() => rng.int(256))
  const h = hashPayload(p)
  assert.equal(checkedPayload(p, h), p)
  const copy = Uint8Array.from(p)
  assert.equal(checkedPayload(copy, h), p, 'an identical copy answers with the payload already checked')
  const other = Uint8Array.from(p)
  other[99_999]! ^= 1
  assert.equal(checkedPayload(other, h), undefined, 'a copy differing in one byte is refused')
  assert.equal(checkedPayload(p.subarray(1), h), undefined)
  const forged = new Uint8Array(32)
  assert.equal(checkedPayload(p, forged), undefined, 'a payload under another hash is refused')
  assert.equal(checkedPayload(new Uint8Array(0), hashPayload(new Uint8Array(0)))?.length, 0)
})

test('bytesEqual agrees on short and long arrays, views included', () => {
  const a = new Uint8Array(1000).map((_, i) => i)
  const b = new Uint8Array(1004)
  b.set(a, 4)
  assert.equal(bytesEqual(a, b.subarray(4)), true)
  b[500] ^= 1
  assert.equal(bytesEqual(a, b.subarray(4)), false)
  assert.equal(bytesEqual(a.subarray(0, 10), b.subarray(4, 14)), true)
  assert.equal(bytesEqual(a, a.subarray(1)), false)
})

test('OpenSSL signatures are byte for byte noble\'s (Ed25519 is deterministic)', async () => {
  for (let i = 0; i < 4; i++) {
    const seed = signingSeed(await generateKeyPair('Ed25519'))
    for (const msg of [new Uint8Array(0), new Uint8Array(32).fill(i), new TextEncoder().encode(`statement ${i}`)]) {
      assert.deepEqual(sign(seed, msg), signReference(seed, msg))
    }
  }
})

test('knownPayload: pieces equal to a checked payload are answered with it; any difference, or no checked payload, is not', () => {
  const rng = new Rng(11)
  const p = new Uint8Array(70_000).map(() => rng.int(256))
  const h = hashPayload(p)
  const pieces = (b: Uint8Array): Uint8Array[] => [b.slice(0, 3), b.slice(3, 65_539), b.slice(65_539)]
  assert.equal(knownPayload(pieces(p), p.length, h), undefined, 'nothing checked under this hash yet')
  assert.equal(checkedPayload(p, h), p)
  assert.equal(knownPayload(pieces(p), p.length, h), p)
  const other = Uint8Array.from(p)
  other[65_600]! ^= 1
  assert.equal(knownPayload(pieces(other), p.length, h), undefined)
  assert.equal(knownPayload(pieces(p).slice(0, 2), p.length, h), undefined, 'short')
  assert.equal(knownPayload([...pieces(p), new Uint8Array(1)], p.length + 1, h), undefined, 'long')
  assert.equal(knownPayload([...pieces(p), new Uint8Array(1)], p.length, h), undefined, 'more bytes than declared')
})

test('ownPayload: a private copy, hashed, becomes the checked payload; views of it at its own place are taken without comparing, any other bytes are compared and a difference refused', () => {
  const rng = new Rng(12)
  const mine = new Uint8Array(70_000).map(() => rng.int(256))
  const { payload, hash } = ownPayload(mine)
  assert.notEqual(payload, mine, 'a copy: the caller keeps its own array')
  assert.deepEqual(payload, mine)
  assert.deepEqual(hash, hashPayload(mine))
  mine[5]! ^= 1 // the caller writing its array changes nothing here
  assert.deepEqual(hashPayload(payload), hash)
  // what the memory transport hands a receiver: views of the sender's bytes, at their place
  const views = [payload.subarray(0, 3), payload.subarray(3, 65_539), payload.subarray(65_539)]
  const v0 = payloadCacheStats.views
  const c0 = payloadCacheStats.compared
  assert.equal(knownPayload(views, payload.length, hash), payload)
  assert.equal(payloadCacheStats.views, v0 + 1, 'taken as views')
  assert.equal(payloadCacheStats.compared, c0, 'nothing compared')
  assert.equal(checkedPayload(payload, hash), payload)
  // a copy of the same bytes is compared and answered with the checked payload
  assert.equal(knownPayload([payload.slice(0, 40_000), payload.subarray(40_000)], payload.length, hash), payload)
  assert.equal(payloadCacheStats.compared, c0 + 1)
  // hostile: views of the same buffer at another place, or a piece with one byte changed
  const shifted = [payload.subarray(1, 4), payload.subarray(3, 65_539), payload.subarray(65_539)]
  assert.equal(knownPayload(shifted, payload.length, hash), undefined, 'a view at another offset holds other bytes')
  const forged = payload.slice(3, 65_539)
  forged[100]! ^= 1
  assert.equal(knownPayload([payload.subarray(0, 3), forged, payload.subarray(65_539)], payload.length, hash), undefined)
  assert.equal(knownPayload([payload.subarray(0, 3), mine.subarray(3, 65_539), payload.subarray(65_539)], payload.length, hash), undefined, "the caller's changed array")
  assert.equal(checkedPayload(mine, hash), undefined, 'refused: other bytes under this hash')
  // the same bytes broadcast again answer with the copy already held
  assert.equal(ownPayload(payload).payload, payload)
})

test('verify remembers results by signature, and a remembered signature never vouches for another statement or signer', async () => {
  const k = await generateKeyPair('Ed25519')
  const other = await generateKeyPair('Ed25519')
  const signer = peerIdOfKey(k)
  const seed = signingSeed(k)
  const inst = { swarmId: 's', epoch: 0, round: 3, sender: signer }
  const msg = statement('ECHO', inst, new Uint8Array(32).fill(7))
  const sig = sign(seed, msg)
  const h0 = verifyCacheStats.hits
  assert.equal(verify(signer, msg, sig), true)
  assert.equal(verify(signer, msg.slice(), sig.slice()), true)
  assert.equal(verifyCacheStats.hits - h0, 1, 'the same bytes again: answered from memory')
  const changed = statement('ECHO', { ...inst, round: 4 }, new Uint8Array(32).fill(7))
  assert.equal(verify(signer, changed, sig), false, 'the signature of round 3 does not vouch for round 4')
  assert.equal(verify(peerIdOfKey(other), msg, sig), false, 'nor for another signer')
  assert.equal(verify(signer, msg, sig), true, 'and the original still verifies')
})

test('a member over TCP keeps at most 1,024 verifications; members of one process keep them all, for good', async () => {
  const k = await generateKeyPair('Ed25519')
  const signer = peerIdOfKey(k)
  const seed = signingSeed(k)
  const signed = (from: number, count: number) =>
    Array.from({ length: count }, (_, i) => {
      const msg = statement('ECHO', { swarmId: 's', epoch: 0, round: from + i, sender: signer }, new Uint8Array(32).fill(1))
      return { msg, sig: sign(seed, msg) }
    })
  verifyCacheFor('member')
  assert.equal(verifyCacheSize().limit, 1_024)
  for (const { msg, sig } of signed(0, 1_100)) {
    assert.equal(verify(signer, msg, sig), true)
    assert.ok(verifyCacheSize().size <= 1_024, `${verifyCacheSize().size} verifications kept`)
  }
  const [bad] = signed(5_000, 1)
  bad!.sig[0]! ^= 1
  assert.equal(verify(signer, bad!.msg, bad!.sig), false)
  verifyCacheFor('shared')
  for (const { msg, sig } of signed(10_000, 1_100)) assert.equal(verify(signer, msg, sig), true)
  const kept = verifyCacheSize().size
  assert.ok(kept > 1_024, `${kept} kept`)
  assert.equal(verifyCacheSize().limit, 65_536)
  verifyCacheFor('member') // a TCP member created later in the same process does not shrink it
  assert.equal(verifyCacheSize().size, kept)
  const [more] = signed(20_000, 1)
  assert.equal(verify(signer, more!.msg, more!.sig), true)
  assert.equal(verifyCacheSize().size, kept + 1)
})
