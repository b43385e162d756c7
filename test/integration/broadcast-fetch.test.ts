/**
 * FETCH (catch-up) against a member that takes the request and never answers: a crashed-looking,
 * overloaded or Byzantine peer must not hold a catching-up member for the request timeout.
 * Real libp2p nodes on 127.0.0.1.
 */
import assert from 'node:assert/strict'
import { afterEach, test } from 'node:test'
import type { Stream } from '@libp2p/interface'
import { createAdversary } from '../../src/adversary/index.ts'
import { createEchoBroadcast, type EchoBroadcast, echoProtocol } from '../../src/broadcast/index.ts'
import type { InstanceStore } from '../../src/broadcast/instance-store.ts'
import { encodeFrameParts } from '../../src/broadcast/wire.ts'
import { Rng } from '../../src/rng.ts'
import { payloadOf, type Swarm, startSwarm, waitDeliveries } from '../unit/broadcast/harness.ts'

/** The members `node` dials for FETCH requests, in order (a list the caller may empty between calls). */
function recordFetchDials(node: Swarm['nodes'][number]): string[] {
  const asked: string[] = []
  const dial = node.dialProtocol.bind(node)
  node.dialProtocol = ((peer: Parameters<typeof dial>[0], protocols: Parameters<typeof dial>[1], o?: Parameters<typeof dial>[2]) => {
    // only FETCH requests: a late member may also PULL or QUERY instances it heard of by gossip
    // (FINAL metas that gossipsub hands a new subscriber), which are other dials
    if (new Error().stack?.includes('fetchFrom') === true) asked.push(peer.toString())
    return dial(peer, protocols, o)
  }) as typeof node.dialProtocol
  return asked
}

/**
 * n = 7, f = 2: members 1…5 broadcast and deliver round 0 (member 0 never broadcasts); then member
 * 6 starts its broadcast, the members it dials for FETCH recorded in `asked`.
 */
async function lateMemberAfterRound0(): Promise<{ s: Swarm; late: EchoBroadcast; asked: string[] }> {
  swarm = await startSwarm({ n: 7, f: 2, withoutBroadcast: [0, 6] })
  const s = swarm
  const honest = s.bcasts.slice(1, 6).map((b) => b!)
  const signal = AbortSignal.timeout(30_000)
  await Promise.all([...honest.map((b, i) => b.broadcast(0, payloadOf(i, 5000), { signal })), ...honest.map((b) => waitDeliveries(b, 0, 5, signal))])
  const node = s.nodes[6]!
  const asked = recordFetchDials(node)
  const late = await createEchoBroadcast({ node, privateKey: s.keys[6]!, membership: s.membership })
  s.bcasts[6] = late
  return { s, late, asked }
}

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
  const { late, asked } = await lateMemberAfterRound0()
  const got = await late.fetchRound(0, { signal: AbortSignal.timeout(30_000), want: 5 })
  assert.equal(got.length, 5)
  // member 0 (no handler: refused at once) and the first honest member, which holds all five
  assert.ok(asked.length <= 2, `asked ${asked.length} members for 5 deliveries`)
  // without `want` every member is asked (the baseline this replaces)
  asked.length = 0
  await late.fetchRound(0, { signal: AbortSignal.timeout(30_000) })
  assert.equal(asked.length, 6)
})

test('fetchRound with `peers` asks that many members, the next ones in turn at each call (every member within ⌈(n − 1)/peers⌉ calls)', async () => {
  // a member polling a round it is short of asked every member each time: at n = 140 in one
  // process the polls of the waiting members opened ≈ 12,000 FETCH streams per round
  const { s, late, asked } = await lateMemberAfterRound0()
  const others = s.membership.members.slice(0, 6)
  const calls: string[][] = []
  for (let c = 0; c < 4; c++) {
    asked.length = 0
    // member 0 never broadcasts: "every other member's" is never held, so each call asks all it may
    const got = await late.fetchRound(0, { signal: AbortSignal.timeout(30_000), peers: 2 })
    if (c === 0) assert.ok(got.length >= 1, 'the first call brought deliveries')
    calls.push([...asked])
  }
  assert.deepEqual(
    calls.map((c) => c.length),
    [2, 2, 2, 2],
    `members asked per call: ${JSON.stringify(calls)}`,
  )
  assert.deepEqual(new Set(calls.slice(0, 3).flat()), new Set(others), 'three calls of 2 asked all six other members')
  assert.deepEqual(new Set(calls[3]), new Set(calls[0]), 'the fourth call starts over')
  assert.equal((await late.fetchRound(0, { signal: AbortSignal.timeout(30_000) })).length, 5)
  await assert.rejects(late.fetchRound(0, { peers: 0 }), TypeError)
})

