/**
 * The composition root over the real stack in one process: four `createSwarmNode` members on
 * 127.0.0.1 (libp2p, signed echo broadcast), one of them Byzantine and sending non-finite
 * models through the behaviour hook. Honest members start from one θ₀, learn, never aggregate
 * the invalid models (counted as rejections), checkpoint, and stop cleanly.
 */

import assert from 'node:assert/strict'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, it } from 'node:test'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { Registry } from 'prom-client'
import { verifyCacheSize } from '../../src/broadcast/crypto.ts'
import { parseSwarm } from '../../src/config/schema.ts'
import { peerIdOfKey } from '../../src/net/index.ts'
import { createSwarmNode, encodeModel, listCheckpoints, type SwarmNode } from '../../src/node/index.ts'
import { actingBehaviour } from '../../src/topology/actions.ts'
import { freePorts } from '../unit/node/cli-harness.ts'

const nodes: SwarmNode[] = []
let dir = ''
after(async () => {
  await Promise.all(nodes.map((n) => n.stop()))
  if (dir !== '') await rm(dir, { recursive: true, force: true })
})

it('4 members over libp2p on loopback learn from one θ0; non-finite models from a Byzantine member are rejected', { timeout: 240_000 }, async () => {
  dir = await mkdtemp(join(tmpdir(), 'monna-node-libp2p-'))
  const keys = await Promise.all(Array.from({ length: 4 }, () => generateKeyPair('Ed25519')))
  const base = await freePorts(4)
  const swarm = parseSwarm({
    name: 'loopback',
    seed: 11,
    f: 1,
    members: keys.map((k, i) => ({ id: peerIdOfKey(k), name: `m${i}`, addresses: [`/ip4/127.0.0.1/tcp/${base + i}/p2p/${peerIdOfKey(k)}`] })),
    task: {
      dataset: { kind: 'gaussian-mixture', classes: 4, dim: 10, trainSize: 1600, testSize: 400, seed: 2 },
      model: { kind: 'logreg' },
      batchSize: 16,
      schedule: { kind: 'constant', lr: 0.2 },
      beta: 0.9,
      rounds: 24,
      evalEvery: 8,
    },
    timing: { roundTimeoutMs: 10_000, roundWindow: 8 },
  })
  const nonFinite = actingBehaviour('non-finite', async (ctx) => {
      const m = ctx.ownHalfStep.slice()
      m[0] = Number.POSITIVE_INFINITY
      return { kind: 'send-raw', payload: encodeModel(m) }
    })
  const registry = new Registry()
  for (const [i, k] of keys.entries()) {
    nodes.push(
      await createSwarmNode({
        swarm,
        privateKey: k,
        listen: [`/ip4/127.0.0.1/tcp/${base + i}`],
        dataDir: join(dir, `m${i}`),
        checkpointEvery: 4,
        backend: 'cpu',
        ...(i === 3 ? { behaviour: nonFinite } : { registry }),
      }),
    )
  }
  // members over TCP keep few verifications (src/broadcast/crypto.ts: they would never be asked again)
  assert.equal(verifyCacheSize().limit, 1_024)
  const theta0 = nodes.map((n) => n.snapshot().params)
  for (const t of theta0) assert.deepEqual(t, theta0[0])
  assert.ok(nodes[0]!.multiaddrs.some((a) => a.includes(`/tcp/${base}/`)))
  const reports = await Promise.all(nodes.map((n) => n.run()))
  const byzantine = peerIdOfKey(keys[3]!)
  for (const rs of reports.slice(0, 3)) {
    assert.equal(rs.at(-1)!.round, 23)
    assert.ok(rs.at(-1)!.accuracy! > 0.75, `accuracy ${rs.at(-1)!.accuracy}`)
    for (const r of rs) {
      assert.ok(r.delivered >= 3, `round ${r.round}: ${r.delivered}`)
      assert.ok(!r.senders!.includes(byzantine), `round ${r.round} aggregated a non-finite model`)
    }
    assert.ok((rs.at(-1)!.rejected['non-finite'] ?? 0) >= 1, JSON.stringify(rs.at(-1)!.rejected))
  }
  const metrics = await registry.metrics()
  assert.match(metrics, /monna_rejections_total\{member="m0",reason="non-finite"\} [1-9]/)
  assert.match(metrics, /libp2p_/)
  assert.equal((await listCheckpoints(join(dir, 'm0'))).length, 2)
})

it('--bootstrap through one member is enough: members learn each other\'s addresses from announcements', { timeout: 240_000 }, async () => {
  const keys = await Promise.all(Array.from({ length: 4 }, () => generateKeyPair('Ed25519')))
  const base = await freePorts(4)
  const swarm = parseSwarm({
    name: 'bootstrap',
    seed: 5,
    f: 1,
    members: keys.map((k, i) => ({ id: peerIdOfKey(k), name: `b${i}` })), // no addresses in the swarm file
    task: {
      dataset: { kind: 'gaussian-mixture', classes: 4, dim: 10, trainSize: 800, testSize: 200, seed: 2 },
      model: { kind: 'logreg' },
      batchSize: 16,
      rounds: 4,
    },
    timing: { roundTimeoutMs: 20_000, roundWindow: 8 },
  })
  const first = `/ip4/127.0.0.1/tcp/${base}/p2p/${peerIdOfKey(keys[0]!)}`
  const group: SwarmNode[] = []
  for (const [i, k] of keys.entries()) {
    const node = await createSwarmNode({ swarm, privateKey: k, listen: [`/ip4/127.0.0.1/tcp/${base + i}`], backend: 'cpu', ...(i > 0 ? { bootstrap: [first] } : {}) })
    group.push(node)
    nodes.push(node)
  }
  const reports = await Promise.all(group.map((n) => n.run()))
  for (const rs of reports) {
    assert.equal(rs.length, 4)
    assert.ok(rs.every((r) => r.delivered >= 3))
  }
  // members 1..3 aggregated each other's models, not only member 0's: they found each other
  const ids = keys.map((k) => peerIdOfKey(k))
  assert.ok(reports[1]!.some((r) => r.senders!.includes(ids[2]!) || r.senders!.includes(ids[3]!)))
})
