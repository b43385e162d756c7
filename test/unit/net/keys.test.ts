import assert from 'node:assert/strict'
import { mkdtemp, rm, stat, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, test } from 'node:test'
import { generateKeyPair, privateKeyToProtobuf } from '@libp2p/crypto/keys'
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
