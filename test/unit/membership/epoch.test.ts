import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { parseSwarm, swarmId } from '../../../src/config/schema.ts'
import {
  checkActivation,
  EpochBook,
  EpochRejectedError,
  FaultBoundError,
  genesisEpoch,
  MemberChangeError,
  proposeEpoch,
  signEpoch,
  verifyEpoch,
} from '../../../src/membership/index.ts'

async function ids(n: number): Promise<string[]> {
  return Promise.all(Array.from({ length: n }, async () => peerIdFromPrivateKey(await generateKeyPair('Ed25519')).toString()))
}

async function setup(n = 4, f = 1) {
  const admin = await generateKeyPair('Ed25519')
  const members = await ids(n)
  const swarm = parseSwarm({ name: 't', f, admin: peerIdFromPrivateKey(admin).toString(), members: members.map((id) => ({ id })) })
  return { admin, members, swarm }
}

describe('membership epochs', () => {
  it('a swarm file without admin keeps its swarm id (the admin field is optional and absent)', () => {
    const input = { name: 't', f: 0, members: [{ id: '12D3KooWQ1FsZWH3T4T8PcUgwZ6uTdxM5szWwKPCqkDyi95uR68t' }] }
    const swarm = parseSwarm(input)
    assert.equal('admin' in swarm, false)
    assert.equal(swarmId(swarm), swarmId(parseSwarm(structuredClone(input))))
    assert.throws(() => parseSwarm({ ...input, admin: 'nope' }), /admin/)
  })

  it('signs and verifies an epoch; tampering, another admin or another swarm are refused', async () => {
    const { admin, swarm } = await setup()
    const [extra] = await ids(1)
    const e1 = proposeEpoch(genesisEpoch(swarm), { add: [{ id: extra!, addresses: [] }], activation: 10 })
    assert.equal(e1.epoch, 1)
    assert.equal(e1.members.length, 5)
    const signed = await signEpoch(e1, admin)
    const ok = await verifyEpoch(JSON.parse(JSON.stringify(signed)), swarm)
    assert.equal(ok.epoch, 1)
    const reason = async (input: unknown, s = swarm): Promise<string> => {
      try {
        await verifyEpoch(input, s)
        return 'accepted'
      } catch (err) {
        assert.ok(err instanceof EpochRejectedError)
        return err.reason
      }
    }
    assert.equal(await reason({ ...signed, f: 0 }), 'bad-signature')
    assert.equal(await reason({ ...signed, activation: 11 }), 'bad-signature')
    assert.equal(await reason({ ...signed, members: signed.members.slice(0, 4) }), 'bad-signature')
    const other = await generateKeyPair('Ed25519')
    assert.equal(await reason(await signEpoch(e1, other)), 'wrong-admin')
    const otherSwarm = parseSwarm({ ...swarm, name: 'u' })
    assert.equal(await reason(signed, otherSwarm), 'wrong-swarm')
    assert.equal(await reason('not json'), 'malformed')
    assert.equal(await reason({ ...signed, members: [] }), 'malformed')
    const noAdmin = parseSwarm({ name: 't', f: 1, members: swarm.members })
    assert.equal(await reason(signed, noAdmin), 'no-admin')
  })

  it('refuses changes that break n ≥ 3f + 1, unknown or duplicate members, and activations that do not move forward', async () => {
    const { swarm, members } = await setup(4, 1)
    const g = genesisEpoch(swarm)
    assert.throws(() => proposeEpoch(g, { remove: [members[0]!], activation: 5 }), FaultBoundError)
    assert.throws(() => proposeEpoch(g, { f: 2, activation: 5 }), (err: unknown) => err instanceof FaultBoundError && err.n === 4 && err.f === 2)
    assert.throws(() => proposeEpoch(g, { add: [{ id: members[1]!, addresses: [] }], activation: 5 }), MemberChangeError)
    const [stranger] = await ids(1)
    assert.throws(() => proposeEpoch(g, { remove: [stranger!], activation: 5 }), MemberChangeError)
    assert.throws(() => proposeEpoch(g, { add: [{ id: 'not-a-peer-id', addresses: [] }], activation: 5 }), MemberChangeError)
    assert.throws(() => proposeEpoch(g, { f: 0, activation: 0 }), /activation/)
    // f may go down, and up once there are enough members
    const down = proposeEpoch(g, { f: 0, activation: 5 })
    assert.equal(down.f, 0)
    const more = await ids(3)
    const seven = proposeEpoch(g, { add: more.map((id) => ({ id, addresses: [] })), f: 2, activation: 5 })
    assert.equal(seven.members.length, 7)
    assert.equal(seven.f, 2)
  })

  it('a signed epoch that breaks the bound is refused by members too (fault-bound)', async () => {
    const { admin, swarm, members } = await setup(4, 1)
    // sign a bad epoch by hand (signEpoch itself refuses it)
    const bad = { ...genesisEpoch(swarm), epoch: 1, activation: 3, members: genesisEpoch(swarm).members.filter((m) => m.id !== members[0]) }
    await assert.rejects(signEpoch(bad, admin), FaultBoundError)
    const { epochStatement } = await import('../../../src/membership/index.ts')
    const signature = Buffer.from(await admin.sign(epochStatement(bad))).toString('base64')
    await assert.rejects(verifyEpoch({ ...bad, admin: swarm.admin, signature }, swarm), (err: unknown) => err instanceof EpochRejectedError && err.reason === 'fault-bound')
  })

  it('EpochBook: the epoch in force at a round, ordering and conflicts', async () => {
    const { admin, swarm, members } = await setup(4, 1)
    const book = new EpochBook(genesisEpoch(swarm))
    const [a, b] = await ids(2)
    const e1 = await signEpoch(proposeEpoch(book.latest(), { add: [{ id: a!, addresses: [] }], activation: 10 }), admin)
    const e2 = await signEpoch(proposeEpoch(e1, { remove: [members[3]!], add: [{ id: b!, addresses: [] }], activation: 20 }), admin)
    assert.equal(book.add(e2), true) // out of order arrival is fine
    assert.equal(book.add(e1), true)
    assert.equal(book.add(e1), false)
    assert.equal(book.at(0).epoch, 0)
    assert.equal(book.at(9).epoch, 0)
    assert.equal(book.at(10).epoch, 1)
    assert.equal(book.at(19).epoch, 1)
    assert.equal(book.at(1000).epoch, 2)
    assert.equal(book.firstWith(a!)?.epoch, 1)
    assert.equal(book.firstWith(b!)?.epoch, 2)
    assert.equal(book.signed().length, 2)
    const conflicting = await signEpoch({ ...e1, f: 0 }, admin)
    assert.throws(() => book.add(conflicting), (err: unknown) => err instanceof EpochRejectedError && err.reason === 'conflict')
    const fresh = new EpochBook(genesisEpoch(swarm))
    fresh.add(e2)
    const late = await signEpoch({ ...e1, activation: 25 }, admin)
    assert.throws(() => fresh.add(late), (err: unknown) => err instanceof EpochRejectedError && err.reason === 'activation')
    assert.equal(book.has(e1), true)
    assert.equal(book.has(conflicting), false, 'same number, another statement')
    assert.equal(fresh.has(e1), false)
  })

  it('checkActivation: a new epoch whose activation round has come is refused (admin: at the round being run; relay: at a round already run)', async () => {
    const { swarm } = await setup(4, 1)
    const e = { ...proposeEpoch(genesisEpoch(swarm), { f: 0, activation: 12 }), epoch: 3 }
    const stale = (message: RegExp) => (err: unknown) => {
      assert.ok(err instanceof EpochRejectedError, String(err))
      assert.equal(err.name, 'EpochRejectedError')
      assert.equal(err.reason, 'stale')
      assert.equal(err.epoch, 3)
      assert.match(err.message, message)
      assert.ok(!err.message.includes('\n'), 'one line')
      return true
    }
    // handed over by the admin: activation must be after the round the member runs
    assert.throws(() => checkActivation(e, { source: 'admin', round: 15 }), stale(/^epoch 3 activates at round 12 but this member is already at round 15; choose --activation ≥ 16/))
    assert.throws(() => checkActivation(e, { source: 'admin', round: 12 }), stale(/already at round 12; choose --activation ≥ 13/), 'the round being run is too late')
    assert.throws(() => checkActivation(e, { source: 'admin', round: 20, who: 'the member at http://h:1' }), stale(/but the member at http:\/\/h:1 is already at round 20/))
    checkActivation(e, { source: 'admin', round: 11 })
    checkActivation(e, { source: 'admin', round: 0 })
    // relayed by a member: refused only for a round this member already ran
    assert.throws(() => checkActivation(e, { source: 'relay', lastRun: 12 }), stale(/^epoch 3 activates at round 12 but this member already ran round 12 with the membership it had/))
    assert.throws(() => checkActivation(e, { source: 'relay', lastRun: 30 }), stale(/already ran round 30/))
    checkActivation(e, { source: 'relay', lastRun: 11 }) // running round 12: the engine switches before completing it
    checkActivation(e, { source: 'relay', lastRun: -1 }) // ran nothing yet (a newcomer, or rounds skipped by catching up)
  })
})
