/**
 * Shared by the scenario suite: runs `topologies/ci-robustness.yaml` (4 members, one Byzantine,
 * one slow honest member, non-iid data) with a given rule and behaviour, every member its own OS
 * process on 127.0.0.1 (the default mode of `monna run`), and judges the report.
 *
 * The attacks' parameters live in the scenario file's `matrix.behaviours` (`suiteAttack` reads
 * them), so the suite, `monna run --matrix` and the README's table run the same attacks.
 * `describeAttack` is a whole robustness test: the same scenario and attack once with MoNNA
 * (every honest member must reach the scenario's bar) and once with the undefended `mean`
 * (some honest member must end below `meanBar()`, well under the bar). A new attack — e.g. a
 * protocol-level behaviour — is one entry in the matrix and one file calling `describeAttack`,
 * or its own assertions on `runCiScenario` when what it breaks is not the mean's accuracy.
 */
import assert from 'node:assert/strict'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { describe, it } from 'node:test'
import type { TopologyReport } from '../../src/topology/report.ts'
import { type ProgressEvent, runTopology } from '../../src/topology/runner.ts'
import { type ByzantineConfig, loadScenario, withVariant } from '../../src/topology/schema.ts'

export const scenarioFile = join(import.meta.dirname, '../../topologies/ci-robustness.yaml')

/** How far below MoNNA's bar the undefended mean's worst honest member must fall. */
export const meanMargin = 0.2

export type Behaviour = Omit<ByzantineConfig, 'members'>

/** The accuracy every honest MoNNA member must reach (the scenario's `expect.minHonestAccuracy`). */
export async function statedAccuracy(): Promise<number> {
  return (await loadScenario(scenarioFile)).expect.minHonestAccuracy!
}

/** The bar the undefended mean's worst honest member must end under: the stated accuracy − `meanMargin`. */
export async function meanBar(): Promise<number> {
  return (await statedAccuracy()) - meanMargin
}

/** The suite's parameters of `behaviour`: its one entry in the scenario's `matrix.behaviours`. */
export async function suiteAttack(behaviour: string): Promise<Behaviour> {
  const entries = ((await loadScenario(scenarioFile)).matrix?.behaviours ?? []).map((b) => (typeof b === 'string' ? { behaviour: b } : b) as Behaviour)
  const found = entries.filter((b) => b.behaviour === behaviour)
  assert.equal(found.length, 1, `${scenarioFile}: matrix.behaviours must list ${behaviour} exactly once`)
  return found[0]!
}

export async function runCiScenario(opts: { rule: string; behaviour: Behaviour }): Promise<TopologyReport> {
  const base = await loadScenario(scenarioFile)
  const s = withVariant(base, { aggregator: { rule: opts.rule }, behaviour: opts.behaviour })
  const dir = await mkdtemp(join(tmpdir(), `monna-scenario-${opts.rule}-${opts.behaviour.behaviour}-`))
  let keep = false
  try {
    const programs: ProgressEvent[] = []
    const { report } = await runTopology(s, { outDir: dir, mode: 'process', onProgress: (e) => e.kind === 'program' && programs.push(e) })
    // the members ran monna's bundled program (src/topology/member-program.ts), not a silent fallback
    assert.deepEqual(
      programs.map((e) => e.kind === 'program' && e.bundled),
      [true],
      JSON.stringify(programs),
    )
    // a run that contradicts the suite (MoNNA failing, the mean passing) keeps its directory
    // (logs, report) for inspection
    keep = opts.rule === 'mean' ? report.passed : !report.passed
    return report
  } finally {
    if (keep) process.stderr.write(`scenario suite: kept ${dir} (${opts.rule} under ${opts.behaviour.behaviour})\n`)
    else await rm(dir, { recursive: true, force: true })
  }
}

/** Asserts that every honest member finished every round and reached `bar`. */
export function assertHonestReach(report: TopologyReport, bar: number): void {
  const honest = report.nodes.filter((n) => !n.byzantine)
  assert.equal(honest.length, 3)
  for (const n of honest) {
    assert.equal(n.roundsCompleted, report.rounds, `${n.name} completed ${n.roundsCompleted}/${report.rounds} rounds`)
    assert.ok(n.finalAccuracy !== null && n.finalAccuracy >= bar, `${n.name} (honest) final accuracy ${n.finalAccuracy} < ${bar} under ${behaviourOf(report)}`)
  }
  assert.equal(report.passed, true, JSON.stringify(report.expectations))
}

/**
 * Asserts that the attack broke the undefended run: an honest member ends below `bar` (well
 * under the scenario's, which every honest member must reach), hence the verdict FAIL.
 *
 * The worst honest member, not the median: the guarantee is per member, and the median hangs on
 * one round. Under ipm the mean's aggregate is turned around every round it takes the Byzantine
 * model, so an honest member's accuracy is 0 % after an attacked round and 70–90 % after one
 * without it (its momentum still points the right way). In one process the slowed member m2
 * holds ≈ 66 % throughout while m0 and m1 sit at 0 %; in a rehearsal under load one of m0 and m1
 * missed the Byzantine model in its last round and the median read 71.1 %.
 */
