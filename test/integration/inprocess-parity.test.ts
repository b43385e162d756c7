/**
 * An in-process member (libp2p over its memory transport) refuses a forged or equivocating frame
 * exactly as a process member over TCP does: the same rejection reasons, the same counters, the
 * same answers — the transport is the only difference.
 */
import assert from 'node:assert/strict'
import { test } from 'node:test'
import { createAdversary } from '../../src/adversary/index.ts'
import { hashPayload } from '../../src/broadcast/crypto.ts'
import type { Frame, Rejection } from '../../src/broadcast/index.ts'
import { payloadOf, startSwarm, waitDeliveries } from '../unit/broadcast/harness.ts'

async function play(transport: 'tcp' | 'memory'): Promise<{ reasons: string[]; answers: string[]; rejected: Record<string, number>; delivered: number }> {
  const swarm = await startSwarm({ n: 4, f: 1, withoutBroadcast: [3], transport })
  try {
    const target = swarm.bcasts[0]!
    const to = swarm.membership.members[0]!
    const reasons: string[] = []
    target.addEventListener('reject', (e) => {
      const r = (e as CustomEvent<Rejection>).detail
      if (process.env.DEBUG_PARITY) console.log(r)
      reasons.push(r.reason)
    })
    const byz = createAdversary({ node: swarm.nodes[3]!, privateKey: swarm.keys[3]!, membership: swarm.membership })
    const answers: string[] = []
    const answer = async (frames: Frame[]): Promise<void> => {
      const res = await byz.exchange(to, frames)
      answers.push(res.replies.map((f) => f.type).join('+') || res.ended)
    }
    // a forged SEND (signature of another statement)
    const forged = byz.sendFrame(0, payloadOf(1, 1000))
    forged.signature = byz.sendFrame(1, payloadOf(1, 1000)).signature
    await answer([forged])
    // an equivocation: two validly signed SENDs for round 2
    await answer([byz.sendFrame(2, payloadOf(2, 1000))])
    await answer([byz.sendFrame(2, payloadOf(3, 1000))])
    // a certificate with a forged signature
    const { final } = await byz.collect(swarm.membership.members.slice(0, 3), 3, payloadOf(4, 1000))
    assert.ok(final !== undefined)
    const bad = { ...final, certificate: final.certificate.map((e, k) => (k === 1 ? { ...e, signature: new Uint8Array(64) } : e)) }
    await answer([bad])
    // and the honest members still deliver among themselves
    const honest = swarm.bcasts.slice(0, 3).map((b) => b!)
    const signal = AbortSignal.timeout(60_000)
    await Promise.all([...honest.map((b, i) => b.broadcast(5, payloadOf(50 + i, 2000), { signal })), ...honest.map((b) => waitDeliveries(b, 5, 3, signal))])
    // a SEND whose declared hash is that of a payload this process already checked (member 0's
    // own of round 5, which receivers on the memory transport take as views without comparing),
    // carrying other bytes of the same length: refused as a hash mismatch all the same
    const other = payloadOf(50, 2000)
    other[1000]! ^= 1
    await answer([byz.sendFrame(6, other, { hash: hashPayload(payloadOf(50, 2000)) })])
    const rejected = Object.fromEntries(Object.entries(target.stats().rejected).filter(([, v]) => v > 0))
    return { reasons, answers, rejected, delivered: target.delivered(5).length }
  } finally {
    await swarm.stop()
  }
}

test('forged and equivocating frames: the in-process member answers and counts exactly as the TCP one', async () => {
  const tcp = await play('tcp')
  const memory = await play('memory')
  assert.deepEqual(tcp.reasons, ['bad-signature', 'equivocation', 'bad-signature', 'hash-mismatch'])
  assert.deepEqual(memory.reasons, tcp.reasons)
  assert.deepEqual(memory.answers, tcp.answers)
  assert.deepEqual(memory.rejected, tcp.rejected)
  assert.equal(memory.delivered, 3)
  assert.equal(tcp.delivered, 3)
})
