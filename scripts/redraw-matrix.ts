/**
 * Redraws a matrix run's matrix.{json,md,svg,html} with this checkout's code: `node
 * scripts/redraw-matrix.ts <matrix dir>`. Each cell's MB sent per round is (re)computed from its
 * report.json (next to the report.html the cell names, or gzipped as report.json.gz), so a matrix
 * run before the field existed gets the bytes column and plot.
 */
import { existsSync, readFileSync } from 'node:fs'
import { dirname, join, resolve } from 'node:path'
import { gunzipSync } from 'node:zlib'
import { type MatrixCell, type MatrixReport, mbSentOf, writeMatrix } from '../src/topology/matrix.ts'

const dir = process.argv[2]
if (dir === undefined) {
  console.error('usage: node scripts/redraw-matrix.ts <directory holding matrix.json>')
  process.exit(2)
}
const m = JSON.parse(readFileSync(join(dir, 'matrix.json'), 'utf8')) as MatrixReport
const cellDir = (c: MatrixCell): string => {
  // the report path recorded at run time, or the cell's directory next to matrix.json (a moved matrix)
  const recorded = dirname(c.report)
  return existsSync(recorded) ? recorded : join(dir, recorded.split('/').at(-1)!)
}
for (const c of m.cells) {
  const d = cellDir(c)
  const raw = existsSync(join(d, 'report.json')) ? readFileSync(join(d, 'report.json')) : existsSync(join(d, 'report.json.gz')) ? gunzipSync(readFileSync(join(d, 'report.json.gz'))) : undefined
  if (raw === undefined) throw new Error(`no report.json(.gz) for cell ${c.rule} × ${c.behaviour} in ${d}`)
  const mb = mbSentOf(JSON.parse(raw.toString('utf8')))
  if (mb.mbSentPerRound !== undefined) c.mbSentPerRound = mb.mbSentPerRound
}
const { files } = await writeMatrix(m, resolve(dir))
console.log(`redrawn: ${files.markdown}, ${files.svg}`)
