/**
 * Merges matrix runs of one scenario into one matrix (matrix.{json,md,svg,html}), for a sweep run
 * in parts: `node scripts/merge-matrices.ts <out dir> <input>…`. An input is a directory holding
 * a matrix.json (its cells are taken as recorded) or a single cell's directory (a matrix run
 * stopped after its first cell: report.json or report.json.gz, named `<rule>__<behaviour>__…
 * __alpha<α>` or `…__iid` as `--matrix` names cells of a partitions axis); the cell's figures are
 * read from its report. A cell named twice (same rule, behaviour and partition) is refused. Each
 * cell's `report` link is rewritten relative to the output directory.
 */
import { existsSync, readFileSync } from 'node:fs'
import { basename, join, relative, resolve } from 'node:path'
import { type MatrixCell, type MatrixReport, mbSentOf, writeMatrix } from '../src/topology/matrix.ts'
import type { TopologyReport } from '../src/topology/report.ts'
import { cellDirOf, readCellReport } from './matrix-files.ts'

const [out, ...inputs] = process.argv.slice(2)
if (out === undefined || inputs.length === 0) {
  console.error('usage: node scripts/merge-matrices.ts <out dir> <matrix dir or cell dir>…')
  process.exit(2)
}

function readReport(dir: string): TopologyReport {
  const report = readCellReport(dir)
  if (report === undefined) throw new Error(`${dir}: neither matrix.json nor report.json(.gz)`)
  return report
}

/** A cell from one run's report; the partition from the directory's name (`__alpha0.1`, `__iid`). */
function loneCell(dir: string): { scenario: string; cell: MatrixCell } {
  const report = readReport(dir)
  const name = basename(resolve(dir))
  const alpha = /__alpha([0-9.]+)$/.exec(name)
  if (alpha === null && !name.endsWith('__iid')) throw new Error(`${dir}: a cell directory's name ends in __alpha<α> or __iid`)
  const behaviours = [...new Set(report.nodes.filter((n) => n.byzantine).map((n) => n.behaviour ?? 'honest'))]
  const cell: MatrixCell = {
    rule: report.rule,
    behaviour: behaviours.length === 1 ? behaviours[0]! : 'honest',
    r: report.r ?? report.f,
    partition: alpha === null ? 'iid' : `α=${Number(alpha[1])}`,
    alpha: alpha === null ? null : Number(alpha[1]),
    minHonestAccuracy: report.honest.minFinalAccuracy,
    medianHonestAccuracy: report.honest.medianFinalAccuracy,
    ...mbSentOf(report),
    passed: report.passed,
    report: join(resolve(dir), 'report.html'),
  }
  return { scenario: report.scenario, cell }
}

const cells: MatrixCell[] = []
const scenarios = new Set<string>()
let axes: MatrixReport['axes'] = { batchSizes: false, privacy: false, encodings: false, partitions: true }
for (const input of inputs) {
  if (existsSync(join(input, 'matrix.json'))) {
    const m = JSON.parse(readFileSync(join(input, 'matrix.json'), 'utf8')) as MatrixReport
    scenarios.add(m.scenario)
    axes = m.axes ?? axes
    for (const c of m.cells) cells.push({ ...c, report: join(cellDirOf(input, c), 'report.html') })
  } else {
    const { scenario, cell } = loneCell(input)
    scenarios.add(scenario)
    cells.push(cell)
  }
}
if (scenarios.size !== 1) throw new Error(`the inputs are runs of ${scenarios.size} scenarios (${[...scenarios].join(', ')}): merge runs of one`)
const key = (c: MatrixCell): string => `${c.rule} × ${c.behaviour} × ${c.partition ?? ''}`
const seen = new Set<string>()
for (const c of cells) {
  if (seen.has(key(c))) throw new Error(`cell ${key(c)} is in more than one input`)
  seen.add(key(c))
}
const outDir = resolve(out)
for (const c of cells) c.report = relative(outDir, c.report)
const { files } = await writeMatrix({ scenario: [...scenarios][0]!, axes, cells }, outDir)
console.log(`merged ${cells.length} cells: ${files.markdown}, ${files.svg}`)
