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
import { createMemoryHub, createSwarmNode, membershipOf } from '../../../src/node/index.ts'

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
      const node = await createSwarmNode({ swarm, privateKey: ks[0]!, transport: { kind: 'memory', hub }, dataDir: join(dir, 'm0'), backend: 'cpu' })
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
      const again = await createSwarmNode({ swarm, privateKey: ks[0]!, transport: { kind: 'memory', hub }, dataDir: join(dir, 'm0'), backend: 'cpu' })
      assert.equal(again.status().latestEpoch, 1)
      await again.stop()

      // the added member: refused without the epoch, accepted with it (as a member of epoch 1)
      const hub1 = createMemoryHub({ membership: { ...membershipOf(swarm), members: e1.members.map((m) => m.id) } })
      await assert.rejects(createSwarmNode({ swarm, privateKey: ks[4]!, transport: { kind: 'memory', hub }, backend: 'cpu' }), /not a member/)
      await assert.rejects(createSwarmNode({ swarm, privateKey: ks[4]!, transport: { kind: 'memory', hub }, backend: 'cpu', epochs: [{ ...e1, activation: 4 }] }), EpochRejectedError)
      const added = await createSwarmNode({ swarm, privateKey: ks[4]!, transport: { kind: 'memory', hub: hub1 }, backend: 'cpu', epochs: [e1] })
      assert.equal(added.status().epoch, 1)
      assert.equal(added.status().n, 5)
      assert.equal(added.status().name, 'm4')
      await added.stop()
    } finally {
      await rm(dir, { recursive: true, force: true })
    }
  })
})
