import { describe, it } from 'node:test'
import { assertHonestReach, runCiScenario, statedAccuracy } from './helpers.ts'

// Real processes on loopback (topologies/ci-attacks.yaml): MoNNA's honest members all reach
// the stated accuracy under a silent Byzantine member.
describe('MoNNA under a silent Byzantine member (4 processes on 127.0.0.1)', () => {
  it('silent: every honest member reaches the stated accuracy', async () => {
    assertHonestReach(await runCiScenario({ rule: 'nna', behaviour: { behaviour: 'silent' } }), await statedAccuracy())
  })
})
