import assert from 'node:assert/strict'
import { chmod, mkdtemp, rm, stat, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, test } from 'node:test'
import { generateKeyPair, privateKeyToProtobuf } from '@libp2p/crypto/keys'
import { memoryLogger } from '../../../src/logger.ts'
import { loadOrCreateKey, MalformedKeyFileError, peerIdOfKey } from '../../../src/net/index.ts'

const dir = await mkdtemp(join(tmpdir(), 'monna-keys-'))
after(() => rm(dir, { recursive: true, force: true }))

test('creates an Ed25519 key with mode 0600, then reads the same identity back', async () => {
  const path = join(dir, 'id.key')
  const k1 = await loadOrCreateKey(path)
  assert.equal(k1.type, 'Ed25519')
  assert.equal((await stat(path)).mode & 0o777, 0o600)
  const k2 = await loadOrCreateKey(path)
  assert.equal(peerIdOfKey(k2), peerIdOfKey(k1))
  assert.match(peerIdOfKey(k1), /^12D3KooW/)
})

test('a malformed key file is a MalformedKeyFileError naming the file', async () => {
  const path = join(dir, 'bad.key')
  await writeFile(path, 'not a key at all')
  await assert.rejects(loadOrCreateKey(path), (e: unknown) => e instanceof MalformedKeyFileError && e.path === path && e.name === 'MalformedKeyFileError')
  const empty = join(dir, 'empty.key')
  await writeFile(empty, new Uint8Array(0))
  await assert.rejects(loadOrCreateKey(empty), MalformedKeyFileError)
})

test('a key of another type is refused', async () => {
  const path = join(dir, 'secp.key')
  await writeFile(path, privateKeyToProtobuf(await generateKeyPair('secp256k1')))
  await assert.rejects(loadOrCreateKey(path), (e: unknown) => e instanceof MalformedKeyFileError && /Ed25519/.test(e.message))
})

test('a directory in place of the key file is refused', async () => {
  await assert.rejects(loadOrCreateKey(dir), MalformedKeyFileError)
})

test('an existing key file open to group or others is used, with a warning naming the chmod to run', async () => {
  const path = join(dir, 'shared.key')
  const made = await loadOrCreateKey(path)
  const warnings = (log: ReturnType<typeof memoryLogger>) => log.records.filter((r) => r.level === 'warn')

  const created = memoryLogger()
  await loadOrCreateKey(join(dir, 'fresh.key'), { logger: created })
  assert.deepEqual(warnings(created), [], 'a key it creates (mode 0600) is not warned about')
  const ok = memoryLogger()
  await loadOrCreateKey(path, { logger: ok })
  assert.deepEqual(warnings(ok), [], 'mode 0600: no warning')

  for (const [mode, can] of [
    [0o644, 'read'],
    [0o640, 'read'],
    [0o620, 'replace'],
    [0o666, 'read and replace'],
  ] as const) {
    await chmod(path, mode)
    const log = memoryLogger()
    const key = await loadOrCreateKey(path, { logger: log })
    assert.equal(peerIdOfKey(key), peerIdOfKey(made), 'the key is still used')
    const w = warnings(log)
    assert.equal(w.length, 1, `mode 0${mode.toString(8)}`)
    assert.ok(w[0]!.msg.includes(`run \`chmod 600 ${path}\``), w[0]!.msg)
    assert.match(w[0]!.msg, new RegExp(`has mode 0${mode.toString(8)}: group or others can ${can} this member's identity`))
    assert.ok(!w[0]!.msg.includes('\n'))
    assert.equal(w[0]!.fields?.path, path)
  }
  // a path the shell would split is quoted in the command
  const spaced = join(dir, "my member's.key")
  await writeFile(spaced, privateKeyToProtobuf(made), { mode: 0o644 })
  await chmod(spaced, 0o644)
  const log = memoryLogger()
  await loadOrCreateKey(spaced, { logger: log })
  assert.ok(warnings(log)[0]!.msg.includes(`chmod 600 '${dir}/my member'\\''s.key'`), warnings(log)[0]!.msg)
})
