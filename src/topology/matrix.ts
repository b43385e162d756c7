/**
 * A matrix run: one task across several aggregation rules × Byzantine behaviours, and
 * optionally × batch sizes × privacy settings (issue 8: the privacy / robustness trade-off)
 * × wire encodings (what float16, bfloat16 or int8 models cost in accuracy under attack)
 * × the redundancy r (stragglers apart from Byzantine members; docs/redundancy.md)
 * × the data partition (the heterogeneity sweep: Dirichlet α; docs/heterogeneity.md).
 * Each cell is a full topology run (its own report in `<out>/[<optimizer>__]<rule>__<behaviour>[__b<b>][__<privacy>][__<encoding>][__r<r>][__<partition>]/`);
 * the matrix writes one comparison table (`matrix.json`, `matrix.md`) and one plot
 * (`matrix.svg`, inside `matrix.html`) of the final honest accuracy, min and median — grouped
 * bars without a privacy axis, accuracy against the ε spent with one (the trade-off plot).
 */
import { mkdir, writeFile } from 'node:fs/promises'
import { join, resolve } from 'node:path'
import type { TopLevelSpec } from 'vega-lite'
import { InvalidConfigError } from '../errors.ts'
import { renderSvg } from './report.ts'
import { type RunTopologyOptions, runTopology } from './runner.ts'
import type { ByzantineConfig, MatrixConfig, MatrixOptimizer, MatrixPrivacy, Scenario } from './schema.ts'
import { partitionLabel, privacyOf, withOptimizer, withVariant } from './schema.ts'

export interface MatrixCell {
  rule: string
  behaviour: string
  /** the task's batch size in this cell (always set by `runMatrix`) */
  batchSize?: number
  /** the privacy setting: `none`, `ε=2` (whole-run target), `σ=1.1` (noise multiplier) or `step-ε=0.5`; `,G=…` / `,δ=…` when not the default */
  privacy?: string
  /** the models' wire encoding in this cell (always set by `runMatrix`) */
  encoding?: string
  /** the redundancy r of this cell (a round waited for n − r models; always set by `runMatrix`) */
  r?: number
  /** the matrix optimizer of this cell (an optimizers axis only; docs/precondition.md) */
  optimizer?: string
  /** the data partition of this cell (a partitions axis only): `iid`, `α=0.1`, … */
  partition?: string
  /** its Dirichlet α (null: iid or shards; a partitions axis only) */
  alpha?: number | null
  /** with `expect.targetDistance`: the target ‖θ − θ*‖/‖θ*‖, the first round every honest member was within it (null: never), and the largest honest distance at the end */
  targetDistance?: number
  roundsToDistance?: number | null
  finalDistance?: number | null
  /** least squares: the largest and median honest ‖θ − θ*‖/‖θ*‖ at every evaluation round (round 1-based) */
  distanceCurve?: Array<{ round: number; max: number; median: number }>
  /** with `expect.targetAccuracy`: the target, and when the median honest accuracy first reached it (null: never) */
  targetAccuracy?: number
  roundsToTarget?: number | null
  timeToTargetMs?: number | null
  /** whole-run ε target of this cell (null without privacy or when the noise was given directly) */
  targetEpsilon?: number | null
  /** largest ε an honest member spent (RDP accountant, report.json nodes[].epsilon); null without privacy */
  epsilon?: number | null
  /** δ of that ε (null without privacy) */
  delta?: number | null
  minHonestAccuracy: number | null
  medianHonestAccuracy: number | null
  /** MB (10⁶ bytes) the median honest member sent per round (report.json bytesSent / rounds): what the encoding saves */
  mbSentPerRound?: number
  passed: boolean
  report: string
}

export interface MatrixReport {
  scenario: string
  /** the axes that were varied beyond rules × behaviours (absent = none) */
  axes?: { batchSizes: boolean; privacy: boolean; encodings?: boolean; r?: boolean; optimizers?: boolean; partitions?: boolean }
  cells: MatrixCell[]
}

