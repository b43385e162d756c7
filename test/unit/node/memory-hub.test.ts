import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import type { Delivery } from '../../../src/node/port.ts'
import { createMemoryHub, type MemoryHub } from '../../support/memory-hub.ts'
import { memberIds } from './helpers.ts'

const bytes = (v: number) => new Uint8Array([v, v, v, v])

/**
 * Waits until the hub is quiet: every hop is a macrotask (setImmediate), so once a few turns of
 * the event loop pass with no new message, nothing is in flight. (A fixed sleep is not enough
 * on a loaded machine: a timer can fire before the SEND → ECHO → FINAL chain has run.)
 */
async function settle(hub: MemoryHub): Promise<void> {
  for (;;) {
    const before = hub.messages
    for (let i = 0; i < 5; i++) await new Promise((r) => setImmediate(r))
    if (hub.messages === before) return
  }
}

function collect(port: EventTarget): Delivery[] {
  const got: Delivery[] = []
  port.addEventListener('deliver', (e) => got.push((e as CustomEvent<Delivery>).detail))
  return got
}

describe('MemoryHub (echo/quorum semantics)', () => {
  it('certifies with Q = ⌊(n+f)/2⌋+1 echoes and delivers once everywhere', async () => {
    const ids = memberIds(4)
    const hub = createMemoryHub({ membership: { swarmId: 's', members: ids, f: 1 } })
    assert.equal(hub.quorum, 3)
    const ports = ids.map((id) => hub.port(id))
    const seen = ports.map(collect)
    await ports[0]!.broadcast(0, bytes(1))
    await settle(hub)
    for (const s of seen) {
      assert.equal(s.length, 1)
      assert.deepEqual(s[0]!.payload, bytes(1))
      assert.equal(s[0]!.sender, ids[0])
    }
    // one sender is no evidence that the swarm reached round 0; f + 1 = 2 senders are
    assert.equal(ports[2]!.newestCertifiedRound(), -1)
    await ports[1]!.broadcast(0, bytes(2))
    await settle(hub)
    assert.equal(ports[2]!.newestCertifiedRound(), 0)
  })

  it('delivers nothing while more than f members are detached, and catches up when they attach', async () => {
    const ids = memberIds(4)
    const hub = createMemoryHub({ membership: { swarmId: 's', members: ids, f: 1 } })
    const a = hub.port(ids[0]!)
    hub.port(ids[1]!)
    let done = false
    const p = a.broadcast(0, bytes(2)).then(() => {
      done = true
    })
    await settle(hub)
    assert.equal(done, false, 'two echoes of four are not a quorum')
    hub.port(ids[2]!) // a third member attaches: the SEND is re-sent to it and it echoes
    await p
    assert.equal(a.delivered(0).length, 1)
  })

  it('an equivocating sender is delivered only with a quorum for one payload, and then the same payload everywhere', async () => {
    const ids = memberIds(7)
    const hub = createMemoryHub({ membership: { swarmId: 's', members: ids, f: 2 } })
    const ports = ids.map((id) => hub.port(id))
    const seen = ports.map(collect)
    // 5 members (a quorum) get payload A, 2 get payload B
    await ports[6]!.sendTo!(ids.slice(0, 5), 3, bytes(7))
    await ports[6]!.sendTo!(ids.slice(5), 3, bytes(9))
    await settle(hub)
    for (const s of seen) {
      assert.equal(s.length, 1)
      assert.deepEqual(s[0]!.payload, bytes(7))
    }
    // split 3 / 4: no quorum for either payload, nothing delivered
    await ports[6]!.sendTo!(ids.slice(0, 3), 4, bytes(1))
    await ports[6]!.sendTo!(ids.slice(3), 4, bytes(2))
    await settle(hub)
    for (const p of ports) assert.equal(p.delivered(4).length, 0)
    // a second SEND for an instance already echoed is never echoed, and is reported
    assert.ok((ports[0]!.stats().rejected.equivocation ?? 0) === 0)
    await ports[6]!.sendTo!([ids[0]!], 3, bytes(8))
    await settle(hub)
    assert.equal(ports[0]!.stats().rejected.equivocation, 1)
  })

  it('fetchRound hands a member the certified deliveries others hold', async () => {
    const ids = memberIds(4)
    const hub = createMemoryHub({ membership: { swarmId: 's', members: ids, f: 1 } })
    const ports = ids.slice(0, 3).map((id) => hub.port(id))
    await Promise.all(ports.map((p, i) => p.broadcast(5, bytes(i))))
    const late = hub.port(ids[3]!)
    const got = await late.fetchRound(5)
    assert.equal(got.length, 3)
    assert.deepEqual(new Set(got.map((d) => d.sender)), new Set(ids.slice(0, 3)))
  })
})
