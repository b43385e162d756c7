/**
 * The pre-conditioning tests (docs/precondition.md): a 4-member swarm (m3 Byzantine, m2 late:
 * test/support/distance.ts) learning a task with a known θ*, with m3 honest and running ALIE. Per
 * behaviour: the rounds until every honest member is within `tol` of θ* for plain D-GD (not within
 * `rounds`) and for the pre-conditioned optimizer (within `rounds / factor`, and below `tol / 10`
 * by `preRounds`), m3's models aggregated by m0 and m1 in most rounds of both runs.
 */
import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { type MatrixOptimizer, withOptimizer, withVariant } from '../../src/topology/schema.ts'
import { distanceRun, lateMemberScenario } from './distance.ts'

export interface Preconditioning {
  /** the scenario's name (and its temporary directories') */
  name: string
  /** the describe block's title */
  title: string
  /** the distance as the test's title names it ('‖θ − θ*‖/‖θ*‖') */
  distance: string
  /** the task without its rounds: dataset, model, batch size, plain D-GD's schedule, evalEvery, … */
  task: Record<string, unknown>
  /** plain D-GD's rounds */
  rounds: number
  /** the pre-conditioned run's rounds (it must reach `tol` within rounds / factor) */
  preRounds: number
  factor: number
  tol: number
  /** the pre-conditioned optimizer (its pre-conditioner, and a schedule if it differs from plain's) */
  precond: MatrixOptimizer
  /** the scenario's runtime.timeoutMs, and the test's timeout (both comparisons of one behaviour) */
  runTimeoutMs: number
  testTimeoutMs: number
}

export function describePreconditioning(o: Preconditioning): void {
  const scenario = lateMemberScenario({
    name: o.name,
    n: 4,
    task: { ...o.task, rounds: o.rounds },
    byzantine: { behaviour: 'alie' },
    targetDistance: o.tol,
    timeoutMs: o.runTimeoutMs,
  })

  async function roundsTo(behaviour: string, precondition: boolean): Promise<{ rounds: number | null; final: number; byzantineShare: number }> {
    const s = withOptimizer(withVariant(scenario, { behaviour: { behaviour } as never }), precondition ? o.precond : { name: 'plain' })
    // the pre-conditioned run needs far fewer rounds to show it (and keeps the test short)
    if (precondition) s.task.rounds = o.preRounds
    const { report, final, byzantineShare } = await distanceRun(s, `monna-${o.name.replace(/^unit-/, '')}-`)
    const d = report.distanceToTarget!
    return { rounds: d.round === null ? null : d.round + 1, final, byzantineShare }
  }

  const { rounds: ROUNDS, factor: FACTOR, tol: TOL } = o
  describe(o.title, () => {
    for (const behaviour of ['honest', 'alie']) {
      it(`reaches ${o.distance} ≤ ${TOL} in ≥ ${FACTOR}× fewer rounds than plain D-GD (m3 ${behaviour})`, { timeout: o.testTimeoutMs }, async (t) => {
        const plain = await roundsTo(behaviour, false)
        const pre = await roundsTo(behaviour, true)
        t.diagnostic(`plain: ${plain.rounds ?? `not within ${ROUNDS}`} rounds (final ${plain.final.toExponential(2)}); pre-conditioned: ${pre.rounds} rounds (final ${pre.final.toExponential(2)})`)
        assert.equal(plain.rounds, null, `plain reached ${TOL} in ${plain.rounds} rounds`)
        assert.ok(plain.final > TOL)
        assert.ok(pre.rounds !== null && pre.rounds <= ROUNDS / FACTOR, `pre-conditioned: ${pre.rounds}`)
        assert.ok(pre.final < TOL / 10, `pre-conditioned keeps converging: ${pre.final}`)
        // m3's models reached m0 and m1 in most rounds (its behaviour, honest or ALIE, was aggregated)
        for (const x of [plain, pre]) assert.ok(x.byzantineShare > 0.5, `m3 aggregated in ${x.byzantineShare} of the rounds`)
      })
    }
  })
}
