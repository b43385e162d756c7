import assert from 'node:assert/strict'
import { spawnSync } from 'node:child_process'
import { test } from 'node:test'
import { fileURLToPath } from 'node:url'

const root = fileURLToPath(new URL('../../../', import.meta.url))

// A child process records every package its imports resolve to, creates a TCP member node on
// 127.0.0.1 without UPnP, stops it, and prints the packages.
const child = `
import { registerHooks } from 'node:module'
const seen = new Set()
registerHooks({
  resolve(spec, ctx, next) {
    const r = next(spec, ctx)
    const m = r.url.match(/node_modules\\/((?:@[^/]+\\/)?[^/]+)/)
    if (m) seen.add(m[1])
    return r
  },
})
const { generateKeyPair } = await import('@libp2p/crypto/keys')
const { createNetNode } = await import('./src/net/index.ts')
const node = await createNetNode({ privateKey: await generateKeyPair('Ed25519'), listen: ['/ip4/127.0.0.1/tcp/0'] })
await node.stop()
console.log(JSON.stringify([...seen]))
`

test('a member node without UPnP does not load @libp2p/upnp-nat (≈ 7 MB resident in every member process); libp2p and its TCP stack are loaded', { timeout: 60_000 }, () => {
  const r = spawnSync(process.execPath, ['--input-type=module', '-e', child], { cwd: root, encoding: 'utf8', timeout: 50_000 })
  assert.equal(r.status, 0, r.stderr)
  const loaded = JSON.parse(r.stdout.trim().split('\n').at(-1)!) as string[]
  assert.ok(loaded.includes('libp2p') && loaded.includes('@libp2p/tcp') && loaded.includes('@chainsafe/libp2p-noise'), `loaded: ${loaded.join(' ')}`)
  assert.ok(!loaded.includes('@libp2p/upnp-nat'), 'the UPnP package was loaded')
})