/** Short label of a matrix privacy value (used in the table, the plot and directory names). */
export function privacyLabel(p: MatrixPrivacy | undefined): string {
  const c = p === undefined ? undefined : privacyOf(p)
  if (c === undefined) return 'none'
  const head = c.epsilon !== undefined ? `ε=${c.epsilon}` : c.noiseMultiplier !== undefined ? `σ=${c.noiseMultiplier}` : `step-ε=${c.stepEpsilon}`
  const extra = [...(c.clipNorm === 1 ? [] : [`G=${c.clipNorm}`]), ...(c.delta === 1e-5 ? [] : [`δ=${c.delta}`])]
  return extra.length === 0 ? head : `${head},${extra.join(',')}`
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
  const batchSizes: (number | undefined)[] = matrix.batchSizes ?? [undefined]
  const privacies: (MatrixPrivacy | undefined)[] = matrix.privacy ?? [undefined]
  const encodings: (Scenario['encoding'] | undefined)[] = matrix.encodings ?? [undefined]
  const rs: (number | undefined)[] = matrix.r ?? [undefined]
  const optimizers: (MatrixOptimizer | undefined)[] = matrix.optimizers ?? [undefined]
  const partitions: (Scenario['task']['partition'] | undefined)[] = matrix.partitions ?? [undefined]
  for (const optimizer of optimizers) {
    for (const rule of matrix.rules) {
      for (const b of matrix.behaviours) {
        for (const batchSize of batchSizes) {
          for (const privacy of privacies) {
            for (const encoding of encodings) {
              for (const r of rs) {
                for (const partition of partitions) {
                  opts.signal?.throwIfAborted()
                  const behaviour = (typeof b === 'string' ? { behaviour: b } : b) as Omit<ByzantineConfig, 'members'>
                  const { beta, ...aggregator } = rule
                  const variant = withVariant(optimizer === undefined ? s : withOptimizer(s, optimizer), {
                    aggregator: aggregator as Scenario['aggregator'],
                    behaviour,
                    ...(batchSize === undefined ? {} : { batchSize }),
                    ...(privacy === undefined ? {} : { privacy }),
                    ...(r === undefined ? {} : { r }),
                    ...(partition === undefined ? {} : { partition }),
                  })
                  if (encoding !== undefined) variant.encoding = encoding
                  // `beta` on a matrix rule overrides the task's momentum (ALGORITHMS §7: nna with β = 0 is the NNA ablation)
                  if (beta !== undefined) {
                    if (typeof beta !== 'number' || !(beta >= 0 && beta < 1)) throw new InvalidConfigError(`${s.name}: matrix.rules`, `beta must be a number in [0, 1), got ${String(beta)}`)
                    variant.task.beta = beta
                  }
                  const behaviourLabel = label({ ...behaviour, rule: String(behaviour.behaviour) } as MatrixConfig['rules'][number])
                  const dp = variant.task.privacy
                  const privacyName = privacyLabel(dp)
                  const name = [
                    ...(optimizer === undefined ? [] : [optimizer.name]),
                    label(rule),
                    behaviourLabel,
                    ...(batchSize === undefined ? [] : [`b${batchSize}`]),
                    ...(privacy === undefined ? [] : [privacyName.replace(/ε/g, 'eps').replace(/σ/g, 'sigma').replace(/δ/g, 'delta')]),
                    ...(encoding === undefined ? [] : [encoding]),
                    ...(r === undefined ? [] : [`r${r}`]),
                    ...(partition === undefined ? [] : [partitionLabel(partition).replace(/α=/g, 'alpha').replace(/ labels\/member/, 'labels')]),
                  ].join('__')
                  const dir = join(outDir, name.replace(/[^a-z0-9=.,()_+-]/gi, '_'))
                  const { report, files } = await runTopology(variant, { ...opts, outDir: dir })
                  const cell: MatrixCell = {
                    rule: label(rule),
                    behaviour: behaviourLabel,
                    batchSize: variant.task.batchSize,
                    privacy: privacyName,
                    encoding: variant.encoding ?? 'float32',
                    r: variant.r ?? variant.f,
                    ...(optimizer === undefined ? {} : { optimizer: optimizer.name }),
                    ...(partition === undefined ? {} : { partition: partitionLabel(partition), alpha: partition.scheme === 'dirichlet' ? partition.alpha : null }),
                    ...(report.distanceToTarget === undefined
                      ? {}
                      : {
                          targetDistance: report.distanceToTarget.target,
                          roundsToDistance: report.distanceToTarget.round === null ? null : report.distanceToTarget.round + 1,
                          finalDistance: report.honest.maxFinalDistance ?? null,
                        }),
                    ...(report.perRound.some((p) => p.honestDistance !== undefined)
                      ? { distanceCurve: report.perRound.flatMap((p) => (p.honestDistance === undefined ? [] : [{ round: p.round + 1, ...p.honestDistance }])) }
                      : {}),
                    ...(report.timeToTarget === undefined
                      ? {}
                      : { targetAccuracy: report.timeToTarget.target, roundsToTarget: report.timeToTarget.round === null ? null : report.timeToTarget.round + 1, timeToTargetMs: report.timeToTarget.elapsedMs }),
                    targetEpsilon: dp?.epsilon ?? null,
                    epsilon: report.privacy?.maxHonestEpsilon ?? null,
                    delta: dp?.delta ?? null,
                    minHonestAccuracy: report.honest.minFinalAccuracy,
                    medianHonestAccuracy: report.honest.medianFinalAccuracy,
                    ...mbSentOf(report),
                    passed: report.passed,
                    report: files.html,
                  }
                  cells.push(cell)
                  opts.onCell?.(cell)
                }
              }
            }
          }
        }
      }
    }
  }
  return await writeMatrix(
    {
      scenario: s.name,
      axes: {
        batchSizes: matrix.batchSizes !== undefined,
        privacy: matrix.privacy !== undefined,
        encodings: matrix.encodings !== undefined,
        ...(matrix.r !== undefined ? { r: true } : {}),
        ...(matrix.optimizers !== undefined ? { optimizers: true } : {}),
        ...(matrix.partitions !== undefined ? { partitions: true } : {}),
      },
      cells,
    },
    outDir,
  )
}

