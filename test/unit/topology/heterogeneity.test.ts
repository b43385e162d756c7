/**
 * The heterogeneity sweep (issue 18, item 4; docs/heterogeneity.md): the matrix's `partitions`
 * axis, its validation, table and plot, and the effect it exists to show — on the small instance
 * of topologies/heterogeneity-small.yaml, in one process on the real protocol, MoNNA's honest
 * accuracy under optimal-alie falls when the data split becomes heterogeneous.
 */
import assert from 'node:assert/strict'
import { mkdtemp, readFile, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { describe, it } from 'node:test'
import { InvalidConfigError } from '../../../src/errors.ts'
import { heterogeneityPlot, type MatrixReport, matrixMarkdown, runMatrix } from '../../../src/topology/matrix.ts'
import { renderSvg } from '../../../src/topology/report.ts'
import { loadScenario, parseScenario } from '../../../src/topology/schema.ts'

const file = join(import.meta.dirname, '../../../topologies/heterogeneity-small.yaml')

function scenarioWith(partitions: unknown): unknown {
  return {
    name: 'het',
    n: 4,
    f: 1,
    task: { dataset: { kind: 'gaussian-mixture', classes: 4, dim: 8, trainSize: 400, testSize: 100 }, model: { kind: 'logreg' }, rounds: 2 },
    byzantine: [{ members: [3], behaviour: 'alie' }],
    matrix: { rules: [{ rule: 'nna' }], behaviours: ['alie'], partitions },
  }
}

describe('matrix partitions axis', () => {
  it('takes iid, a Dirichlet α as a number, or any partition', () => {
    const s = parseScenario(scenarioWith(['iid', 0.1, { scheme: 'dirichlet', alpha: 10 }, { scheme: 'shards', labelsPerMember: 2 }]), 'het')
    assert.deepEqual(s.matrix?.partitions, [{ scheme: 'iid' }, { scheme: 'dirichlet', alpha: 0.1 }, { scheme: 'dirichlet', alpha: 10 }, { scheme: 'shards', labelsPerMember: 2 }])
  })

  it('refuses a partition listed twice, a non-positive α and an unknown word, each in one line naming the field', () => {
    for (const [partitions, pattern] of [
      [[0.1, { scheme: 'dirichlet', alpha: 0.1 }], /matrix\.partitions\.1.*α=0\.1 is listed twice/],
      [[0], /matrix\.partitions/],
      [['noniid'], /matrix\.partitions/],
    ] as const) {
      assert.throws(
        () => parseScenario(scenarioWith(partitions), 'het'),
        (e: unknown) => e instanceof InvalidConfigError && pattern.test(e.message) && !e.message.includes('\n'),
        JSON.stringify(partitions),
      )
    }
  })

  it('the table sorts rows from the smallest α to iid and the plot renders', async () => {
    const cell = (partition: string, alpha: number | null, acc: number) => ({ rule: 'nna', behaviour: 'alie', partition, alpha, minHonestAccuracy: acc, medianHonestAccuracy: acc, passed: true, report: '' })
    const m: MatrixReport = { scenario: 'het', axes: { batchSizes: false, privacy: false, partitions: true }, cells: [cell('iid', null, 0.9), cell('α=10', 10, 0.85), cell('α=0.1', 0.1, 0.6)] }
    const rows = matrixMarkdown(m)
      .split('\n')
      .filter((l) => l.startsWith('| alie'))
    assert.deepEqual(
      rows.map((l) => l.split('|')[3]!.trim()),
      ['α=0.1', 'α=10', 'iid'],
    )
    const svg = await renderSvg(heterogeneityPlot(m))
    assert.match(svg, /<svg/)
    assert.match(svg, /heterogeneity/)
  })
})

it('MoNNA under optimal-alie loses accuracy when the data split becomes heterogeneous (α = 0.1 against iid)', { timeout: 600_000 }, async () => {
  const s = await loadScenario(file)
  const dir = await mkdtemp(join(tmpdir(), 'monna-heterogeneity-'))
  try {
    const { matrix, files } = await runMatrix(s, {
      outDir: dir,
      mode: 'in-process',
      matrix: { rules: [{ rule: 'nna' }], behaviours: ['optimal-alie'], partitions: [{ scheme: 'dirichlet', alpha: 0.1 }, { scheme: 'iid' }] },
    })
    const at = (p: string) => matrix.cells.find((c) => c.partition === p)!
    const het = at('α=0.1')
    const iid = at('iid')
    assert.ok(het.medianHonestAccuracy !== null && iid.minHonestAccuracy !== null)
    // measured: 77 % at α = 0.1 against 90 % iid (the whole sweep: docs/heterogeneity.md)
    assert.ok(het.medianHonestAccuracy < iid.minHonestAccuracy - 0.05, `α = 0.1: median ${het.medianHonestAccuracy}; iid: min ${iid.minHonestAccuracy}`)
    assert.ok(iid.minHonestAccuracy > 0.8, `iid: every honest member learns (min ${iid.minHonestAccuracy})`)
    assert.match(await readFile(files.markdown, 'utf8'), /\| partition \|/)
  } finally {
    await rm(dir, { recursive: true, force: true })
  }
})
