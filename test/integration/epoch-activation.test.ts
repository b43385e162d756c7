/**
 * A membership epoch whose activation round a member has already run is refused by that member
 * when it arrives by gossip (issue 12), while one for a later round is taken. Four
 * `createSwarmNode` members on 127.0.0.1 (libp2p, epoch gossip): three run the task's six
 * rounds, the fourth is idle at round 0, so the admin can hand it epochs the others are past.
 */
import assert from 'node:assert/strict'
import { after, it } from 'node:test'
import { setTimeout as sleep } from 'node:timers/promises'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { parseSwarm } from '../../src/config/schema.ts'
import { genesisEpoch, proposeEpoch, signEpoch } from '../../src/membership/index.ts'
import { peerIdOfKey } from '../../src/net/index.ts'
import { createSwarmNode, type SwarmNode } from '../../src/node/index.ts'
import { freePorts } from '../unit/node/cli-harness.ts'

const nodes: SwarmNode[] = []
after(async () => {
  await Promise.all(nodes.map((n) => n.stop()))
})

/** Polls `pred` (the epoch gossip has no event to wait on); rejects after `ms` (a hang guard, not a criterion). */
async function until(pred: () => boolean, what: string, ms = 60_000): Promise<void> {
  const end = performance.now() + ms
  while (!pred()) {
    if (performance.now() > end) throw new Error(`${what}: not within ${ms} ms`)
    await sleep(100)
  }
}

it('a relayed epoch for a round a member already ran is refused there; one for a later round is taken', { timeout: 240_000 }, async () => {
  const keys = await Promise.all(Array.from({ length: 4 }, () => generateKeyPair('Ed25519')))
  const admin = await generateKeyPair('Ed25519')
  const base = await freePorts(4)
  const swarm = parseSwarm({
    name: 'loopback-epochs',
    seed: 5,
    f: 1,
    admin: peerIdOfKey(admin),
    members: keys.map((k, i) => ({ id: peerIdOfKey(k), name: `m${i}`, addresses: [`/ip4/127.0.0.1/tcp/${base + i}/p2p/${peerIdOfKey(k)}`] })),
    task: { dataset: { kind: 'gaussian-mixture', classes: 4, dim: 10, trainSize: 800, testSize: 200, seed: 2 }, model: { kind: 'logreg' }, rounds: 6, evalEvery: 100 },
    timing: { roundTimeoutMs: 10_000, roundWindow: 8 },
  })
  for (const [i, k] of keys.entries()) {
    nodes.push(await createSwarmNode({ swarm, privateKey: k, listen: [`/ip4/127.0.0.1/tcp/${base + i}`], backend: 'cpu' }))
  }
  const [idle, ...running] = nodes as [SwarmNode, ...SwarmNode[]]
  // n − f = 3: the three run every round without the idle member
  const reports = await Promise.all(running.map((n) => n.run()))
  for (const rs of reports) assert.equal(rs.at(-1)!.round, 5)
  assert.equal(idle.status().round, 0)

  // epoch 1 activates at round 3: the idle member (round 0) takes it from the admin and relays
  // it; the others ran round 3 with f = 1 and refuse it. Epoch 2 (round 6) reaches them all.
  const e1 = await signEpoch(proposeEpoch(genesisEpoch(swarm), { f: 0, activation: 3 }), admin)
  const e2 = await signEpoch(proposeEpoch(e1, { f: 1, activation: 6 }), admin)
  assert.deepEqual(await idle.submitEpoch(e1), { epoch: 1, activation: 3, added: true })
  assert.deepEqual(await idle.submitEpoch(e2), { epoch: 2, activation: 6, added: true })
  await until(() => running.every((n) => n.status().latestEpoch === 2), 'epoch 2 reached every running member')
  for (const n of running) {
    assert.deepEqual(
      n.epochs().map((e) => e.epoch),
      [2],
      `${n.status().name} took epoch 1, whose activation round 3 it had already run (before this change: taken, applied from its next round)`,
    )
  }
  assert.deepEqual(idle.epochs().map((e) => e.epoch), [1, 2])
})
