/**
 * The exact mechanism with `timing.waitAllMs` (docs/exact.md §4.7): once n − r certified models are
 * held, a member keeps waiting (up to waitAllMs) for the rest before closing the round, so a round
 * aggregates every certified model that arrived in time. On topologies/exact-linear.yaml's swarm
 * (7 members, f = 1, rank-4 blocks, m6 sending the sign-flipped honest mean, m5 300 ms late) the
 * rounds then close on all n = 7 models — the same set at every honest member, since it is all
 * of them — and the exact mechanism converges where, closing on n − f = 6, it diverges
 * (test/unit/topology/exact.test.ts). Judged on rounds and on the sets the rounds closed on,
 * never on time.
 */
import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import type { TopologyReport } from '../../../src/topology/report.ts'
import { parseScenario } from '../../../src/topology/schema.ts'
import { distanceRun, lateMemberScenario } from '../../support/distance.ts'
import { runInProcess } from '../../support/in-process.ts'

/** The honest members' round reports. */
const honestRounds = (report: TopologyReport): TopologyReport['series'] => report.series.filter((r) => report.nodes.find((n) => n.id === r.member && !n.byzantine) !== undefined)

describe('the exact mechanism waiting for all n certified models (timing.waitAllMs)', () => {
  it('rank-4 blocks, 7 members, sign-flip: every round closes on all 7 and the distance to θ* falls', { timeout: 150_000 }, async (t) => {
    const rounds = 80
    const s = lateMemberScenario({
      name: 'unit-exact-waitall',
      n: 7,
      task: {
        dataset: { kind: 'linear', dim: 10, condition: 1, noise: 0, rank: 4, blocks: 7, trainSize: 280, testSize: 200, seed: 1 },
        partition: { scheme: 'blocks' },
        model: { kind: 'linear' },
        batchSize: 40,
        schedule: { kind: 'constant', lr: 0.5 },
        exact: true,
        rounds,
        evalEvery: 5,
      },
      // far above m5's 300 ms: on a loaded machine its model still arrives within the extra wait
      timing: { waitAllMs: 10_000 },
      byzantine: { behaviour: 'sign-flip' },
      timeoutMs: 140_000,
    })
    const { report, final, at } = await distanceRun(s, 'monna-exact-waitall-')
    t.diagnostic(`exact, waitAllMs: ${at(10).toExponential(2)} at 10, ${at(40).toExponential(2)} at 40, ${final.toExponential(2)} at ${rounds}`)
    const honest = honestRounds(report)
    const delivered = honest.map((r) => r.delivered)
    t.diagnostic(`inputs a round, honest members: ${Math.min(...delivered)}–${Math.max(...delivered)} over ${honest.length} member rounds`)
    // every honest member closed every round on all 7 certified models: the same set everywhere
    assert.ok(honest.length === 6 * rounds && delivered.every((d) => d === 7), `inputs a round: ${Math.min(...delivered)}–${Math.max(...delivered)} over ${honest.length}`)
    // and the distance falls (without waitAllMs it grows past 1 on this swarm: test/unit/topology/exact.test.ts)
    assert.ok(final < 0.2 && final < at(10) / 3 && final < at(40), `exact with waitAllMs: ${at(10)} at 10, ${at(40)} at 40, ${final} at ${rounds}`)
  })

  it('a silent member: every round waits out waitAllMs and closes on the n − 1 that arrived, without a stall', { timeout: 120_000 }, async (t) => {
    const rounds = 8
    const s = parseScenario({
      name: 'unit-waitall-silent',
      n: 4,
      f: 1,
      task: {
        dataset: { kind: 'linear', dim: 10, condition: 3, noise: 0, trainSize: 280, testSize: 50, seed: 1 },
        model: { kind: 'linear' },
        batchSize: 40,
        schedule: { kind: 'constant', lr: 0.5 },
        beta: 0,
        exact: true,
        rounds,
        evalEvery: 4,
        evalExamples: 50,
      },
      timing: { roundTimeoutMs: 60_000, roundWindow: 16, waitAllMs: 300 },
      byzantine: [{ members: 3, behaviour: 'silent' }],
      runtime: { backend: 'cpu', timeoutMs: 110_000 },
    })
    const report = await runInProcess(s, 'monna-waitall-silent-')
    const honest = honestRounds(report)
    const delivered = honest.map((r) => r.delivered)
    t.diagnostic(`inputs a round: ${Math.min(...delivered)}–${Math.max(...delivered)} over ${honest.length} member rounds; stalls ${report.nodes.map((n) => n.stalls).join(' ')}`)
    assert.equal(honest.length, 3 * rounds)
    assert.ok(delivered.every((d) => d === 3), `inputs a round: ${delivered.join(' ')}`)
    // the round closed after waiting waitAllMs for m3, never reported as stalled (its n − r were there)
    assert.ok(honest.every((r) => r.stalled === false), 'a round reported stalled')
    // and it did wait: a round's wait is at least the 300 ms given to the silent member
    assert.ok(honest.every((r) => r.phases!.waitMs >= 300), `waits: ${honest.map((r) => r.phases!.waitMs).join(' ')}`)
  })
})
