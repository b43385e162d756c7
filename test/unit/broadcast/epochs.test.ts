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
import { encodeFrame, type Frame } from '../../../src/broadcast/wire.ts'
import { createNetNode, type Membership, type NetNode, peerIdOfKey } from '../../../src/net/index.ts'
import { type Ingest, ingestInto } from './adapter.ts'
import { makeKeys } from './harness.ts'

const SWARM = 'epochs'
let keys: PrivateKey[]
let ids: string[]
let node: NetNode
let b: EchoBroadcast
let ingest: Ingest

before(async () => {
  keys = await makeKeys(5)
  ids = keys.map(peerIdOfKey)
  const epoch0: Membership = { swarmId: SWARM, members: ids.slice(0, 4), f: 1 }
  node = await createNetNode({ privateKey: keys[0]!, listen: ['/ip4/127.0.0.1/tcp/0'], membership: epoch0 })
  b = await createEchoBroadcast({ node, privateKey: keys[0]!, membership: epoch0, roundWindow: 32 })
  ingest = ingestInto({ node, b, membership: epoch0 })
})
after(async () => {
  await ingest?.stop()
  await b?.stop()
  await node?.stop()
})

/**
 * The instance (sender, round) certified by `signers` (indices into ids) under `epoch` (default:
 * the member's epoch of that round): the sender's SEND (it may be refused), then the FINAL from
 * member `from`. Returns the rejection of the FINAL, if any.
 */
async function certify(from: number, sender: number, round: number, signers: number[], epoch = b.epochOf(round), send = true) {
  const payload = new Uint8Array([sender, round, 7, 7])
  const hash = hashPayload(payload)
  const inst = { swarmId: SWARM, epoch, round, sender: ids[sender]! }
  if (send) await ingest(keys[sender]!, { type: 'SEND', ...inst, hash, signature: sign(signingSeed(keys[sender]!), statement('SEND', inst, hash)), payload }).catch(() => {})
  const certificate = signers.map((k) => ({ signer: ids[k]!, signature: sign(signingSeed(keys[k]!), statement('ECHO', inst, hash)) }))
  return (await ingest(keys[from]!, { type: 'FINAL', ...inst, hash, certificate })).rejection
}

const deliveredFrom = (round: number): string[] => b.delivered(round).map((d) => d.sender)

test('each round is checked against the epoch it belongs to', async () => {
  // epoch 1 from round 6: member 4 joins (n = 5, f = 1, quorum 4)
  b.setMembership({ swarmId: SWARM, members: ids.slice(0, 5), f: 1 }, 6)
  assert.equal(b.epochOf(5), 0)
  assert.equal(b.epochOf(6), 1)

  // round 5 (epoch 0, quorum 3): a late certificate with 3 signatures still delivers
  assert.equal(await certify(2, 1, 5, [1, 2, 3]), undefined)
  assert.deepEqual(deliveredFrom(5), [ids[1]])
  // round 5: member 4 was not a member yet, as a sender or as a signer
  assert.equal((await certify(4, 4, 5, [1, 2, 3]))?.reason, 'non-member')
  assert.ok((await certify(2, 2, 5, [1, 2, 4])) !== undefined, 'a signature from a later member does not count for round 5')
  // round 6 (epoch 1, quorum 4): 3 signatures are no longer enough; 4 are, and member 4 sends
  assert.ok((await certify(2, 2, 6, [1, 2, 3])) !== undefined)
  assert.equal(await certify(2, 2, 6, [1, 2, 3, 4]), undefined)
  assert.equal(await certify(4, 4, 6, [1, 2, 3, 4]), undefined)
  assert.deepEqual(deliveredFrom(6).sort(), [ids[2], ids[4]].sort())
  // statements bind the epoch: the same signers over epoch 0's statement do not certify round 7
  const wrong = await certify(2, 3, 7, [1, 2, 3, 4], 0)
  assert.equal(wrong?.reason, 'wrong-epoch')
  assert.equal(wrong?.penalise, false)

  // member 3 sends round 8 (epoch 1) — certified only after the next switch
  assert.ok((await certify(1, 3, 8, [1, 2, 3])) !== undefined, 'short of the quorum: not yet certified')
  // epoch 2 from round 9: member 3 is removed (n = 4, f = 1, quorum 3)
  b.setMembership({ swarmId: SWARM, members: [ids[0]!, ids[1]!, ids[2]!, ids[4]!], f: 1 }, 9)
  // its round-8 instance is still valid (epoch 1), its round-9 one is not
  assert.equal(await certify(1, 3, 8, [1, 2, 3, 4], 1, false), undefined)
  assert.deepEqual(deliveredFrom(8), [ids[3]])
  assert.equal((await certify(1, 3, 9, [1, 2, 4]))?.reason, 'non-member')
  assert.equal(await certify(2, 1, 9, [1, 2, 4]), undefined)

  // once the floor passes epoch 1, member 3 is an outsider altogether: its connection is refused
  b.setFloor(9)
  await assert.rejects(certify(3, 1, 10, [1, 2, 4]))
  assert.equal(await certify(2, 2, 10, [1, 2, 4]), undefined)
})