/** MB the median honest member sent per round ({} when the report has no honest member or no round). */
export function mbSentOf(report: { rounds: number; nodes: Array<{ byzantine: boolean; bytesSent: number }> }): { mbSentPerRound?: number } {
  const sent = report.nodes
    .filter((n) => !n.byzantine)
    .map((n) => n.bytesSent)
    .sort((a, b) => a - b)
  if (sent.length === 0 || !(report.rounds > 0)) return {}
  const median = sent.length % 2 === 1 ? sent[(sent.length - 1) / 2]! : (sent[sent.length / 2 - 1]! + sent[sent.length / 2]!) / 2
  return { mbSentPerRound: Number((median / report.rounds / 1e6).toPrecision(4)) }
}

/** Writes matrix.json, matrix.md, matrix.svg and matrix.html of `m` into `outDir` (also to redraw a matrix from its matrix.json). */
export async function writeMatrix(m: MatrixReport, outDir: string): Promise<{ matrix: MatrixReport; files: { json: string; markdown: string; svg: string; html: string } }> {
  await mkdir(outDir, { recursive: true })
  const json = join(outDir, 'matrix.json')
  await writeFile(json, `${JSON.stringify(m, null, 2)}\n`)
  const markdown = join(outDir, 'matrix.md')
  await writeFile(markdown, matrixMarkdown(m))
  const svgText = await renderSvg(plotOf(m))
  const svg = join(outDir, 'matrix.svg')
  await writeFile(svg, svgText)
  const html = join(outDir, 'matrix.html')
  await writeFile(
    html,
    `<!doctype html><html lang="en"><head><meta charset="utf-8"><title>monna matrix: ${m.scenario}</title></head><body style="font-family:system-ui,sans-serif;margin:2em"><h1>Matrix: ${m.scenario}</h1><pre>${matrixMarkdown(m).replace(/</g, '&lt;')}</pre>${svgText}</body></html>\n`,
  )
  return { matrix: m, files: { json, markdown, svg, html } }
}

