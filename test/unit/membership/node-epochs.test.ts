/** createSwarmNode and membership epochs: submitting, refusing, storing, restarting with them. */
import assert from 'node:assert/strict'
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { describe, it } from 'node:test'
import { generateKeyPair } from '@libp2p/crypto/keys'
import type { PrivateKey } from '@libp2p/interface'
import { parseSwarm } from '../../../src/config/schema.ts'
import { EpochRejectedError, genesisEpoch, proposeEpoch, signEpoch } from '../../../src/membership/index.ts'
import { peerIdOfKey } from '../../../src/net/index.ts'
import { createSwarmNode, membershipOf } from '../../../src/node/index.ts'
import { createMemoryHub } from '../../support/memory-hub.ts'

describe('createSwarmNode with membership epochs', () => {
  it('verifies, stores and reports submitted epochs; refuses forged ones; a member added by an epoch starts from it', async () => {
    const ks: PrivateKey[] = await Promise.all(Array.from({ length: 5 }, () => generateKeyPair('Ed25519')))
    const admin = await generateKeyPair('Ed25519')
    const swarm = parseSwarm({
      name: 'unit',
      f: 1,
      admin: peerIdOfKey(admin),
      members: ks.slice(0, 4).map((k, i) => ({ id: peerIdOfKey(k), name: `m${i}` })),
      task: { dataset: { kind: 'gaussian-mixture', classes: 4, dim: 10, trainSize: 800, testSize: 200, seed: 3 }, model: { kind: 'logreg' }, rounds: 5 },
    })
    const hub = createMemoryHub({ membership: membershipOf(swarm) })
    const dir = await mkdtemp(join(tmpdir(), 'monna-node-epochs-'))
    try {
      const node = await createSwarmNode({ swarm, privateKey: ks[0]!, transport: { kind: 'port', ports: hub }, dataDir: join(dir, 'm0'), backend: 'cpu' })
      const e1 = await signEpoch(proposeEpoch(genesisEpoch(swarm), { add: [{ id: peerIdOfKey(ks[4]!), name: 'm4', addresses: [] }], activation: 3 }), admin)
      // forged: another key, or a tampered f
      const forger = await generateKeyPair('Ed25519')
      await assert.rejects(node.submitEpoch(await signEpoch(e1, forger)), (err: unknown) => err instanceof EpochRejectedError && err.reason === 'wrong-admin')
      await assert.rejects(node.submitEpoch({ ...e1, f: 0 }), (err: unknown) => err instanceof EpochRejectedError && err.reason === 'bad-signature')
      assert.equal(node.status().latestEpoch, 0)
      assert.deepEqual(await node.submitEpoch(JSON.parse(JSON.stringify(e1))), { epoch: 1, activation: 3, added: true })
      assert.deepEqual(await node.submitEpoch(e1), { epoch: 1, activation: 3, added: false })
      const st = node.status()
      assert.equal(st.epoch, 0)
      assert.equal(st.n, 4)
      assert.equal(st.latestEpoch, 1)
      assert.equal(st.latestActivation, 3)
      assert.deepEqual(await readdir(join(dir, 'm0', 'epochs')), ['epoch-1.json'])
      assert.equal(JSON.parse(await readFile(join(dir, 'm0', 'epochs', 'epoch-1.json'), 'utf8')).signature, e1.signature)
      await node.stop()

      // restarting: the stored epoch is known again
      const again = await createSwarmNode({ swarm, privateKey: ks[0]!, transport: { kind: 'port', ports: hub }, dataDir: join(dir, 'm0'), backend: 'cpu' })
      assert.equal(again.status().latestEpoch, 1)
      await again.stop()

      // the added member: refused without the epoch, accepted with it (as a member of epoch 1)
      const hub1 = createMemoryHub({ membership: { ...membershipOf(swarm), members: e1.members.map((m) => m.id) } })
      await assert.rejects(createSwarmNode({ swarm, privateKey: ks[4]!, transport: { kind: 'port', ports: hub }, backend: 'cpu' }), /not a member/)
      await assert.rejects(createSwarmNode({ swarm, privateKey: ks[4]!, transport: { kind: 'port', ports: hub }, backend: 'cpu', epochs: [{ ...e1, activation: 4 }] }), EpochRejectedError)
      const added = await createSwarmNode({ swarm, privateKey: ks[4]!, transport: { kind: 'port', ports: hub1 }, backend: 'cpu', epochs: [e1] })
      assert.equal(added.status().epoch, 1)
      assert.equal(added.status().n, 5)
      assert.equal(added.status().name, 'm4')
      await added.stop()
    } finally {
      await rm(dir, { recursive: true, force: true })
    }
  })

  it('refuses a new epoch whose activation round it has reached, with a one-line error; epochs known, given or stored still load', async () => {
    const ks: PrivateKey[] = await Promise.all(Array.from({ length: 4 }, () => generateKeyPair('Ed25519')))
    const admin = await generateKeyPair('Ed25519')
    const swarm = parseSwarm({
      name: 'unit',
      f: 1,
      admin: peerIdOfKey(admin),
      members: ks.map((k, i) => ({ id: peerIdOfKey(k), name: `m${i}` })),
      task: { dataset: { kind: 'gaussian-mixture', classes: 4, dim: 10, trainSize: 800, testSize: 200, seed: 3 }, model: { kind: 'logreg' }, rounds: 6, evalEvery: 100 },
    })
    const hub = createMemoryHub({ membership: membershipOf(swarm) })
    const dir = await mkdtemp(join(tmpdir(), 'monna-node-epochs-'))
    // epoch 1 (f = 0 from round 3) is given to every member at start, so all run it alike
    const e1 = await signEpoch(proposeEpoch(genesisEpoch(swarm), { f: 0, activation: 3 }), admin)
    const make = (i: number) =>
      createSwarmNode({ swarm, privateKey: ks[i]!, transport: { kind: 'port', ports: hub }, backend: 'cpu', epochs: [e1], ...(i === 0 ? { dataDir: join(dir, 'm0'), checkpointEvery: 3 } : {}) })
    const nodes = await Promise.all(ks.map((_, i) => make(i)))
    try {
      const reports = await Promise.all(nodes.map((n) => n.run()))
      assert.deepEqual(reports[0]!.map((r) => [r.round, r.epoch]), [[0, 0], [1, 0], [2, 0], [3, 1], [4, 1], [5, 1]])
      const m0 = nodes[0]!
      assert.equal(m0.status().round, 6)
      const stale = (epoch: number, activation: number, round: number) => (err: unknown) => {
        assert.ok(err instanceof EpochRejectedError, String(err))
        assert.equal(err.reason, 'stale')
        assert.equal(err.message.split('\n').length, 1)
        assert.match(err.message, new RegExp(`^epoch ${epoch} activates at round ${activation} but this member is already at round ${round}; choose --activation ≥ ${round + 1}`))
        return true
      }
      // before this change these were taken (with a warning) and applied from the member's next round
      const e2 = (activation: number) => signEpoch(proposeEpoch(e1, { f: 1, activation }), admin)
      await assert.rejects(m0.submitEpoch(await e2(4)), stale(2, 4, 6))
      await assert.rejects(m0.submitEpoch(await e2(6)), stale(2, 6, 6), 'the round it runs next is too late as well')
      assert.equal(m0.status().latestEpoch, 1, 'nothing was recorded')
      // epoch 1 (activation 3, known) is not refused; a later activation is taken
      assert.deepEqual(await m0.submitEpoch(e1), { epoch: 1, activation: 3, added: false })
      const later = await e2(7)
      assert.deepEqual(await m0.submitEpoch(later), { epoch: 2, activation: 7, added: true })
      await Promise.all(nodes.map((n) => n.stop()))

      // restarted from its checkpoint (round 6): the stored epochs load although epoch 1's activation has passed
      const again = await createSwarmNode({ swarm, privateKey: ks[0]!, transport: { kind: 'port', ports: hub }, backend: 'cpu', dataDir: join(dir, 'm0') })
      try {
        assert.equal(again.resumedAt, 6)
        assert.equal(again.status().latestEpoch, 2)
        assert.deepEqual(again.epochs().map((e) => [e.epoch, e.activation]), [[1, 3], [2, 7]])
      } finally {
        await again.stop()
      }
      // and a member given a passed epoch at start-up (a newcomer's --epoch) still starts with it
      const given = await createSwarmNode({ swarm, privateKey: ks[1]!, transport: { kind: 'port', ports: hub }, backend: 'cpu', epochs: [e1, later] })
      assert.equal(given.status().latestEpoch, 2)
      await given.stop()
    } finally {
      await Promise.all(nodes.map((n) => n.stop()))
      await rm(dir, { recursive: true, force: true })
    }
  })
})