test('without fromRound a membership replaces every epoch (the whole history is checked against it)', async () => {
  b.setMembership({ swarmId: SWARM, members: ids.slice(0, 4), f: 1 })
  assert.equal((await certify(1, 4, 12, [1, 2, 3]))?.reason, 'non-member')
  assert.equal(await certify(1, 3, 12, [1, 2, 3]), undefined)
})

test('a member that joined with a later epoch refuses a short certificate of an earlier epoch as wrong-epoch, unblamed (not malformed)', async () => {
  // founders 0…3 ran epoch 0 (n = 4, f = 1, Q = 3); member 4 joins with epoch 1 (n = 5, Q = 4)
  // from round 10 and knows only that epoch: an honest epoch-0 certificate of round 3 has 3
  // signatures, short under epoch 1's quorum. It cannot be judged here — not a malformed frame
  const ks = await makeKeys(5)
  const ps = ks.map(peerIdOfKey)
  const m1: Membership = { swarmId: 'join', members: ps, f: 1 }
  const node = await createNetNode({ privateKey: ks[4]!, listen: ['/ip4/127.0.0.1/tcp/0'], membership: m1 })
  const b = await createEchoBroadcast({ node, privateKey: ks[4]!, membership: m1, epoch: 1, epochFrom: 10 })
  const ingest = ingestInto({ node, b, membership: m1 })
  try {
    const payload = new Uint8Array([1, 2, 3])
    const hash = hashPayload(payload)
    const inst = { swarmId: 'join', epoch: 0, round: 3, sender: ps[1]! }
    const certificate = [1, 2, 3].map((k) => ({ signer: ps[k]!, signature: sign(signingSeed(ks[k]!), statement('ECHO', inst, hash)) }))
    const r = (await ingest(ks[1]!, { type: 'FINAL', ...inst, hash, certificate })).rejection
    assert.equal(r?.reason, 'wrong-epoch', r?.detail)
    assert.equal(r?.penalise, false)
    assert.match(r?.detail ?? '', /certificate of epoch 0 has 3 signatures/)
  } finally {
    await ingest.stop()
    await b.stop()
    await node.stop()
  }
})

test('frames valid under an epoch this member has not received yet are refused without blame (no ban of honest members)', async () => {
  // this member knows members 0…4 (n = 5, f = 1, Q = 4); the swarm has moved to an epoch it
  // has not received: member 4 removed (n = 4, Q = 3) — or a member 5 added
  const ks = await makeKeys(6)
  const ps = ks.map(peerIdOfKey)
  const m: Membership = { swarmId: 'lag', members: ps.slice(0, 5), f: 1 }
  const n2 = await createNetNode({ privateKey: ks[0]!, listen: ['/ip4/127.0.0.1/tcp/0'], membership: m })
  const b2 = await createEchoBroadcast({ node: n2, privateKey: ks[0]!, membership: m })
  const in2 = ingestInto({ node: n2, b: b2, membership: m })
  try {
    const frame = (sender: number, signers: number[], epoch = 0): Frame => {
      const payload = new Uint8Array([sender, 1, 2, 3])
      const hash = hashPayload(payload)
      const inst = { swarmId: 'lag', epoch, round: 3, sender: ps[sender]! }
      const certificate = signers.map((k) => ({ signer: ps[k]!, signature: sign(signingSeed(ks[k]!), statement('ECHO', inst, hash)) }))
      return { type: 'FINAL', ...inst, hash, certificate }
    }
    // the swarm's certificates under the new epoch name it (below: wrong-epoch); one that names
    // epoch 0, whose quorum is 4, with 3 signatures is forged and blamed
    const short = (await in2(ks[1]!, frame(1, [1, 2, 3]))).rejection
    assert.equal(short?.reason, 'malformed')
    assert.equal(short?.penalise, true)
    const added = (await in2(ks[1]!, frame(5, [1, 2, 3, 5]))).rejection
    assert.equal(added?.reason, 'non-member')
    assert.equal(added?.penalise, false)
    const later = (await in2(ks[1]!, frame(1, [1, 2, 3], 1))).rejection
    assert.equal(later?.reason, 'wrong-epoch')
    assert.equal(later?.penalise, false)
    // a forged signature is still blamed
    const forged = encodeFrame(frame(1, [1, 2, 3, 4]))
    forged[forged.length - 10]! ^= 1 // inside the last signature
    assert.equal((await in2(ks[1]!, forged)).rejection?.penalise, true)
  } finally {
    await in2.stop()
    await b2.stop()
    await n2.stop()
  }
})

