import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { assertAttackReached, runCiScenario, statedAccuracy } from './helpers.ts'

// The control: the same scenario, the same processes, but the undefended `mean` rule (D-SGD)
// under a model-poisoning attack (ipm: the Byzantine member sends −4·μ of the honest models it
// saw) falls clearly below the bar, while MoNNA under the very same attack holds it
// (monna-ipm.test.ts) — so the attack really reaches the honest members and the defence is
// what saves them.
describe('mean under model poisoning (4 processes on 127.0.0.1)', () => {
  const ipm = { behaviour: 'ipm' as const, epsilon: 4 }

  it('mean: the honest median falls clearly below the stated accuracy', async () => {
    const bar = await statedAccuracy()
    const report = await runCiScenario({ rule: 'mean', behaviour: ipm })
    assertAttackReached(report)
    const median = report.honest.medianFinalAccuracy
    assert.ok(median !== null && median < bar - 0.2, `mean under ipm: honest median ${median} is not clearly below ${bar}`)
    assert.equal(report.passed, false)
  })
})
