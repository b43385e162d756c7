/**
 * FETCH (catch-up) against a member that takes the request and never answers: a crashed-looking,
 * overloaded or Byzantine peer must not hold a catching-up member for the request timeout.
 * Real libp2p nodes on 127.0.0.1.
 */
import assert from 'node:assert/strict'
import { afterEach, test } from 'node:test'
import type { Stream } from '@libp2p/interface'
import { createEchoBroadcast, echoProtocol } from '../../src/broadcast/index.ts'
import { payloadOf, type Swarm, startSwarm, waitDeliveries } from '../unit/broadcast/harness.ts'

let swarm: Swarm | undefined
afterEach(async () => {
  await swarm?.stop()
  swarm = undefined
})

test('n = 7, f = 2: a late member fetches past a peer that takes the FETCH and stays silent, long before the request timeout', async () => {
  // member 0: node up, no broadcast, a handler that accepts every stream and never answers;
  // member 6 starts its broadcast only after round 0 is certified among members 1…5 (Q = 5)
  swarm = await startSwarm({ n: 7, f: 2, withoutBroadcast: [0, 6] })
  const s = swarm
  const mute: Stream[] = []
  await s.nodes[0]!.handle(echoProtocol(s.membership.swarmId), (stream: Stream) => {
    mute.push(stream)
  })
  const honest = s.bcasts.slice(1, 6).map((b) => b!)
  const signal = AbortSignal.timeout(30_000)
  await Promise.all([...honest.map((b, i) => b.broadcast(0, payloadOf(i, 5000), { signal })), ...honest.map((b) => waitDeliveries(b, 0, 5, signal))])
  mute.length = 0 // the SENDs members 1…5 pushed to it

  const late = await createEchoBroadcast({ node: s.nodes[6]!, privateKey: s.keys[6]!, membership: s.membership, requestTimeoutMs: 120_000, fetchIdleMs: 1000 })
  s.bcasts[6] = late
  // connected peers are asked in membership order: member 0, the silent one, first
  const got = await late.fetchRound(0, { signal: AbortSignal.timeout(30_000) })
  assert.ok(mute.length >= 1, 'the silent member was asked')
  assert.equal(got.length, 5)
  assert.deepEqual(new Set(got.map((d) => d.sender)), new Set(s.membership.members.slice(1, 6)))
  for (const st of mute) st.abort(new Error('test over'))
})

test('fetchRound stops once it holds the deliveries it was asked for (`want`), instead of asking every member for everyone’s', async () => {
  // member 0 never broadcasts (a silent or Byzantine member): without `want`, a fetch for "every
  // other member's model" can never complete and asks all six peers one after the other — six
  // round trips, which under load outlasted the engine's catch-up bound while the swarm moved on
  swarm = await startSwarm({ n: 7, f: 2, withoutBroadcast: [0, 6] })
  const s = swarm
  const honest = s.bcasts.slice(1, 6).map((b) => b!)
  const signal = AbortSignal.timeout(30_000)
  await Promise.all([...honest.map((b, i) => b.broadcast(0, payloadOf(i, 5000), { signal })), ...honest.map((b) => waitDeliveries(b, 0, 5, signal))])
  const node = s.nodes[6]!
  const asked: string[] = []
  const dial = node.dialProtocol.bind(node)
  node.dialProtocol = ((peer: Parameters<typeof dial>[0], protocols: Parameters<typeof dial>[1], o?: Parameters<typeof dial>[2]) => {
    // only FETCH requests: the late member may also PULL or QUERY instances it heard of by
    // gossip (FINAL metas that gossipsub hands a new subscriber), which are other dials
    if (new Error().stack?.includes('fetchFrom') === true) asked.push(peer.toString())
    return dial(peer, protocols, o)
  }) as typeof node.dialProtocol
  const late = await createEchoBroadcast({ node, privateKey: s.keys[6]!, membership: s.membership })
  s.bcasts[6] = late
  const got = await late.fetchRound(0, { signal: AbortSignal.timeout(30_000), want: 5 })
  assert.equal(got.length, 5)
  // member 0 (no handler: refused at once) and the first honest member, which holds all five
  assert.ok(asked.length <= 2, `asked ${asked.length} members for 5 deliveries`)
  // without `want` every member is asked (the baseline this replaces)
  asked.length = 0
  await late.fetchRound(0, { signal: AbortSignal.timeout(30_000) })
  assert.equal(asked.length, 6)
})
