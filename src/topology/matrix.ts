/**
 * A matrix run: one task across several aggregation rules × Byzantine behaviours. Each cell
 * is a full topology run (its own report in `<out>/<rule>__<behaviour>/`); the matrix writes
 * one comparison table (`matrix.json`, `matrix.md`) and one plot (`matrix.svg`, inside
 * `matrix.html`) of the final honest accuracy, min and median.
 */
import { mkdir, writeFile } from 'node:fs/promises'
import { join, resolve } from 'node:path'
import type { TopLevelSpec } from 'vega-lite'
import { InvalidConfigError } from '../errors.ts'
import { renderSvg } from './report.ts'
import { type RunTopologyOptions, runTopology } from './runner.ts'
import type { ByzantineConfig, MatrixConfig, Scenario } from './schema.ts'
import { withVariant } from './schema.ts'

export interface MatrixCell {
  rule: string
  behaviour: string
  minHonestAccuracy: number | null
  medianHonestAccuracy: number | null
  passed: boolean
  report: string
}

export interface MatrixReport {
  scenario: string
  cells: MatrixCell[]
}

function label(rule: MatrixConfig['rules'][number]): string {
  const extra = Object.entries(rule)
    .sort(([a], [b]) => (a < b ? -1 : 1))
    .filter(([k]) => k !== 'rule' && k !== 'behaviour')
    .map(([k, v]) => `${k}=${String(v)}`)
  return extra.length === 0 ? rule.rule : `${rule.rule}(${extra.join(',')})`
}

/** Runs every cell of `matrix` (default: the scenario's own `matrix`) sequentially. */
export async function runMatrix(
  s: Scenario,
  opts: RunTopologyOptions & { matrix?: MatrixConfig; onCell?: (c: MatrixCell) => void },
): Promise<{ matrix: MatrixReport; files: { json: string; markdown: string; svg: string; html: string } }> {
  const matrix = opts.matrix ?? s.matrix
  if (matrix === undefined) throw new InvalidConfigError(`${s.name}: matrix`, 'this scenario has no matrix; add `matrix: { rules: [...], behaviours: [...] }`')
  if (s.byzantine.length === 0) throw new InvalidConfigError(`${s.name}: byzantine`, 'a matrix varies the Byzantine behaviour: declare which members are Byzantine')
  const outDir = resolve(opts.outDir)
  const cells: MatrixCell[] = []
  for (const rule of matrix.rules) {
    for (const b of matrix.behaviours) {
      opts.signal?.throwIfAborted()
      const behaviour = (typeof b === 'string' ? { behaviour: b } : b) as Omit<ByzantineConfig, 'members'>
      const { beta, ...aggregator } = rule
      const variant = withVariant(s, { aggregator: aggregator as Scenario['aggregator'], behaviour })
      // `beta` on a matrix rule overrides the task's momentum (ALGORITHMS §7: nna with β = 0 is the NNA ablation)
      if (beta !== undefined) {
        if (typeof beta !== 'number' || !(beta >= 0 && beta < 1)) throw new InvalidConfigError(`${s.name}: matrix.rules`, `beta must be a number in [0, 1), got ${String(beta)}`)
        variant.task.beta = beta
      }
      const dir = join(outDir, `${label(rule)}__${label({ ...behaviour, rule: String(behaviour.behaviour) } as MatrixConfig['rules'][number])}`.replace(/[^a-z0-9=.,()_+-]/gi, '_'))
      const { report, files } = await runTopology(variant, { ...opts, outDir: dir })
      const cell: MatrixCell = {
        rule: label(rule),
        behaviour: label({ ...behaviour, rule: String(behaviour.behaviour) } as MatrixConfig['rules'][number]),
        minHonestAccuracy: report.honest.minFinalAccuracy,
        medianHonestAccuracy: report.honest.medianFinalAccuracy,
        passed: report.passed,
        report: files.html,
      }
      cells.push(cell)
      opts.onCell?.(cell)
    }
  }
  const m: MatrixReport = { scenario: s.name, cells }
  await mkdir(outDir, { recursive: true })
  const json = join(outDir, 'matrix.json')
  await writeFile(json, `${JSON.stringify(m, null, 2)}\n`)
  const markdown = join(outDir, 'matrix.md')
  await writeFile(markdown, matrixMarkdown(m))
  const svgText = await renderSvg(matrixPlot(m))
  const svg = join(outDir, 'matrix.svg')
  await writeFile(svg, svgText)
  const html = join(outDir, 'matrix.html')
  await writeFile(
    html,
    `<!doctype html><html lang="en"><head><meta charset="utf-8"><title>monna matrix: ${m.scenario}</title></head><body style="font-family:system-ui,sans-serif;margin:2em"><h1>Matrix: ${m.scenario}</h1><pre>${matrixMarkdown(m).replace(/</g, '&lt;')}</pre>${svgText}</body></html>\n`,
  )
  return { matrix: m, files: { json, markdown, svg, html } }
}

/** The comparison table: rows = rules, columns = behaviours, cells = "min / median" honest accuracy (%). */
export function matrixMarkdown(m: MatrixReport): string {
  const rules = [...new Set(m.cells.map((c) => c.rule))]
  const behaviours = [...new Set(m.cells.map((c) => c.behaviour))]
  const pct = (x: number | null): string => (x === null ? '—' : (x * 100).toFixed(1))
  const lines = [
    `Final honest accuracy (%), min / median over honest members — ${m.scenario}`,
    '',
    `| rule | ${behaviours.join(' | ')} |`,
    `|---|${behaviours.map(() => '---').join('|')}|`,
  ]
  for (const r of rules) {
    const row = behaviours.map((b) => {
      const c = m.cells.find((x) => x.rule === r && x.behaviour === b)
      return c === undefined ? '' : `${pct(c.minHonestAccuracy)} / ${pct(c.medianHonestAccuracy)}`
    })
    lines.push(`| ${r} | ${row.join(' | ')} |`)
  }
  return `${lines.join('\n')}\n`
}

/** Grouped bars: median honest accuracy per behaviour, one bar per rule, a tick at the minimum. */
export function matrixPlot(m: MatrixReport): TopLevelSpec {
  const values = m.cells.map((c) => ({ rule: c.rule, behaviour: c.behaviour, median: c.medianHonestAccuracy ?? 0, min: c.minHonestAccuracy ?? 0 }))
  return {
    $schema: 'https://vega.github.io/schema/vega-lite/v6.json',
    title: `${m.scenario}: final honest accuracy (bar = median, tick = min)`,
    background: 'white',
    data: { values },
    width: { step: 18 },
    height: 220,
    encoding: {
      x: { field: 'behaviour', type: 'nominal', title: 'Byzantine behaviour' },
      xOffset: { field: 'rule', type: 'nominal' },
      color: { field: 'rule', type: 'nominal', title: 'rule' },
    },
    layer: [
      { mark: 'bar', encoding: { y: { field: 'median', type: 'quantitative', title: 'final honest accuracy', scale: { domain: [0, 1] } } } },
      { mark: { type: 'tick', color: 'black', thickness: 2 }, encoding: { y: { field: 'min', type: 'quantitative' } } },
    ],
  }
}
