/**
 * Membership epochs in the broadcast: after `setMembership(m, fromRound)`, instances of earlier
 * rounds are still checked against their own epoch (members, quorum), later ones against `m`.
 * A late certificate of the last round before a switch stays valid; a member added at round a
 * is a sender only from a on; a removed member's old instances are accepted until the floor
 * passes its last round, and nothing of it afterwards.
 */
import assert from 'node:assert/strict'
import { after, before, test } from 'node:test'
import type { PrivateKey } from '@libp2p/interface'
import { hashPayload, sign, signingSeed, statement } from '../../../src/broadcast/crypto.ts'
import { createEchoBroadcast, type EchoBroadcast } from '../../../src/broadcast/index.ts'
import { encodeFrame } from '../../../src/broadcast/wire.ts'
import { createNetNode, type Membership, type NetNode, peerIdOfKey } from '../../../src/net/index.ts'
import { makeKeys } from './harness.ts'

const SWARM = 'epochs'
let keys: PrivateKey[]
let ids: string[]
let node: NetNode
let b: EchoBroadcast

before(async () => {
  keys = await makeKeys(5)
  ids = keys.map(peerIdOfKey)
  const epoch0: Membership = { swarmId: SWARM, members: ids.slice(0, 4), f: 1 }
  node = await createNetNode({ privateKey: keys[0]!, listen: ['/ip4/127.0.0.1/tcp/0'], membership: epoch0 })
  b = await createEchoBroadcast({ node, privateKey: keys[0]!, membership: epoch0, roundWindow: 32 })
})
after(async () => {
  await b?.stop()
  await node?.stop()
})

/** FINAL with payload from `sender` for `round`, certified by `signers` (indices into ids). */
function final(sender: number, round: number, signers: number[]): Uint8Array {
  const payload = new Uint8Array([sender, round, 7, 7])
  const hash = hashPayload(payload)
  const inst = { swarmId: SWARM, round, sender: ids[sender]! }
  const certificate = signers.map((k) => ({ signer: ids[k]!, signature: sign(signingSeed(keys[k]!), statement('ECHO', inst, hash)) }))
  return encodeFrame({ type: 'FINAL', ...inst, hash, certificate, payload })
}

const deliveredFrom = (round: number): string[] => b.delivered(round).map((d) => d.sender)

test('each round is checked against the epoch it belongs to', async () => {
  // epoch 1 from round 6: member 4 joins (n = 5, f = 1, quorum 4)
  b.setMembership({ swarmId: SWARM, members: ids.slice(0, 5), f: 1 }, 6)

  // round 5 (epoch 0, quorum 3): a late certificate with 3 signatures still delivers
  assert.equal((await b.ingest(ids[2]!, final(1, 5, [1, 2, 3]))).rejection, undefined)
  assert.deepEqual(deliveredFrom(5), [ids[1]])
  // round 5: member 4 was not a member yet, as a sender or as a signer
  assert.equal((await b.ingest(ids[4]!, final(4, 5, [1, 2, 3]))).rejection?.reason, 'non-member')
  assert.ok((await b.ingest(ids[2]!, final(2, 5, [1, 2, 4]))).rejection !== undefined, 'a signature from a later member does not count for round 5')
  // round 6 (epoch 1, quorum 4): 3 signatures are no longer enough; 4 are, and member 4 sends
  assert.ok((await b.ingest(ids[2]!, final(2, 6, [1, 2, 3]))).rejection !== undefined)
  assert.equal((await b.ingest(ids[2]!, final(2, 6, [1, 2, 3, 4]))).rejection, undefined)
  assert.equal((await b.ingest(ids[4]!, final(4, 6, [1, 2, 3, 4]))).rejection, undefined)
  assert.deepEqual(deliveredFrom(6).sort(), [ids[2], ids[4]].sort())

  // epoch 2 from round 9: member 3 is removed (n = 4, f = 1, quorum 3)
  b.setMembership({ swarmId: SWARM, members: [ids[0]!, ids[1]!, ids[2]!, ids[4]!], f: 1 }, 9)
  // its round-8 instance is still valid (epoch 1), its round-9 one is not
  assert.equal((await b.ingest(ids[3]!, final(3, 8, [1, 2, 3, 4]))).rejection, undefined)
  assert.deepEqual(deliveredFrom(8), [ids[3]])
  assert.equal((await b.ingest(ids[3]!, final(3, 9, [1, 2, 4]))).rejection?.reason, 'non-member')
  assert.equal((await b.ingest(ids[1]!, final(1, 9, [1, 2, 4]))).rejection, undefined)

  // once the floor passes epoch 1, member 3 is an outsider altogether
  b.setFloor(9)
  assert.equal((await b.ingest(ids[3]!, final(1, 10, [1, 2, 4]))).rejection?.reason, 'non-member')
  assert.equal((await b.ingest(ids[2]!, final(2, 10, [1, 2, 4]))).rejection, undefined)
})

test('without fromRound a membership replaces every epoch (the whole history is checked against it)', async () => {
  b.setMembership({ swarmId: SWARM, members: ids.slice(0, 4), f: 1 })
  assert.equal((await b.ingest(ids[4]!, final(4, 12, [1, 2, 3]))).rejection?.reason, 'non-member')
  assert.equal((await b.ingest(ids[3]!, final(3, 12, [1, 2, 3]))).rejection, undefined)
})

test('frames valid under an epoch this member has not received yet are refused without blame (no ban of honest members)', async () => {
  // this member knows members 0…4 (n = 5, f = 1, Q = 4); the swarm has moved to an epoch it
  // has not received: member 4 removed (n = 4, Q = 3) — or a member 5 added
  const ks = await makeKeys(6)
  const ps = ks.map(peerIdOfKey)
  const m: Membership = { swarmId: 'lag', members: ps.slice(0, 5), f: 1 }
  const n2 = await createNetNode({ privateKey: ks[0]!, listen: ['/ip4/127.0.0.1/tcp/0'], membership: m })
  const b2 = await createEchoBroadcast({ node: n2, privateKey: ks[0]!, membership: m })
  try {
    const frame = (sender: number, signers: number[]): Uint8Array => {
      const payload = new Uint8Array([sender, 1, 2, 3])
      const hash = hashPayload(payload)
      const inst = { swarmId: 'lag', round: 3, sender: ps[sender]! }
      const certificate = signers.map((k) => ({ signer: ps[k]!, signature: sign(signingSeed(ks[k]!), statement('ECHO', inst, hash)) }))
      return encodeFrame({ type: 'FINAL', ...inst, hash, certificate, payload })
    }
    const short = (await b2.ingest(ps[1]!, frame(1, [1, 2, 3]))).rejection
    assert.equal(short?.reason, 'malformed')
    assert.equal(short?.penalise, false)
    const added = (await b2.ingest(ps[1]!, frame(5, [1, 2, 3, 5]))).rejection
    assert.equal(added?.reason, 'non-member')
    assert.equal(added?.penalise, false)
    // a forged signature is still blamed
    const forged = frame(1, [1, 2, 3, 4])
    forged[forged.length - 10]! ^= 1 // inside the last signature… or the payload: either is blamed
    assert.equal((await b2.ingest(ps[1]!, forged)).rejection?.penalise, true)
  } finally {
    await b2.stop()
    await n2.stop()
  }
})

test('fromRound is validated', () => {
  assert.throws(() => b.setMembership({ swarmId: SWARM, members: ids.slice(0, 4), f: 1 }, -1))
  assert.throws(() => b.setMembership({ swarmId: SWARM, members: ids.slice(0, 4), f: 1 }, 1.5))
})
