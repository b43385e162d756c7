/**
 * Every swarm gossip topic is validated: a member publishing junk on one (A) does not get it
 * relayed by an honest member (B) to a third member (C) that only B connects to (line A–B–C),
 * while honest messages still are; a member flooding address announcements does not make the
 * others dial at more than the exchange's bound. Real libp2p nodes on 127.0.0.1.
 */
import assert from 'node:assert/strict'
import { once } from 'node:events'
import { createServer, type Server } from 'node:net'
import { after, test } from 'node:test'
import { setTimeout as sleep } from 'node:timers/promises'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { type TopicValidatorFn, TopicValidatorResult } from '@libp2p/gossipsub'
import type { PrivateKey } from '@libp2p/interface'
import { parseSwarm, swarmId } from '../../src/config/schema.ts'
import { silentLogger } from '../../src/logger.ts'
import { EpochBook, genesisEpoch, proposeEpoch, type SignedEpoch, signEpoch, verifyEpoch } from '../../src/membership/index.ts'
import { createNetNode, type Membership, type NetNode, peerIdOfKey, swarmTopic } from '../../src/net/index.ts'
import { startAddressExchange } from '../../src/node/addresses.ts'
import { startEpochGossip } from '../../src/node/epoch-gossip.ts'

const cleanups: Array<() => unknown> = []
after(async () => {
  for (const c of cleanups.reverse()) await c()
})

const enc = (s: string): Uint8Array => new TextEncoder().encode(s)
const dec = (b: Uint8Array): string => new TextDecoder().decode(b)
/** A message's text, shortened for assertion messages. */
const short = (b: Uint8Array): string => (b.byteLength <= 80 ? dec(b) : `${dec(b.subarray(0, 60))}… (${b.byteLength} bytes)`)

/** Resolves when `pred()` holds, re-checked on each of `events` on `target`; rejects after `ms` (a hang guard, not a criterion). */
function until(pred: () => boolean, target: EventTarget, events: string[], what: string, ms = 30_000): Promise<void> {
  return new Promise((resolve, reject) => {
    const check = (): void => {
      if (!pred()) return
      done()
      resolve()
    }
    const timer = setTimeout(() => {
      done()
      reject(new Error(`${what}: not within ${ms} ms`))
    }, ms)
    const done = (): void => {
      clearTimeout(timer)
      for (const e of events) target.removeEventListener(e, check)
    }
    for (const e of events) target.addEventListener(e, check)
    check()
  })
}

interface Seen {
  topic: string
  from: string
  data: Uint8Array
  verdict: TopicValidatorResult
}

/**
 * Records every message `node`'s gossipsub validates (what its peers sent or relayed to it) with
 * the verdict, and dispatches 'seen' on the returned target. It wraps the validator lookup, so
 * it sees what the node's own validators and the pubsub gate decide.
 */
function spy(node: NetNode): { seen: Seen[]; events: EventTarget } {
  const seen: Seen[] = []
  const events = new EventTarget()
  const map = node.services.pubsub.topicValidators
  const get = map.get.bind(map)
  map.get = (topic: string): TopicValidatorFn => {
    const inner = get(topic)
    return async (peer, msg) => {
      const verdict = inner === undefined ? TopicValidatorResult.Accept : await inner(peer, msg)
      seen.push({ topic, from: msg.type === 'signed' ? msg.from.toString() : '', data: msg.data, verdict })
      events.dispatchEvent(new Event('seen'))
      return verdict
    }
  }
  return { seen, events }
}

interface Line {
  keys: PrivateKey[]
  membership: Membership
  a: NetNode
  b: NetNode
  c: NetNode
  /** extra members connected to b only */
  more: NetNode[]
}

/** Members A–B–C (and `extra` more attached to B), connected in a line: A and C only through B. */
async function line(id: string, extra = 0): Promise<Line> {
  const keys = await Promise.all(Array.from({ length: 3 + extra }, () => generateKeyPair('Ed25519')))
  const membership: Membership = { swarmId: id, members: keys.map(peerIdOfKey), f: 0 }
  const nodes: NetNode[] = []
  for (const k of keys) {
    const n = await createNetNode({ privateKey: k, listen: ['/ip4/127.0.0.1/tcp/0'], membership })
    cleanups.push(() => n.stop())
    nodes.push(n)
  }
  const [a, b, c, ...more] = nodes as [NetNode, NetNode, NetNode, ...NetNode[]]
  for (const n of [a, c, ...more]) await n.dial(b.getMultiaddrs()[0]!, { signal: AbortSignal.timeout(20_000) })
  return { keys, membership, a, b, c, more }
}

