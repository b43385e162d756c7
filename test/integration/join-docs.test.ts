/**
 * docs/join.md's walk-through is a real session: the shell block after `<!-- join-test -->`
 * runs on loopback as written, with `monna` being this checkout's bin/monna.js and only the
 * BASE / METRICS ports swapped for free ones.
 */
import assert from 'node:assert/strict'
import { mkdtemp, readFile, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, it } from 'node:test'
import { freePorts, repoRoot, runWalkthrough } from '../unit/node/cli-harness.ts'

let dir = ''
after(async () => {
  if (dir !== '') await rm(dir, { recursive: true, force: true })
})

it('the "Join a running swarm" walk-through runs on loopback', { timeout: 240_000 }, async () => {
  const doc = await readFile(join(repoRoot, 'docs', 'join.md'), 'utf8')
  const at = doc.indexOf('<!-- join-test -->')
  assert.ok(at >= 0, 'docs/join.md has no <!-- join-test --> block')
  const m = /```sh\n([\s\S]*?)```/.exec(doc.slice(at))
  assert.ok(m !== null)
  const block = m[1]!
  for (const cmd of ['monna swarm init', 'monna swarm add-member', 'monna start --swarm', '--bootstrap', '--epoch', 'monna status']) assert.ok(block.includes(cmd), cmd)
  const base = await freePorts(5)
  const metrics = await freePorts(4)
  const script = block.replace(/^BASE=\d+$/m, `BASE=${base}`).replace(/^METRICS=\d+$/m, `METRICS=${metrics}`)
  dir = await mkdtemp(join(tmpdir(), 'monna-join-doc-'))
  const run = await runWalkthrough(script, dir)
  assert.equal(run.code, 0, `${run.out}\n${run.err.slice(-3000)}`)
  assert.match(run.out, /^epoch 1 of swarm lan-[0-9a-f]{16}: n = 5, f = 1, activates at round \d+$/m)
  assert.match(run.out, /published: .*"added":true/)
  // node-0's status, before the activation round (epoch 1 pending) or after it (epoch 1 in force)
  assert.match(run.out, /source +running\nepoch +(0 \(n = 4, f = 1\); epoch 1 activates at round \d+|1 \(n = 5, f = 1\))\nround +\d+\npeers +\d connected/m)
  // and the frames it refused so far, by reason
  assert.match(run.out, /^rejected +(0|\d+ \([a-z-]+ \d+(, [a-z-]+ \d+)*\))$/m)
  assert.match(run.out, /node-4 {2}behind the swarm: caught up from round \d+ to \d+ \(\d+ certified models\)/)
  assert.match(run.out, /^node-4 {2}round 60\/60 .*done$/m, 'the new member finishes the run')
  assert.match(run.out, /source +data directory \(not running\)\nepoch +1 \(n = 5, f = 1\)\nround +60$/m, 'offline status from the data directory')
})
