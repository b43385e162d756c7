/**
 * The topology runner's answer to a port taken between its pick and the member's bind: the
 * member exits 4 (EXIT_ADDRESS_IN_USE) before any round, the runner stops the others and starts
 * the run again on fresh ports. The collision is played by the member program itself (`program`
 * option): a wrapper around bin/monna.js whose first start of any member exits 4 at once, as
 * `monna start` does on EADDRINUSE; every later start is the real member. 4 real processes on
 * 127.0.0.1.
 */
import assert from 'node:assert/strict'
import { existsSync } from 'node:fs'
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { test } from 'node:test'
import type { LogFields, Logger } from '../../src/logger.ts'
import { packageRoot } from '../../src/package-root.ts'
import { runTopology } from '../../src/topology/runner.ts'
import { parseScenario } from '../../src/topology/schema.ts'

test('a member that finds its port taken (exit 4) makes the runner start the run again on fresh ports, and the run completes', { timeout: 300_000 }, async () => {
  const dir = await mkdtemp(join(tmpdir(), 'monna-retry-'))
  try {
    const marker = join(dir, 'collided.txt')
    const wrapper = join(dir, 'member.mjs')
    const real = join(packageRoot(), 'bin', 'monna.js')
    await writeFile(
      wrapper,
      `import { existsSync, readFileSync, writeFileSync } from 'node:fs'
import { dirname, join } from 'node:path'
const marker = ${JSON.stringify(marker)}
if (!existsSync(marker)) {
  const config = process.argv[process.argv.indexOf('--config') + 1]
  // the swarm file of the first attempt, to compare with the second
  writeFileSync(marker, readFileSync(join(dirname(config), 'swarm.yaml'), 'utf8'))
  console.error('monna: cannot listen on /ip4/127.0.0.1/tcp/1: another program holds that port (EADDRINUSE)')
  process.exit(4)
}
await import(${JSON.stringify(real)})
`,
    )
    const s = parseScenario({
      name: 'retry',
      n: 4,
      f: 1,
      task: {
        dataset: { kind: 'gaussian-mixture', classes: 4, dim: 8, trainSize: 800, testSize: 400, seed: 1 },
        model: { kind: 'logreg' },
        schedule: { kind: 'constant', lr: 1 },
        rounds: 4,
        evalEvery: 4,
        evalExamples: 400,
      },
      runtime: { backend: 'cpu', timeoutMs: 240_000 },
    })
    const warnings: Array<{ msg: string; fields?: LogFields }> = []
    const logger: Logger = {
      debug() {},
      info() {},
      warn(msg, fields) {
        warnings.push({ msg, ...(fields === undefined ? {} : { fields }) })
      },
      error() {},
      child() {
        return logger
      },
    }
    const out = join(dir, 'run')
    const { report } = await runTopology(s, { outDir: out, mode: 'process', program: wrapper, logger })
    assert.ok(existsSync(marker), 'the first attempt met the taken port')
    assert.equal(warnings.filter((w) => /starting the run again on fresh ports/.test(w.msg)).length, 1, JSON.stringify(warnings))
    const first = await readFile(marker, 'utf8')
    const second = await readFile(join(out, 'swarm.yaml'), 'utf8')
    const ports = (yaml: string): string[] => [...yaml.matchAll(/\/tcp\/(\d+)\//g)].map((m) => m[1]!)
    assert.equal(ports(first).length, 4)
    assert.notDeepEqual(ports(second), ports(first), 'the second attempt runs on other ports')
    for (const n of report.nodes) {
      assert.equal(n.roundsCompleted, 4, `${n.name} completed ${n.roundsCompleted} of 4 rounds`)
      assert.equal(n.exitCode, 0, n.error)
    }
  } finally {
    await rm(dir, { recursive: true, force: true })
  }
})
