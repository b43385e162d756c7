/**
 * Whether a member that joined late (or came back) sits with the honest swarm: per round, its
 * distance to the honest members' average against two scales of the honest swarm — their largest
 * pairwise distance (the honest cluster's diameter) and how far their average moved in the last
 * `behind` rounds (where a member `behind` rounds behind would sit). The diameter alone is not a
 * bound: a round aggregates the first n − f models, so while one member — under load often the
 * newcomer — is left out, the others average the same models and coincide (CI, join-late: founders
 * 4.7e-3 to 1.1e-2 apart for 14 rounds, the newcomer steady at 1.5–2.4e-2, a 30-round-stale model
 * 0.38 away). `assertNearHonest` requires the newcomer, on average over the rounds compared,
 * within the larger of the two scales, and never farther than 1.5× it.
 */
import assert from 'node:assert/strict'

export const dist = (a: number[], b: number[]): number => Math.sqrt(a.reduce((s, x, i) => s + (x - b[i]!) ** 2, 0))
export const mean = (a: number[]): number => a.reduce((x, y) => x + y, 0) / a.length

/** The element-wise average of the honest members' sketches at a round (undefined if one is missing). */
export function averageOf(sketches: Array<number[] | undefined>): number[] | undefined {
  if (sketches.length === 0 || sketches.some((v) => v === undefined)) return undefined
  return sketches[0]!.map((_, j) => sketches.reduce((a, v) => a + v![j]!, 0) / sketches.length)
}

export interface Closeness {
  /** per round compared: the newcomer's distance to the honest average, the honest diameter, the average's travel */
  ds: number[]
  spreads: number[]
  travels: number[]
  /** the larger of the largest diameter and the mean travel */
  scale: number
  /** one line per round compared, for the test's log */
  rows: string[]
}

/**
 * `honestAt(round)`: the honest members' sketches at `round`; `newcomer`: the newcomer's sketch per
 * round, only the rounds to compare. Rounds where a sketch is missing are skipped.
 */
export function closeness(honestAt: (round: number) => Array<number[] | undefined>, newcomer: Iterable<{ round: number; sketch: number[] }>, behind: number): Closeness {
  const c: Closeness = { ds: [], spreads: [], travels: [], scale: 0, rows: [] }
  for (const { round, sketch } of newcomer) {
    const s = honestAt(round)
    const avg = averageOf(s)
    const before = averageOf(honestAt(round - behind))
    if (avg === undefined || before === undefined) continue
    const d = dist(sketch, avg)
    const spread = Math.max(0, ...s.flatMap((a, i) => s.slice(i + 1).map((b) => dist(a!, b!))))
    const travel = dist(avg, before)
    c.ds.push(d)
    c.spreads.push(spread)
    c.travels.push(travel)
    c.rows.push(`round ${round}: newcomer–average ${d.toExponential(2)}, honest max pairwise ${spread.toExponential(2)}, average's travel in ${behind} rounds ${travel.toExponential(2)}`)
  }
  c.scale = Math.max(Math.max(0, ...c.spreads), c.ds.length > 0 ? mean(c.travels) : 0)
  return c
}

export function summary(c: Closeness, behind: number): string {
  return `${c.ds.length} rounds: newcomer–average mean ${mean(c.ds).toExponential(2)} max ${Math.max(...c.ds).toExponential(2)}; honest max pairwise mean ${mean(c.spreads).toExponential(2)} max ${Math.max(...c.spreads).toExponential(2)}; average's travel in ${behind} rounds mean ${mean(c.travels).toExponential(2)}`
}

export function assertNearHonest(c: Closeness): void {
  assert.ok(mean(c.ds) <= c.scale, `mean distance to the honest average ${mean(c.ds)} > the swarm's scale ${c.scale}\n${c.rows.join('\n')}`)
  assert.ok(Math.max(...c.ds) <= 1.5 * c.scale, `largest distance ${Math.max(...c.ds)} > 1.5 × the swarm's scale ${c.scale}\n${c.rows.join('\n')}`)
}