/** The plot that fits the matrix's axes. */
function plotOf(m: MatrixReport): TopLevelSpec {
  if (m.axes?.partitions === true) return heterogeneityPlot(m)
  if (m.axes?.optimizers === true && m.cells.some((c) => c.distanceCurve !== undefined)) return distancePlot(m)
  if (m.axes?.privacy === true) return tradeOffPlot(m)
  if (m.axes?.r === true && m.cells.some((c) => c.targetAccuracy !== undefined)) return timeToTargetPlot(m)
  if (m.axes?.encodings === true && m.cells.every((c) => c.mbSentPerRound !== undefined)) return encodingsPlot(m)
  return matrixPlot(m)
}

/**
 * Encodings: final honest accuracy (median, and a bar down to the minimum) against MB sent per
 * honest member and round, one panel per rule, colour = attack, shape = encoding.
 */
export function encodingsPlot(m: MatrixReport): TopLevelSpec {
  const values = m.cells.map((c) => ({ rule: c.rule, attack: c.behaviour, encoding: c.encoding ?? 'float32', mb: c.mbSentPerRound ?? 0, median: (c.medianHonestAccuracy ?? 0) * 100, min: (c.minHonestAccuracy ?? 0) * 100 }))
  const encodings = [...new Set(values.map((v) => v.encoding))]
  return {
    $schema: 'https://vega.github.io/schema/vega-lite/v6.json',
    title: `${m.scenario}: final honest accuracy against bytes on the wire`,
    data: { values },
    facet: { column: { field: 'rule', type: 'nominal', title: 'rule' } },
    spec: {
      width: 360,
      height: 260,
      encoding: {
        x: { field: 'mb', type: 'quantitative', title: 'MB sent per honest member per round (median member)', scale: { zero: true } },
        color: { field: 'attack', type: 'nominal', title: 'attack' },
      },
      layer: [
        { mark: { type: 'rule' }, encoding: { y: { field: 'min', type: 'quantitative' }, y2: { field: 'median' } } },
        {
          mark: { type: 'point', filled: true, size: 80 },
          encoding: {
            y: { field: 'median', type: 'quantitative', title: 'final honest accuracy, %: median (point), min (end of bar)', scale: { zero: false } },
            shape: { field: 'encoding', type: 'nominal', title: 'encoding', sort: encodings },
          },
        },
      ],
    },
  } as TopLevelSpec
}

/**
 * The comparison table. Rules × behaviours only: rows = rules, columns = behaviours, cells =
 * "min / median" honest accuracy (%). With a batch-size or privacy axis: one row per cell
 * (attack, rule, batch size, privacy, ε spent, accuracy).
 */
export function matrixMarkdown(m: MatrixReport): string {
  if (m.axes?.optimizers === true) return optimizerMarkdown(m)
  if (m.axes?.batchSizes === true || m.axes?.privacy === true || m.axes?.encodings === true || m.axes?.r === true || m.axes?.partitions === true || m.cells.some((c) => c.targetAccuracy !== undefined)) return tradeOffMarkdown(m)
  const rules = [...new Set(m.cells.map((c) => c.rule))]
  const behaviours = [...new Set(m.cells.map((c) => c.behaviour))]
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
  // with an encodings axis each bar is a (rule, encoding) pair
  const series = (c: MatrixCell): string => (m.axes?.encodings === true ? `${c.rule}, ${c.encoding ?? 'float32'}` : c.rule)
  const values = m.cells.map((c) => ({ rule: series(c), behaviour: c.behaviour, median: c.medianHonestAccuracy ?? 0, min: c.minHonestAccuracy ?? 0 }))
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
      color: { field: 'rule', type: 'nominal', title: m.axes?.encodings === true ? 'rule, encoding' : 'rule' },
    },
    layer: [
      { mark: 'bar', encoding: { y: { field: 'median', type: 'quantitative', title: 'final honest accuracy', scale: { domain: [0, 1] } } } },
      { mark: { type: 'tick', color: 'black', thickness: 2 }, encoding: { y: { field: 'min', type: 'quantitative' } } },
    ],
  }
}