/** The peers in `node`'s gossipsub mesh for `topic` (the implementation has it, the interface does not). */
function meshOf(node: NetNode, topic: string): string[] {
  return (node.services.pubsub as unknown as { getMeshPeers(t: string): string[] }).getMeshPeers(topic)
}

/** Subscribes everyone to `topic` and waits until B's mesh holds C and every publisher sees B subscribed. */
async function meshed(l: Line, topic: string): Promise<void> {
  for (const n of [l.a, l.b, l.c, ...l.more]) n.services.pubsub.subscribe(topic)
  const bSees = (n: NetNode): boolean => n.services.pubsub.getSubscribers(topic).some((p) => p.equals(l.b.peerId))
  await until(
    () => meshOf(l.b, topic).includes(l.c.peerId.toString()) && bSees(l.a) && l.more.every(bSees),
    l.b.services.pubsub,
    ['gossipsub:heartbeat', 'subscription-change'],
    `mesh on ${topic}`,
  )
}

test('address topic: junk from a member is not relayed (oversize, bad JSON, not a multiaddr, someone else’s address, extra fields); its honest announcement is', async () => {
  const l = await line('gossip-addr')
  const topic = swarmTopic(l.membership.swarmId, 'addresses')
  // B runs the exchange; C only watches what B relays
  const stop = startAddressExchange({ node: l.b, topic, self: l.b.peerId.toString(), members: l.membership.members, log: silentLogger })
  cleanups.push(stop)
  const atB = spy(l.b)
  const atC = spy(l.c)
  await meshed(l, topic)
  const A = l.a.peerId.toString()
  const junk = [
    `${JSON.stringify({ addrs: ['/ip4/127.0.0.1/tcp/9'] })}${' '.repeat(5000)}`,
    '{"addrs": [',
    JSON.stringify({ addrs: ['hello'] }),
    JSON.stringify({ addrs: [`/ip4/127.0.0.1/tcp/9/p2p/${l.c.peerId.toString()}`] }),
    JSON.stringify({ addrs: ['/ip4/127.0.0.1/tcp/9'], relay: 'x' }),
    JSON.stringify({ addrs: Array.from({ length: 17 }, (_, i) => `/ip4/127.0.0.1/tcp/${i + 1}`) }),
  ]
  for (const j of junk) await l.a.services.pubsub.publish(topic, enc(j))
  await until(() => atB.seen.filter((s) => s.topic === topic && s.from === A).length >= junk.length, atB.events, ['seen'], 'B validated the junk')
  const honest = JSON.stringify({ addrs: ['/ip4/127.0.0.1/tcp/9'] })
  await l.a.services.pubsub.publish(topic, enc(honest))
  await until(() => atC.seen.some((s) => s.topic === topic && s.from === A && dec(s.data) === honest), atC.events, ['seen'], 'C received A’s honest announcement')
  assert.deepEqual(
    atC.seen.filter((s) => s.topic === topic && s.from === A).map((s) => short(s.data)),
    [honest],
    'C received only the honest announcement from A',
  )
  assert.deepEqual(
    atB.seen.filter((s) => s.topic === topic && s.from === A).map((s) => s.verdict),
    [...junk.map(() => TopicValidatorResult.Reject), TopicValidatorResult.Accept],
    'B rejects every junk announcement and accepts the honest one',
  )
})

