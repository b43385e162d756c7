/**
 * A member started with mDNS on a host that cannot send multicast says so at start (issue 17):
 * before, members waited silently and stalled. The host without a multicast route is a network
 * namespace of our own with loopback only (root, `ip`; CI runs as root). Where a namespace cannot
 * be created the test fails with one line saying why.
 */
import assert from 'node:assert/strict'
import { execFile } from 'node:child_process'
import { join, resolve } from 'node:path'
import { after, before, test } from 'node:test'
import { promisify } from 'node:util'
import { natLabUnavailable } from '../support/netns.ts'

const exec = promisify(execFile)
const root = resolve(import.meta.dirname, '../..')
const ns = `mdnsw${process.pid % 100000}`

before(async () => {
  const why = await natLabUnavailable()
  if (why !== undefined) throw new Error(`the mDNS warning test needs a network namespace: ${why}`)
  await exec('ip', ['netns', 'add', ns])
  await exec('ip', ['netns', 'exec', ns, 'ip', 'link', 'set', 'lo', 'up'])
})

after(async () => {
  await exec('ip', ['netns', 'del', ns]).catch(() => {})
})

test('a node with mDNS on a host with no multicast route warns once at start, naming the send error and what to do', async () => {
  const script = join(root, 'test/support/mdns-start.ts')
  const { stdout } = await exec('ip', ['netns', 'exec', ns, join(root, 'node_modules/.bin/node'), script], { cwd: root, timeout: 120_000 })
  const out = JSON.parse(stdout.trim().split('\n').at(-1)!) as { problem: string | null; warnings: string[] }
  assert.equal(out.problem, 'ENETUNREACH')
  const mdnsWarnings = out.warnings.filter((w) => w.startsWith('mDNS cannot send'))
  assert.equal(mdnsWarnings.length, 1, JSON.stringify(out.warnings))
  assert.match(mdnsWarnings[0]!, /ENETUNREACH.*--bootstrap/)
})
