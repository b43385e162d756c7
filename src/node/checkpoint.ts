/**
 * Checkpoints: everything a member needs to resume (next round, θ, momentum, RNG states,
 * privacy steps) in one self-checking file, `checkpoint-<round>.ckpt` in the data directory.
 *
 * Layout: magic `MONNACK1` · u32 LE header length · header JSON (UTF-8) · θ (d float32 LE) ·
 * momentum (d float32 LE) · sha256 of everything before it (32 bytes). Written to a temporary
 * file, fsynced, then renamed over (atomic on POSIX); the two newest are kept, so a checkpoint
 * torn or corrupted on disk is reported and the previous one used.
 */
import { mkdir, open, readdir, readFile, rename, rm } from 'node:fs/promises'
import { join } from 'node:path'
import { sha256 } from '@noble/hashes/sha2.js'
import { MonnaError } from '../errors.ts'
import { type Logger, silentLogger } from '../logger.ts'
import type { RngState } from '../rng.ts'
import type { EngineSnapshot } from './engine.ts'

const MAGIC = new TextEncoder().encode('MONNACK1')
const FILE = /^checkpoint-(\d{10})\.ckpt$/
/** Two: the newest and one fallback (a crash can tear at most the file being written). */
export const checkpointsKept = 2
/** Largest header we parse (RNG states and ids are a few hundred bytes). */
const MAX_HEADER_BYTES = 1 << 20

export interface CheckpointHeader {
  version: 1
  swarmId: string
  member: string
  round: number
  dim: number
  learnerRng: unknown
  engineRng: RngState
  privacySteps: number
  writtenAt: string
}

/** A checkpoint file that cannot be used (torn, corrupted, or not a checkpoint). */
export class CorruptCheckpointError extends MonnaError {
  override name = 'CorruptCheckpointError'
  readonly path: string
  readonly reason: string
  constructor(path: string, reason: string) {
    super(`checkpoint ${path} is corrupt: ${reason}`)
    this.path = path
    this.reason = reason
  }
}

/** The data directory holds checkpoints of another swarm, member or model. */
export class CheckpointMismatchError extends MonnaError {
  override name = 'CheckpointMismatchError'
  readonly path: string
  readonly field: string
  constructor(path: string, field: string, found: unknown, expected: unknown) {
    super(
      `checkpoint ${path} belongs to ${field} ${JSON.stringify(found)}, this node is ${JSON.stringify(expected)}; use another data directory (or delete it to start over)`,
    )
    this.path = path
    this.field = field
  }
}

export function encodeCheckpoint(meta: { swarmId: string; member: string }, s: EngineSnapshot): Uint8Array {
  const header: CheckpointHeader = {
    version: 1,
    swarmId: meta.swarmId,
    member: meta.member,
    round: s.round,
    dim: s.params.length,
    learnerRng: s.learnerRng,
    engineRng: s.engineRng,
    privacySteps: s.privacySteps,
    writtenAt: new Date().toISOString(),
  }
  if (s.momentum.length !== s.params.length) throw new CorruptCheckpointError('(memory)', 'momentum and θ differ in length')
  const h = new TextEncoder().encode(JSON.stringify(header))
  const d = s.params.length
  const body = MAGIC.length + 4 + h.length + 8 * d
  const out = new Uint8Array(body + 32)
  const view = new DataView(out.buffer)
  out.set(MAGIC, 0)
  view.setUint32(MAGIC.length, h.length, true)
  out.set(h, MAGIC.length + 4)
  let off = MAGIC.length + 4 + h.length
  for (const v of [s.params, s.momentum]) {
    for (let i = 0; i < d; i++, off += 4) view.setFloat32(off, v[i]!, true)
  }
  out.set(sha256(out.subarray(0, body)), body)
  return out
}

