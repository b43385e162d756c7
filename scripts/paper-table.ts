/**
 * `npm run paper-table [-- --write]`: the README's full-scale table, made from the reports
 * committed under docs/paper-report/ (each run's report.json.gz, as `monna run` wrote it). Prints
 * the table; `--write` puts it into README.md between `<!-- paper-table:start -->` and
 * `<!-- paper-table:end -->`. test/unit/topology/readme.test.ts checks that the README holds
 * exactly what this prints, so a figure there cannot drift from its report.
 */
import { readdir, readFile, writeFile } from 'node:fs/promises'
import { join, relative } from 'node:path'
import { fileURLToPath } from 'node:url'
import { gunzipSync } from 'node:zlib'

const START = '<!-- paper-table:start -->'
const END = '<!-- paper-table:end -->'

/** The few fields of a report.json this table reads. */
interface PaperReport {
  scenario: string
  mode: 'process' | 'in-process'
  startedAt: string
  durationMs: number
  n: number
  f: number
  rule: string
  rounds: number
  endedEarly?: string
  honest: { minFinalAccuracy: number | null; medianFinalAccuracy: number | null }
  expectations: { name: string; passed: boolean }[]
  passed: boolean
  perRound: unknown[]
  nodes: { byzantine: boolean; behaviour?: string }[]
}

const attackOrder = ['none', 'alie', 'foe', 'sign-flip', 'label-flip', 'optimal-alie', 'optimal-foe']
const ruleOrder = ['nna', 'mean']

async function reportFiles(dir: string): Promise<string[]> {
  const out: string[] = []
  for (const e of await readdir(dir, { withFileTypes: true })) {
    const p = join(dir, e.name)
    if (e.isDirectory()) out.push(...(await reportFiles(p)))
    else if (e.name === 'report.json.gz') out.push(p)
  }
  return out
}

function attackOf(r: PaperReport): string {
  const b = [...new Set(r.nodes.filter((n) => n.byzantine).map((n) => n.behaviour ?? 'byzantine'))]
  return b.length === 0 ? 'none' : b.join(', ')
}

function duration(ms: number): string {
  const s = Math.round(ms / 1000)
  const h = Math.floor(s / 3600)
  const m = Math.floor((s % 3600) / 60)
  const pad = (x: number): string => String(x).padStart(2, '0')
  return h > 0 ? `${h} h ${pad(m)} min` : `${m} min ${pad(s % 60)} s`
}

function pct(x: number): string {
  return `${(x * 100).toFixed(1)} %`
}

function ruleName(rule: string): string {
  return rule === 'nna' ? 'MoNNA (nna)' : rule === 'mean' ? 'mean (D-SGD)' : rule
}

function row(r: PaperReport, path: string): string {
  const attack = attackOf(r)
  const honest = r.nodes.filter((n) => !n.byzantine).length
  const members = r.mode === 'process' ? `${r.n} processes` : `${r.n} in one process`
  const { minFinalAccuracy: min, medianFinalAccuracy: median } = r.honest
  const accuracy = min === null || median === null ? `none: the run ended after ${r.perRound.length} rounds (${r.endedEarly ?? 'no honest member evaluated'})` : `${pct(min)} / ${pct(median)}`
  const failed = r.expectations.filter((e) => !e.passed).map((e) => e.name)
  const verdict = r.passed ? 'PASS' : `FAIL (${failed.join(', ') || 'ended early'})`
  const dir = path.replace(/\/report\.json\.gz$/, '/')
  return `| ${attack === 'none' ? `none (${honest} honest)` : attack} | ${ruleName(r.rule)} | ${members} | ${r.rounds} | ${duration(r.durationMs)} | ${accuracy} | ${verdict} | ${r.startedAt.slice(0, 10)} | [${dir}](${dir}) |`
}

/** The table (markdown, with its header) of every report under `docs/paper-report` of `root`. */
export async function renderPaperTable(root: string): Promise<string> {
  const files = (await reportFiles(join(root, 'docs/paper-report'))).sort()
  const reports = await Promise.all(
    files.map(async (f) => ({ path: relative(root, f), r: JSON.parse(gunzipSync(await readFile(f)).toString('utf8')) as PaperReport })),
  )
  const rank = (list: string[], x: string): number => (list.includes(x) ? list.indexOf(x) : list.length)
  reports.sort(
    (a, b) =>
      rank(attackOrder, attackOf(a.r)) - rank(attackOrder, attackOf(b.r)) ||
      rank(ruleOrder, a.r.rule) - rank(ruleOrder, b.r.rule) ||
      (a.r.mode === b.r.mode ? 0 : a.r.mode === 'in-process' ? -1 : 1) ||
      b.r.rounds - a.r.rounds ||
      a.r.startedAt.localeCompare(b.r.startedAt),
  )
  const head = [
    '| attack | rule | members | rounds | run time | honest min / median (final, full test split) | verdict | run on | report |',
    '|---|---|---|---|---|---|---|---|---|',
  ]
  return [...head, ...reports.map(({ r, path }) => row(r, path))].join('\n')
}

/** README.md's text with the table between the markers replaced by `table`. */
export function withPaperTable(readme: string, table: string): string {
  const a = readme.indexOf(START)
  const b = readme.indexOf(END)
  if (a < 0 || b < a) throw new Error(`README.md has no ${START} … ${END} block`)
  return `${readme.slice(0, a + START.length)}\n${table}\n${readme.slice(b)}`
}

if (process.argv[1] !== undefined && fileURLToPath(import.meta.url) === process.argv[1]) {
  const root = fileURLToPath(new URL('../', import.meta.url))
  const table = await renderPaperTable(root)
  if (process.argv.includes('--write')) {
    const file = join(root, 'README.md')
    await writeFile(file, withPaperTable(await readFile(file, 'utf8'), table))
    console.log(`README.md: the full-scale table from ${table.split('\n').length - 2} reports`)
  } else console.log(table)
}