test('a FETCH does not ask for a model whose SEND is still arriving; once that transfer fails, the next fetch brings it', async () => {
  // under a saturated CPU (26 member processes on 2 cores) a member fetched, a second after its
  // last delivery, payloads whose SENDs were halfway in: most payloads crossed twice
  swarm = await startSwarm({ n: 4, f: 1, withoutBroadcast: [3] })
  const s = swarm
  const [m0, m1, m2] = s.membership.members
  const byz = createAdversary({ node: s.nodes[3]!, privateKey: s.keys[3]!, membership: s.membership })
  const signal = AbortSignal.timeout(60_000)
  // member 3's round-0 model: certified at members 1 and 2 (their echoes and its own: Q = 3), its FINAL to them only
  const payload = payloadOf(7, 2_000_000)
  await byz.sendTo([m1!, m2!], 0, payload, { finalTo: [m1!, m2!] })
  await Promise.all([waitDeliveries(s.bcasts[1]!, 0, 1, signal), waitDeliveries(s.bcasts[2]!, 0, 1, signal)])
  // …and its SEND to member 0, trickled: 4 KiB every 500 ms (member 0 allows a 2 MB frame 10 + 30 s)
  const trickle = new AbortController()
  const held = byz.exchange(m0!, [byz.sendFrame(0, payload)], { chunkBytes: 4096, intervalMs: 500, holdOpen: true, signal: trickle.signal }).catch(() => undefined)
  const store = (s.bcasts[0] as unknown as { store: InstanceStore }).store
  const deadline = performance.now() + 30_000
  while (store.get(byz.id, 0)?.receivingSend !== true) {
    assert.ok(performance.now() < deadline, 'member 0 never started reading the SEND')
    await new Promise((resolve) => setTimeout(resolve, 50))
  }
  const servedToFetch = (): number => s.bcasts.reduce((a, b) => a + (b?.stats().payloadsServedToFetch ?? 0), 0)
  const before = servedToFetch()
  const got = await s.bcasts[0]!.fetchRound(0, { signal })
  assert.deepEqual(
    got.map((d) => d.sender),
    [],
    'the model on its way was fetched too',
  )
  assert.equal(servedToFetch(), before)
  // the transfer dies: the next fetch asks for it, and members 1 and 2 serve it
  trickle.abort()
  await held
  while (store.get(byz.id, 0)?.receivingSend === true) {
    assert.ok(performance.now() < deadline + 30_000, 'member 0 still reads the aborted SEND')
    await new Promise((resolve) => setTimeout(resolve, 50))
  }
  const again = await s.bcasts[0]!.fetchRound(0, { signal })
  assert.deepEqual(
    again.map((d) => d.sender),
    [byz.id],
  )
  assert.ok(servedToFetch() > before)
})

/** What a Byzantine member does with the FETCHes it gets (it took part in the round honestly). */
type Withholding = 'mute' | 'refuse' | 'empty' | 'junk'

/**
 * n = 7, f = 2: members 0…5 broadcast and certify round 0, delivered by all seven; then the
 * members in `byzantine` stop serving and withhold (`how`), and member 6 starts again with
 * nothing (a fresh broadcast on its node: a restart without a journal), `fetchIdleMs` 1 s, the
 * members it dials for FETCH recorded in `asked`. Every stream reached member 6 in round 0, so no
 * FINAL went on the gossip topic: what it gets back comes from its FETCHes.
 */
