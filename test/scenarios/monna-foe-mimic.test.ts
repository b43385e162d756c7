import { describe, it } from 'node:test'
import { assertAttackReached, assertHonestReach, runCiScenario, statedAccuracy } from './helpers.ts'

// Real processes on loopback (topologies/ci-attacks.yaml): MoNNA's honest members all reach
// the stated accuracy under FOE and mimic.
describe('MoNNA under FOE and mimic (4 processes on 127.0.0.1)', () => {
  it('foe: every honest member reaches the stated accuracy', async () => {
    const report = await runCiScenario({ rule: 'nna', behaviour: { behaviour: 'foe' } })
    assertAttackReached(report)
    assertHonestReach(report, await statedAccuracy())
  })
  it('mimic: every honest member reaches the stated accuracy', async () => {
    const report = await runCiScenario({ rule: 'nna', behaviour: { behaviour: 'mimic' } })
    assertAttackReached(report)
    assertHonestReach(report, await statedAccuracy())
  })
})
