import assert from 'node:assert/strict'
import { mkdtemp, readFile, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { describe, it } from 'node:test'
import { runMatrix } from '../../../src/topology/matrix.ts'
import { type ProgressEvent, runTopology } from '../../../src/topology/runner.ts'
import { parseScenario, type Scenario } from '../../../src/topology/schema.ts'

// A tiny in-process swarm: 4 members, one Byzantine, one slow honest member.
const scenario = parseScenario({
  name: 'unit-runner',
  n: 4,
  f: 1,
  task: {
    dataset: { kind: 'gaussian-mixture', classes: 4, dim: 8, trainSize: 800, testSize: 400, seed: 1 },
    model: { kind: 'logreg' },
    schedule: { kind: 'constant', lr: 2 },
    rounds: 12,
    evalEvery: 4,
    evalExamples: 400,
  },
  byzantine: [{ members: 3, behaviour: 'ipm', epsilon: 4 }],
  network: { members: [{ members: 2, latencyMs: 100 }] },
  expect: { minHonestAccuracy: 0.7 },
  runtime: { backend: 'cpu' },
})

describe('topology runner (in-process)', () => {
  it('runs the swarm, reports progress and writes a passing report', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'monna-run-'))
    try {
      const events: ProgressEvent[] = []
      const { report, files } = await runTopology(scenario, { outDir: dir, mode: 'in-process', onProgress: (e) => events.push(e) })
      const rounds = events.filter((e) => e.kind === 'round')
      assert.deepEqual(
        rounds.map((e) => e.round),
        Array.from({ length: 12 }, (_, i) => i),
      )
      assert.ok(rounds.at(-1)!.accuracy !== undefined)
      assert.equal(report.nodes.length, 4)
      assert.deepEqual(
        report.nodes.map((n) => n.byzantine),
        [false, false, false, true],
      )
      for (const n of report.nodes) assert.equal(n.roundsCompleted, 12)
      // no member floods another with refused frames: nobody cut anybody off (ipm only changes the model)
      for (const n of report.nodes) assert.equal(n.coolOffs, 0, `${n.name} cut off a peer ${n.coolOffs} times`)
      assert.equal(report.passed, true, JSON.stringify(report.expectations))
      const json = JSON.parse(await readFile(files.json, 'utf8'))
      assert.equal(json.nodes[3].behaviour, 'ipm')
    } finally {
      await rm(dir, { recursive: true, force: true })
    }
  })

  it('the same swarm with `mean` is poisoned by the attack', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'monna-run-'))
    try {
      const { matrix, files } = await runMatrix(scenario, {
        outDir: dir,
        mode: 'in-process',
        matrix: { rules: [{ rule: 'nna' }, { rule: 'mean' }], behaviours: [{ behaviour: 'ipm', epsilon: 4 }] },
      })
      const [nna, mean] = matrix.cells
      assert.equal(nna!.passed, true)
      assert.equal(mean!.passed, false)
      assert.ok(mean!.medianHonestAccuracy! < nna!.minHonestAccuracy! - 0.3, JSON.stringify(matrix.cells))
      assert.match(await readFile(files.markdown, 'utf8'), /\| mean \|/)
      assert.match(await readFile(files.svg, 'utf8'), /^<svg/)
    } finally {
      await rm(dir, { recursive: true, force: true })
    }
  })
})

describe('a run that cannot go on ends early', () => {
  // before: a diverged member broadcast its non-finite model, every member refused it, and the
  // others waited for n − r models for ever — until the scenario's timeout (here 10 min; the
  // test's own 3-min timeout would fail it)
  const diverging = (): Scenario =>
    parseScenario({
      ...structuredClone(scenario),
      name: 'unit-runner-diverges',
      byzantine: [],
      network: { members: [] },
      task: { ...structuredClone(scenario.task), schedule: { kind: 'constant', lr: 1e300 } },
      runtime: { backend: 'cpu', timeoutMs: 600_000 },
    })
  for (const mode of ['in-process', 'process'] as const) {
    it(`${mode}: an honest model that diverges stops its member (ModelDivergedError), and the run ends once fewer than n − r members are left`, { timeout: 180_000 }, async () => {
      const dir = await mkdtemp(join(tmpdir(), 'monna-run-'))
      try {
        const events: ProgressEvent[] = []
        const { report } = await runTopology(diverging(), { outDir: dir, mode, onProgress: (e) => events.push(e) })
        const ended = events.filter((e) => e.kind === 'ended')
        assert.equal(ended.length, 1, 'one end event')
        assert.match(ended[0]!.reason, /left running .* a round needs 3 \(n − r\)/)
        assert.equal(report.endedEarly, ended[0]!.reason)
        assert.equal(report.passed, false)
        const exits = events.filter((e) => e.kind === 'member-exit')
        const diverged = exits.filter((e) => e.code !== 0)
        assert.ok(diverged.length >= 2, `at least n − (n − r) + 1 = 2 members diverged (${JSON.stringify(exits)})`)
        for (const e of diverged) {
          if (mode === 'in-process') assert.match(e.error!, /^ModelDivergedError: the model diverged at round \d+/)
          else assert.match(await readFile(join(dir, 'logs', `${e.name}.log`), 'utf8'), /the model diverged at round \d+/)
        }
        // the others were stopped by the runner, and say so
        for (const e of exits.filter((x) => x.code === 0)) assert.match(e.error ?? '', /^stopped by the runner: /)
        assert.equal(exits.length, 4)
      } finally {
        await rm(dir, { recursive: true, force: true })
      }
    })
  }
})
