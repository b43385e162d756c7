/**
 * Iterative pre-conditioning of logistic regression on a small instance of
 * topologies/precondition-logistic.yaml (docs/precondition.md §7): 4 members, f = 1 (m3), softmax
 * regression on the logistic generator with 8 features, condition number 100 and labels calibrated
 * to σ(x·w*) (rank = dim: every member's block has the known minimiser), whole-shard steps. Rounds
 * until every honest member is within 1e-2 of θ* (the centred ‖θ − θ*‖/‖θ*‖) for plain D-GD
 * (β = 0, step 2) and the pre-conditioned one (K from each member's Hessian at θₜ, α = 2, β = 0,
 * step 1), with m3 honest and running ALIE (m2's models arrive late, so m0 and m1 aggregate m3's
 * every round): plain does not get there in 225 rounds, the pre-conditioned one does in at most
 * 45 — at least 5× fewer rounds — and keeps converging (≤ 1e-3 at round 60). Measured
 * (2026-12-05, m3 honest): plain 558 rounds, pre-conditioned 36 (15×; ALIE: 36 too).
 * Judged on rounds (evaluations every 3 rounds), never on time.
 */
import { describePreconditioning } from '../../support/precondition.ts'

describePreconditioning({
  name: 'unit-precondition-logistic',
  title: 'iterative pre-conditioning (logistic regression, condition number 100)',
  distance: 'the centred ‖θ − θ*‖/‖θ*‖',
  task: {
    dataset: { kind: 'logistic', dim: 8, condition: 100, rank: 8, blocks: 4, trainSize: 400, testSize: 200, seed: 1 },
    partition: { scheme: 'blocks' },
    model: { kind: 'logreg' },
    batchSize: 100,
    schedule: { kind: 'constant', lr: 2 },
    evalEvery: 3,
  },
  rounds: 225,
  // it needs ≤ rounds / factor = 45 to pass; 60 show it keeps converging
  preRounds: 60,
  factor: 5,
  tol: 1e-2,
  precond: { name: 'precond', schedule: { kind: 'constant', lr: 1 }, precondition: { alpha: 2, beta: 0 } },
  runTimeoutMs: 300_000,
  testTimeoutMs: 600_000,
})
