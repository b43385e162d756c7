/** A checkpoint that cannot be written is reported, counted and retried; the run goes on (issue 12). */
import assert from 'node:assert/strict'
import { rmSync, writeFileSync } from 'node:fs'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { it } from 'node:test'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { Registry } from 'prom-client'
import { parseSwarm } from '../../../src/config/schema.ts'
import { memoryLogger } from '../../../src/logger.ts'
import { peerIdOfKey } from '../../../src/net/index.ts'
import { createSwarmNode, listCheckpoints, loadLatestCheckpoint, membershipOf, type RoundReport } from '../../../src/node/index.ts'
import { createMemoryHub } from '../../support/memory-hub.ts'

it('a checkpoint that cannot be written is logged with its path and code, counted, and retried at the next checkpoint round while the rounds go on', async () => {
  const ks = await Promise.all(Array.from({ length: 4 }, () => generateKeyPair('Ed25519')))
  // f = 0: every member waits for all four models, so none can run two rounds ahead of a member
  // slowed down (by its failing checkpoints, or a loaded machine) and make it catch up — a
  // catch-up skips rounds, and with f = 1 one did under load (CI rehearsal of a helper)
  const swarm = parseSwarm({
    name: 'unit',
    seed: 7,
    f: 0,
    members: ks.map((k, i) => ({ id: peerIdOfKey(k), name: `m${i}` })),
    task: { dataset: { kind: 'gaussian-mixture', classes: 4, dim: 10, trainSize: 800, testSize: 200, seed: 3 }, model: { kind: 'logreg' }, rounds: 12, evalEvery: 100 },
    timing: { roundTimeoutMs: 5000, roundWindow: 8 },
  })
  const hub = createMemoryHub({ membership: membershipOf(swarm) })
  const dir = await mkdtemp(join(tmpdir(), 'monna-ckpt-fail-'))
  const dataDir = join(dir, 'm0')
  const registry = new Registry()
  const log = memoryLogger()
  const nodes = await Promise.all(
    ks.map((k, i) =>
      createSwarmNode({
        swarm,
        privateKey: k,
        transport: { kind: 'port', ports: hub },
        backend: 'cpu',
        ...(i === 0 ? { dataDir, checkpointEvery: 2, registry, logger: log } : {}),
      }),
    ),
  )
  try {
    // checkpoints after rounds 1, 3, 5, … (snapshots of rounds 2, 4, 6, …): the data directory is
    // replaced by a file right after the first one, and the file removed after round 5
    const m0 = nodes[0]!
    m0.addEventListener('round', (e) => {
      const { round } = (e as CustomEvent<RoundReport>).detail
      if (round === 1) {
        rmSync(dataDir, { recursive: true })
        writeFileSync(dataDir, 'not a directory')
      }
      if (round === 5) rmSync(dataDir)
    })
    const reports = await Promise.all(nodes.map((n) => n.run()))
    for (const rs of reports) assert.deepEqual(rs.map((r) => r.round), [...Array(12).keys()], 'every member ran every round')

    const failures = log.records.filter((r) => r.msg.startsWith('could not write the checkpoint'))
    assert.deepEqual(failures.map((r) => [r.level, r.fields?.round]), [['warn', 4], ['warn', 6]])
    for (const f of failures) {
      assert.equal(f.fields?.dataDir, dataDir)
      assert.equal(typeof f.fields?.code, 'string', 'the errno code is logged')
      assert.match(String(f.fields?.error), /m0/)
    }
    assert.match(await registry.metrics(), /monna_checkpoint_failures_total\{member="m0"\} 2/)
    // the cause removed, the next checkpoint rounds wrote again, up to the final one
    const files = await listCheckpoints(dataDir)
    assert.match(files[0]!, /checkpoint-0000000012\.ckpt$/)
    const found = await loadLatestCheckpoint(dataDir, { swarmId: membershipOf(swarm).swarmId, member: m0.peerId, dim: m0.snapshot().params.length })
    assert.equal(found?.snapshot.round, 12)

    // the shutdown checkpoint is reported and counted the same way (and stop() still closes everything)
    rmSync(dataDir, { recursive: true })
    writeFileSync(dataDir, 'not a directory')
    await m0.stop()
    const last = log.records.filter((r) => r.msg === 'could not write the shutdown checkpoint')
    assert.equal(last.length, 1)
    assert.equal(last[0]!.fields?.dataDir, dataDir)
    assert.equal(typeof last[0]!.fields?.code, 'string')
    assert.match(await registry.metrics(), /monna_checkpoint_failures_total\{member="m0"\} 3/)
  } finally {
    await Promise.all(nodes.map((n) => n.stop()))
    await rm(dir, { recursive: true, force: true })
  }
})
