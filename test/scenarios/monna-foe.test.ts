import { describe, it } from 'node:test'
import { assertAttackReached, assertHonestReach, runCiScenario, statedAccuracy } from './helpers.ts'

// Real processes on loopback (topologies/ci-attacks.yaml: 4 members, 1 Byzantine, 1 slow honest).
describe('MoNNA under foe (4 processes on 127.0.0.1)', () => {
  it('every honest member reaches the stated accuracy', async () => {
    const report = await runCiScenario({ rule: 'nna', behaviour: { behaviour: 'foe' } })
    assertAttackReached(report)
    assertHonestReach(report, await statedAccuracy())
  })
})
