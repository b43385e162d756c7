/**
 * Penalties: a member whose frames keep being rejected with blame (malformed, bad signatures, …)
 * is banned — its connections closed and refused both ways — once it reaches the threshold within
 * the window; rejections without blame (another swarm, another protocol version) never count. The
 * honest members keep delivering, and the banned peer may reconnect when its ban is over.
 * Real libp2p nodes on 127.0.0.1 (n = 4, f = 1; member 3 hand-crafts frames).
 */
import assert from 'node:assert/strict'
import { after, before, test } from 'node:test'
import { hashPayload, sign, signingSeed, statement } from '../../src/broadcast/crypto.ts'
import type { BanEvent, EchoBroadcast } from '../../src/broadcast/index.ts'
import { encodeFrame } from '../../src/broadcast/wire.ts'
import { isBanned, type NetNode } from '../../src/net/index.ts'
import { assertRefused, payloadOf, type Swarm, startSwarm, waitDeliveries, waitReject } from '../unit/broadcast/harness.ts'

const THRESHOLD = 5
const BAN_MS = 3000
let swarm: Swarm
let target: EchoBroadcast
let attacker: NetNode

before(async () => {
  swarm = await startSwarm({ n: 4, f: 1, withoutBroadcast: [3], broadcast: { penalties: { threshold: THRESHOLD, windowMs: 60_000, banMs: BAN_MS } } })
  target = swarm.bcasts[0]!
  attacker = swarm.nodes[3]!
})
after(async () => {
  await swarm?.stop()
})

const me = (): string => swarm.membership.members[3]!

/** A stream from the attacker to the target carrying `bytes`; resolves on the target's rejection. */
async function write(reason: string, bytes: Uint8Array): Promise<void> {
  const signal = AbortSignal.timeout(20_000)
  const seen = waitReject(target, reason, signal)
  const stream = await attacker.dialProtocol(swarm.nodes[0]!.peerId, target.protocol, { signal })
  try {
    if (!stream.send(bytes)) await stream.onDrain({ signal })
    await stream.close({ signal })
  } catch {
    // the target may reset the stream once it has rejected it
  }
  await seen
}

function sendFrame(round: number, opts: { swarmId?: string; version?: number } = {}): Uint8Array {
  const payload = payloadOf(round, 32)
  const hash = hashPayload(payload)
  const inst = { swarmId: opts.swarmId ?? 'test', epoch: 0, round, sender: me() }
  const f = encodeFrame({ type: 'SEND', ...inst, hash, signature: sign(signingSeed(swarm.keys[3]!), statement('SEND', inst, hash)), payload })
  if (opts.version !== undefined) f[0] = opts.version
  return f
}

test('rejections without blame never lead to a ban', async () => {
  for (let i = 0; i < THRESHOLD + 2; i++) await write('wrong-swarm', sendFrame(0, { swarmId: 'other' }))
  for (let i = 0; i < THRESHOLD + 2; i++) await write('unknown-version', sendFrame(0, { version: 3 }))
  assert.equal(isBanned(swarm.nodes[0]!, me()), false)
})

test('a member reaching the threshold of blamed rejections is banned, then may come back', async () => {
  const bans: BanEvent[] = []
  target.addEventListener('ban', (e) => bans.push((e as CustomEvent<BanEvent>).detail))
  const garbage = Uint8Array.of(2, 42, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0) // unknown frame type: malformed
  for (let i = 0; i < THRESHOLD - 1; i++) await write('malformed', garbage)
  assert.equal(bans.length, 0, 'not banned below the threshold')
  const forged = sendFrame(1)
  forged[forged.length - 1]! ^= 0xff // the payload no longer matches the signed hash
  await write('hash-mismatch', forged)
  assert.equal(bans.length, 1)
  assert.equal(bans[0]!.peer, me())
  assert.deepEqual(bans[0]!.reasons, { malformed: THRESHOLD - 1, 'hash-mismatch': 1 })
  assert.ok(isBanned(swarm.nodes[0]!, me()))

  // its connections are closed and refused both ways while the ban lasts
  const deadline = Date.now() + 10_000
  while (swarm.nodes[0]!.getConnections(attacker.peerId).length > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50))
  assert.equal(swarm.nodes[0]!.getConnections(attacker.peerId).length, 0, 'the banned member was disconnected')
  await assertRefused(attacker, swarm.nodes[0]!.getMultiaddrs()[0]!)
  await assert.rejects(swarm.nodes[0]!.dial(attacker.getMultiaddrs()[0]!, { signal: AbortSignal.timeout(10_000) }))

  // the honest members still deliver each other's broadcasts (n − f = 3 of them)
  const round = 5
  const got = Promise.all([0, 1, 2].map((i) => waitDeliveries(swarm.bcasts[i]!, round, 3, AbortSignal.timeout(30_000))))
  await Promise.all([0, 1, 2].map((i) => swarm.bcasts[i]!.broadcast(round, payloadOf(100 + i, 64))))
  for (const d of await got) assert.equal(d.length, 3)

  // when the ban is over it may connect again, and is judged afresh
  await new Promise((r) => setTimeout(r, Math.max(0, bans[0]!.until - Date.now()) + 100))
  assert.equal(isBanned(swarm.nodes[0]!, me()), false)
  const conn = await attacker.dial(swarm.nodes[0]!.getMultiaddrs()[0]!, { signal: AbortSignal.timeout(10_000) })
  await attacker.services.ping.ping(conn.remotePeer, { signal: AbortSignal.timeout(10_000) })
  await write('malformed', garbage)
  assert.equal(bans.length, 1, 'one blamed frame after the ban is not a new ban')
})

test('penalties are validated', async () => {
  const { createEchoBroadcast } = await import('../../src/broadcast/index.ts')
  for (const penalties of [{ threshold: 0, windowMs: 1, banMs: 1 }, { threshold: 1, windowMs: 0, banMs: 1 }, { threshold: 1, windowMs: 1, banMs: Number.NaN }]) {
    await assert.rejects(createEchoBroadcast({ node: swarm.nodes[3]!, privateKey: swarm.keys[3]!, membership: swarm.membership, penalties }), { name: 'InvalidConfigError' })
  }
})