test('membership topic: junk and duplicates from a member are not relayed (oversize, bad JSON, not a list, bad signature, wrong admin, a known epoch); new signed epochs are', async () => {
  const admin = await generateKeyPair('Ed25519')
  // the swarm id is the swarm file's hash, which names the admin and the members: make keys first
  const keys = await Promise.all(Array.from({ length: 3 }, () => generateKeyPair('Ed25519')))
  const swarm = parseSwarm({ name: 'gossip-epochs', f: 0, admin: peerIdOfKey(admin), members: keys.map((k, i) => ({ id: peerIdOfKey(k), name: `m${i}` })) })
  const membership: Membership = { swarmId: swarmId(swarm), members: keys.map(peerIdOfKey), f: 0 }
  const nodes: NetNode[] = []
  for (const k of keys) {
    const n = await createNetNode({ privateKey: k, listen: ['/ip4/127.0.0.1/tcp/0'], membership })
    cleanups.push(() => n.stop())
    nodes.push(n)
  }
  const [a, b, c] = nodes as [NetNode, NetNode, NetNode]
  for (const n of [a, c]) await n.dial(b.getMultiaddrs()[0]!, { signal: AbortSignal.timeout(20_000) })
  const l: Line = { keys, membership, a, b, c, more: [] }
  const topic = swarmTopic(membership.swarmId, 'membership')
  // B runs the epoch gossip the way the node does (verify, then record in its book)
  const book = new EpochBook(genesisEpoch(swarm))
  const gossip = startEpochGossip({
    pubsub: b.services.pubsub,
    topic,
    learn: async (raw) => ({ added: book.add(await verifyEpoch(raw, swarm)) }),
    signed: () => book.signed(),
    log: silentLogger,
    intervalMs: 3_600_000,
  })
  cleanups.push(() => gossip.stop())
  const atB = spy(b)
  const atC = spy(c)
  await meshed(l, topic)
  const A = a.peerId.toString()
  const e1 = await signEpoch(proposeEpoch(genesisEpoch(swarm), { f: 0, activation: 10 }), admin)
  const e2 = await signEpoch(proposeEpoch(e1, { f: 0, activation: 20 }), admin)
  const forger = await generateKeyPair('Ed25519')
  const junk = [
    JSON.stringify([{ ...e1, pad: 'x'.repeat(300 * 1024) }]),
    '[{"epoch": 1,',
    JSON.stringify({ epochs: [e1] }),
    JSON.stringify([{ ...e1, activation: 11 }]),
    JSON.stringify([await signEpoch(e1, forger)]),
    JSON.stringify(Array.from({ length: 5 }, (_, i) => ({ ...e1, activation: 12 + i }))),
  ]
  for (const j of junk) await a.services.pubsub.publish(topic, enc(j))
  await until(() => atB.seen.filter((s) => s.topic === topic && s.from === A).length >= junk.length, atB.events, ['seen'], 'B validated the junk')
  const learntFromJunk = book.latest().epoch
  // a new epoch is relayed; the same list again (a new message) is not; the next epoch is
  const first = JSON.stringify([e1])
  await a.services.pubsub.publish(topic, enc(first))
  await until(() => atC.seen.some((s) => s.from === A && dec(s.data) === first), atC.events, ['seen'], 'C received epoch 1')
  assert.equal(book.latest().epoch, 1)
  await a.services.pubsub.publish(topic, enc(first))
  await until(() => atB.seen.filter((s) => s.topic === topic && s.from === A).length >= junk.length + 2, atB.events, ['seen'], 'B validated the duplicate')
  const next = JSON.stringify([e1, e2] satisfies SignedEpoch[])
  await a.services.pubsub.publish(topic, enc(next))
  await until(() => atC.seen.some((s) => s.from === A && dec(s.data) === next), atC.events, ['seen'], 'C received epoch 2')
  assert.equal(book.latest().epoch, 2)
  assert.deepEqual(
    atC.seen.filter((s) => s.topic === topic && s.from === A).map((s) => short(s.data)),
    [first, next].map((t) => short(enc(t))),
    'C received only the lists that brought new epochs',
  )
  assert.deepEqual(
    atB.seen.filter((s) => s.topic === topic && s.from === A).map((s) => s.verdict),
    [...junk.map(() => TopicValidatorResult.Reject), TopicValidatorResult.Accept, TopicValidatorResult.Ignore, TopicValidatorResult.Accept],
    'B rejects junk, accepts new epochs and ignores a known one',
  )
  assert.equal(learntFromJunk, 0, 'B learnt nothing from junk (the oversize list held a valid epoch)')
})

