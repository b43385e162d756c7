/**
 * Consistency under an equivocating Byzantine sender, with real libp2p nodes on 127.0.0.1:
 * over hundreds of instances the Byzantine member sends different payloads to different
 * (sometimes overlapping) groups of honest members; no two honest members ever deliver
 * different payloads for one instance.
 */
import assert from 'node:assert/strict'
import { after, test } from 'node:test'
import { createAdversary } from '../../src/adversary/index.ts'
import type { Delivery } from '../../src/broadcast/index.ts'
import { Rng } from '../../src/rng.ts'
import { payloadOf, type Swarm, startSwarm } from '../unit/broadcast/harness.ts'

const INSTANCES = Number(process.env.EQUIVOCATION_INSTANCES ?? 200)
let swarm: Swarm | undefined
after(async () => swarm?.stop())

test(`n = 4, f = 1: ${INSTANCES} equivocated instances, never two different deliveries`, async () => {
  swarm = await startSwarm({ n: 4, f: 1 })
  const s = swarm
  const honest = s.bcasts.slice(0, 3).map((b) => b!)
  const byz = createAdversary({ node: s.nodes[3]!, privateKey: s.keys[3]!, membership: s.membership })
  const byzId = s.membership.members[3]!
  const honestIds = s.membership.members.slice(0, 3)
  // every delivery of the Byzantine sender's instances, per honest member
  const got = honest.map(() => new Map<number, Delivery>())
  for (const [k, b] of honest.entries()) {
    b.addEventListener('deliver', (e) => {
      const d = (e as CustomEvent<Delivery>).detail
      if (d.sender !== byzId) return
      assert.ok(!got[k]!.has(d.round), 'delivered twice')
      got[k]!.set(d.round, d)
    })
  }
  let equivocations = 0
  for (const b of honest) b.addEventListener('equivocation', () => equivocations++)

  const rng = new Rng('equivocation')
  for (let round = 0; round < INSTANCES; round++) {
    // the engine moves honest members on: rounds far behind are garbage-collected
    for (const b of honest) b.setFloor(Math.max(0, round - 4))
    const shuffled = rng.shuffle([...honestIds])
    const cut = 1 + rng.int(2)
    const groupA = shuffled.slice(0, cut)
    // B may overlap A: an overlapping member sees two conflicting SENDs (evidence)
    const groupB = rng.int(3) === 0 ? shuffled.slice(cut - 1) : shuffled.slice(cut)
    const t0 = performance.now()
    await Promise.all([byz.sendTo(groupA, round, payloadOf(2 * round, 500)), byz.sendTo(groupB, round, payloadOf(2 * round + 1, 500))])
    if (performance.now() - t0 > 500) console.log(`# slow round ${round}: ${(performance.now() - t0).toFixed(0)} ms, A=${groupA.length} B=${groupB.length} overlap=${groupA.some((p) => groupB.includes(p))}`)
  }
  // consistency: for each instance, every honest member that delivered it delivered the same payload
  let deliveredSomewhere = 0
  let deliveredByAll = 0
  for (let round = 0; round < INSTANCES; round++) {
    const ds = got.map((m) => m.get(round)).filter((d): d is Delivery => d !== undefined)
    if (ds.length === 0) continue
    deliveredSomewhere++
    if (ds.length === 3) deliveredByAll++
    for (const d of ds) {
      assert.deepEqual(d.hash, ds[0]!.hash, `round ${round}: two honest members delivered different payloads`)
      assert.ok(
        d.payload.every((x, i) => x === ds[0]!.payload[i]),
        `round ${round}`,
      )
    }
  }
  // the test is meaningful: many instances were certified (a group of 2 honest + the sender is a quorum)
  assert.ok(deliveredSomewhere > INSTANCES / 4, `only ${deliveredSomewhere} instances delivered anywhere`)
  assert.ok(equivocations > 0, 'overlapping groups produced equivocation evidence')
  const rejected = honest.reduce((a, b) => a + (b.stats().rejected.equivocation ?? 0), 0)
  assert.ok(rejected > 0)
  console.log(`# ${deliveredSomewhere}/${INSTANCES} instances delivered somewhere, ${deliveredByAll} by all 3 honest members, ${equivocations} equivocation reports`)
})
