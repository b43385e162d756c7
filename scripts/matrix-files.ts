/**
 * Reading a matrix run's files back (scripts/redraw-matrix.ts, scripts/merge-matrices.ts): a
 * cell's directory, and its report.json — as written, or gzipped as committed.
 */
import { existsSync, readFileSync } from 'node:fs'
import { basename, dirname, join, resolve } from 'node:path'
import { gunzipSync } from 'node:zlib'
import type { MatrixCell } from '../src/topology/matrix.ts'
import type { TopologyReport } from '../src/topology/report.ts'

/** A cell's directory: the one its recorded report path names, or the one of that name next to matrix.json (a moved matrix). */
export function cellDirOf(matrixDir: string, c: MatrixCell): string {
  const recorded = dirname(resolve(matrixDir, c.report))
  return existsSync(recorded) ? recorded : join(resolve(matrixDir), basename(dirname(c.report)))
}

/** The report.json (or report.json.gz) in `dir`, or undefined. */
export function readCellReport(dir: string): TopologyReport | undefined {
  const raw = existsSync(join(dir, 'report.json')) ? readFileSync(join(dir, 'report.json')) : existsSync(join(dir, 'report.json.gz')) ? gunzipSync(readFileSync(join(dir, 'report.json.gz'))) : undefined
  return raw === undefined ? undefined : (JSON.parse(raw.toString('utf8')) as TopologyReport)
}