/** An optimizers axis (docs/precondition.md): one row per attack × rule × optimizer, with rounds to the distance target. */
function optimizerMarkdown(m: MatrixReport): string {
  const target = m.cells.find((c) => c.targetDistance !== undefined)?.targetDistance
  const exp = (x: number | null | undefined): string => (x === null || x === undefined ? '—' : x.toExponential(2))
  const order = (xs: string[]): Map<string, number> => new Map([...new Set(xs)].map((x, i) => [x, i]))
  const attacks = order(m.cells.map((c) => c.behaviour))
  const rules = order(m.cells.map((c) => c.rule))
  const optimizers = order(m.cells.map((c) => c.optimizer ?? ''))
  const rows = [...m.cells].sort(
    (a, b) => attacks.get(a.behaviour)! - attacks.get(b.behaviour)! || rules.get(a.rule)! - rules.get(b.rule)! || optimizers.get(a.optimizer ?? '')! - optimizers.get(b.optimizer ?? '')!,
  )
  const lines = [
    `Rounds until every honest member is within ${target ?? '?'} of θ* (‖θ − θ*‖/‖θ*‖, evaluated every evalEvery rounds) — ${m.scenario}`,
    '',
    `| attack | rule | optimizer | rounds to ${target ?? 'target'} | largest final distance | median final distance | accuracy (linear: R²) min / median (%) | passed |`,
    '|---|---|---|---|---|---|---|---|',
  ]
  for (const c of rows) {
    const last = c.distanceCurve?.at(-1)
    const rounds = c.roundsToDistance === undefined ? '' : c.roundsToDistance === null ? 'not reached' : String(c.roundsToDistance)
    lines.push(`| ${c.behaviour} | ${c.rule} | ${c.optimizer ?? ''} | ${rounds} | ${exp(c.finalDistance ?? last?.max)} | ${exp(last?.median)} | ${pct(c.minHonestAccuracy)} / ${pct(c.medianHonestAccuracy)} | ${c.passed ? 'yes' : 'no'} |`)
  }
  return `${lines.join('\n')}\n`
}

/** Largest honest ‖θ − θ*‖/‖θ*‖ against the round (log scale), one line per optimizer (× rule), one panel per attack. */
export function distancePlot(m: MatrixReport): TopLevelSpec {
  const rules = new Set(m.cells.map((c) => c.rule))
  const target = m.cells.find((c) => c.targetDistance !== undefined)?.targetDistance
  const values = m.cells.flatMap((c) =>
    (c.distanceCurve ?? []).map((p) => ({ attack: c.behaviour, series: rules.size > 1 ? `${c.optimizer ?? ''}, ${c.rule}` : (c.optimizer ?? c.rule), round: p.round, distance: Math.max(p.max, 1e-9) })),
  )
  return {
    $schema: 'https://vega.github.io/schema/vega-lite/v6.json',
    title: { text: `${m.scenario}: distance to θ*`, subtitle: `largest ‖θ − θ*‖/‖θ*‖ over honest members${target === undefined ? '' : `; dotted: the tolerance ${target}`}` },
    background: 'white',
    data: { values },
    facet: { column: { field: 'attack', type: 'nominal', title: 'Byzantine behaviour' } },
    spec: {
      width: 280,
      height: 220,
      layer: [
        {
          mark: { type: 'line', point: false },
          encoding: {
            x: { field: 'round', type: 'quantitative', title: 'round' },
            y: { field: 'distance', type: 'quantitative', title: '‖θ − θ*‖/‖θ*‖ (log scale)', scale: { type: 'log' } },
            color: { field: 'series', type: 'nominal', title: rules.size > 1 ? 'optimizer, rule' : 'optimizer' },
          },
        },
        // one dotted rule per panel (aggregated to one row per attack, not one per point)
        ...(target === undefined
          ? []
          : [{ transform: [{ aggregate: [{ op: 'count' as const, as: 'points' }], groupby: ['attack'] }], mark: { type: 'rule' as const, strokeDash: [2, 3], color: 'gray' }, encoding: { y: { datum: target } } }]),
      ],
    },
  } as TopLevelSpec
}

