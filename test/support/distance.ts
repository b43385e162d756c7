/**
 * Small in-process swarms judged on the honest members' distance to a known minimiser θ* (the
 * pre-conditioning and exact-mechanism tests, docs/precondition.md and docs/exact.md): f = 1, the
 * last member Byzantine, the second-last member's models 300 ms late so that the others' rounds
 * close on the Byzantine member's. Judged on rounds, never on time.
 */
import type { RoundFigures, TopologyReport } from '../../src/topology/report.ts'
import { parseScenario, type Scenario } from '../../src/topology/schema.ts'
import { runInProcess } from './in-process.ts'

export interface LateMemberSwarm {
  name: string
  n: number
  /** the scenario's task (dataset, model, batch size, schedule, rounds, evalEvery, …); β is 0 and evalExamples 200 unless it says otherwise */
  task: Record<string, unknown>
  /** the last member's behaviour (`{ behaviour: 'alie', z: 1 }`) */
  byzantine: Record<string, unknown>
  /** runtime.timeoutMs */
  timeoutMs: number
  /** timing beyond roundTimeoutMs 20 s and roundWindow 16 (e.g. waitAllMs) */
  timing?: Record<string, unknown>
  /** expect.targetDistance (the report's distanceToTarget) */
  targetDistance?: number
  /** the scenario's seed (θ₀) */
  seed?: number
}

/** The swarm as a scenario: m(n − 1) Byzantine, m(n − 2) late, on the CPU backend. */
export function lateMemberScenario(o: LateMemberSwarm): Scenario {
  return parseScenario({
    name: o.name,
    ...(o.seed === undefined ? {} : { seed: o.seed }),
    n: o.n,
    f: 1,
    task: { beta: 0, evalExamples: 200, ...o.task },
    timing: { roundTimeoutMs: 20_000, roundWindow: 16, ...o.timing },
    byzantine: [{ members: o.n - 1, ...o.byzantine }],
    // the second-last member's models arrive late: the others' rounds close on the rest and the Byzantine member
    network: { members: [{ members: [o.n - 2], latencyMs: 300 }] },
    ...(o.targetDistance === undefined ? {} : { expect: { targetDistance: o.targetDistance } }),
    runtime: { backend: 'cpu', timeoutMs: o.timeoutMs },
  })
}

export interface DistanceRun {
  report: TopologyReport
  /** the evaluated rounds, in order */
  series: RoundFigures[]
  /** the largest honest ‖θ − θ*‖/‖θ*‖ at the last evaluation */
  final: number
  /** the largest honest distance at the first evaluation at or after `round` */
  at: (round: number) => number
  /** the smallest share of rounds, over the members before the late one, that aggregated the Byzantine member's model */
  byzantineShare: number
}

/** Runs a late-member swarm (`lateMemberScenario`, or a variant of one) in this process and reads its distances to θ*. */
export async function distanceRun(s: Scenario, prefix: string): Promise<DistanceRun> {
  const report = await runInProcess(s, prefix)
  const series = report.perRound.filter((r) => r.honestDistance !== undefined)
  const fast = report.nodes.filter((n) => n.index < s.n - 2)
  return {
    report,
    series,
    final: report.honest.maxFinalDistance!,
    at: (round) => series.find((r) => r.round >= round)!.honestDistance!.max,
    byzantineShare: Math.min(...fast.map((n) => n.byzantineAggregatedShare ?? 0)),
  }
}