export function decodeCheckpoint(bytes: Uint8Array, path = '(bytes)'): { header: CheckpointHeader; snapshot: EngineSnapshot } {
  const bad = (reason: string): never => {
    throw new CorruptCheckpointError(path, reason)
  }
  if (bytes.length < MAGIC.length + 4 + 32) bad(`${bytes.length} bytes is too short`)
  for (let i = 0; i < MAGIC.length; i++) if (bytes[i] !== MAGIC[i]) bad('not a monna checkpoint (bad magic)')
  const body = bytes.length - 32
  const sum = sha256(bytes.subarray(0, body))
  for (let i = 0; i < 32; i++) if (sum[i] !== bytes[body + i]) bad('checksum mismatch (torn or modified file)')
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength)
  const hLen = view.getUint32(MAGIC.length, true)
  if (hLen > MAX_HEADER_BYTES || MAGIC.length + 4 + hLen > body) bad(`header length ${hLen} out of range`)
  let header: CheckpointHeader
  try {
    header = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(bytes.subarray(MAGIC.length + 4, MAGIC.length + 4 + hLen)))
  } catch {
    return bad('header is not JSON')
  }
  if (header.version !== 1) bad(`unknown version ${String(header.version)}`)
  if (!Number.isInteger(header.round) || header.round < 0) bad(`bad round ${String(header.round)}`)
  if (!Number.isInteger(header.dim) || header.dim < 0) bad(`bad dim ${String(header.dim)}`)
  if (MAGIC.length + 4 + hLen + 8 * header.dim !== body) bad(`size does not match d = ${header.dim}`)
  const d = header.dim
  let off = MAGIC.length + 4 + hLen
  const read = (): Float32Array => {
    const v = new Float32Array(d)
    for (let i = 0; i < d; i++, off += 4) v[i] = view.getFloat32(off, true)
    return v
  }
  const params = read()
  const momentum = read()
  return {
    header,
    snapshot: { round: header.round, params, momentum, learnerRng: header.learnerRng, engineRng: header.engineRng, privacySteps: header.privacySteps },
  }
}

function fileName(round: number): string {
  return `checkpoint-${String(round).padStart(10, '0')}.ckpt`
}

/** Checkpoint files in `dir`, newest (highest round) first. */
export async function listCheckpoints(dir: string): Promise<string[]> {
  let names: string[]
  try {
    names = await readdir(dir)
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return []
    throw err
  }
  return names
    .filter((n) => FILE.test(n))
    .sort()
    .reverse()
    .map((n) => join(dir, n))
}

/** Writes a checkpoint atomically (temp file, fsync, rename) and keeps only the newest `checkpointsKept`. */
export async function writeCheckpoint(dir: string, meta: { swarmId: string; member: string }, s: EngineSnapshot): Promise<string> {
  await mkdir(dir, { recursive: true })
  const path = join(dir, fileName(s.round))
  const tmp = join(dir, `.${fileName(s.round)}.${Math.random().toString(36).slice(2)}.tmp`)
  const fh = await open(tmp, 'w', 0o600)
  try {
    await fh.writeFile(encodeCheckpoint(meta, s))
    await fh.sync()
  } finally {
    await fh.close()
  }
  await rename(tmp, path)
  try {
    const dh = await open(dir, 'r')
    try {
      await dh.sync()
    } finally {
      await dh.close()
    }
  } catch {
    // directory fsync is best-effort (not supported everywhere)
  }
  const all = await listCheckpoints(dir)
  for (const old of all.slice(checkpointsKept)) await rm(old, { force: true })
  return path
}

/**
 * The newest usable checkpoint in `dir` (undefined when there is none). Corrupt files are
 * reported through `logger` and skipped (the previous one is used); a checkpoint of another
 * swarm, member or model size throws CheckpointMismatchError.
 */
export async function loadLatestCheckpoint(
  dir: string,
  expect: { swarmId: string; member: string; dim: number },
  logger: Logger = silentLogger,
): Promise<{ path: string; snapshot: EngineSnapshot; skipped: { path: string; reason: string }[] } | undefined> {
  const skipped: { path: string; reason: string }[] = []
  for (const path of await listCheckpoints(dir)) {
    let decoded: ReturnType<typeof decodeCheckpoint>
    try {
      decoded = decodeCheckpoint(await readFile(path), path)
    } catch (err) {
      if (!(err instanceof CorruptCheckpointError)) throw err
      logger.error('corrupt checkpoint; trying the previous one', { path, reason: err.reason })
      skipped.push({ path, reason: err.reason })
      continue
    }
    const { header, snapshot } = decoded
    if (header.swarmId !== expect.swarmId) throw new CheckpointMismatchError(path, 'swarm', header.swarmId, expect.swarmId)
    if (header.member !== expect.member) throw new CheckpointMismatchError(path, 'member', header.member, expect.member)
    if (header.dim !== expect.dim) throw new CheckpointMismatchError(path, 'model size', header.dim, expect.dim)
    return { path, snapshot, skipped }
  }
  if (skipped.length > 0) logger.error('no usable checkpoint: starting from round 0', { skipped: skipped.length })
  return undefined
}
