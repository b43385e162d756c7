import { describe, it } from 'node:test'
import { assertAttackReached, assertHonestReach, runCiScenario, statedAccuracy } from './helpers.ts'

// The counterpart of mean-poisoned.test.ts: the same scenario and attack (ipm, the Byzantine
// member sends −4·μ of the honest models it saw), with MoNNA.
describe('MoNNA under model poisoning (ipm, 4 processes on 127.0.0.1)', () => {
  const ipm = { behaviour: 'ipm' as const, epsilon: 4 }

  it('MoNNA: every honest member reaches it under the same attack', async () => {
    const report = await runCiScenario({ rule: 'nna', behaviour: ipm })
    assertAttackReached(report)
    assertHonestReach(report, await statedAccuracy())
  })
})
