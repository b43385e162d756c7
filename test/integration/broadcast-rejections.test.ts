/**
 * Every rejection reason provoked by a hand-crafted frame written on a real libp2p stream, and
 * observed as a typed 'reject' event and in stats(); afterwards the member still delivers.
 */
import assert from 'node:assert/strict'
import { after, before, test } from 'node:test'
import { peerIdFromString } from '@libp2p/peer-id'
import { Registry } from 'prom-client'
import { hashPayload, sign, signingSeed, statement } from '../../src/broadcast/crypto.ts'
import { createEchoBroadcast, type EchoBroadcast, type Rejection, rejectReasons } from '../../src/broadcast/index.ts'
import { encodeFrame, type Frame } from '../../src/broadcast/wire.ts'
import { InvalidConfigError } from '../../src/errors.ts'
import { createNetNode, type NetNode, peerIdOfKey } from '../../src/net/index.ts'
import { assertRefused, makeKeys, payloadOf, type Swarm, startSwarm, waitDeliveries, waitReject } from '../unit/broadcast/harness.ts'

// n = 4, f = 1: members 0..2 run the broadcast, member 3 is the hand-crafting attacker
let swarm: Swarm
const registry = new Registry()
let target: EchoBroadcast
let attacker: NetNode
const extra: NetNode[] = []
const extraB: EchoBroadcast[] = []

before(async () => {
  swarm = await startSwarm({ n: 4, f: 1, withoutBroadcast: [3], broadcast: { maxPayloadBytes: 64 * 1024, registry } })
  target = swarm.bcasts[0]!
  attacker = swarm.nodes[3]!
})
after(async () => {
  await Promise.allSettled(extraB.map((b) => b.stop()))
  await Promise.allSettled(extra.map((n) => n.stop()))
  await swarm?.stop()
})

const me = (): string => swarm.membership.members[3]!
const seed = (): Uint8Array => signingSeed(swarm.keys[3]!)

function send(round: number, payload: Uint8Array, over: Partial<Extract<Frame, { type: 'SEND' }>> = {}): Frame {
  const hash = over.hash ?? hashPayload(payload)
  const inst = { swarmId: over.swarmId ?? 'test', epoch: over.epoch ?? 0, round, sender: over.sender ?? me() }
  return { type: 'SEND', ...inst, hash, signature: sign(seed(), statement('SEND', inst, hash)), payload, ...over }
}

/** Writes raw bytes on a fresh stream from the attacker to the target and waits for the rejection. */
async function provoke(reason: string, bytes: Uint8Array | Uint8Array[], to: NetNode = swarm.nodes[0]!, b: EchoBroadcast = target, from: NetNode = attacker): Promise<Rejection> {
  const signal = AbortSignal.timeout(20_000)
  const seen = waitReject(b, reason, signal)
  const stream = await from.dialProtocol(to.peerId, b.protocol, { signal })
  try {
    for (const chunk of Array.isArray(bytes) ? bytes : [bytes]) if (!stream.send(chunk)) await stream.onDrain({ signal })
    await stream.close({ signal })
  } catch {
    // the target may reset the stream as soon as it has seen enough (e.g. a non-member's stream)
  }
  return seen
}

test('malformed: an unknown frame type and garbage', async () => {
  const r = await provoke('malformed', Uint8Array.of(2, 42, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0))
  assert.equal(r.penalise, true)
  assert.equal(r.peer, me())
})

test('unknown-version: a version-3 header is dropped without penalty', async () => {
  const f = encodeFrame(send(0, payloadOf(1, 10)))
  f[0] = 3
  const r = await provoke('unknown-version', f)
  assert.equal(r.penalise, false)
})

test('oversized: a header claiming more than maxPayloadBytes, refused before the body arrives', async () => {
  const f = encodeFrame(send(0, payloadOf(2, 10)))
  new DataView(f.buffer).setUint32(8, 64 * 1024 + 1)
  await provoke('oversized', f.subarray(0, 12))
})

test('wrong-swarm: a SEND for another swarm', async () => {
  const r = await provoke('wrong-swarm', encodeFrame(send(0, payloadOf(3, 10), { swarmId: 'other' })))
  assert.equal(r.penalise, false)
})

test('out-of-window: a SEND far ahead of the newest certified round', async () => {
  await provoke('out-of-window', encodeFrame(send(100_000, payloadOf(4, 10))))
})

test('bad-signature: a SEND whose signature does not verify', async () => {
  const f = send(1, payloadOf(5, 10)) as Extract<Frame, { type: 'SEND' }>
  const sig = f.signature.slice()
  sig[0]! ^= 1
  await provoke('bad-signature', encodeFrame({ ...f, signature: sig }))
})

test('hash-mismatch: a validly signed hash over a different payload', async () => {
  const other = payloadOf(6, 10)
  await provoke('hash-mismatch', encodeFrame(send(2, payloadOf(7, 10), { hash: hashPayload(other) })))
})

test('equivocation: two validly signed SENDs for one instance; the second is never echoed', async () => {
  const evidence = new Promise((resolve) => target.addEventListener('equivocation', (e) => resolve((e as CustomEvent).detail), { once: true }))
  const signal = AbortSignal.timeout(20_000)
  // first SEND: answered with an ECHO on the same stream
  const s1 = await attacker.dialProtocol(swarm.nodes[0]!.peerId, target.protocol, { signal })
  const echoed = new Promise<number>((resolve) => s1.addEventListener('message', (e) => resolve(e.data.byteLength), { once: true }))
  s1.send(encodeFrame(send(3, payloadOf(8, 100))))
  assert.ok((await echoed) > 12)
  await s1.close({ signal }).catch(() => {})
  const r = await provoke('equivocation', encodeFrame(send(3, payloadOf(9, 100))))
  assert.equal(r.penalise, true)
  const ev = (await evidence) as { round: number; sender: string }
  assert.equal(ev.round, 3)
  assert.equal(ev.sender, me())
  assert.ok(target.evidence().length >= 1)
})