function pct(x: number | null): string {
  return x === null ? '—' : (x * 100).toFixed(1)
}

/** One row per cell, sorted by attack, rule, batch size and ε (no privacy last). */
function tradeOffMarkdown(m: MatrixReport): string {
  const epsKey = (c: MatrixCell): number => (c.privacy === 'none' ? Number.POSITIVE_INFINITY : (c.epsilon ?? c.targetEpsilon ?? Number.POSITIVE_INFINITY))
  const batch = (c: MatrixCell): number => c.batchSize ?? 0
  const order = (xs: string[]): Map<string, number> => new Map([...new Set(xs)].map((x, i) => [x, i]))
  const attacks = order(m.cells.map((c) => c.behaviour))
  const rules = order(m.cells.map((c) => c.rule))
  const encodings = order(m.cells.map((c) => c.encoding ?? 'float32'))
  // partitions from the most heterogeneous (smallest α) to iid, in the order given otherwise
  const partitions = order(m.cells.map((c) => c.partition ?? ''))
  const partitionKey = (c: MatrixCell): number => (c.alpha !== undefined && c.alpha !== null ? c.alpha : Number.POSITIVE_INFINITY)
  const rows = [...m.cells].sort(
    (a, b) =>
      attacks.get(a.behaviour)! - attacks.get(b.behaviour)! ||
      rules.get(a.rule)! - rules.get(b.rule)! ||
      batch(a) - batch(b) ||
      epsKey(a) - epsKey(b) ||
      encodings.get(a.encoding ?? 'float32')! - encodings.get(b.encoding ?? 'float32')! ||
      (a.r ?? 0) - (b.r ?? 0) ||
      partitionKey(a) - partitionKey(b) ||
      partitions.get(a.partition ?? '')! - partitions.get(b.partition ?? '')!,
  )
  const targets = [...new Set(m.cells.flatMap((c) => (c.targetAccuracy === undefined ? [] : [c.targetAccuracy])))]
  const delta = [...new Set(m.cells.flatMap((c) => (c.delta === null || c.delta === undefined ? [] : [c.delta])))]
  // the columns of the axes this matrix varied (a matrix read back from an older matrix.json has batch and privacy)
  const axes = m.axes ?? { batchSizes: true, privacy: true }
  const columns: Array<[string, (c: MatrixCell) => string]> = [
    ['attack', (c) => c.behaviour],
    ['rule', (c) => c.rule],
    ...(axes.batchSizes ? [['batch', (c: MatrixCell) => String(c.batchSize ?? '')] as [string, (c: MatrixCell) => string]] : []),
    ...(axes.privacy
      ? ([
          ['privacy', (c: MatrixCell) => c.privacy ?? 'none'],
          ['ε spent', (c: MatrixCell) => (c.epsilon === null || c.epsilon === undefined ? '—' : c.epsilon.toPrecision(3))],
        ] as Array<[string, (c: MatrixCell) => string]>)
      : []),
    ...(axes.encodings === true ? [['encoding', (c: MatrixCell) => c.encoding ?? 'float32'] as [string, (c: MatrixCell) => string]] : []),
    ...(axes.r === true ? [['r', (c: MatrixCell) => String(c.r ?? '')] as [string, (c: MatrixCell) => string]] : []),
    ...(axes.partitions === true ? [['partition', (c: MatrixCell) => c.partition ?? ''] as [string, (c: MatrixCell) => string]] : []),
    ['min / median', (c) => `${pct(c.minHonestAccuracy)} / ${pct(c.medianHonestAccuracy)}`],
    ...(axes.encodings === true ? [['MB sent / member / round', (c: MatrixCell) => (c.mbSentPerRound === undefined ? '—' : c.mbSentPerRound >= 1 ? c.mbSentPerRound.toFixed(1) : c.mbSentPerRound.toPrecision(2))] as [string, (c: MatrixCell) => string]] : []),
    ...(targets.length > 0
      ? ([
          [`time to ${targets.map((t) => pct(t)).join('/')} %`, (c: MatrixCell) => (c.timeToTargetMs === undefined ? '' : c.timeToTargetMs === null ? 'not reached' : `${(c.timeToTargetMs / 1000).toFixed(1)} s`)],
          ['rounds to it', (c: MatrixCell) => (c.roundsToTarget === undefined || c.roundsToTarget === null ? '—' : String(c.roundsToTarget))],
        ] as Array<[string, (c: MatrixCell) => string]>)
      : []),
    ['passed', (c) => (c.passed ? 'yes' : 'no')],
  ]
  const lines = [
    axes.privacy ? `Final honest accuracy (%), min / median over honest members, against the privacy spent — ${m.scenario}` : `Final honest accuracy (%), min / median over honest members — ${m.scenario}`,
    '',
    ...(axes.privacy
      ? [`ε: the largest whole-run ε an honest member spent (RDP accountant, sampling without replacement, replace-one neighbours${delta.length === 1 ? `, δ = ${delta[0]}` : ''}); — = no privacy.`, '']
      : []),
    `| ${columns.map(([h]) => h).join(' | ')} |`,
    `|${columns.map(() => '---').join('|')}|`,
  ]
  for (const c of rows) lines.push(`| ${columns.map(([, v]) => v(c)).join(' | ')} |`)
  return `${lines.join('\n')}\n`
}

