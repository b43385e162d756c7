/**
 * Gossipsub scoring of a swarm: a member whose FINAL-topic messages keep being REJECTed (junk)
 * drops below the graylist threshold at its neighbour; an honest member sharing its IP
 * (127.0.0.1) keeps a score of 0 — the default IP-colocation penalty is off.
 */
import assert from 'node:assert/strict'
import { test } from 'node:test'
import { finalTopic } from '../../src/broadcast/index.ts'
import { startSwarm } from '../unit/broadcast/harness.ts'

test('a member relaying junk on a swarm topic is graylisted by gossipsub scoring; honest members are not', async () => {
  // 12 members on one IP: above the default colocation threshold (10) that would graylist them all
  // bans off: the broadcast bans a member forwarding junk at once (broadcast-attacks.test.ts);
  // here gossipsub's own scoring is under test
  const swarm = await startSwarm({ n: 12, f: 3, withoutBroadcast: [11], broadcast: { penalties: false } })
  try {
    const target = swarm.nodes[0]!
    // the implementation's score (not part of the GossipSub interface type)
    const score = (p: string): number => (target.services.pubsub as unknown as { getScore(p: string): number }).getScore(p)
    const byz = swarm.nodes[11]!
    const byzId = swarm.membership.members[11]!
    const topic = finalTopic(swarm.membership.swarmId)
    byz.services.pubsub.subscribe(topic)
    // wait until the Byzantine member is in the target's view of the topic
    const deadline = Date.now() + 60_000
    while (!target.services.pubsub.getSubscribers(topic).some((p) => p.toString() === byzId)) {
      assert.ok(Date.now() < deadline, 'the Byzantine member never subscribed as seen by the target')
      await new Promise((r) => setTimeout(r, 100))
    }
    const honestScoresBefore = swarm.membership.members.slice(1, 11).map((p) => score(p))
    for (const s of honestScoresBefore) assert.ok(s >= 0, `honest member scored ${s}`)
    for (let k = 0; k < 40 && score(byzId) > -80; k++) {
      await byz.services.pubsub.publish(topic, new Uint8Array([2, 3, 0, 0, 0, 0, 0, k, 0, 0, 0, 0])).catch(() => {})
      await new Promise((r) => setTimeout(r, 50))
    }
    const byzScore = score(byzId)
    assert.ok(byzScore < -80, `the junk sender's score ${byzScore} is below the graylist threshold`)
    for (const p of swarm.membership.members.slice(1, 11)) assert.ok(score(p) >= 0, 'honest members keep their score')
  } finally {
    await swarm.stop()
  }
})

