import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import type { TopologyReport } from '../../../src/topology/report.ts'
import { parseScenario } from '../../../src/topology/schema.ts'
import { runInProcess } from '../../support/in-process.ts'

// Every behaviour not covered by the process-level scenario suite, run against the real
// engine in-process: 4 members, member 3 Byzantine, member 2 slowed down so the Byzantine
// member's output reaches the others' rounds.
async function run(byzantine: Record<string, unknown>): Promise<TopologyReport> {
  const s = parseScenario({
    name: 'behaviours-engine',
    n: 4,
    f: 1,
    task: {
      dataset: { kind: 'gaussian-mixture', classes: 4, dim: 8, trainSize: 800, testSize: 400, seed: 1 },
      model: { kind: 'logreg' },
      schedule: { kind: 'constant', lr: 2 },
      rounds: 10,
      evalEvery: 5,
      evalExamples: 400,
    },
    timing: { roundTimeoutMs: 5000, roundWindow: 16 },
    byzantine: [{ members: 3, ...byzantine }],
    network: { members: [{ members: 2, latencyMs: 300 }] },
    expect: { minHonestAccuracy: 0.6 },
    runtime: { backend: 'cpu' },
  })
  return await runInProcess(s, 'monna-behaviour-')
}

function honestPass(r: TopologyReport): void {
  assert.equal(r.passed, true, JSON.stringify({ expectations: r.expectations, nodes: r.nodes }))
}

function rejectedAtHonest(r: TopologyReport): Record<string, number> {
  const out: Record<string, number> = {}
  for (const n of r.nodes.filter((x) => !x.byzantine)) for (const [k, v] of Object.entries(n.rejected)) out[k] = (out[k] ?? 0) + v
  return out
}

describe('behaviours against the real engine (in-process)', () => {
  it('crash: the member stops at its round, the others finish', async () => {
    const r = await run({ behaviour: 'crash', atRound: 3 })
    honestPass(r)
    const byz = r.nodes.find((n) => n.byzantine)!
    assert.equal(byz.roundsCompleted, 3)
    assert.match(byz.error ?? '', /ByzantineCrashError/)
  })

  it('non-finite and malformed payloads are rejected by every honest member', async () => {
    const nf = await run({ behaviour: 'non-finite' })
    honestPass(nf)
    assert.ok(Object.values(rejectedAtHonest(nf)).reduce((a, b) => a + b, 0) > 0, JSON.stringify(rejectedAtHonest(nf)))
    const bad = await run({ behaviour: 'malformed', bytes: 7 })
    honestPass(bad)
    assert.ok(Object.values(rejectedAtHonest(bad)).reduce((a, b) => a + b, 0) > 0, JSON.stringify(rejectedAtHonest(bad)))
  })

  it('gaussian, optimal-alie, late and replay: honest members still learn', async () => {
    for (const b of [{ behaviour: 'gaussian', std: 100 }, { behaviour: 'optimal-alie' }, { behaviour: 'late', delayMs: 200 }, { behaviour: 'replay', lag: 2 }]) {
      const r = await run(b)
      honestPass(r)
      assert.equal(r.nodes.find((n) => n.byzantine)!.behaviour, b.behaviour)
    }
  })
})