export function assertHonestFail(report: TopologyReport, bar: number): void {
  // over the honest members that evaluated: under optimal-alie the mean's models diverge at round
  // ≈ 24, those members stop (ModelDivergedError) ≈ 1 s after the start and the runner ends the
  // run — in a CI run before the slowed m2 had reported a round
  const known = report.nodes.filter((n) => !n.byzantine && n.finalAccuracy !== null).map((n) => n.finalAccuracy!)
  const worst = known.length === 0 ? null : Math.min(...known)
  const accs = report.nodes.filter((n) => !n.byzantine).map((n) => `${n.name} ${n.finalAccuracy}`)
  assert.ok(worst !== null && worst < bar, `${report.rule} under ${behaviourOf(report)}: no honest member ends below ${bar} (${accs.join(', ')})`)
  assert.equal(report.passed, false, JSON.stringify(report.expectations))
}

/**
 * Asserts that the Byzantine model really reached the honest members' aggregation in most
 * rounds (RoundReport.senders), i.e. the scenario's slow member makes the attack bite.
 */
export function attackReached(report: TopologyReport): boolean {
  const shares = report.nodes.filter((n) => !n.byzantine).map((n) => n.byzantineAggregatedShare)
  const known = shares.filter((x): x is number => x !== null).sort((a, b) => a - b)
  return known.length === shares.length && known[known.length >> 1]! >= 0.5
}

export function assertAttackReached(report: TopologyReport, opts: { everyHonest: boolean } = { everyHonest: true }): void {
  const shares = report.nodes.filter((n) => !n.byzantine).map((n) => n.byzantineAggregatedShare)
  const known = shares.filter((x): x is number => x !== null).sort((a, b) => a - b)
  if (opts.everyHonest) assert.equal(known.length, shares.length, 'the node reports which models it aggregated')
  // a majority of the honest members reported (the mean's run may end before the slowed one did: see assertHonestFail)
  else assert.ok(2 * known.length > shares.length, `only ${known.length} of ${shares.length} honest members reported which models they aggregated`)
  const median = known[known.length >> 1]!
  assert.ok(median >= 0.5, `the Byzantine model reached the median honest member's aggregation in only ${(median * 100).toFixed(0)}% of rounds`)
}

/** One line for the test's diagnostics: the rule, attack, honest accuracies and how often the attack was aggregated. */
export function summary(report: TopologyReport): string {
  const honest = report.nodes.filter((n) => !n.byzantine)
  const pct = (x: number | null) => (x === null ? '–' : `${(x * 100).toFixed(1)} %`)
  return (
    `${report.rule} under ${behaviourOf(report)}: honest min ${pct(report.honest.minFinalAccuracy)}, median ${pct(report.honest.medianFinalAccuracy)} ` +
    `(${honest.map((n) => `${n.name} ${pct(n.finalAccuracy)}, Byzantine model aggregated ${pct(n.byzantineAggregatedShare)}`).join('; ')}), ` +
    `${(report.durationMs / 1000).toFixed(0)} s`
  )
}

function behaviourOf(report: TopologyReport): string | undefined {
  return report.nodes.find((x) => x.byzantine)?.behaviour
}

/**
 * One robustness test: the scenario under `behaviour` (its parameters from the scenario's
 * matrix), once with MoNNA — every honest member ≥ the stated accuracy — and once with the
 * undefended mean — some honest member < `meanBar()`. Both runs must have aggregated the Byzantine
 * model in most rounds, so the difference is the rule's.
 */
export function describeAttack(behaviour: string, note = ''): void {
  describe(`${behaviour}${note === '' ? '' : ` (${note})`}: MoNNA holds, the mean fails (4 processes on 127.0.0.1)`, () => {
    it('MoNNA (nna): every honest member reaches the stated accuracy', async (t) => {
      // a run in which the Byzantine model reached too few aggregations says nothing about the
      // rule (asynchronous rounds take the first n − f: on a loaded machine a rushing attacker can
      // fall out of step — a CI rehearsal beside a 600-round run saw optimal-foe aggregated in 0 %
      // of rounds): such a run is repeated once, and the second must show the attack biting
      let report = await runCiScenario({ rule: 'nna', behaviour: await suiteAttack(behaviour) })
      t.diagnostic(summary(report))
      if (!attackReached(report)) {
        t.diagnostic('the attack did not reach the aggregation in most rounds: running the scenario once more')
        report = await runCiScenario({ rule: 'nna', behaviour: await suiteAttack(behaviour) })
        t.diagnostic(summary(report))
      }
      assertAttackReached(report)
      assertHonestReach(report, await statedAccuracy())
    })
    it('mean: an honest member falls well below it', async (t) => {
      // the mean's honest accuracy swings with each round (ipm: 0 % after a round that took the
      // Byzantine model, 70–90 % after one that did not), and the final figure is the last round's:
      // in a quiet CI rehearsal every honest member's last round of round-ahead missed it (the
      // Byzantine model aggregated in 57–73 % of rounds, honest members ended at 68–69 %). A run
      // whose honest members all end above the bar is repeated once, and the second must fail
      let report = await runCiScenario({ rule: 'mean', behaviour: await suiteAttack(behaviour) })
      t.diagnostic(summary(report))
      const bar = await meanBar()
      if (report.honest.minFinalAccuracy !== null && report.honest.minFinalAccuracy >= bar) {
        t.diagnostic('no honest member ended below the bar (its last round may have missed the Byzantine model): running the scenario once more')
        report = await runCiScenario({ rule: 'mean', behaviour: await suiteAttack(behaviour) })
        t.diagnostic(summary(report))
      }
      assertAttackReached(report, { everyHonest: false })
      assertHonestFail(report, bar)
    })
  })
}
