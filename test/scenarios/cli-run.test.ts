import assert from 'node:assert/strict'
import { execFile } from 'node:child_process'
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { describe, it } from 'node:test'
import { promisify } from 'node:util'

const root = join(import.meta.dirname, '../..')
const monna = join(root, 'bin/monna.js')
const run = promisify(execFile)

async function monnaRun(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const { stdout, stderr } = await run(process.execPath, [monna, 'run', ...args], { cwd: root, timeout: 170_000 })
    return { code: 0, stdout, stderr }
  } catch (err) {
    const e = err as { code?: number; stdout?: string; stderr?: string }
    return { code: typeof e.code === 'number' ? e.code : -1, stdout: e.stdout ?? '', stderr: e.stderr ?? '' }
  }
}

describe('monna run (the program)', () => {
  it('ci-smoke: 4 processes, progress on stderr, report location and PASS verdict, exit 0', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'monna-cli-run-'))
    try {
      const r = await monnaRun(['topologies/ci-smoke.yaml', '--out', dir])
      assert.equal(r.code, 0, r.stderr + r.stdout)
      assert.match(r.stderr, /^round 40\/40 .*honest accuracy min/m)
      assert.match(r.stdout, new RegExp(`report: ${join(dir, 'report.html')}`))
      assert.match(r.stdout, /^PASS: ci-smoke/m)
      const report = JSON.parse(await readFile(join(dir, 'report.json'), 'utf8'))
      assert.equal(report.nodes.length, 4)
      assert.equal(report.passed, true)
    } finally {
      await rm(dir, { recursive: true, force: true })
    }
  })

  it('exit 1 when an expectation fails, 2 when the scenario is invalid', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'monna-cli-run-'))
    try {
      const scenario = join(dir, 'strict.yaml')
      await writeFile(
        scenario,
        `name: strict
n: 4
f: 1
task: { dataset: { kind: gaussian-mixture, classes: 4, dim: 8, trainSize: 400, testSize: 200, seed: 1 }, model: { kind: logreg }, rounds: 3, evalEvery: 3 }
byzantine: [{ members: 3, behaviour: silent }]
expect: { minHonestAccuracy: 1 }
runtime: { backend: cpu }
`,
      )
      const failed = await monnaRun([scenario, '--in-process', '--quiet', '--out', join(dir, 'out')])
      assert.equal(failed.code, 1, failed.stderr)
      assert.match(failed.stdout, /^FAIL \(minHonestAccuracy\)/m)
      // the same file with fields overridden on the command line
      const relaxed = await monnaRun([scenario, '--in-process', '--quiet', '--out', join(dir, 'relaxed'), '--set', 'expect.minHonestAccuracy=0', '--set', 'aggregator={rule: mean}', '--set', 'name=relaxed'])
      assert.equal(relaxed.code, 0, relaxed.stderr)
      assert.match(relaxed.stdout, /^PASS: relaxed — rule mean/m)
      const badSet = await monnaRun([scenario, '--in-process', '--set', 'aggregator.rule'])
      assert.equal(badSet.code, 2)
      assert.match(badSet.stderr, /^monna run: \S*strict\.yaml: --set aggregator\.rule: give path=value, e\.g\. aggregator\.rule=mean/m)
      const badRule = await monnaRun([scenario, '--in-process', '--set', 'aggregator.rule=median-of-nothing'])
      assert.equal(badRule.code, 2)
      assert.match(badRule.stderr, /aggregator\.rule/)
      await writeFile(scenario, 'name: bad\nn: 3\nf: 1\n')
      const invalid = await monnaRun([scenario, '--in-process'])
      assert.equal(invalid.code, 2)
      assert.match(invalid.stderr, /f = 1 needs n ≥ 4/)
    } finally {
      await rm(dir, { recursive: true, force: true })
    }
  })
})
