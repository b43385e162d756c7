/**
 * Assembles docs/heterogeneity-report/matrix.{json,md,svg} from the cells of two runs (README.md
 * here): the whole nna matrix (its matrix.json) and the mean cells that finished (their
 * report.json). 'passed' is judged against the scenario's bar (0.8, every honest member), which
 * the runs' copies of the file did not state yet.
 *   node docs/heterogeneity-report/assemble.ts <nna matrix dir> <mean matrix dir>
 */
import { existsSync, readFileSync, writeFileSync } from 'node:fs'
import { heterogeneityPlot, type MatrixCell, type MatrixReport, matrixMarkdown } from '../../src/topology/matrix.ts'
import { renderSvg } from '../../src/topology/report.ts'
const bar = 0.8
const [nnaDir, meanDir] = process.argv.slice(2)
if (nnaDir === undefined || meanDir === undefined) throw new Error('usage: node docs/heterogeneity-report/assemble.ts <nna matrix dir> <mean matrix dir>')
const nna = JSON.parse(readFileSync(`${nnaDir}/matrix.json`, 'utf8')) as MatrixReport
const cells: MatrixCell[] = nna.cells.map((c) => ({ ...c, passed: (c.minHonestAccuracy ?? 0) >= bar, report: '' }))
const parts: Array<[string, string, number | null]> = [['alpha0.1', 'α=0.1', 0.1], ['alpha0.3', 'α=0.3', 0.3], ['alpha1', 'α=1', 1], ['alpha10', 'α=10', 10], ['iid', 'iid', null]]
for (const b of ['honest', 'optimal-alie']) {
  for (const [dir, label, alpha] of parts) {
    const f = `${meanDir}/mean__${b}__${dir}/report.json`
    if (!existsSync(f)) continue
    const r = JSON.parse(readFileSync(f, 'utf8'))
    cells.push({ rule: 'mean', behaviour: b, batchSize: 25, privacy: 'none', encoding: 'float32', r: 2, partition: label, alpha, minHonestAccuracy: r.honest.minFinalAccuracy, medianHonestAccuracy: r.honest.medianFinalAccuracy, passed: r.honest.minFinalAccuracy >= bar, report: '' })
  }
}
const m: MatrixReport = { scenario: 'heterogeneity-small', axes: { batchSizes: false, privacy: false, encodings: false, partitions: true }, cells }
const out = import.meta.dirname
writeFileSync(`${out}/matrix.json`, `${JSON.stringify(m, null, 2)}\n`)
writeFileSync(`${out}/matrix.md`, matrixMarkdown(m))
writeFileSync(`${out}/matrix.svg`, await renderSvg(heterogeneityPlot(m)))
console.log(matrixMarkdown(m))
