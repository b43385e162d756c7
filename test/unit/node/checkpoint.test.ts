import assert from 'node:assert/strict'
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { basename, join } from 'node:path'
import { describe, it } from 'node:test'
import { memoryLogger } from '../../../src/logger.ts'
import {
  CheckpointMismatchError,
  CorruptCheckpointError,
  decodeCheckpoint,
  encodeCheckpoint,
  listCheckpoints,
  loadLatestCheckpoint,
  writeCheckpoint,
} from '../../../src/node/checkpoint.ts'
import type { EngineSnapshot } from '../../../src/node/engine.ts'

const meta = { swarmId: 'unit-0123456789abcdef', member: '12D3KooWtest' }

function snap(round: number, d = 5): EngineSnapshot {
  return {
    round,
    params: Float32Array.from({ length: d }, (_, i) => i + round / 10),
    momentum: Float32Array.from({ length: d }, (_, i) => -i),
    learnerRng: { batch: { s: [1, 2, 3, 4] }, noise: { s: [5, 6, 7, 8] } },
    engineRng: { s: [9, 10, 11, 12] },
    privacySteps: round,
  }
}

describe('checkpoints', () => {
  it('round-trips every field', () => {
    const s = snap(7)
    const { header, snapshot } = decodeCheckpoint(encodeCheckpoint(meta, s))
    assert.equal(header.swarmId, meta.swarmId)
    assert.equal(header.member, meta.member)
    assert.deepEqual(snapshot, s)
  })

  it('detects a flipped bit, a torn file and a foreign file', () => {
    const bytes = encodeCheckpoint(meta, snap(3))
    const flipped = bytes.slice()
    flipped[bytes.length - 40]! ^= 1
    assert.throws(() => decodeCheckpoint(flipped), (e: unknown) => e instanceof CorruptCheckpointError && /checksum/.test(e.reason))
    assert.throws(() => decodeCheckpoint(bytes.subarray(0, bytes.length - 9)), CorruptCheckpointError)
    assert.throws(() => decodeCheckpoint(new TextEncoder().encode('not a checkpoint at all, really, not one bit of it')), (e: unknown) => e instanceof CorruptCheckpointError && /magic/.test(e.reason))
  })

  it('writes atomically, keeps the two newest, and falls back to the previous one when the newest is corrupt', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'monna-ckpt-'))
    try {
      for (const r of [2, 4, 6]) await writeCheckpoint(dir, meta, snap(r))
      const files = await listCheckpoints(dir)
      assert.deepEqual(files.map((f) => basename(f)), ['checkpoint-0000000006.ckpt', 'checkpoint-0000000004.ckpt'])
      const raw = await readFile(files[0]!)
      await writeFile(files[0]!, raw.subarray(0, raw.length >> 1)) // torn write
      const logger = memoryLogger()
      const found = await loadLatestCheckpoint(dir, { ...meta, dim: 5 }, logger)
      assert.equal(found?.snapshot.round, 4)
      assert.equal(found?.skipped.length, 1)
      assert.ok(logger.records.some((r) => r.level === 'error' && r.msg.startsWith('corrupt checkpoint')))
      await assert.rejects(loadLatestCheckpoint(dir, { ...meta, member: 'someone-else', dim: 5 }), CheckpointMismatchError)
      await assert.rejects(loadLatestCheckpoint(dir, { ...meta, dim: 6 }), CheckpointMismatchError)
      assert.equal(await loadLatestCheckpoint(join(dir, 'absent'), { ...meta, dim: 5 }), undefined)
    } finally {
      await rm(dir, { recursive: true, force: true })
    }
  })
})