test('an epoch of later rounds known ahead (knowEpoch): their certificates count as progress, nothing earlier changes', async () => {
  // a member running round 3 of epoch 0 (members 0…4, f = 1) has received epoch 1 (member 4
  // removed, from round 5) but not reached it. Before knowEpoch, the swarm's certificates of
  // rounds ≥ 5 name an epoch it does not know: refused ('wrong-epoch'), so it never sees the
  // swarm move past the boundary — a newcomer caught up to round 37 forever in CI this way.
  const ks = await makeKeys(5)
  const ps = ks.map(peerIdOfKey)
  const m0: Membership = { swarmId: 'ahead', members: ps.slice(0, 5), f: 1 }
  const m1: Membership = { swarmId: 'ahead', members: ps.slice(0, 4), f: 1 }
  const n2 = await createNetNode({ privateKey: ks[0]!, listen: ['/ip4/127.0.0.1/tcp/0'], membership: m0 })
  const b2 = await createEchoBroadcast({ node: n2, privateKey: ks[0]!, membership: m0 })
  const in2 = ingestInto({ node: n2, b: b2, membership: m0 })
  try {
    const final = (sender: number, round: number, signers: number[], epoch: number): Frame => {
      const payload = new Uint8Array([sender, round, 2, 3])
      const hash = hashPayload(payload)
      const inst = { swarmId: 'ahead', epoch, round, sender: ps[sender]! }
      const certificate = signers.map((k) => ({ signer: ps[k]!, signature: sign(signingSeed(ks[k]!), statement('ECHO', inst, hash)) }))
      return { type: 'FINAL', ...inst, hash, certificate }
    }
    b2.setFloor(3)
    assert.equal((await in2(ks[1]!, final(1, 6, [1, 2, 3], 1))).rejection?.reason, 'wrong-epoch')
    assert.equal(b2.newestCertifiedRound(), -1)
    b2.knowEpoch(m1, 5, 1)
    assert.equal(b2.epochOf(4), 0)
    assert.equal(b2.epochOf(5), 1)
    // certificates of rounds 6 from members 1 and 2 under epoch 1 (Q = 3): f + 1 = 2 senders
    assert.equal((await in2(ks[1]!, final(1, 6, [1, 2, 3], 1))).rejection, undefined)
    assert.equal((await in2(ks[2]!, final(2, 6, [1, 2, 3], 1))).rejection, undefined)
    assert.equal(b2.newestCertifiedRound(), 6, 'the swarm is seen at round 6')
    // round 4 is still epoch 0's: its quorum is 4, and member 4 still sends and signs there
    assert.equal((await in2(ks[1]!, final(4, 4, [1, 2, 3, 4], 0))).rejection, undefined)
    assert.equal((await in2(ks[1]!, final(3, 4, [1, 2, 3], 0))).rejection?.reason, 'malformed', 'three signatures are short in epoch 0')
    // and member 4 is no sender from round 5 on
    assert.equal((await in2(ks[1]!, final(4, 5, [1, 2, 3], 1))).rejection?.reason, 'non-member')
    // an epoch already known, or not later than the last, changes nothing
    b2.knowEpoch(m0, 5, 1)
    b2.knowEpoch(m0, 4, 2)
    assert.equal(b2.epochOf(5), 1)
    assert.equal(b2.epochOf(4), 0)
    // the switch at the boundary replaces what was known ahead with the same epoch
    b2.setMembership(m1, 5, 1)
    assert.equal(b2.epochOf(5), 1)
    assert.equal(b2.epochOf(4), 0)
  } finally {
    await in2.stop()
    await b2.stop()
    await n2.stop()
  }
})

test('fromRound is validated', () => {
  assert.throws(() => b.setMembership({ swarmId: SWARM, members: ids.slice(0, 4), f: 1 }, -1))
  assert.throws(() => b.setMembership({ swarmId: SWARM, members: ids.slice(0, 4), f: 1 }, 1.5))
})

test('knowEpoch validates like setMembership: the swarm, the round and the epoch number', () => {
  const m = { swarmId: SWARM, members: ids.slice(0, 4), f: 1 }
  assert.throws(() => b.knowEpoch(m, -1, 1), /fromRound/)
  assert.throws(() => b.knowEpoch(m, 5, -1), /epoch/)
  assert.throws(() => b.knowEpoch(m, 5, 2 ** 32), /epoch/)
  assert.throws(() => b.knowEpoch(m, 5, 1.5), /epoch/)
  assert.throws(() => b.knowEpoch({ ...m, swarmId: 'another' }, 5, 1), /swarm id/)
  assert.throws(() => b.setMembership(m, 5, 2 ** 32), /epoch/)
})
