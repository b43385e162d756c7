/**
 * The exact mechanism on the 2f-redundant logistic generator (dataset logistic with rank and
 * blocks; docs/exact.md §2, §4.5), a small instance of topologies/exact-logistic.yaml: 7 members,
 * f = 1 (m6 running ALIE, z = 1), m5 300 ms late (rounds close on n − f = 6, m6's among them),
 * softmax regression on whole shards of 40 examples (rank-4 blocks in 10 dimensions, labels
 * calibrated so that every member's gradient vanishes at the known w*), step 2, 120 rounds, seed 1.
 *
 * Measured (docs/exact.md §4.5): the exact mechanism reaches w* (the centred distance within 1e-4
 * by round 75 in the topology's run), plain D-GD with NNA at the same step does not — its members' local steps
 * of 2 on their own blocks overshoot, and the swarm settles into a period-2 cycle at a distance of
 * 0.6–0.96 (a step-size effect: the honest cell shows it on one member too; at step 1 see §4.5).
 * Judged on rounds, never on time.
 */
import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { withOptimizer } from '../../../src/topology/schema.ts'
import { distanceRun, lateMemberScenario } from '../../support/distance.ts'

describe('the exact mechanism on a 2f-redundant logistic-regression task with a known minimiser', () => {
  it('7 members, ALIE: the exact mechanism ends within 1e-4 of w*, plain NNA at the same step stays above 0.1', { timeout: 150_000 }, async (t) => {
    const rounds = 120
    const s = lateMemberScenario({
      name: 'unit-exact-logistic',
      seed: 1,
      n: 7,
      task: {
        dataset: { kind: 'logistic', dim: 10, condition: 1, rank: 4, blocks: 7, trainSize: 280, testSize: 200, seed: 1 },
        partition: { scheme: 'blocks' },
        model: { kind: 'logreg' },
        batchSize: 40,
        schedule: { kind: 'constant', lr: 2 },
        rounds,
        evalEvery: 5,
      },
      byzantine: { behaviour: 'alie', z: 1 },
      timeoutMs: 120_000,
    })
    const run = async (exact: boolean): Promise<{ final: number; first: number; last: number[] }> => {
      const { final, series } = await distanceRun(withOptimizer(s, { name: exact ? 'exact' : 'plain', exact }), 'monna-exact-logistic-')
      return { final, first: series[0]!.honestDistance!.max, last: series.slice(-6).map((r) => r.honestDistance!.max) }
    }
    const exact = await run(true)
    const plain = await run(false)
    t.diagnostic(`exact: ${exact.first.toExponential(2)} at round 4, ${exact.final.toExponential(2)} after ${rounds}; plain NNA, the last evaluations: ${plain.last.map((d) => d.toFixed(3)).join(' ')}`)
    // measured 1.1e-5 at round 100 here and 3.8e-5 at 85 in the topology's run (from θ₀ of seed 1;
    // from the default seed's θ₀, 1.65 at round 4, it was 3.1e-3 at 100: the rate depends on the start)
    assert.ok(exact.final < 1e-4, `exact: ${exact.first} at round 4, ${exact.final} at ${rounds}`)
    assert.ok(Math.min(...plain.last) > 0.1, `plain NNA: ${plain.last.join(', ')}`)
  })
})
