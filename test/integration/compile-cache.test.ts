/**
 * bin/monna.js turns on Node's compile cache: every monna process after the first reads its
 * compiled modules — and a checkout's TypeScript, stripped of its types — from disk, so a member
 * process never loads Node's type stripper (docs/memory.md). NODE_DISABLE_COMPILE_CACHE=1 turns
 * it off, as Node documents.
 */
import assert from 'node:assert/strict'
import { spawnSync } from 'node:child_process'
import { existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, test } from 'node:test'
import { monnaBin, repoRoot } from '../unit/node/cli-harness.ts'

const dir = mkdtempSync(join(tmpdir(), 'monna-compile-cache-'))
after(() => rmSync(dir, { recursive: true, force: true }))

/** Files under `d`, however Node nests them. */
const entries = (d: string): number => (existsSync(d) ? readdirSync(d, { recursive: true, withFileTypes: true }).filter((e) => e.isFile()).length : 0)

/** `monna --version` with `tmp` as the temporary directory (NODE_COMPILE_CACHE itself would turn the cache on without monna). */
function monna(tmp: string, env: Record<string, string> = {}): { status: number | null; stdout: string; stderr: string } {
  const { NODE_COMPILE_CACHE: _a, NODE_DISABLE_COMPILE_CACHE: _b, ...rest } = process.env
  mkdirSync(tmp, { recursive: true })
  env = { TMPDIR: tmp, ...env }
  const r = spawnSync(process.execPath, [monnaBin, '--version'], { cwd: repoRoot, env: { ...rest, ...env }, encoding: 'utf8', timeout: 120_000 })
  return { status: r.status, stdout: r.stdout, stderr: r.stderr }
}

test("monna keeps its compiled modules in Node's compile cache (the temporary directory's node-compile-cache), reads them back, and keeps none with NODE_DISABLE_COMPILE_CACHE=1", () => {
  const cache = join(dir, 'on', 'node-compile-cache')
  const first = monna(join(dir, 'on'))
  assert.equal(first.status, 0, first.stderr)
  // the program's modules (its own TypeScript and its dependencies): hundreds of entries
  const written = entries(cache)
  assert.ok(written > 100, `${written} entries in the compile cache`)
  const second = monna(join(dir, 'on'))
  assert.equal(second.status, 0, second.stderr)
  assert.equal(second.stdout, first.stdout)
  // served from the cache: nothing new to write
  assert.equal(entries(cache), written)

  const off = join(dir, 'off')
  const disabled = monna(off, { NODE_DISABLE_COMPILE_CACHE: '1' })
  assert.equal(disabled.status, 0, disabled.stderr)
  assert.equal(disabled.stdout, first.stdout)
  assert.equal(entries(off), 0)
})
