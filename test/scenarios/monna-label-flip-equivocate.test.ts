import { describe, it } from 'node:test'
import { assertAttackReached, assertHonestReach, runCiScenario, statedAccuracy } from './helpers.ts'

// Real processes on loopback (topologies/ci-attacks.yaml): MoNNA's honest members all reach
// the stated accuracy under label-flip and equivocation.
describe('MoNNA under label-flip and equivocation (4 processes on 127.0.0.1)', () => {
  it('label-flip: every honest member reaches the stated accuracy', async () => {
    const report = await runCiScenario({ rule: 'nna', behaviour: { behaviour: 'label-flip' } })
    assertAttackReached(report)
    assertHonestReach(report, await statedAccuracy())
  })
  it('equivocate: every honest member reaches the stated accuracy', async () => {
    assertHonestReach(await runCiScenario({ rule: 'nna', behaviour: { behaviour: 'equivocate' } }), await statedAccuracy())
  })
})