/**
 * Time-to-accuracy per cell (a matrix with an r axis and `expect.targetAccuracy`): one group of
 * bars per attack (× rule when there are several), one bar per r; a cell that never reached the
 * target has no bar and is labelled so.
 */
export function timeToTargetPlot(m: MatrixReport): TopLevelSpec {
  const rules = new Set(m.cells.map((c) => c.rule))
  const target = m.cells.find((c) => c.targetAccuracy !== undefined)?.targetAccuracy ?? 0
  const values = m.cells.map((c) => ({
    group: rules.size > 1 ? `${c.behaviour}, ${c.rule}` : c.behaviour,
    r: `r = ${c.r ?? ''}`,
    seconds: c.timeToTargetMs === null || c.timeToTargetMs === undefined ? null : c.timeToTargetMs / 1000,
    label: c.timeToTargetMs === null || c.timeToTargetMs === undefined ? 'not reached' : `${(c.timeToTargetMs / 1000).toFixed(1)} s`,
  }))
  return {
    $schema: 'https://vega.github.io/schema/vega-lite/v6.json',
    title: `${m.scenario}: time until the median honest accuracy reached ${(target * 100).toFixed(0)} %`,
    background: 'white',
    data: { values },
    width: { step: 40 },
    height: 220,
    encoding: {
      x: { field: 'group', type: 'nominal', title: rules.size > 1 ? 'Byzantine behaviour, rule' : 'Byzantine behaviour' },
      xOffset: { field: 'r', type: 'nominal' },
      color: { field: 'r', type: 'nominal', title: 'redundancy' },
    },
    layer: [
      { mark: 'bar', encoding: { y: { field: 'seconds', type: 'quantitative', title: 'time to target (s, lower is better)' } } },
      { mark: { type: 'text', dy: -6, fontSize: 10 }, encoding: { y: { field: 'seconds', type: 'quantitative' }, text: { field: 'label', type: 'nominal' } } },
    ],
  }
}

/**
 * The heterogeneity plot (a partitions axis): final honest accuracy against the partition, from
 * the most heterogeneous (smallest Dirichlet α) to iid, one line per rule (solid = median, dashed
 * = min over honest members), one panel per attack.
 */
