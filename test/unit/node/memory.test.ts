import assert from 'node:assert/strict'
import { spawnSync } from 'node:child_process'
import { join } from 'node:path'
import { describe, it } from 'node:test'

const memoryModule = join(import.meta.dirname, '../../../node/memory.ts')

// In a child process: the collector sets V8 flags for the whole process, and a test must see a
// process that was started without --expose-gc.
function inChild(code: string): { status: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, ['--input-type=module', '-e', code], { encoding: 'utf8', timeout: 60_000 })
  return { status: r.status, stdout: r.stdout, stderr: r.stderr }
}

describe('roundCollector (node/memory.ts: one full collection after each round)', () => {
  it('collects an unreachable object held only weakly, in a process started without --expose-gc', () => {
    const r = inChild(`
      import { roundCollector } from ${JSON.stringify(memoryModule)}
      if (typeof globalThis.gc === 'function') throw new Error('started with gc exposed')
      const collector = roundCollector()
      let held = { big: new Uint8Array(1 << 20) }
      const ref = new WeakRef(held)
      held = undefined
      // a WeakRef's target stays alive until the job that created it ends
      await new Promise((r) => setImmediate(r))
      collector.collect()
      console.log(ref.deref() === undefined ? 'collected' : 'alive')
    `)
    assert.equal(r.status, 0, r.stderr)
    assert.equal(r.stdout.trim(), 'collected')
  })
  it('frees array buffers whose owners reached the old generation (what a closed round leaves)', () => {
    const r = inChild(`
      import { roundCollector } from ${JSON.stringify(memoryModule)}
      const collector = roundCollector()
      let payloads = Array.from({ length: 20 }, () => new Uint8Array(1 << 20).fill(1))
      // two collections: the owners are promoted, as a payload kept for two rounds is
      collector.collect(); collector.collect()
      const before = process.memoryUsage().arrayBuffers
      payloads = undefined
      await new Promise((r) => setImmediate(r))
      collector.collect()
      const after = process.memoryUsage().arrayBuffers
      console.log(JSON.stringify({ before, after }))
    `)
    assert.equal(r.status, 0, r.stderr)
    const { before, after } = JSON.parse(r.stdout) as { before: number; after: number }
    assert.ok(before >= 20 << 20, `${before} bytes of array buffers before`)
    assert.ok(before - after >= 20 << 20, `freed ${before - after} bytes of ${20 << 20}`)
  })
})
