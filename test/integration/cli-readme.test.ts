/**
 * The README's LAN walk-through is a real session: its tested shell block (after the
 * `<!-- readme-test:lan -->` marker) runs on loopback exactly as written, with `monna` being
 * this checkout's bin/monna.js. Only the base port is swapped for a free one.
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

function readmeBlock(readme: string, marker: string): string {
  const section = readme.slice(readme.indexOf('<!-- section:lan:start -->'), readme.indexOf('<!-- section:lan:end -->'))
  const at = section.indexOf(`<!-- readme-test:${marker} -->`)
  assert.ok(at >= 0, `README has no <!-- readme-test:${marker} --> block in the LAN section`)
  const m = /```sh\n([\s\S]*?)```/.exec(section.slice(at))
  assert.ok(m !== null, 'no ```sh block after the marker')
  return m[1]!
}

it('the README LAN walk-through runs on loopback', { timeout: 240_000 }, async () => {
  const block = readmeBlock(await readFile(join(repoRoot, 'README.md'), 'utf8'), 'lan')
  assert.match(block, /monna keygen/)
  assert.match(block, /monna swarm init/)
  assert.match(block, /monna start --config/)
  const base = await freePorts(4)
  const script = block.replace('--base-port 9400', `--base-port ${base}`)
  dir = await mkdtemp(join(tmpdir(), 'monna-readme-'))
  const run = await runWalkthrough(script, dir)
  assert.equal(run.code, 0, `${run.out}\n${run.err.slice(-3000)}`)
  assert.match(run.out, /^12D3KooW\w+$/m, 'keygen prints a PeerId')
  assert.match(run.out, /swarm lan-[0-9a-f]{16}: 4 members, f = 1/)
  for (let i = 0; i < 4; i++) {
    const done = new RegExp(`^node-${i}  round 20/20  .*acc (\\d+\\.\\d)%.*done$`, 'm').exec(run.out)
    assert.ok(done !== null, `node-${i} did not finish 20 rounds:\n${run.out.slice(-2000)}`)
    assert.ok(Number(done[1]) >= 70, `node-${i} accuracy ${done[1]}%`)
  }
})
