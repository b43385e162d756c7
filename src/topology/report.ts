/**
 * The report of a topology run: `report.json` (machine-readable, stable field names) and a
 * self-contained `report.html` whose plots are SVG rendered server-side by vega-lite → vega
 * (no script, no network needed to view it).
 *
 * Judging: only honest members are judged; a member's `finalAccuracy` is the accuracy of its
 * last evaluation (the engine evaluates the last round on the full held-out test split).
 * Spread between honest models is estimated from the 64-dimensional random projections
 * (`RoundReport.sketch`) the members publish at evaluation rounds: the largest pairwise
 * distance between honest sketches of the same round.
 */
import { mkdir, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import * as vega from 'vega'
import { compile, type TopLevelSpec } from 'vega-lite'
import type { RoundReport } from '../node/index.ts'
import type { Expectations, Scenario } from './schema.ts'

/** The per-round record a member publishes (contract §5a): the node's own `RoundReport`. */
export type MemberRound = RoundReport

export interface MemberInfo {
  index: number
  name: string
  id: string
  byzantine: boolean
  behaviour: string
  /** process exit code (process mode), or error text */
  exitCode?: number | null
  error?: string
}

export interface NodeSummary {
  id: string
  name: string
  index: number
  byzantine: boolean
  behaviour: string
  /** accuracy at the member's last evaluation (0..1), null when it never evaluated */
  finalAccuracy: number | null
  /** rounds the member got through: its last reported round + 1 (rounds skipped by a catch-up included) */
  roundsCompleted: number
  /** rounds it skipped because it had fallen behind and caught up from certified deliveries */
  roundsCaughtUp: number
  /**
   * Share of its reported rounds in which at least one Byzantine member's model was among the
   * models it aggregated (from RoundReport.senders; null when the node does not report senders):
   * shows that the attack actually reached this member.
   */
  byzantineAggregatedShare: number | null
  /** rounds that waited past the round timeout (more than f members unreachable) before completing */
  stalls: number
  bytesSent: number
  bytesReceived: number
  rejected: Record<string, number>
  /** signatures this member checked (SEND, ECHO, certificate entries), by its last report */
  signaturesVerified?: number
  /** peers it cut off for a while for floods of refused frames, by its last report */
  coolOffs?: number
  /** whole payloads it wrote beyond one SEND per member and round (RoundReport.sendsRepeated, payloadsServed), by its last report */
  sendsRepeated?: number
  payloadsServed?: number
  payloadsServedToFetch?: number
  /** differential privacy (task.privacy): ε spent by its last reported round (RDP accountant, at δ = task.privacy.delta) */
  epsilon?: number
  exitCode?: number | null
  error?: string
}

export interface ExpectationResult {
  name: string
  passed: boolean
  /** the measured figure */
  value: number | null
  threshold: number
  detail: string
}

export interface RoundFigures {
  round: number
  honestAccuracy?: { min: number; median: number; max: number; count: number }
  /** least squares with a known θ* (docs/precondition.md): ‖θ − θ*‖/‖θ*‖ over the honest members that evaluated this round */
  honestDistance?: { median: number; max: number }
  honestSpread?: number
  roundMs: { median: number; max: number }
  /** median over honest members of RoundReport.elapsedMs (ms since their run started) at this round */
  elapsedMs?: number
  bytesSent: number
}

/** The first evaluation round at which the median honest accuracy reached the target, and when. */
export interface TimeToTarget {
  target: number
  /** null when the target was never reached */
  round: number | null
  /** median honest elapsedMs at that round (ms since the members' runs started); null when not reached */
  elapsedMs: number | null
  /** the median honest accuracy at that round */
  accuracy: number | null
}

/** The first evaluation round at which every honest member's ‖θ − θ*‖/‖θ*‖ was ≤ the target (docs/precondition.md). */
export interface DistanceToTarget {
  target: number
  /** null when the target was never reached */
  round: number | null
  /** the largest honest distance at that round */
  distance: number | null
}

export interface TopologyReport {
  scenario: string
  description?: string
  mode: 'process' | 'in-process'
  startedAt: string
  durationMs: number
  n: number
  f: number
  /** members a round could go without: a round waited for n − r models (r = f unless the scenario sets r) */
  r: number
  rule: string
  rounds: number
  /** why the runner ended the run before its last round: fewer members left running than a round needs */
  endedEarly?: string
  /** with `expect.targetAccuracy`: time-to-accuracy (docs/redundancy.md) */
  timeToTarget?: TimeToTarget
  /** with `expect.targetDistance`: rounds until every honest member was that close to θ* */
  distanceToTarget?: DistanceToTarget
  nodes: NodeSummary[]
  /** `maxFinalDistance`: least squares, the largest honest ‖θ − θ*‖/‖θ*‖ at the last evaluation */
  honest: { minFinalAccuracy: number | null; medianFinalAccuracy: number | null; finalSpread: number | null; maxFinalDistance?: number }
  /**
   * Present when the task is private: the scenario's privacy block (after defaults) and the
   * largest ε an honest member spent (null when none reported one).
   */
  privacy?: { config: NonNullable<Scenario['task']['privacy']>; delta: number; maxHonestEpsilon: number | null; batchSize: number }
  expectations: ExpectationResult[]
  passed: boolean
  perRound: RoundFigures[]
  /** every RoundReport received, without sketches and sender lists */
  series: Omit<MemberRound, 'sketch' | 'senders'>[]
}

export function median(xs: number[]): number {
  if (xs.length === 0) return Number.NaN
  const s = [...xs].sort((a, b) => a - b)
  const m = s.length >> 1
  return s.length % 2 === 1 ? s[m]! : (s[m - 1]! + s[m]!) / 2
}

/** Largest pairwise Euclidean distance between vectors. */
export function maxPairwiseDistance(vs: number[][]): number {
  let best = 0
  for (let i = 0; i < vs.length; i++) {
    for (let j = i + 1; j < vs.length; j++) {
      const a = vs[i]!
      const b = vs[j]!
      let s = 0
      for (let k = 0; k < a.length; k++) s += (a[k]! - (b[k] ?? 0)) ** 2
      if (s > best) best = s
    }
  }
  return Math.sqrt(best)
}

/** Builds the report from the members' round records (pure; no I/O). */
export function buildReport(opts: {
  scenario: Scenario
  mode: 'process' | 'in-process'
  members: MemberInfo[]
  rounds: MemberRound[]
  startedAt: Date
  durationMs: number
  /** why the runner ended the run before its last round (see QuorumWatch in runner.ts) */
  endedEarly?: string
}): TopologyReport {
  const { scenario, members, rounds } = opts
  const byMember = new Map<string, MemberRound[]>()
  for (const m of members) byMember.set(m.id, [])
  for (const r of rounds) byMember.get(r.member)?.push(r)
  for (const list of byMember.values()) list.sort((a, b) => a.round - b.round)

  const byzantineIds = new Set(members.filter((m) => m.byzantine).map((m) => m.id))
  const byzantineShare = (list: MemberRound[]): number | null => {
    const withSenders = list.filter((r) => r.senders !== undefined)
    if (withSenders.length === 0) return null
    return withSenders.filter((r) => r.senders!.some((id) => byzantineIds.has(id))).length / withSenders.length
  }
  const nodes: NodeSummary[] = members.map((m) => {
    const list = byMember.get(m.id) ?? []
    const evaluated = list.filter((r) => r.accuracy !== undefined)
    const last = list.at(-1)
    const node: NodeSummary = {
      id: m.id,
      name: m.name,
      index: m.index,
      byzantine: m.byzantine,
      behaviour: m.behaviour,
      finalAccuracy: evaluated.at(-1)?.accuracy ?? null,
      roundsCompleted: last === undefined ? 0 : last.round + 1,
      roundsCaughtUp: list.reduce((sum, r) => sum + (r.caughtUpFrom === undefined ? 0 : r.round - r.caughtUpFrom), 0),
      byzantineAggregatedShare: byzantineShare(list),
      stalls: list.filter((r) => r.stalled).length,
      bytesSent: last?.bytesSent ?? 0,
      bytesReceived: last?.bytesReceived ?? 0,
      rejected: last?.rejected ?? {},
    }
    if (last?.signaturesVerified !== undefined) node.signaturesVerified = last.signaturesVerified
    if (last?.coolOffs !== undefined) node.coolOffs = last.coolOffs
    if (last?.sendsRepeated !== undefined) node.sendsRepeated = last.sendsRepeated
    if (last?.payloadsServed !== undefined) node.payloadsServed = last.payloadsServed
    if (last?.payloadsServedToFetch !== undefined) node.payloadsServedToFetch = last.payloadsServedToFetch
    const eps = list.findLast((r) => r.epsilon !== undefined)?.epsilon
    if (eps !== undefined) node.epsilon = eps
    if (m.exitCode !== undefined) node.exitCode = m.exitCode
    if (m.error !== undefined) node.error = m.error
    return node
  })
  const honestIds = new Set(members.filter((m) => !m.byzantine).map((m) => m.id))

  // Per-round figures.
  const roundNumbers = [...new Set(rounds.map((r) => r.round))].sort((a, b) => a - b)
  const perRoundMap = new Map<number, MemberRound[]>()
  for (const r of rounds) {
    const list = perRoundMap.get(r.round) ?? []
    list.push(r)
    perRoundMap.set(r.round, list)
  }
  let finalSpread: number | null = null
  const perRound: RoundFigures[] = roundNumbers.map((round) => {
    const list = perRoundMap.get(round)!
    const honest = list.filter((r) => honestIds.has(r.member))
    const accs = honest.flatMap((r) => (r.accuracy === undefined ? [] : [r.accuracy]))
    const sketches = honest.flatMap((r) => (r.sketch === undefined ? [] : [r.sketch]))
    const fig: RoundFigures = {
      round,
      roundMs: { median: median(list.map((r) => r.roundMs)), max: Math.max(...list.map((r) => r.roundMs)) },
      bytesSent: list.reduce((s, r) => s + r.bytesSent, 0),
    }
    if (accs.length > 0) fig.honestAccuracy = { min: Math.min(...accs), median: median(accs), max: Math.max(...accs), count: accs.length }
    const dists = honest.flatMap((r) => (r.distance === undefined ? [] : [r.distance]))
    if (dists.length > 0) fig.honestDistance = { median: median(dists), max: Math.max(...dists) }
    const elapsed = honest.flatMap((r) => (r.elapsedMs === undefined ? [] : [r.elapsedMs]))
    if (elapsed.length > 0) fig.elapsedMs = median(elapsed)
    if (sketches.length >= 2) {
      fig.honestSpread = maxPairwiseDistance(sketches)
      finalSpread = fig.honestSpread
    }
    return fig
  })

  const honestFinal = nodes.filter((n) => !n.byzantine).map((n) => n.finalAccuracy)
  const known = honestFinal.filter((a): a is number => a !== null)
  const honest = {
    minFinalAccuracy: known.length === honestFinal.length && known.length > 0 ? Math.min(...known) : null,
    medianFinalAccuracy: known.length > 0 ? median(known) : null,
    finalSpread,
  } as TopologyReport['honest']
  const lastDistance = perRound.findLast((p) => p.honestDistance !== undefined)?.honestDistance
  if (lastDistance !== undefined) honest.maxFinalDistance = lastDistance.max
  const honestEps = nodes.filter((n) => !n.byzantine && n.epsilon !== undefined).map((n) => n.epsilon!)
  const p = scenario.task.privacy
  const privacy =
    p === undefined ? undefined : { config: p, delta: p.delta, maxHonestEpsilon: honestEps.length === 0 ? null : Math.max(...honestEps), batchSize: scenario.task.batchSize }
  const target = scenario.expect.targetAccuracy
  const timeToTarget = target === undefined ? undefined : timeToAccuracy(perRound, target)
  const targetDistance = scenario.expect.targetDistance
  const distanceToTarget = targetDistance === undefined ? undefined : roundsToDistance(perRound, targetDistance)
  const expectations = evaluateExpectations(scenario.expect, {
    honestNodes: nodes.filter((n) => !n.byzantine),
    finalSpread,
    rounds: scenario.task.rounds,
    ...(timeToTarget === undefined ? {} : { timeToTarget }),
    ...(distanceToTarget === undefined ? {} : { distanceToTarget }),
  })
  return {
    scenario: scenario.name,
    ...(scenario.description === undefined ? {} : { description: scenario.description }),
    mode: opts.mode,
    startedAt: opts.startedAt.toISOString(),
    durationMs: opts.durationMs,
    n: scenario.n,
    f: scenario.f,
    r: scenario.r ?? scenario.f,
    rule: scenario.aggregator.rule,
    rounds: scenario.task.rounds,
    ...(opts.endedEarly === undefined ? {} : { endedEarly: opts.endedEarly }),
    ...(timeToTarget === undefined ? {} : { timeToTarget }),
    ...(distanceToTarget === undefined ? {} : { distanceToTarget }),
    nodes,
    honest,
    ...(privacy === undefined ? {} : { privacy }),
    expectations,
    passed: expectations.every((e) => e.passed),
    perRound,
    series: rounds.map(({ sketch: _s, senders: _senders, ...rest }) => rest),
  }
}

/**
 * Time-to-accuracy: the first round whose median honest accuracy (over the honest members that
 * evaluated it) is ≥ `target`, with the median honest elapsedMs of that round.
 */
export function timeToAccuracy(perRound: RoundFigures[], target: number): TimeToTarget {
  for (const p of perRound) {
    if (p.honestAccuracy !== undefined && p.honestAccuracy.median >= target) {
      return { target, round: p.round, elapsedMs: p.elapsedMs ?? null, accuracy: p.honestAccuracy.median }
    }
  }
  return { target, round: null, elapsedMs: null, accuracy: null }
}

/** The first round at which the largest honest ‖θ − θ*‖/‖θ*‖ is ≤ `target` (rounds are 0-based). */
export function roundsToDistance(perRound: RoundFigures[], target: number): DistanceToTarget {
  for (const p of perRound) {
    if (p.honestDistance !== undefined && p.honestDistance.max <= target) return { target, round: p.round, distance: p.honestDistance.max }
  }
  return { target, round: null, distance: null }
}

/**
 * Evaluates the scenario's expectations. A member that never evaluated counts as accuracy 0
 * (it cannot pass a minimum); `minRoundsCompleted` defaults to every round of the task.
 */
export function evaluateExpectations(
  expect: Expectations,
  ctx: { honestNodes: NodeSummary[]; finalSpread: number | null; rounds: number; timeToTarget?: TimeToTarget; distanceToTarget?: DistanceToTarget },
): ExpectationResult[] {
  const out: ExpectationResult[] = []
  const accs = ctx.honestNodes.map((n) => n.finalAccuracy ?? 0)
  const fmt = (x: number): string => x.toFixed(4)
  if (expect.minHonestAccuracy !== undefined) {
    const v = accs.length > 0 ? Math.min(...accs) : 0
    out.push({
      name: 'minHonestAccuracy',
      passed: v >= expect.minHonestAccuracy,
      value: v,
      threshold: expect.minHonestAccuracy,
      detail: `lowest honest final accuracy ${fmt(v)} ≥ ${expect.minHonestAccuracy}`,
    })
  }
  if (expect.minMedianHonestAccuracy !== undefined) {
    const v = median(accs)
    out.push({
      name: 'minMedianHonestAccuracy',
      passed: v >= expect.minMedianHonestAccuracy,
      value: v,
      threshold: expect.minMedianHonestAccuracy,
      detail: `median honest final accuracy ${fmt(v)} ≥ ${expect.minMedianHonestAccuracy}`,
    })
  }
  if (expect.maxMedianHonestAccuracy !== undefined) {
    const v = median(accs)
    out.push({
      name: 'maxMedianHonestAccuracy',
      passed: v <= expect.maxMedianHonestAccuracy,
      value: v,
      threshold: expect.maxMedianHonestAccuracy,
      detail: `median honest final accuracy ${fmt(v)} ≤ ${expect.maxMedianHonestAccuracy}`,
    })
  }
  if (expect.maxHonestSpread !== undefined) {
    const v = ctx.finalSpread
    out.push({
      name: 'maxHonestSpread',
      passed: v !== null && v <= expect.maxHonestSpread,
      value: v,
      threshold: expect.maxHonestSpread,
      detail: v === null ? 'no sketches to estimate the spread' : `honest spread at the last evaluation ${fmt(v)} ≤ ${expect.maxHonestSpread}`,
    })
  }
  if (expect.targetAccuracy !== undefined) {
    const t = ctx.timeToTarget
    const reached = t !== undefined && t.round !== null
    out.push({
      name: 'targetAccuracy',
      passed: reached,
      value: reached ? t.accuracy : null,
      threshold: expect.targetAccuracy,
      detail: reached
        ? `median honest accuracy ${fmt(t.accuracy!)} ≥ ${expect.targetAccuracy} at round ${t.round! + 1}${t.elapsedMs === null ? '' : `, after ${(t.elapsedMs / 1000).toFixed(1)} s`}`
        : `median honest accuracy never reached ${expect.targetAccuracy}`,
    })
  }
  if (expect.targetDistance !== undefined) {
    const t = ctx.distanceToTarget
    const reached = t !== undefined && t.round !== null
    out.push({
      name: 'targetDistance',
      passed: reached,
      value: reached ? t.distance : null,
      threshold: expect.targetDistance,
      detail: reached
        ? `every honest ‖θ − θ*‖/‖θ*‖ ≤ ${expect.targetDistance} at round ${t.round! + 1} (largest ${t.distance!.toExponential(2)})`
        : `the honest members never all came within ${expect.targetDistance} of θ*`,
    })
  }
  const minRounds = expect.minRoundsCompleted ?? ctx.rounds
  const v = ctx.honestNodes.length > 0 ? Math.min(...ctx.honestNodes.map((n) => n.roundsCompleted)) : 0
  out.push({
    name: 'minRoundsCompleted',
    passed: v >= minRounds,
    value: v,
    threshold: minRounds,
    detail: `every honest member completed ≥ ${minRounds} rounds (fewest: ${v})`,
  })
  return out
}

/** One-line verdict for the terminal. */
export function verdict(r: TopologyReport): string {
  const acc = (x: number | null): string => (x === null ? 'n/a' : `${(x * 100).toFixed(1)}%`)
  const failed = r.expectations.filter((e) => !e.passed).map((e) => e.name)
  const head = r.passed ? 'PASS' : `FAIL (${failed.join(', ')})`
  const dp = r.privacy === undefined ? '' : `, private: ${privacyText(r.privacy)}`
  const rr = r.r !== undefined && r.r !== r.f ? `, r = ${r.r}` : ''
  const t = r.timeToTarget
  const tt = t === undefined ? '' : t.round === null ? `, never reached ${acc(t.target)}` : `, reached ${acc(t.target)} at round ${t.round + 1}${t.elapsedMs === null ? '' : ` after ${(t.elapsedMs / 1000).toFixed(1)} s`}`
  const early = r.endedEarly === undefined ? '' : `; ended early: ${r.endedEarly}`
  return `${head}: ${r.scenario} — rule ${r.rule}${rr}, honest final accuracy min ${acc(r.honest.minFinalAccuracy)} / median ${acc(r.honest.medianFinalAccuracy)}, ${r.nodes.filter((n) => n.byzantine).length} Byzantine of ${r.n}${dp}${tt}${early}`
}

/** `ε 1.98 spent (target 2), δ = 1e-5` — the privacy figures of a report in words. */
export function privacyText(p: NonNullable<TopologyReport['privacy']>): string {
  const c = p.config
  const asked =
    c.epsilon !== undefined ? `target ${c.epsilon}` : c.noiseMultiplier !== undefined ? `σ = ${c.noiseMultiplier}` : `per-step ε ${c.stepEpsilon}`
  const spent = p.maxHonestEpsilon === null ? 'n/a' : p.maxHonestEpsilon.toPrecision(3)
  return `ε ${spent} spent (${asked}), δ = ${p.delta}, clip ${c.clipNorm}, batch ${p.batchSize}`
}

// ---------------------------------------------------------------------------------------
// Plots

/** Renders a vega-lite spec to an SVG string, server-side. */
export async function renderSvg(spec: TopLevelSpec): Promise<string> {
  const view = new vega.View(vega.parse(compile(spec).spec), { renderer: 'none' })
  try {
    return await view.toSVG()
  } finally {
    view.finalize()
  }
}

const width = 560
const height = 220

function memberLabel(n: NodeSummary): string {
  return n.byzantine ? `${n.name} (Byzantine: ${n.behaviour})` : n.name
}

/** Members drawn one colour each up to this many; larger swarms get a band (vega's palette has 10 colours). */
export const MAX_COLOURED_MEMBERS = 10

/** Labels in the members' order (m2 before m10), not as text. */
function naturalOrder(labels: Iterable<string>): string[] {
  return [...new Set(labels)].sort((a, b) => a.localeCompare(b, 'en', { numeric: true }))
}

type Row = { round: number; label: string; kind: 'honest' | 'Byzantine' } & Record<string, unknown>

/**
 * One plot of a per-member series. Up to MAX_COLOURED_MEMBERS members: a line per member, the
 * legend in the members' order. Larger swarms: every honest member as a faint grey line, the
 * honest members' median as a line and their min–max as a band, Byzantine members apart
 * (dashed, coloured, in the legend).
 */
function memberPlot(
  base: Record<string, unknown>,
  title: string,
  rows: Row[],
  field: string,
  y: Record<string, unknown>,
  mark: { point?: boolean },
): TopLevelSpec {
  const x = { field: 'round', type: 'quantitative', title: 'round' } as const
  const yEnc = { field, type: 'quantitative', ...y }
  const labels = naturalOrder(rows.map((r) => r.label))
  if (labels.length <= MAX_COLOURED_MEMBERS) {
    return {
      ...base,
      title,
      data: { values: rows },
      mark: { type: 'line', strokeWidth: mark.point === true ? 2 : 1, ...(mark.point === true ? { point: true } : {}) },
      encoding: {
        x,
        y: yEnc,
        color: { field: 'label', type: 'nominal', title: 'member', scale: { domain: labels }, legend: { labelLimit: 400 } },
        strokeDash: { field: 'kind', type: 'nominal', title: 'role', scale: { domain: ['honest', 'Byzantine'], range: [[1, 0], [4, 3]] } },
      },
    } as TopLevelSpec
  }
  const honest = rows.filter((r) => r.kind === 'honest')
  const byRound = new Map<number, number[]>()
  for (const r of honest) {
    const v = r[field]
    if (typeof v !== 'number' || !Number.isFinite(v)) continue
    const list = byRound.get(r.round) ?? []
    list.push(v)
    byRound.set(r.round, list)
  }
  const band = [...byRound].map(([round, vs]) => ({ round, min: Math.min(...vs), median: median(vs), max: Math.max(...vs) })).sort((a, b) => a.round - b.round)
  const byz = rows.filter((r) => r.kind === 'Byzantine')
  const honestCount = new Set(honest.map((r) => r.label)).size
  return {
    ...base,
    title: { text: title, subtitle: `${honestCount} honest members: median (blue line), min–max (band), each member (grey)${byz.length > 0 ? '; Byzantine members dashed' : ''}` },
    layer: [
      { data: { values: honest }, mark: { type: 'line', strokeWidth: 0.6, opacity: 0.3, color: '#777' }, encoding: { x, y: yEnc, detail: { field: 'label', type: 'nominal' } } },
      { data: { values: band }, mark: { type: 'area', opacity: 0.18, color: '#1f77b4' }, encoding: { x, y: { field: 'min', type: 'quantitative', ...y }, y2: { field: 'max' } } },
      { data: { values: band }, mark: { type: 'line', strokeWidth: 2.5, color: '#1f77b4', ...(mark.point === true ? { point: true } : {}) }, encoding: { x, y: { field: 'median', type: 'quantitative', ...y } } },
      ...(byz.length > 0
        ? [
            {
              data: { values: byz },
              mark: { type: 'line', strokeWidth: 1.5, strokeDash: [4, 3] },
              encoding: {
                x,
                y: yEnc,
                color: { field: 'label', type: 'nominal', title: 'Byzantine member', scale: { domain: naturalOrder(byz.map((r) => r.label)), scheme: 'dark2' }, legend: { labelLimit: 400 } },
              },
            },
          ]
        : []),
    ],
  } as TopLevelSpec
}

/** vega-lite specs of the report's plots, by file stem. */
export function reportPlots(r: TopologyReport): Record<string, TopLevelSpec> {
  const info = new Map(r.nodes.map((n) => [n.id, n]))
  const rows: Row[] = r.series.flatMap((s) => {
    const n = info.get(s.member)
    if (n === undefined) return []
    // rounds are numbered from 1 in plots, as in the progress lines
    return [{ ...s, round: s.round + 1, label: memberLabel(n), kind: n.byzantine ? ('Byzantine' as const) : ('honest' as const) }]
  })
  const memberColor = { field: 'label', type: 'nominal', title: 'member', scale: { domain: naturalOrder(rows.map((x) => x.label)) }, legend: { labelLimit: 400 } } as const
  const base = { $schema: 'https://vega.github.io/schema/vega-lite/v6.json', width, height, background: 'white' } as const
  const roundX = { field: 'round', type: 'quantitative', title: 'round' } as const
  const plots: Record<string, TopLevelSpec> = {
    accuracy: memberPlot(
      base,
      `${r.scenario}: test accuracy per member (rule ${r.rule})`,
      rows.filter((x) => x.accuracy !== undefined),
      'accuracy',
      { title: 'test accuracy', scale: { domain: [0, 1] } },
      { point: true },
    ),
    spread: {
      ...base,
      title: 'spread between honest models (max pairwise distance, sketch)',
      data: { values: r.perRound.filter((p) => p.honestSpread !== undefined).map((p) => ({ round: p.round + 1, spread: p.honestSpread })) },
      mark: { type: 'line', point: true },
      encoding: { x: roundX, y: { field: 'spread', type: 'quantitative', title: 'spread' } },
    },
    'round-time': memberPlot(base, 'round time per member', rows, 'roundMs', { title: 'round time (ms)' }, {}),
    'bytes-sent': memberPlot(base, 'bytes sent per member (cumulative)', rows, 'bytesSent', { title: 'bytes sent' }, {}),
  }
  const epsRows = rows.filter((x) => x.epsilon !== undefined && x.kind === 'honest')
  if (epsRows.length > 0) {
    plots.epsilon = {
      ...base,
      title: `privacy spent per honest member (ε at δ = ${r.privacy?.delta ?? 'n/a'}, RDP accountant)`,
      data: { values: epsRows },
      mark: { type: 'line', strokeWidth: 1 },
      encoding: { x: roundX, y: { field: 'epsilon', type: 'quantitative', title: 'ε spent' }, color: memberColor },
    }
  }
  return plots
}

function escapeHtml(s: string): string {
  return s.replace(/[&<>"]/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;' })[c]!)
}

/** The self-contained HTML page (inline SVG plots). */
export function reportHtml(r: TopologyReport, svgs: Record<string, string>): string {
  const pct = (x: number | null): string => (x === null ? '—' : `${(x * 100).toFixed(2)}%`)
  const nodeRows = r.nodes
    .map(
      (n) =>
        `<tr class="${n.byzantine ? 'byz' : ''}"><td>${escapeHtml(n.name)}</td><td><code>${escapeHtml(n.id.slice(0, 16))}…</code></td><td>${n.byzantine ? 'yes' : 'no'}</td><td>${escapeHtml(n.behaviour)}</td><td>${pct(n.finalAccuracy)}</td><td>${n.roundsCompleted}</td><td>${n.roundsCaughtUp}</td><td>${n.byzantine || n.byzantineAggregatedShare === null ? '' : `${(n.byzantineAggregatedShare * 100).toFixed(0)}% of rounds`}</td><td>${n.stalls}</td><td>${(n.bytesSent / 1e6).toFixed(2)}</td><td>${n.epsilon === undefined ? '—' : n.epsilon.toPrecision(3)}</td><td>${escapeHtml(Object.entries(n.rejected).map(([k, v]) => `${k}: ${v}`).join(', '))}</td></tr>`,
    )
    .join('\n')
  const expRows = r.expectations
    .map((e) => `<tr class="${e.passed ? 'ok' : 'bad'}"><td>${escapeHtml(e.name)}</td><td>${e.passed ? 'pass' : 'FAIL'}</td><td>${e.value === null ? '—' : e.value.toFixed(4)}</td><td>${e.threshold}</td><td>${escapeHtml(e.detail)}</td></tr>`)
    .join('\n')
  const figures = Object.entries(svgs)
    .map(([name, svg]) => `<figure id="${name}">${svg}</figure>`)
    .join('\n')
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>monna topology report: ${escapeHtml(r.scenario)}</title>
<style>
body{font-family:system-ui,sans-serif;margin:2em;max-width:1100px;color:#222}
table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:.25em .6em;text-align:left}
tr.byz{background:#fdecea}tr.ok td:nth-child(2){color:#1a7f37;font-weight:bold}tr.bad td:nth-child(2){color:#c62828;font-weight:bold}
.verdict{font-size:1.2em;font-weight:bold;color:${r.passed ? '#1a7f37' : '#c62828'}}figure{margin:1em 0}
</style></head><body>
<h1>Topology report: ${escapeHtml(r.scenario)}</h1>
${r.description === undefined ? '' : `<p>${escapeHtml(r.description)}</p>`}
<p class="verdict">${escapeHtml(verdict(r))}</p>
<p>n = ${r.n}, f = ${r.f}${r.r !== undefined && r.r !== r.f ? `, r = ${r.r} (a round waited for n − r = ${r.n - r.r} models)` : ''}, rule <code>${escapeHtml(r.rule)}</code>, ${r.rounds} rounds, mode ${r.mode}, started ${escapeHtml(r.startedAt)}, took ${(r.durationMs / 1000).toFixed(1)} s.</p>
${r.privacy === undefined ? '' : `<p>Differential privacy (honest members clip per example and add Gaussian noise; RDP accountant, sampling without replacement, replace-one neighbours): ${escapeHtml(privacyText(r.privacy))}. See docs/privacy.md.</p>`}
<h2>Expectations</h2>
<table><tr><th>name</th><th>result</th><th>value</th><th>threshold</th><th>detail</th></tr>
${expRows}
</table>
<h2>Members</h2>
<table><tr><th>name</th><th>PeerId</th><th>Byzantine</th><th>behaviour</th><th>final accuracy</th><th>rounds</th><th>caught up</th><th>Byzantine model aggregated</th><th>stalls</th><th>MB sent</th><th>ε spent</th><th>rejected</th></tr>
${nodeRows}
</table>
<h2>Plots</h2>
${figures}
</body></html>
`
}

/** Writes report.json, report.html and one SVG per plot into `dir`; returns their paths. */
export async function writeReport(r: TopologyReport, dir: string): Promise<{ json: string; html: string; svgs: string[] }> {
  await mkdir(dir, { recursive: true })
  const json = join(dir, 'report.json')
  await writeFile(json, `${JSON.stringify(r, null, 2)}\n`)
  const svgs: Record<string, string> = {}
  const svgPaths: string[] = []
  for (const [name, spec] of Object.entries(reportPlots(r))) {
    svgs[name] = await renderSvg(spec)
    const p = join(dir, `${name}.svg`)
    await writeFile(p, svgs[name])
    svgPaths.push(p)
  }
  const html = join(dir, 'report.html')
  await writeFile(html, reportHtml(r, svgs))
  return { json, html, svgs: svgPaths }
}
