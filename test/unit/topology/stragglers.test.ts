/**
 * Stragglers apart from Byzantine members (docs/redundancy.md, topologies/stragglers-mnist.yaml
 * at test size): 7 members, f = 1 (m6 runs a rushing ALIE), and three honest members whose
 * models reach everyone 500 ms late. With r = f = 1 a round waits for 6 models, so for at least
 * two slow ones; with r = 3 it waits for 4 and the fast members set the pace. Judged on the
 * members' own reports: which models each round aggregated (causal, not timed), and the two runs
 * compared with each other — the wait per round, the run's elapsed time, the time to the target
 * accuracy — never with a wall-clock bound, so a loaded machine does not decide the outcome.
 * (The share of a round spent waiting is printed, not judged: in one process a member's wait
 * includes the other members' work, so it is near 1 with either r.)
 */
import assert from 'node:assert/strict'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { describe, it } from 'node:test'
import type { RoundReport } from '../../../src/node/index.ts'
import { median } from '../../../src/topology/report.ts'
import { runTopology, type TopologyRun } from '../../../src/topology/runner.ts'
import { memberName, parseScenario, withVariant } from '../../../src/topology/schema.ts'

const LATENCY = 500
const ROUNDS = 12
const slow = [3, 4, 5]

const scenario = parseScenario({
  name: 'unit-stragglers',
  n: 7,
  f: 1,
  task: {
    dataset: { kind: 'gaussian-mixture', classes: 4, dim: 8, trainSize: 1400, testSize: 400, seed: 1 },
    model: { kind: 'logreg' },
    schedule: { kind: 'constant', lr: 2 },
    rounds: ROUNDS,
    evalEvery: 4,
    evalExamples: 400,
  },
  timing: { roundTimeoutMs: 20_000, roundWindow: 16 },
  byzantine: [{ members: 6, behaviour: 'alie' }],
  network: { members: [{ members: slow, latencyMs: LATENCY }] },
  expect: { minHonestAccuracy: 0.7, targetAccuracy: 0.6 },
  runtime: { backend: 'cpu', timeoutMs: 120_000 },
})

async function run(r: number): Promise<{ run: TopologyRun; reports: RoundReport[] }> {
  const dir = await mkdtemp(join(tmpdir(), `monna-stragglers-r${r}-`))
  const reports: RoundReport[] = []
  try {
    const out = await runTopology(withVariant(scenario, { r }), { outDir: dir, mode: 'in-process', onRound: (x) => reports.push(x) })
    return { run: out, reports }
  } finally {
    await rm(dir, { recursive: true, force: true })
  }
}

describe('stragglers apart from Byzantine members (r > f)', () => {
  it('with three honest members late, r = 3 waits less per round and reaches the target sooner than r = f = 1; the Byzantine member is still handled', { timeout: 150_000 }, async (t) => {
    const a = await run(1)
    const b = await run(3)
    const names = (x: { run: TopologyRun }): Map<string, string> => new Map(x.run.report.nodes.map((n) => [n.id, n.name]))
    const fastHonest = ['m0', 'm1', 'm2']
    const of = (x: { run: TopologyRun; reports: RoundReport[] }, who: string[]): RoundReport[] => {
      const byId = names(x)
      return x.reports.filter((r) => who.includes(byId.get(r.member)!))
    }
    for (const [x, r, needed] of [[a, 1, 6], [b, 3, 4]] as const) {
      assert.equal(x.run.report.r, r)
      assert.equal(x.run.report.passed, true, `r = ${r}: ${JSON.stringify(x.run.report.expectations)}`)
      assert.ok(x.run.report.timeToTarget?.round !== null && x.run.report.timeToTarget?.elapsedMs !== null, `r = ${r} reached the target`)
      for (const rep of of(x, fastHonest)) assert.equal(rep.needed, needed)
    }
    // r = 1: every round of a fast honest member aggregated at least two of the slow members' models
    const slowIds = new Set(a.run.report.nodes.filter((n) => slow.includes(n.index)).map((n) => n.id))
    for (const rep of of(a, fastHonest)) {
      assert.ok(rep.senders!.filter((s) => slowIds.has(s)).length >= 2, `r = 1, ${rep.member} round ${rep.round}: ${rep.senders}`)
    }
    // waiting share of a round (waitMs / roundMs), median over the fast honest members' rounds
    const share = (x: typeof a): number => median(of(x, fastHonest).map((r) => r.phases!.waitMs / Math.max(1, r.roundMs)))
    const wait = (x: typeof a): number => Math.round(median(of(x, fastHonest).map((r) => r.phases!.waitMs)))
    const elapsed = (x: typeof a): number => median(of(x, fastHonest).filter((r) => r.round === ROUNDS - 1).map((r) => r.elapsedMs!))
    const detail = `r=1: share ${share(a).toFixed(2)}, wait ${wait(a)} ms, elapsed ${elapsed(a)} ms; r=3: share ${share(b).toFixed(2)}, wait ${wait(b)} ms, elapsed ${elapsed(b)} ms`
    t.diagnostic(detail)
    assert.ok(wait(b) < wait(a), detail)
    assert.ok(elapsed(b) < elapsed(a), detail)
    assert.ok(b.run.report.timeToTarget!.elapsedMs! < a.run.report.timeToTarget!.elapsedMs!, detail)
    // the Byzantine member (fast, rushing ALIE) is among the first n − r = 4 and is aggregated, yet
    // every honest member ends above the bar (expect.minHonestAccuracy, checked through `passed`)
    for (const n of b.run.report.nodes.filter((n) => !n.byzantine && !slow.includes(n.index))) {
      assert.ok(n.byzantineAggregatedShare! > 0, `${n.name}: the attack reached it (${n.byzantineAggregatedShare})`)
    }
    assert.equal(memberName(6), b.run.report.nodes.find((n) => n.byzantine)!.name)
  })
})