test('the gossip layer: a swarm topic nobody validates is not relayed, nor an RPC above 1 MiB; honest messages from other members still are', async () => {
  const l = await line('gossip-net', 1)
  const d = l.more[0]!
  const open = swarmTopic(l.membership.swarmId, 'open') // validated: accepts anything
  const unvalidated = swarmTopic(l.membership.swarmId, 'unvalidated')
  l.b.services.pubsub.topicValidators.set(open, () => TopicValidatorResult.Accept)
  const atB = spy(l.b)
  const atC = spy(l.c)
  await meshed(l, open)
  await meshed(l, unvalidated)
  const A = l.a.peerId.toString()
  await l.a.services.pubsub.publish(unvalidated, enc('nobody checks this topic'))
  await until(() => atB.seen.some((s) => s.topic === unvalidated && s.from === A), atB.events, ['seen'], 'B validated the unvalidated-topic message')
  // 2 MiB: under it-length-prefixed's 4 MiB default, above the 1 MiB bound
  await l.a.services.pubsub.publish(open, new Uint8Array(2 * 1024 * 1024).fill(7))
  const big = (s: Seen): boolean => s.topic === open && s.data.byteLength > 1024 * 1024
  // either B relays it (C sees it) or B's gossipsub drops A's stream with the RPC
  await until(
    () => atC.seen.some(big) || !l.b.services.pubsub.getPeers().some((p) => p.equals(l.a.peerId)),
    l.b.services.pubsub,
    ['gossipsub:heartbeat'],
    'B handled the 2 MiB RPC',
    60_000,
  )
  const honest = 'from an honest member'
  await d.services.pubsub.publish(open, enc(honest))
  await until(() => atC.seen.some((s) => s.topic === open && dec(s.data) === honest), atC.events, ['seen'], 'C received D’s message')
  assert.equal(atC.seen.filter(big).length, 0, 'the 2 MiB message was not relayed')
  assert.equal(atC.seen.filter((s) => s.topic === unvalidated).length, 0, 'the unvalidated topic was not relayed')
})

test('address flood: a member announcing a foreign host:port as fast as it can makes another member dial it at most once per interval, backing off', async (t) => {
  // the "foreign host": a TCP listener that counts connection attempts and closes each at once
  let attempts = 0
  const counter = new EventTarget()
  const server: Server = createServer((sock) => {
    attempts++
    sock.destroy()
    counter.dispatchEvent(new Event('attempt'))
  })
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  cleanups.push(() => new Promise((r) => server.close(r)))
  const port = (server.address() as { port: number }).port
  const l = await line('gossip-flood')
  const topic = swarmTopic(l.membership.swarmId, 'addresses')
  const intervalMs = 1000
  for (const n of [l.b, l.c]) {
    const stop = startAddressExchange({ node: n, topic, self: n.peerId.toString(), members: l.membership.members, log: silentLogger, intervalMs })
    cleanups.push(stop)
  }
  await meshed(l, topic)
  const announcement = enc(JSON.stringify({ addrs: [`/ip4/127.0.0.1/tcp/${port}`] }))
  // C is not connected to A: it dials what A announces
  await l.a.services.pubsub.publish(topic, announcement)
  await until(() => attempts >= 1, counter, ['attempt'], 'C dialled the announced address')
  const before = attempts
  const t0 = Date.now()
  const floods = 150
  for (let i = 0; i < floods; i++) {
    await l.a.services.pubsub.publish(topic, announcement)
    await sleep(40) // pacing of the flood, not a criterion
  }
  const elapsed = Date.now() - t0
  // one dial per interval at most (the gap doubles after each failure): the bound, not the expected count
  const bound = 1 + Math.ceil(elapsed / intervalMs)
  const dials = attempts - before
  t.diagnostic(`${dials} dials in ${elapsed} ms of ${floods} announcements (bound ${bound})`)
  assert.ok(dials <= bound, `${dials} dials in ${elapsed} ms of ${floods} announcements; at most ${bound} allowed`)
  assert.equal(l.c.getConnections(l.a.peerId).length, 0, 'A stays reachable only through B')
})
