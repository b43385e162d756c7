/** The data directory is checked at start-up (issue 12): one error naming the path and the fix, before the member joins. */
import assert from 'node:assert/strict'
import { mkdir, mkdtemp, readdir, rm, stat, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, describe, it } from 'node:test'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { parseSwarm } from '../../../src/config/schema.ts'
import { peerIdOfKey } from '../../../src/net/index.ts'
import { checkDataDir, createSwarmNode, DataDirError, type DataDirFs, membershipOf } from '../../../src/node/index.ts'
import { chattr } from '../../support/chattr.ts'
import { createMemoryHub } from '../../support/memory-hub.ts'

const dir = await mkdtemp(join(tmpdir(), 'monna-data-dir-'))
const immutable: string[] = []
after(async () => {
  for (const d of immutable) chattr('-i', d)
  await rm(dir, { recursive: true, force: true })
})

/** A directory nobody can create files in, root included (the immutable attribute); undefined where chattr does not work. */
async function readOnlyDir(name: string): Promise<string | undefined> {
  const d = join(dir, name)
  await mkdir(d)
  if (!chattr('+i', d)) return undefined
  immutable.push(d)
  return d
}

const isDataDirError = (path: string, message: RegExp, code?: string) => (err: unknown) => {
  assert.ok(err instanceof DataDirError, `expected a DataDirError, got ${String(err)}`)
  assert.equal(err.name, 'DataDirError')
  assert.equal(err.path, path)
  if (code !== undefined) assert.equal(err.code, code)
  assert.match(err.message, message)
  assert.ok(!err.message.includes('\n'), 'one line')
  assert.ok(err.message.includes('data directory'), 'says what to change')
  return true
}

describe('checkDataDir', () => {
  it('creates a missing directory and its parents, leaving it empty', async () => {
    const d = join(dir, 'a', 'b', 'c')
    await checkDataDir(d)
    assert.ok((await stat(d)).isDirectory())
    assert.deepEqual(await readdir(d), [])
    await checkDataDir(d) // existing: fine
  })

  it('a file in place of the directory, or a file as a parent, is a DataDirError naming it', async () => {
    const file = join(dir, 'plain-file')
    await writeFile(file, 'x')
    await assert.rejects(checkDataDir(file), isDataDirError(file, /data directory .*plain-file is a file, not a directory/))
    const under = join(file, 'data')
    await assert.rejects(checkDataDir(under), isDataDirError(under, /cannot create data directory .*plain-file\/data: .*plain-file is a file/, 'ENOTDIR'))
    await assert.rejects(checkDataDir(join(under, 'deeper')), isDataDirError(join(under, 'deeper'), /plain-file is a file/))
  })

  it('a directory that cannot be written is a DataDirError, even for root (immutable attribute)', async (t) => {
    const ro = await readOnlyDir('immutable')
    if (ro === undefined) return t.skip('chattr +i is not available here')
    await assert.rejects(checkDataDir(ro), isDataDirError(ro, /is not writable \(EPERM\)/, 'EPERM'))
    // nor can a data directory be created inside it
    await assert.rejects(checkDataDir(join(ro, 'data')), isDataDirError(join(ro, 'data'), /cannot create data directory .*\(EPERM\)/, 'EPERM'))
  })

  it('EACCES on the probe file (a directory without write permission for a non-root user) is reported with its code', async () => {
    const d = join(dir, 'eacces')
    const deny = (what: string) => Object.assign(new Error(`${what}: permission denied`), { code: 'EACCES' })
    const fs: DataDirFs = {
      mkdir: async () => undefined,
      stat: async () => ({ isDirectory: () => true }),
      touch: async (p) => {
        throw deny(p)
      },
      rm: async () => {},
    }
    await assert.rejects(checkDataDir(d, fs), isDataDirError(d, /data directory .*eacces is not writable \(EACCES\); give this user write permission/, 'EACCES'))
    // a probe that can be created but not removed: refused as well (old checkpoints are removed)
    await assert.rejects(
      checkDataDir(d, { ...fs, touch: async () => {}, rm: async (p) => { throw deny(p) } }),
      isDataDirError(d, /not writable \(EACCES\)/, 'EACCES'),
    )
    await assert.rejects(checkDataDir(d, { ...fs, mkdir: async (p) => { throw deny(p) } }), isDataDirError(d, /cannot create data directory .*\(EACCES\)/, 'EACCES'))
  })
})

describe('createSwarmNode checks its data directory before joining', () => {
  it('refuses a data directory that is a file, under a file, or not writable, with a DataDirError', async (t) => {
    const ks = await Promise.all(Array.from({ length: 4 }, () => generateKeyPair('Ed25519')))
    const swarm = parseSwarm({
      name: 'unit',
      f: 1,
      members: ks.map((k, i) => ({ id: peerIdOfKey(k), name: `m${i}` })),
      task: { dataset: { kind: 'gaussian-mixture', classes: 4, dim: 10, trainSize: 400, testSize: 100, seed: 3 }, model: { kind: 'logreg' }, rounds: 5 },
    })
    const hub = createMemoryHub({ membership: membershipOf(swarm) })
    const make = (dataDir: string) => createSwarmNode({ swarm, privateKey: ks[0]!, transport: { kind: 'port', ports: hub }, dataDir, backend: 'cpu' })
    const file = join(dir, 'node-file')
    await writeFile(file, 'x')
    await assert.rejects(make(file), isDataDirError(file, /is a file, not a directory/))
    await assert.rejects(make(join(file, 'm0')), isDataDirError(join(file, 'm0'), /node-file is a file/))
    const ro = await readOnlyDir('node-immutable')
    if (ro === undefined) return t.skip('chattr +i is not available here')
    // before this check the member started, ran its first rounds and died at its first checkpoint
    await assert.rejects(make(ro), isDataDirError(ro, /is not writable/))
  })
})
