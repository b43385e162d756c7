/**
 * When a FINAL goes on the gossip topic (src/broadcast/sender.ts, `maybeGossip`): only for members
 * the sender's streams did not carry it to. A full mesh publishes nothing there; a member the
 * sender cannot reach still delivers the sender's instance, its FINAL relayed by the others.
 */
import assert from 'node:assert/strict'
import { after, test } from 'node:test'
import { createEchoBroadcast, type EchoBroadcast, finalTopic } from '../../src/broadcast/index.ts'
import { createNetNode, type Membership, type NetNode, peerIdOfKey } from '../../src/net/index.ts'
import { makeKeys, payloadOf, waitDeliveries } from '../unit/broadcast/harness.ts'

const running: Array<{ stop(): unknown }> = []
after(async () => {
  for (const r of running.reverse()) await Promise.resolve(r.stop()).catch(() => {})
})

/** n members on 127.0.0.1, every pair connected except those in `apart` (who never learn each other's address). */
async function start(n: number, apart: Array<[number, number]>, finalGossip?: 'unreached' | 'always') {
  const keys = await makeKeys(n)
  const membership: Membership = { swarmId: 'final-gossip', members: keys.map(peerIdOfKey), f: 1 }
  const nodes: NetNode[] = []
  for (const key of keys) {
    const node = await createNetNode({ privateKey: key, listen: ['/ip4/127.0.0.1/tcp/0'], membership })
    running.push(node)
    nodes.push(node)
  }
  const isApart = (i: number, j: number): boolean => apart.some(([a, b]) => (a === i && b === j) || (a === j && b === i))
  const expected = nodes.map((_, i) => nodes.filter((_, j) => j !== i && !isApart(i, j)).length)
  const connected = nodes.map(
    (node, i) =>
      new Promise<void>((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`member ${i}: connections did not all open within 90 s`)), 90_000)
        const check = (): void => {
          if (new Set(node.getConnections().map((c) => c.remotePeer.toString())).size < expected[i]!) return
          clearTimeout(timer)
          node.removeEventListener('connection:open', check)
          resolve()
        }
        node.addEventListener('connection:open', check)
        check()
      }),
  )
  const dials: Promise<unknown>[] = []
  for (let i = 0; i < n; i++) for (let j = i + 1; j < n; j++) if (!isApart(i, j)) dials.push(nodes[i]!.dial(nodes[j]!.getMultiaddrs()[0]!))
  await Promise.all([...dials, ...connected])
  // FINAL gossip each member receives (its own publications are not delivered to itself)
  const gossiped = nodes.map(() => 0)
  for (const [i, node] of nodes.entries()) {
    node.services.pubsub.addEventListener('message', (e) => {
      if (e.detail.topic === finalTopic(membership.swarmId)) gossiped[i]!++
    })
  }
  const bcasts: EchoBroadcast[] = []
  for (let i = 0; i < n; i++) {
    const b = await createEchoBroadcast({ node: nodes[i]!, privateKey: keys[i]!, membership, ...(finalGossip !== undefined ? { finalGossip } : {}) })
    running.push(b)
    bcasts.push(b)
  }
  // every member knows its neighbours subscribed to the FINAL topic (gossipsub learns it from
  // their subscription messages), so a publication reaches them without waiting for a heartbeat
  await Promise.all(
    nodes.map(
      (node, i) =>
        new Promise<void>((resolve, reject) => {
          const topic = finalTopic(membership.swarmId)
          const timer = setTimeout(() => reject(new Error(`member ${i}: neighbours' subscriptions not seen within 60 s`)), 60_000)
          const check = (): void => {
            if (node.services.pubsub.getSubscribers(topic).length < expected[i]!) return
            clearTimeout(timer)
            node.services.pubsub.removeEventListener('subscription-change', check)
            resolve()
          }
          node.services.pubsub.addEventListener('subscription-change', check)
          check()
        }),
    ),
  )
  return { membership, nodes, bcasts, gossiped }
}

async function oneRound(bcasts: EchoBroadcast[], membership: Membership): Promise<void> {
  const signal = AbortSignal.timeout(90_000)
  await Promise.all(bcasts.map((b, i) => b.broadcast(0, payloadOf(i, 2000 + i), { signal })))
  const all = await Promise.all(bcasts.map((b) => waitDeliveries(b, 0, bcasts.length, signal)))
  for (const ds of all) {
    assert.equal(ds.length, bcasts.length)
    for (const d of ds) {
      const i = membership.members.indexOf(d.sender)
      assert.deepEqual(d.payload, payloadOf(i, 2000 + i))
    }
  }
}

test('a full mesh: every FINAL travels on the streams, none on the gossip topic; with finalGossip "always" each one does', async () => {
  const quiet = await start(4, [])
  await oneRound(quiet.bcasts, quiet.membership)
  assert.deepEqual(quiet.gossiped, [0, 0, 0, 0], 'no FINAL on the gossip topic when every stream carried it')
  const loud = await start(4, [], 'always')
  await oneRound(loud.bcasts, loud.membership)
  // each member hears the FINALs of the three others (flood publishing reaches every subscribed neighbour)
  await Promise.all(
    loud.nodes.map(
      (node, i) =>
        new Promise<void>((resolve, reject) => {
          const timer = setTimeout(() => reject(new Error(`member ${i} heard ${loud.gossiped[i]} gossiped FINALs, expected 3`)), 60_000)
          const check = (): void => {
            if (loud.gossiped[i]! < 3) return
            clearTimeout(timer)
            node.services.pubsub.removeEventListener('message', check)
            resolve()
          }
          node.services.pubsub.addEventListener('message', check)
          queueMicrotask(check)
        }),
    ),
  )
})

test('members 0 and 4 cannot reach each other: their FINALs go on the gossip topic, the others relay them, and everyone delivers all five', async () => {
  const s = await start(5, [[0, 4]])
  await oneRound(s.bcasts, s.membership)
  assert.ok(s.gossiped[4]! >= 1, 'member 4 got member 0’s FINAL by gossip')
  assert.ok(s.gossiped[0]! >= 1, 'member 0 got member 4’s FINAL by gossip')
  // members 0 and 4 never connected: everything between them went through the others
  assert.equal(s.nodes[0]!.getConnections(s.nodes[4]!.peerId).length, 0)
})
