/**
 * scripts/merge-matrices.ts: one matrix from a sweep run in parts — a matrix directory's cells as
 * recorded, a lone cell's figures from its report and its partition from its name — and a cell
 * given twice refused.
 */
import assert from 'node:assert/strict'
import { execFile } from 'node:child_process'
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, test } from 'node:test'
import { promisify } from 'node:util'
import type { MatrixReport } from '../../../src/topology/matrix.ts'

const run = promisify(execFile)
const script = join(import.meta.dirname, '../../../scripts/merge-matrices.ts')
const dirs: string[] = []
after(async () => {
  await Promise.all(dirs.map((d) => rm(d, { recursive: true, force: true })))
})

/** A report as the runner writes it, with the fields the merge reads. */
function report(rule: string, behaviour: string, min: number, median: number): Record<string, unknown> {
  const nodes = [
    { byzantine: false, bytesSent: 4_000_000 },
    { byzantine: false, bytesSent: 4_400_000 },
    { byzantine: true, behaviour, bytesSent: 1 },
  ]
  return { scenario: 'sweep', rule, n: 3, f: 1, r: 1, rounds: 10, nodes, honest: { minFinalAccuracy: min, medianFinalAccuracy: median }, passed: min >= 0.5 }
}

async function cellDir(parent: string, name: string, r: Record<string, unknown>): Promise<string> {
  const d = join(parent, name)
  await mkdir(d, { recursive: true })
  await writeFile(join(d, 'report.json'), JSON.stringify(r))
  return d
}

test('merges a matrix run and a lone cell into one matrix; a cell named twice is refused', async () => {
  const root = await mkdtemp(join(tmpdir(), 'monna-merge-'))
  dirs.push(root)
  // a matrix run of two cells (α = 1 and iid), as `--matrix` writes it
  const part = join(root, 'part')
  await cellDir(part, 'nna__honest__alpha1', report('nna', 'honest', 0.9, 0.92))
  await cellDir(part, 'nna__honest__iid', report('nna', 'honest', 0.91, 0.93))
  const cell = (partition: string, alpha: number | null, min: number, median: number, name: string): Record<string, unknown> => ({
    rule: 'nna',
    behaviour: 'honest',
    partition,
    alpha,
    minHonestAccuracy: min,
    medianHonestAccuracy: median,
    passed: true,
    report: join(part, name, 'report.html'),
  })
  const m = { scenario: 'sweep', axes: { batchSizes: false, privacy: false, encodings: false, partitions: true }, cells: [cell('α=1', 1, 0.9, 0.92, 'nna__honest__alpha1'), cell('iid', null, 0.91, 0.93, 'nna__honest__iid')] }
  await writeFile(join(part, 'matrix.json'), JSON.stringify(m))
  // a run stopped after its first cell: only the cell's directory
  const lone = await cellDir(root, 'nna__optimal-alie__alpha0.1', report('nna', 'optimal-alie', 0.7, 0.71))

  const out = join(root, 'merged')
  const { stdout } = await run(process.execPath, [script, out, part, lone])
  assert.match(stdout, /merged 3 cells/)
  const merged = JSON.parse(await readFile(join(out, 'matrix.json'), 'utf8')) as MatrixReport
  assert.equal(merged.scenario, 'sweep')
  assert.equal(merged.axes?.partitions, true)
  const byKey = new Map(merged.cells.map((c) => [`${c.behaviour} ${c.partition}`, c]))
  assert.deepEqual([...byKey.keys()].sort(), ['honest iid', 'honest α=1', 'optimal-alie α=0.1'])
  const l = byKey.get('optimal-alie α=0.1')!
  assert.equal(l.rule, 'nna')
  assert.equal(l.alpha, 0.1)
  assert.equal(l.minHonestAccuracy, 0.7)
  assert.equal(l.medianHonestAccuracy, 0.71)
  assert.equal(l.passed, true)
  // the median honest member's bytes (of 4.0 and 4.4 MB) over 10 rounds
  assert.equal(l.mbSentPerRound, 0.42)
  // links relative to the merged matrix, to the cells where they are
  assert.equal(l.report, '../nna__optimal-alie__alpha0.1/report.html')
  assert.equal(byKey.get('honest iid')!.report, '../part/nna__honest__iid/report.html')
  const md = await readFile(join(out, 'matrix.md'), 'utf8')
  assert.match(md, /\| optimal-alie \| nna \| α=0\.1 \| 70\.0 \/ 71\.0 \|/)
  assert.match(md, /\| honest \| nna \| iid \| 91\.0 \/ 93\.0 \|/)
  assert.match(await readFile(join(out, 'matrix.svg'), 'utf8'), /^<svg/)

  // the same cell in two inputs
  await assert.rejects(run(process.execPath, [script, join(root, 'twice'), part, join(part, 'nna__honest__iid')]), /cell nna × honest × iid is in more than one input/)
})
