import assert from 'node:assert/strict'
import { mkdtemp, readdir, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { basename, join } from 'node:path'
import { describe, it } from 'node:test'
import { generateKeyPair } from '@libp2p/crypto/keys'
import type { PrivateKey } from '@libp2p/interface'
import { Registry } from 'prom-client'
import { parseSwarm, type SwarmConfig } from '../../../src/config/schema.ts'
import { memoryLogger } from '../../../src/logger.ts'
import { peerIdOfKey } from '../../../src/net/index.ts'
import { createSwarmNode, listCheckpoints, membershipOf, type RoundReport } from '../../../src/node/index.ts'
import { createMemoryHub } from '../../support/memory-hub.ts'

async function keys(n: number): Promise<PrivateKey[]> {
  return Promise.all(Array.from({ length: n }, () => generateKeyPair('Ed25519')))
}

function swarmOf(ks: PrivateKey[], f: number, rounds: number, privacy?: Record<string, unknown>): SwarmConfig {
  return parseSwarm({
    name: 'unit',
    seed: 7,
    f,
    members: ks.map((k, i) => ({ id: peerIdOfKey(k), name: `m${i}` })),
    task: {
      dataset: { kind: 'gaussian-mixture', classes: 4, dim: 10, trainSize: 1600, testSize: 400, seed: 3 },
      model: { kind: 'logreg' },
      batchSize: 16,
      schedule: { kind: 'constant', lr: 0.2 },
      beta: 0.9,
      rounds,
      evalEvery: 5,
      evalExamples: 400,
      ...(privacy !== undefined ? { privacy } : {}),
    },
    timing: { roundTimeoutMs: 5000, roundWindow: 8 },
  })
}

describe('createSwarmNode on the memory hub', () => {
  it('starts every member from the same θ0, learns the task, reports per round and checkpoints', async () => {
    const ks = await keys(4)
    const swarm = swarmOf(ks, 1, 15)
    const hub = createMemoryHub({ membership: membershipOf(swarm) })
    const dir = await mkdtemp(join(tmpdir(), 'monna-node-'))
    const registry = new Registry()
    const nodes = await Promise.all(
      ks.map((k, i) => createSwarmNode({ swarm, privateKey: k, transport: { kind: 'port', ports: hub }, dataDir: join(dir, `m${i}`), checkpointEvery: 5, backend: 'cpu', registry })),
    )
    try {
      const theta0 = nodes.map((n) => n.snapshot().params)
      for (const t of theta0) assert.deepEqual(t, theta0[0])
      // the node re-emits the engine's 'aggregated' (what member processes collect garbage on), each before its round's report
      const order: string[] = []
      nodes[0]!.addEventListener('aggregated', (e) => order.push(`aggregated ${(e as CustomEvent<{ round: number }>).detail.round}`))
      nodes[0]!.addEventListener('round', (e) => order.push(`round ${(e as CustomEvent<RoundReport>).detail.round}`))
      const reports = await Promise.all(nodes.map((n) => n.run()))
      assert.deepEqual(
        order,
        Array.from({ length: 15 }, (_, t) => [`aggregated ${t}`, `round ${t}`]).flat(),
      )
      for (const rs of reports) {
        assert.equal(rs.length, 15)
        const last = rs.at(-1)!
        assert.equal(last.final, true)
        assert.ok(last.accuracy! > 0.8, `final accuracy ${last.accuracy}`)
        assert.equal(last.sketch?.length, 64)
        assert.ok(rs.every((r: RoundReport) => r.delivered >= 3 && r.needed === 3))
      }
      const files = await listCheckpoints(join(dir, 'm0'))
      assert.equal(files.length, 2, 'keeps the two newest checkpoints')
      assert.match(files[0]!, /checkpoint-0000000015\.ckpt$/)
      const text = await registry.metrics()
      assert.match(text, /monna_round\{member="m0"\} 14/)
      assert.match(text, /monna_aggregation_seconds_count\{member="m0"\} 15/)
    } finally {
      await Promise.all(nodes.map((n) => n.stop()))
      await rm(dir, { recursive: true, force: true })
    }
  })

  it('resumes from its data directory, and uses the previous checkpoint when the newest is corrupt', async () => {
    const ks = await keys(4)
    const swarm = swarmOf(ks, 1, 10)
    const hub = createMemoryHub({ membership: membershipOf(swarm) })
    const dir = await mkdtemp(join(tmpdir(), 'monna-node-'))
    const make = (i: number, logger = memoryLogger()) =>
      createSwarmNode({ swarm, privateKey: ks[i]!, transport: { kind: 'port', ports: hub }, dataDir: join(dir, `m${i}`), checkpointEvery: 3, backend: 'cpu', logger })
    try {
      const nodes = await Promise.all(ks.map((_, i) => make(i)))
      await Promise.all(nodes.map((n) => n.run()))
      await Promise.all(nodes.map((n) => n.stop()))
      // checkpoints at rounds 9 and 10 remain; corrupt the newest
      const files = await listCheckpoints(join(dir, 'm0'))
      assert.deepEqual(
        files.map((f) => basename(f)),
        ['checkpoint-0000000010.ckpt', 'checkpoint-0000000009.ckpt'],
      )
      await writeFile(files[0]!, 'garbage')
      const logger = memoryLogger()
      const again = await make(0, logger)
      assert.equal(again.resumedAt, 9)
      assert.ok(logger.records.some((r) => r.level === 'error' && r.msg.startsWith('corrupt checkpoint')))
      await again.stop()
      assert.ok((await readdir(join(dir, 'm0'))).length >= 1)
    } finally {
      await rm(dir, { recursive: true, force: true })
    }
  })

  it('with task.privacy, clips and noises the local step and reports the ε spent so far (RDP accountant)', async () => {
    const ks = await keys(4)
    const swarm = swarmOf(ks, 1, 6, { clipNorm: 1, noiseMultiplier: 1.1, delta: 1e-5 })
    const hub = createMemoryHub({ membership: membershipOf(swarm) })
    const nodes = await Promise.all(ks.map((k) => createSwarmNode({ swarm, privateKey: k, transport: { kind: 'port', ports: hub }, backend: 'cpu' })))
    try {
      const reports = await Promise.all(nodes.map((n) => n.run()))
      for (const rs of reports) {
        const eps = rs.map((r) => r.epsilon!)
        assert.ok(eps.every((e) => Number.isFinite(e) && e > 0), `ε ${eps}`)
        for (let i = 1; i < eps.length; i++) assert.ok(eps[i]! > eps[i - 1]!, `ε grows with the steps: ${eps}`)
      }
    } finally {
      await Promise.all(nodes.map((n) => n.stop()))
    }
  })
})
