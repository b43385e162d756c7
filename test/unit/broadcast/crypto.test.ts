import assert from 'node:assert/strict'
import { test } from 'node:test'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { sha256 } from '@noble/hashes/sha2.js'
import { hashPayload, sign, signingSeed, statement, verify, verifyReference } from '../../../src/broadcast/crypto.ts'
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
