import { describe, it } from 'node:test'
import { assertHonestReach, runCiScenario, statedAccuracy, suiteAttack, summary } from './helpers.ts'

// A silent member cannot hurt the mean either; this is a liveness check: the honest members
// must wait for the slowed one (n − f = 3 of them) every round and still finish every round.
describe('MoNNA under silent (4 processes on 127.0.0.1)', () => {
  it('every honest member completes every round and reaches the stated accuracy', async (t) => {
    const report = await runCiScenario({ rule: 'nna', behaviour: await suiteAttack('silent') })
    t.diagnostic(summary(report))
    assertHonestReach(report, await statedAccuracy())
  })
})
