import assert from 'node:assert/strict'
import { spawnSync } from 'node:child_process'
import { mkdtemp, readdir, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { describe, it } from 'node:test'
import { type CpuProfile, keyOf, summarize } from '../../../scripts/cpu-profile.ts'

const script = join(import.meta.dirname, '../../../scripts/cpu-profile.ts')

const frame = (functionName: string, url: string, lineNumber = 0) => ({ functionName, url, lineNumber })

/** root → a (monna broadcast), b (a package), gc; samples every 1 ms: a a b gc a b b … */
function synthetic(): CpuProfile {
  return {
    nodes: [
      { id: 1, callFrame: frame('(root)', '') },
      { id: 2, callFrame: frame('fill', 'file:///x/monna/src/broadcast/frame-stream.ts', 176) },
      { id: 3, callFrame: frame('decode', 'file:///x/node_modules/@chainsafe/libp2p-noise/dist/src/utils.js', 64) },
      { id: 4, callFrame: frame('(garbage collector)', '') },
      { id: 5, callFrame: frame('update', 'node:internal/crypto/cipher', 153) },
    ],
    startTime: 0,
    // 10 samples, 1 ms apart: the first at 1 ms
    samples: [2, 2, 3, 4, 2, 3, 3, 5, 5, 2],
    timeDeltas: Array(10).fill(1000),
  }
}

describe('scripts/cpu-profile.ts', () => {
  it('keys a frame by function (name, script, line) or by package', () => {
    assert.equal(keyOf(frame('fill', 'file:///a/b/src/broadcast/frame-stream.ts', 176), 'function'), 'fill src/broadcast/frame-stream.ts:177')
    assert.equal(keyOf(frame('', 'file:///a/node_modules/uint8arraylist/dist/src/index.js', 9), 'function'), '(anonymous) uint8arraylist/dist/src/index.js:10')
    assert.equal(keyOf(frame('(garbage collector)', ''), 'function'), '(garbage collector)')
    assert.equal(keyOf(frame('x', 'file:///a/node_modules/@libp2p/peer-store/dist/src/store.js'), 'package'), '@libp2p/peer-store')
    assert.equal(keyOf(frame('x', 'file:///a/node_modules/libp2p/node_modules/uint8arrays/dist/a.js'), 'package'), 'libp2p')
    assert.equal(keyOf(frame('update', 'node:internal/crypto/cipher'), 'package'), 'node:internal/crypto')
    assert.equal(keyOf(frame('concat', 'node:buffer'), 'package'), 'node:buffer')
    assert.equal(keyOf(frame('f', 'file:///a/monna/src/aggregation/fast.ts'), 'package'), 'monna aggregation')
    assert.equal(keyOf(frame('f', 'file:///a/monna/node/commands/start.ts'), 'package'), 'monna cli')
    assert.equal(keyOf(frame('writeBuffer', ''), 'package'), 'writeBuffer')
  })

  it('sums self time over the profiles within the window, as shares, largest first', () => {
    const all = summarize([synthetic(), synthetic()], { by: 'function' })
    assert.equal(all.total, 20_000)
    assert.deepEqual(
      all.entries.map(([k, v]) => [k, Math.round(v * 100)]),
      [
        ['fill src/broadcast/frame-stream.ts:177', 40],
        ['decode @chainsafe/libp2p-noise/dist/src/utils.js:65', 30],
        ['update node:internal/crypto/cipher:154', 20],
        ['(garbage collector)', 10],
      ],
    )
    // samples at 3…6 ms: b gc a b
    const w = summarize([synthetic()], { fromMs: 3, toMs: 7, by: 'package' })
    assert.equal(w.total, 4000)
    assert.deepEqual(w.entries, [
      ['@chainsafe/libp2p-noise', 0.5],
      ['(garbage collector)', 0.25],
      ['monna broadcast', 0.25],
    ])
    assert.deepEqual(summarize([synthetic()], { fromMs: 100 }), { total: 0, entries: [] })
  })

  it('reads the profiles node --cpu-prof writes, keeps those of the processes asked for, and refuses bad options in one line', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'monna-cpuprof-'))
    try {
      // two processes: one spends its time in burn(), the other in idle waits
      const busy = join(dir, 'busy.mjs')
      await writeFile(busy, 'function burn() { let x = 0; for (let i = 0; i < 3e8; i++) x = (x + i * 7) % 1000003; return x }\nconsole.log(burn())\n')
      const idle = join(dir, 'idle.mjs')
      await writeFile(idle, 'await new Promise((r) => setTimeout(r, 300))\n')
      for (const f of [busy, idle]) {
        const r = spawnSync(process.execPath, ['--cpu-prof', `--cpu-prof-dir=${join(dir, 'prof')}`, f], { encoding: 'utf8', timeout: 120_000 })
        assert.equal(r.status, 0, r.stderr)
      }
      assert.equal((await readdir(join(dir, 'prof'))).length, 2)
      const r = spawnSync(process.execPath, [script, join(dir, 'prof'), '--only-with', 'busy.mjs', '--top', '3'], { encoding: 'utf8', timeout: 120_000 })
      assert.equal(r.status, 0, r.stderr)
      const lines = r.stdout.trim().split('\n')
      assert.match(lines[0]!, /^# 1 of 2 profiles, [\d.]+ s of samples in the window$/)
      assert.match(lines[1]!, /^\s*\d+\.\d % {2}burn .*busy\.mjs:1$/, r.stdout)
      assert.ok(Number(lines[1]!.trim().split(' ')[0]) > 50, r.stdout)
      const bad = spawnSync(process.execPath, [script, join(dir, 'prof'), '--by', 'file'], { encoding: 'utf8', timeout: 120_000 })
      assert.notEqual(bad.status, 0)
      assert.match(bad.stderr.trim(), /^--by must be function or package, got 'file'$/)
      const none = spawnSync(process.execPath, [script, join(dir, 'prof'), '--only-with', 'nothing-like-this'], { encoding: 'utf8', timeout: 120_000 })
      assert.notEqual(none.status, 0)
      assert.match(none.stderr.trim(), /^no profile to read in .* with a script matching 'nothing-like-this'$/)
    } finally {
      await rm(dir, { recursive: true, force: true })
    }
  })
})
