/**
 * Redraws a matrix run's matrix.{json,md,svg,html} with this checkout's code: `node
 * scripts/redraw-matrix.ts <matrix dir>`. Each cell's MB sent per round is (re)computed from its
 * report.json (next to the report.html the cell names, or gzipped as report.json.gz), so a matrix
 * run before the field existed gets the bytes column and plot.
 */
import { readFileSync } from 'node:fs'
import { join, resolve } from 'node:path'
import { type MatrixReport, mbSentOf, writeMatrix } from '../src/topology/matrix.ts'
import { cellDirOf, readCellReport } from './matrix-files.ts'

const dir = process.argv[2]
if (dir === undefined) {
  console.error('usage: node scripts/redraw-matrix.ts <directory holding matrix.json>')
  process.exit(2)
}
const m = JSON.parse(readFileSync(join(dir, 'matrix.json'), 'utf8')) as MatrixReport
for (const c of m.cells) {
  const d = cellDirOf(dir, c)
  const report = readCellReport(d)
  if (report === undefined) throw new Error(`no report.json(.gz) for cell ${c.rule} × ${c.behaviour} in ${d}`)
  const mb = mbSentOf(report)
  if (mb.mbSentPerRound !== undefined) c.mbSentPerRound = mb.mbSentPerRound
}
const { files } = await writeMatrix(m, resolve(dir))
console.log(`redrawn: ${files.markdown}, ${files.svg}`)