async function withholdingSwarm(byzantine: number[], how: Withholding[]): Promise<{ s: Swarm; late: EchoBroadcast; asked: string[] }> {
  swarm = await startSwarm({ n: 7, f: 2 })
  const s = swarm
  const all = s.bcasts.map((b) => b!)
  const signal = AbortSignal.timeout(60_000)
  await Promise.all([...all.slice(0, 6).map((b, i) => b.broadcast(0, payloadOf(i, 5000), { signal })), ...all.map((b) => waitDeliveries(b, 0, 6, signal))])
  await s.bcasts[6]!.stop()
  const mute: Stream[] = []
  for (const [k, i] of byzantine.entries()) {
    await s.bcasts[i]!.stop()
    s.bcasts[i] = undefined
    const protocol = echoProtocol(s.membership.swarmId)
    if (how[k] === 'refuse') continue // no handler: the stream is refused at once
    await s.nodes[i]!.handle(protocol, async (stream: Stream) => {
      if (how[k] === 'mute') {
        mute.push(stream)
        return
      }
      // answers at once: END (it holds "nothing"), or bytes that are no frame
      const bytes = how[k] === 'empty' ? encodeFrameParts({ type: 'END' }) : [payloadOf(100 + k, 300)]
      for (const b of bytes) stream.send(b)
      await stream.close().catch(() => {})
    })
  }
  const node = s.nodes[6]!
  const asked = recordFetchDials(node)
  const late = await createEchoBroadcast({ node, privateKey: s.keys[6]!, membership: s.membership, fetchIdleMs: 1000, requestTimeoutMs: 120_000 })
  s.bcasts[6] = late
  return { s, late, asked }
}

test('randomized: whichever f members withhold, in whatever way, and wherever the rotation stands, a poll of f + 1 members brings the round (a poll of f can come back empty)', async () => {
  // The engine polls a round it is short of with `peers: r + 1` (f + 1 by default): r + 1
  // distinct members hold at least one honest one when r = f, whatever f members withhold and
  // however the rotation lines them up. Byzantine members took part in round 0 honestly (their
  // echoes certified it) and then withhold FETCH: take the stream and stay silent, refuse it,
  // answer END, or answer bytes that are no frame.
  const seed = process.env.TEST_SEED ?? String(Date.now())
  const rng = new Rng(`broadcast-fetch/withholding/${seed}`)
  const ways: Withholding[] = ['mute', 'refuse', 'empty', 'junk']
  for (let trial = 0; trial < 3; trial++) {
    const byzantine = rng.shuffle([0, 1, 2, 3, 4, 5]).slice(0, 2)
    const how = byzantine.map(() => ways[rng.int(ways.length)]!)
    const warmups = rng.int(6)
    const { s, late, asked } = await withholdingSwarm(byzantine, how)
    const label = `TEST_SEED=${seed}, trial ${trial}: Byzantine members ${JSON.stringify(byzantine)} (${how.join(', ')}), rotation moved ${warmups} times`
    const byzIds = new Set(byzantine.map((i) => s.membership.members[i]!))
    // move the rotation: polls of round 1, which nobody holds, advance it like any other poll
    for (let w = 0; w < warmups; w++) await late.fetchRound(1, { signal: AbortSignal.timeout(60_000), peers: 1 })
    asked.length = 0
    const got = await late.fetchRound(0, { signal: AbortSignal.timeout(60_000), peers: s.membership.f + 1 })
    // the poll's three members are the next three in turn (each warm-up poll moved the rotation
    // by one); it stops at the first that brings everything, so it may ask fewer
    const window = [0, 1, 2].map((k) => s.membership.members[(warmups + k) % 6]!)
    assert.ok(asked.length >= 1 && asked.length <= 3 && new Set(asked).size === asked.length, `${label}: asked ${JSON.stringify(asked)}`)
    assert.ok(
      asked.every((p) => window.includes(p)),
      `${label}: asked ${JSON.stringify(asked)}, the rotation's next three are ${JSON.stringify(window)}`,
    )
    assert.ok(
      window.some((p) => !byzIds.has(p)),
      `${label}: an honest member among the three`,
    )
    assert.deepEqual(new Set(got.map((d) => d.sender)), new Set(s.membership.members.slice(0, 6)), `${label}: every certified model of round 0 came`)
    await swarm!.stop()
    swarm = undefined
  }
  // the baseline a bound of f would be: the rotation at the two Byzantine members (the first two
  // in order), asked alone — nothing comes back
  const { late, asked } = await withholdingSwarm([0, 1], ['empty', 'mute'])
  const got = await late.fetchRound(0, { signal: AbortSignal.timeout(60_000), peers: 2 })
  assert.equal(asked.length, 2)
  assert.deepEqual(got, [], 'two withholding members asked: a poll of f brings nothing')
  assert.equal((await late.fetchRound(0, { signal: AbortSignal.timeout(60_000), peers: 2 })).length, 6, 'the next poll, two honest members, brings the round')
})
