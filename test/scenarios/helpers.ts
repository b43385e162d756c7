/**
 * Shared by the scenario suite: runs `topologies/ci-attacks.yaml` (4 members, one Byzantine,
 * one slow honest member) with a given rule and behaviour, every member its own OS process on
 * 127.0.0.1 (the default mode of `monna run`), and returns the report.
 */
import assert from 'node:assert/strict'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { TopologyReport } from '../../src/topology/report.ts'
import { runTopology } from '../../src/topology/runner.ts'
import { type ByzantineConfig, loadScenario, withVariant } from '../../src/topology/schema.ts'

export const scenarioFile = join(import.meta.dirname, '../../topologies/ci-attacks.yaml')

/** The accuracy every honest MoNNA member must reach (the scenario's `expect.minHonestAccuracy`). */
export async function statedAccuracy(): Promise<number> {
  return (await loadScenario(scenarioFile)).expect.minHonestAccuracy!
}

export async function runCiScenario(opts: { rule: string; behaviour: Omit<ByzantineConfig, 'members'> }): Promise<TopologyReport> {
  const base = await loadScenario(scenarioFile)
  const s = withVariant(base, { aggregator: { rule: opts.rule }, behaviour: opts.behaviour })
  const dir = await mkdtemp(join(tmpdir(), `monna-scenario-${opts.rule}-${opts.behaviour.behaviour}-`))
  let keep = false
  try {
    const { report } = await runTopology(s, { outDir: dir, mode: 'process' })
    keep = !report.passed && opts.rule !== 'mean'
    return report
  } finally {
    // a failing MoNNA run keeps its directory (logs, report) for inspection
    if (!keep) await rm(dir, { recursive: true, force: true })
  }
}

/** Asserts that every honest member finished every round and reached `bar`. */
export function assertHonestReach(report: TopologyReport, bar: number): void {
  const honest = report.nodes.filter((n) => !n.byzantine)
  assert.equal(honest.length, 3)
  for (const n of honest) {
    assert.equal(n.roundsCompleted, report.rounds, `${n.name} completed ${n.roundsCompleted}/${report.rounds} rounds`)
    assert.ok(n.finalAccuracy !== null && n.finalAccuracy >= bar, `${n.name} (honest) final accuracy ${n.finalAccuracy} < ${bar} under ${report.nodes.find((x) => x.byzantine)?.behaviour}`)
  }
  assert.equal(report.passed, true, JSON.stringify(report.expectations))
}

/**
 * Asserts that the Byzantine model really reached the honest members' aggregation in most
 * rounds (RoundReport.senders), i.e. the scenario's slow member makes the attack bite.
 */
export function assertAttackReached(report: TopologyReport): void {
  const shares = report.nodes.filter((n) => !n.byzantine).map((n) => n.byzantineAggregatedShare)
  const known = shares.filter((x): x is number => x !== null).sort((a, b) => a - b)
  assert.equal(known.length, shares.length, 'the node reports which models it aggregated')
  const median = known[known.length >> 1]!
  assert.ok(median >= 0.5, `the Byzantine model reached the median honest member's aggregation in only ${(median * 100).toFixed(0)}% of rounds`)
}
