import assert from 'node:assert/strict'
import { mkdtemp, readFile, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { describe, it } from 'node:test'
import { InvalidConfigError } from '../../../src/errors.ts'
import { loadDataset, partition } from '../../../src/learning/index.ts'
import { computeEpsilon } from '../../../src/privacy/index.ts'
import { runMatrix } from '../../../src/topology/matrix.ts'
import { type ProgressEvent, type RoundProgress, runTopology } from '../../../src/topology/runner.ts'
import { parseScenario } from '../../../src/topology/schema.ts'

// 4 members (1 Byzantine), 400 training examples: 100 per member; logistic regression.
const base = {
  name: 'unit-privacy',
  seed: 3,
  n: 4,
  f: 1,
  task: {
    dataset: { kind: 'gaussian-mixture', classes: 4, dim: 8, trainSize: 400, testSize: 200, seed: 1 },
    model: { kind: 'logreg' },
    schedule: { kind: 'constant', lr: 1 },
    batchSize: 10,
    rounds: 5,
    evalEvery: 5,
    evalExamples: 200,
    privacy: { noiseMultiplier: 1.5 },
  },
  byzantine: [{ members: 3, behaviour: 'alie' }],
  runtime: { backend: 'cpu' },
}

function rejects(input: unknown, path: RegExp): void {
  assert.throws(
    () => parseScenario(input),
    (e: unknown) => e instanceof InvalidConfigError && path.test(e.path),
  )
}

describe('privacy in scenario files', () => {
  it('accepts privacy and batch-size matrix axes ("none", a whole-run ε, a block) and task.privacy with defaults', () => {
    const s = parseScenario({
      ...base,
      matrix: { rules: [{ rule: 'nna' }], behaviours: ['alie'], privacy: ['none', 2, { noiseMultiplier: 1.1, clipNorm: 0.5 }], batchSizes: [10, 50] },
    })
    assert.deepEqual(s.task.privacy, { noiseMultiplier: 1.5, clipNorm: 1, delta: 1e-5 })
    assert.deepEqual(s.matrix!.privacy, ['none', 2, { noiseMultiplier: 1.1, clipNorm: 0.5, delta: 1e-5 }])
    assert.deepEqual(s.matrix!.batchSizes, [10, 50])
  })

  it('rejects bad privacy axes and blocks with an error naming the field', () => {
    const m = { rules: [{ rule: 'nna' }], behaviours: ['alie'] }
    rejects({ ...base, matrix: { ...m, privacy: ['nope'] } }, /matrix\.privacy\.0$/)
    rejects({ ...base, matrix: { ...m, privacy: [1, -2] } }, /matrix\.privacy\.1$/)
    rejects({ ...base, matrix: { ...m, privacy: [] } }, /matrix\.privacy$/)
    rejects({ ...base, matrix: { ...m, privacy: [{ epsilon: 1, noiseMultiplier: 1 }] } }, /matrix\.privacy\.0\.epsilon$/)
    rejects({ ...base, matrix: { ...m, privacy: [{ epsilon: 1, noise: 1 }] } }, /matrix\.privacy\.0/)
    rejects({ ...base, matrix: { ...m, batchSizes: [10, 0] } }, /matrix\.batchSizes\.1$/)
    rejects({ ...base, matrix: { ...m, batchSizes: [2.5] } }, /matrix\.batchSizes\.0$/)
    rejects({ ...base, task: { ...base.task, privacy: { clipNorm: 1 } } }, /task\.privacy\.epsilon$/)
    rejects({ ...base, task: { ...base.task, privacy: { epsilon: 1, stepEpsilon: 0.5 } } }, /task\.privacy\.epsilon$/)
    rejects({ ...base, task: { ...base.task, privacy: { epsilon: 1, delta: 1 } } }, /task\.privacy\.delta$/)
  })

  it('a private in-process run reports ε growing with the rounds, equal to the accountant for that many steps', async () => {
    const s = parseScenario(base)
    // the member's N as the node computes it: its iid shard of the training set
    const train = await loadDataset(s.task.dataset, 'train')
    const shardSizes = partition(train.y, train.numClasses, s.n, s.task.partition, s.seed).map((idx) => idx.length)
    const expected = (steps: number, member: number): number =>
      computeEpsilon({ samplingRate: s.task.batchSize / shardSizes[member]!, noiseMultiplier: 1.5, steps, delta: 1e-5 })
    const dir = await mkdtemp(join(tmpdir(), 'monna-privacy-'))
    try {
      const events: ProgressEvent[] = []
      const { report, files } = await runTopology(s, { outDir: dir, mode: 'in-process', onProgress: (e) => events.push(e) })
      const progress = events.filter((e): e is RoundProgress => e.kind === 'round')
      assert.equal(progress.length, 5)
      const maxExpected = (steps: number): number => Math.max(...[0, 1, 2].map((i) => expected(steps, i)))
      for (const [t, e] of progress.entries()) assert.ok(Math.abs(e.epsilon! - maxExpected(t + 1)) < 1e-9, `round ${t}: ε ${e.epsilon} vs ${maxExpected(t + 1)}`)
      for (let t = 1; t < progress.length; t++) assert.ok(progress[t]!.epsilon! > progress[t - 1]!.epsilon!, 'ε grows with the rounds')
      for (const node of report.nodes.filter((x) => !x.byzantine)) {
        const series = report.series.filter((r) => r.member === node.id).sort((a, b) => a.round - b.round)
        assert.deepEqual(
          series.map((r) => r.epsilon!.toPrecision(12)),
          series.map((r) => expected(r.round + 1, node.index).toPrecision(12)),
        )
        assert.ok(Math.abs(node.epsilon! - expected(5, node.index)) < 1e-9)
      }
      assert.ok(report.privacy !== undefined && Math.abs(report.privacy.maxHonestEpsilon! - maxExpected(5)) < 1e-9)
      const json = JSON.parse(await readFile(files.json, 'utf8'))
      assert.equal(typeof json.nodes[0].epsilon, 'number')
      assert.match(await readFile(files.html, 'utf8'), /ε spent/)
    } finally {
      await rm(dir, { recursive: true, force: true })
    }
  })

  it('a matrix over ε × batch size runs one cell per combination, with the ε spent in its row', async () => {
    const s = parseScenario({ ...base, task: { ...base.task, rounds: 4, evalEvery: 4 } })
    const dir = await mkdtemp(join(tmpdir(), 'monna-privacy-matrix-'))
    try {
      const { matrix, files } = await runMatrix(s, {
        outDir: dir,
        mode: 'in-process',
        matrix: { rules: [{ rule: 'nna' }], behaviours: ['alie', 'sign-flip'], batchSizes: [10, 20], privacy: [3, 'none'] },
      })
      assert.equal(matrix.cells.length, 2 * 2 * 2)
      const combos = matrix.cells.map((c) => `${c.behaviour}/${c.batchSize}/${c.privacy}`).sort()
      assert.deepEqual(combos, ['alie/10/none', 'alie/10/ε=3', 'alie/20/none', 'alie/20/ε=3', 'sign-flip/10/none', 'sign-flip/10/ε=3', 'sign-flip/20/none', 'sign-flip/20/ε=3'])
      const md = await readFile(files.markdown, 'utf8')
      for (const c of matrix.cells) {
        if (c.privacy === 'none') {
          assert.equal(c.epsilon, null)
          assert.match(md, new RegExp(`\\| ${c.behaviour} \\| nna \\| ${c.batchSize} \\| none \\| — \\|`))
        } else {
          // the whole-run target is met after the 4 rounds, and tightly (bisection of the accountant)
          assert.ok(c.epsilon! <= 3 && c.epsilon! > 2.99, `ε ${c.epsilon}`)
          assert.match(md, new RegExp(`\\| ${c.behaviour} \\| nna \\| ${c.batchSize} \\| ε=3 \\| ${c.epsilon!.toPrecision(3)} \\|`))
        }
      }
      const json = JSON.parse(await readFile(files.json, 'utf8'))
      assert.deepEqual(json.axes, { batchSizes: true, privacy: true, encodings: false })
      assert.equal(json.cells.length, 8)
      // what the median honest member sent per round, from each cell's report (every member pushes to the others)
      for (const c of json.cells as Array<{ mbSentPerRound?: number }>) assert.ok(c.mbSentPerRound !== undefined && c.mbSentPerRound > 0, JSON.stringify(c))
      const svg = await readFile(files.svg, 'utf8')
      assert.match(svg, /^<svg/)
      assert.match(svg, /ε spent/)
    } finally {
      await rm(dir, { recursive: true, force: true })
    }
  })
})
