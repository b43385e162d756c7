/**
 * InstanceStore alone (no libp2p): one delivery per instance; a sender at its cap of 2W + 1
 * records is refused, never made room for by evicting a record a SEND may still reach; the floor
 * and the window's gc free payloads, their budget charges, deliveries and journal entries; the
 * journal brings echoed hashes back after a restart.
 */
import assert from 'node:assert/strict'
import { test } from 'node:test'
import type { Certificate } from '../../../src/broadcast/certificate.ts'
import { hashPayload } from '../../../src/broadcast/crypto.ts'
import { BroadcastRejectError } from '../../../src/broadcast/errors.ts'
import { InstanceStore } from '../../../src/broadcast/instance-store.ts'
import { createMemoryJournal, type EchoJournal } from '../../../src/broadcast/journal.ts'
import { Budget } from '../../../src/broadcast/limits.ts'
import type { Delivery } from '../../../src/broadcast/types.ts'

const MEMBERS = new Set(['a', 'b', 'c', 'd'])

function setup(o: { W?: number; journal?: EchoJournal } = {}) {
  const budget = new Budget(1 << 20)
  const journal = o.journal ?? createMemoryJournal()
  const deliveries: Delivery[] = []
  const collected: Array<[number, number]> = []
  const store = new InstanceStore({
    swarmId: 'S',
    roundWindow: o.W ?? 2,
    budget,
    journal,
    epochs: { knownPeer: (p) => MEMBERS.has(p), newest: () => ({ members: MEMBERS, membership: { f: 1 } }) },
    onDeliver: (d) => deliveries.push(d),
    onCollect: (low, floor) => collected.push([low, floor]),
  })
  return { store, budget, journal, deliveries, collected }
}

const payload = (round: number, sender: string, bytes = 1000): Uint8Array => new Uint8Array(bytes).fill(round * 16 + sender.charCodeAt(0))

function cert(round: number, sender: string, hash: Uint8Array): Certificate {
  return { swarmId: 'S', epoch: 0, round, sender, hash, signatures: [] }
}

/** An instance holding `sender`'s payload of `round`, charged to `sender`, undelivered. */
function held(store: InstanceStore, round: number, sender: string, bytes = 1000) {
  const inst = store.getOrCreate(sender, round, 0)
  const p = payload(round, sender, bytes)
  const hash = hashPayload(p)
  inst.sendHash = hash
  store.holdPayload(inst, sender, p, hash)
  return { inst, p, hash }
}

test('an instance delivers once, only with a payload of the certified hash; delivery releases its budget charge', () => {
  const { store, budget, deliveries } = setup()
  const inst = store.getOrCreate('a', 0, 0)
  assert.equal(store.getOrCreate('a', 0, 0), inst, 'one record per (sender, round)')
  const p = payload(0, 'a')
  const hash = hashPayload(p)
  store.deliverIfReady(inst, cert(0, 'a', hash))
  assert.equal(deliveries.length, 0, 'no payload yet')
  store.holdPayload(inst, 'a', p, hash)
  assert.equal(budget.of('a'), p.byteLength, 'an undelivered payload is charged to its peer')
  store.deliverIfReady(inst, cert(0, 'a', hashPayload(payload(1, 'a'))))
  assert.equal(deliveries.length, 0, 'a certificate of another hash does not deliver it')
  store.deliverIfReady(inst, cert(0, 'a', hash))
  assert.equal(deliveries.length, 1)
  assert.equal(budget.of('a'), 0, 'delivered: no longer charged')
  // again, and again with another payload held: still the first delivery, once
  store.deliverIfReady(inst, cert(0, 'a', hash))
  const other = payload(7, 'a')
  store.holdPayload(inst, 'b', other, hashPayload(other))
  store.deliverIfReady(inst, cert(0, 'a', hashPayload(other)))
  assert.equal(deliveries.length, 1)
  assert.equal(budget.of('b'), 0, 'a payload held after delivery is not charged')
  assert.deepEqual(
    store.delivered(0).map((d) => [d.sender, d.payload]),
    [['a', p]],
  )
  assert.equal(store.deliveredBytes(), p.byteLength)
})

test('a sender at its cap of 2W + 1 is refused a new instance; none of its records a SEND may still reach is evicted', () => {
  const W = 2
  const { store } = setup({ W })
  assert.equal(store.cap, 2 * W + 1)
  store.noteOwnRound(W) // reference W: the window is [0, 2W], exactly cap rounds
  const records = []
  for (let r = 0; r <= 2 * W; r++) {
    assert.ok(store.inWindow(r), `round ${r} is in the window`)
    records.push(held(store, r, 'a'))
  }
  assert.equal(store.openCounts().get('a'), store.cap)
  assert.throws(
    () => store.getOrCreate('a', 2 * W + 1, 0),
    (e: unknown) => e instanceof BroadcastRejectError && e.reason === 'over-capacity' && !e.penalise,
  )
  // every record is still there, with the hash it echoed: a second SEND would still be seen as one
  for (const [r, rec] of records.entries()) {
    assert.ok(store.inWindow(r))
    assert.equal(store.get('a', r), rec.inst, `round ${r} kept`)
    assert.deepEqual(store.get('a', r)?.sendHash, rec.hash)
  }
  assert.equal(store.openCounts().get('a'), store.cap)
  // the cap is per sender; an existing record is still handed out
  assert.doesNotThrow(() => store.getOrCreate('b', 2 * W + 1, 0))
  assert.equal(store.getOrCreate('a', 0, 0), records[0]!.inst)
})