export function heterogeneityPlot(m: MatrixReport): TopLevelSpec {
  const key = (c: MatrixCell): number => (c.alpha !== undefined && c.alpha !== null ? c.alpha : Number.POSITIVE_INFINITY)
  const sorted = [...new Map(m.cells.map((c) => [c.partition ?? '', key(c)])).entries()].sort((a, b) => a[1] - b[1]).map(([p]) => p)
  const values = m.cells.map((c) => ({ attack: c.behaviour, rule: c.rule, partition: c.partition ?? '', median: c.medianHonestAccuracy ?? 0, min: c.minHonestAccuracy ?? 0 }))
  // short: the title repeats under every panel (a long one ran into the next panel's)
  const x = { field: 'partition', type: 'ordinal', sort: sorted, title: 'data split (Dirichlet α)' } as const
  const y = (field: 'median' | 'min') => ({ field, type: 'quantitative' as const, title: 'final honest accuracy', scale: { domain: [0, 1] } })
  const color = { field: 'rule', type: 'nominal', title: 'rule' } as const
  return {
    $schema: 'https://vega.github.io/schema/vega-lite/v6.json',
    title: { text: `${m.scenario}: accuracy against heterogeneity`, subtitle: 'solid = median, dashed = min over honest members; smaller α = more heterogeneous data' },
    background: 'white',
    data: { values },
    facet: { column: { field: 'attack', type: 'nominal', title: 'Byzantine behaviour' } },
    spec: {
      width: 240,
      height: 220,
      layer: [
        { mark: { type: 'line', point: true }, encoding: { x, y: y('median'), color } },
        { mark: { type: 'line', strokeDash: [5, 3], opacity: 0.8 }, encoding: { x, y: y('min'), color } },
      ],
    },
  }
}

/**
 * The trade-off plot: final honest accuracy against the ε spent (log scale), one colour per
 * (rule, batch size), solid = median, dashed = min over honest members, one panel per attack;
 * dotted horizontal lines = the same rule and batch size without privacy (median).
 */
export function tradeOffPlot(m: MatrixReport): TopLevelSpec {
  const values = m.cells.map((c) => ({
    attack: c.behaviour,
    series: `${c.rule}, b=${c.batchSize ?? ''}`,
    private: c.privacy !== undefined && c.privacy !== 'none',
    epsilon: c.epsilon ?? c.targetEpsilon ?? null,
    median: c.medianHonestAccuracy ?? 0,
    min: c.minHonestAccuracy ?? 0,
  }))
  const x = { field: 'epsilon', type: 'quantitative', title: 'ε spent (whole run, log scale)', scale: { type: 'log' } } as const
  const y = (field: 'median' | 'min') => ({ field, type: 'quantitative' as const, title: 'final honest accuracy', scale: { domain: [0, 1] } })
  const color = { field: 'series', type: 'nominal', title: 'rule, batch size' } as const
  const privateOnly = [{ filter: 'datum.private && datum.epsilon > 0' }]
  return {
    $schema: 'https://vega.github.io/schema/vega-lite/v6.json',
    title: {
      text: `${m.scenario}: accuracy vs privacy`,
      subtitle: 'solid = median, dashed = min over honest members; dotted = same rule and batch without privacy (median)',
    },
    background: 'white',
    data: { values },
    facet: { column: { field: 'attack', type: 'nominal', title: 'Byzantine behaviour' } },
    spec: {
      width: 260,
      height: 220,
      layer: [
        { transform: privateOnly, mark: { type: 'line', point: true }, encoding: { x, y: y('median'), color } },
        { transform: privateOnly, mark: { type: 'line', strokeDash: [5, 3], opacity: 0.8 }, encoding: { x, y: y('min'), color } },
        { transform: [{ filter: '!datum.private' }], mark: { type: 'rule', strokeDash: [1, 3], strokeWidth: 2 }, encoding: { y: y('median'), color } },
      ],
    },
  }
}