test('duplicate-signer: a FINAL whose certificate lists one signer twice', async () => {
  const payload = payloadOf(10, 10)
  const hash = hashPayload(payload)
  const inst = { swarmId: 'test', epoch: 0, round: 4, sender: me() }
  const e = { signer: me(), signature: sign(seed(), statement('ECHO', inst, hash)) }
  const k1 = signingSeed(swarm.keys[1]!)
  const e1 = { signer: swarm.membership.members[1]!, signature: sign(k1, statement('ECHO', inst, hash)) }
  await provoke('duplicate-signer', encodeFrame({ type: 'FINAL', ...inst, hash, certificate: [e, e1, e] }))
})

test('non-member: a certificate signed by an outsider, and a stream from an outsider', async () => {
  const [outKey] = await makeKeys(1)
  const payload = payloadOf(11, 10)
  const hash = hashPayload(payload)
  const inst = { swarmId: 'test', epoch: 0, round: 5, sender: me() }
  const cert = [3, 1].map((i) => ({ signer: swarm.membership.members[i]!, signature: sign(signingSeed(swarm.keys[i]!), statement('ECHO', inst, hash)) }))
  cert.push({ signer: peerIdOfKey(outKey!), signature: sign(signingSeed(outKey!), statement('ECHO', inst, hash)) })
  await provoke('non-member', encodeFrame({ type: 'FINAL', ...inst, hash, certificate: cert }))

  // the connection gater refuses an outsider's connection to a gated member outright
  const outsider = await createNetNode({ privateKey: outKey!, listen: ['/ip4/127.0.0.1/tcp/0'] })
  extra.push(outsider)
  await assertRefused(outsider, swarm.nodes[1]!.getMultiaddrs()[0]!)
  assert.equal(swarm.nodes[1]!.getConnections(outsider.peerId).length, 0)

  // a member whose node is not gated still refuses the outsider's frames in the broadcast
  const [k] = await makeKeys(1)
  const loose = await createNetNode({ privateKey: k!, listen: ['/ip4/127.0.0.1/tcp/0'] })
  extra.push(loose)
  const membership = { ...swarm.membership, members: [...swarm.membership.members.slice(0, 3), peerIdOfKey(k!)] }
  const lb = await createEchoBroadcast({ node: loose, privateKey: k!, membership })
  extraB.push(lb)
  await outsider.dial(loose.getMultiaddrs()[0]!)
  const r = await provoke('non-member', encodeFrame(send(0, payload)), loose, lb, outsider)
  assert.equal(r.peer, peerIdOfKey(outKey!))
  assert.equal(peerIdFromString(r.peer!).toString(), peerIdOfKey(outKey!))
})

test('wrong-epoch: a SEND signed under an epoch this member does not run that round in, refused without blame', async () => {
  const r = await provoke('wrong-epoch', encodeFrame(send(1, payloadOf(9, 10), { epoch: 1 })))
  assert.equal(r.penalise, false)
})

test('unexpected frame types are refused from the header, before their payload is read', async () => {
  // an unsolicited PAYLOAD of 60 KiB: only its 12-byte header is sent, and it is refused
  const head = new Uint8Array(12)
  const dv = new DataView(head.buffer)
  dv.setUint8(0, 2)
  dv.setUint8(1, 5) // PAYLOAD
  dv.setUint32(4, 40)
  dv.setUint32(8, 60 * 1024)
  const r = await provoke('malformed', head)
  assert.match(r.detail, /unexpected PAYLOAD frame/)
})

// over-capacity, slow and rate-limited: test/integration/broadcast-attacks.test.ts
const provokedHere = rejectReasons.filter((r) => r !== 'over-capacity' && r !== 'slow' && r !== 'rate-limited')

test('every reason was counted, and the member still delivers afterwards', async () => {
  const rejected = target.stats().rejected
  for (const reason of provokedHere) assert.ok((rejected[reason] ?? 0) >= 1, `${reason}: ${JSON.stringify(rejected)}`)
  // and exported as Prometheus counters labelled by reason
  const metric = await registry.getSingleMetric('monna_broadcast_rejections_total')!.get()
  for (const reason of provokedHere) assert.ok(metric.values.some((v) => v.labels.reason === reason && v.value >= 1), reason)
  const signal = AbortSignal.timeout(30_000)
  const honest = swarm.bcasts.slice(0, 3).map((b) => b!)
  await Promise.all([...honest.map((b, i) => b.broadcast(6, payloadOf(100 + i, 5000), { signal })), ...honest.map((b) => waitDeliveries(b, 6, 3, signal))])
  for (const b of honest) assert.deepEqual(b.delivered(6).map((d) => d.payload.length), [5000, 5000, 5000])
})

test('setMembership validates a new epoch: same swarm, n ≥ 3f + 1', () => {
  assert.throws(() => target.setMembership({ ...swarm.membership, swarmId: 'other' }), InvalidConfigError)
  assert.throws(() => target.setMembership({ ...swarm.membership, f: 2 }), InvalidConfigError)
})