test('at its cap, records below the window are collected first, then the new instance is accepted', () => {
  const W = 2
  const { store } = setup({ W })
  store.noteOwnRound(20) // window [18, 22]
  // records below the window (the store itself does not check the window; its callers do)
  for (let r = 0; r < 2 * W; r++) store.getOrCreate('a', r, 0)
  const kept = store.getOrCreate('a', 20, 0)
  assert.equal(store.openCounts().get('a'), store.cap)
  const added = store.getOrCreate('a', 21, 0)
  assert.equal(store.openCounts().get('a'), 2, 'rounds below ref − W dropped to make room')
  assert.equal(store.get('a', 0), undefined)
  assert.equal(store.get('a', 20), kept)
  assert.equal(store.get('a', 21), added)
})

// Found while splitting echo-broadcast.ts: when the gc run at the cap dropped *every* record of
// the sender, it also deleted the sender's map, and the new record went into that detached map —
// returned, but never stored (a later SEND of the instance would then have found no record).
test('at its cap with every record below the window, the new instance is stored', () => {
  const W = 2
  const { store } = setup({ W })
  store.noteOwnRound(20)
  for (let r = 0; r < 2 * W + 1; r++) store.getOrCreate('a', r, 0)
  const inst = store.getOrCreate('a', 20, 0)
  assert.equal(store.get('a', 20), inst)
})

test('the floor frees instances, payloads and their budget charges, deliveries and journal entries; it never goes down', () => {
  const { store, budget, journal, deliveries, collected } = setup({ W: 8 })
  const a0 = held(store, 0, 'a')
  held(store, 1, 'a')
  store.recordEcho({ epoch: 0, round: 1, sender: 'a', hash: a0.hash })
  const b1 = held(store, 1, 'b')
  store.deliverIfReady(b1.inst, cert(1, 'b', b1.hash))
  const c2 = held(store, 2, 'c')
  assert.equal(budget.of('a'), 2000)
  assert.equal(store.delivered(1).length, 1)
  assert.equal(deliveries.length, 1)
  assert.ok(store.rememberedHash('a', 1) !== undefined)

  assert.equal(store.setFloor(2), true)
  assert.equal(store.floor, 2)
  assert.deepEqual(collected.at(-1), [2, 2])
  assert.equal(store.get('a', 0), undefined)
  assert.equal(store.get('a', 1), undefined)
  assert.equal(store.get('b', 1), undefined)
  assert.equal(a0.inst.release, undefined, 'the dropped record released its charge')
  assert.equal(budget.of('a'), 0, 'undelivered payloads below the floor no longer charged')
  assert.deepEqual(store.delivered(1), [], 'deliveries below the floor freed')
  assert.equal(store.deliveredBytes(), 0)
  assert.equal(store.rememberedHash('a', 1), undefined)
  assert.deepEqual((journal as ReturnType<typeof createMemoryJournal>).entries, [], 'journal pruned below the floor')
  // at and above the floor nothing moved
  assert.equal(store.get('c', 2), c2.inst)
  assert.equal(budget.of('c'), 1000)
  assert.equal(store.setFloor(1), false, 'the floor never goes down')
  assert.equal(store.floor, 2)
  // an instance below the floor that still completes is not delivered (nor held), but its charge is released
  const late = held(store, 1, 'd')
  store.deliverIfReady(late.inst, cert(1, 'd', late.hash))
  assert.equal(deliveries.length, 1)
  assert.deepEqual(store.delivered(1), [])
  assert.equal(budget.of('d'), 0)
})

test('progress certified by f + 1 senders moves the window and frees what falls more than W behind it', () => {
  const { store, budget } = setup({ W: 2 })
  held(store, 0, 'a')
  held(store, 3, 'a')
  store.noteCertified('a', 10)
  assert.equal(store.certifiedRound, -1, 'one sender is no evidence with f = 1')
  assert.ok(store.get('a', 0) !== undefined)
  store.noteCertified('outsider', 10)
  assert.equal(store.certifiedRound, -1, 'a non-member does not count')
  store.noteCertified('b', 5)
  assert.equal(store.certifiedRound, 5)
  assert.equal(store.windowRef(), 5)
  assert.equal(store.get('a', 0), undefined, 'round 0 < 5 − W dropped')
  assert.ok(store.get('a', 3) !== undefined, 'round 3 = 5 − W kept')
  assert.equal(budget.of('a'), 1000)
  assert.equal(store.inWindow(2), false)
  assert.equal(store.inWindow(7), true)
  assert.equal(store.inWindow(8), false)
})

test('echoed hashes come back from the journal after a restart', () => {
  const journal = createMemoryJournal()
  const first = setup({ journal })
  const hash = hashPayload(payload(4, 'a'))
  first.store.recordEcho({ epoch: 0, round: 4, sender: 'a', hash })
  first.store.recordSend({ epoch: 0, round: 4, sender: 'me', hash })
  const again = setup({ journal })
  assert.deepEqual(again.store.rememberedHash('a', 4), { epoch: 0, round: 4, hash, kind: 'echo' })
  assert.deepEqual(again.store.rememberedHash('me', 4), { epoch: 0, round: 4, hash, kind: 'send' })
  assert.equal(again.store.rememberedHash('a', 5), undefined)
})
