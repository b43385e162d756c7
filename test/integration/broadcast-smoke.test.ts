import assert from 'node:assert/strict'
import { after, test } from 'node:test'
import { payloadOf, type Swarm, startSwarm, waitDeliveries } from '../unit/broadcast/harness.ts'

let swarm: Swarm | undefined
after(async () => swarm?.stop())

test('n=4: every member broadcasts one round and everyone delivers all 4', async () => {
  swarm = await startSwarm({ n: 4, f: 1 })
  const bs = swarm.bcasts.map((b) => b!)
  const signal = AbortSignal.timeout(30_000)
  await Promise.all(bs.map((b, i) => b.broadcast(0, payloadOf(i, 1000 + i), { signal })))
  const all = await Promise.all(bs.map((b) => waitDeliveries(b, 0, 4, signal)))
  for (const ds of all) {
    assert.equal(ds.length, 4)
    for (const d of ds) {
      const i = swarm.membership.members.indexOf(d.sender)
      assert.deepEqual(d.payload, payloadOf(i, 1000 + i))
    }
  }
})
