import { describe, it } from 'node:test'
import { assertAttackReached, assertHonestReach, runCiScenario, statedAccuracy } from './helpers.ts'

// Real processes on loopback (topologies/ci-attacks.yaml): MoNNA's honest members all reach
// the stated accuracy under sign-flip and ALIE.
describe('MoNNA under sign-flip and ALIE (4 processes on 127.0.0.1)', () => {
  it('sign-flip: every honest member reaches the stated accuracy', async () => {
    const report = await runCiScenario({ rule: 'nna', behaviour: { behaviour: 'sign-flip' } })
    assertAttackReached(report)
    assertHonestReach(report, await statedAccuracy())
  })
  it('alie: every honest member reaches the stated accuracy', async () => {
    const report = await runCiScenario({ rule: 'nna', behaviour: { behaviour: 'alie' } })
    assertAttackReached(report)
    assertHonestReach(report, await statedAccuracy())
  })
})
