/**
 * PeerDiscipline alone (no libp2p): what a refused frame costs its peer — counted by reason,
 * penalised when blamed, cut off when refusals without blame become a flood, banned at the
 * penalty threshold or at once for conclusive proof. A fake clock; bans are recorded, not applied.
 */
import assert from 'node:assert/strict'
import { test } from 'node:test'
import { COOL_OFF_MS, type CoolOffEvent, PeerDiscipline, REFUSAL_BURST_PER_MEMBER, type Rejection } from '../../../src/broadcast/discipline.ts'
import { BroadcastRejectError } from '../../../src/broadcast/errors.ts'
import type { BanEvent, PenaltyOptions } from '../../../src/broadcast/penalties.ts'
import { silentLogger } from '../../../src/logger.ts'

function setup(penalties: PenaltyOptions | false = { threshold: 64, windowMs: 60_000, banMs: 300_000 }, members = 4) {
  let clock = 1_000_000
  const bans: Array<{ peer: string; ms: number; at: number }> = []
  const events: Array<{ type: string; detail: Rejection | BanEvent | CoolOffEvent }> = []
  const banned = (peer: string): boolean => bans.some((b) => b.peer === peer && clock < b.at + b.ms)
  const d = new PeerDiscipline({
    self: 'me',
    members,
    penalties,
    log: silentLogger,
    ban: async (peer, ms) => {
      bans.push({ peer, ms, at: clock })
    },
    isBanned: banned,
    emit: (type, detail) => events.push({ type, detail }),
    track: () => {},
    now: () => clock,
  })
  return {
    d,
    bans,
    events,
    banned,
    advance(ms: number) {
      clock += ms
    },
  }
}

const capacity = (peer = 'p'): BroadcastRejectError => new BroadcastRejectError('over-capacity', `${peer} is over its budget`)

test('counts every refusal by reason and reports it; anything not a BroadcastRejectError is malformed', () => {
  const { d, events } = setup()
  d.reject('p', capacity())
  d.reject('p', new Error('garbage'))
  d.reject(undefined, new BroadcastRejectError('bad-signature', 'forged'))
  assert.equal(d.rejected['over-capacity'], 1)
  assert.equal(d.rejected.malformed, 1)
  assert.equal(d.rejected['bad-signature'], 1)
  assert.deepEqual(
    events.map((e) => [e.type, (e.detail as Rejection).reason]),
    [
      ['reject', 'over-capacity'],
      ['reject', 'malformed'],
      ['reject', 'bad-signature'],
    ],
  )
})

test('refusals without blame: 2(n + 1) tolerated, the next is penalised and cuts the peer off for 1 s, then 4 s, 16 s within the window', () => {
  const { d, bans, events, banned, advance } = setup()
  const tolerated = REFUSAL_BURST_PER_MEMBER * (4 + 1)
  for (let i = 0; i < tolerated; i++) assert.equal(d.reject('p', capacity()).penalise, false)
  assert.equal(bans.length, 0)
  assert.equal(d.reject('p', capacity()).penalise, true, 'past the tolerance: a flood')
  assert.deepEqual(
    bans.map((b) => b.ms),
    [COOL_OFF_MS],
  )
  assert.ok(banned('p'))
  const coolOffs = (): CoolOffEvent[] => events.filter((e) => e.type === 'cool-off').map((e) => e.detail as CoolOffEvent)
  assert.deepEqual(
    coolOffs().map((c) => [c.peer, c.reason, c.count]),
    [['p', 'over-capacity', 1]],
  )
  assert.equal(d.coolOffCount, 1)
  // refused while cut off (frames already in flight): penalised, but no second cool-off on top
  d.reject('p', capacity())
  assert.equal(bans.length, 1)
  // after it lapses, one token has refilled per second: one more refusal is tolerated, then 4 s
  advance(COOL_OFF_MS)
  assert.equal(d.reject('p', capacity()).penalise, false)
  d.reject('p', capacity())
  assert.deepEqual(
    bans.map((b) => b.ms),
    [COOL_OFF_MS, 4 * COOL_OFF_MS],
  )
  advance(4 * COOL_OFF_MS)
  for (let i = 0; i < 4; i++) d.reject('p', capacity())
  d.reject('p', capacity())
  assert.deepEqual(
    bans.map((b) => b.ms),
    [COOL_OFF_MS, 4 * COOL_OFF_MS, 16 * COOL_OFF_MS],
  )
  // another peer is judged on its own
  assert.equal(d.reject('q', capacity('q')).penalise, false)
  assert.equal(banned('q'), false)
})

test('a peer quiet for the penalty window starts again from a 1 s cool-off', () => {
  const { d, bans, advance } = setup({ threshold: 64, windowMs: 10_000, banMs: 300_000 })
  for (let i = 0; i <= 10; i++) d.reject('p', capacity())
  advance(20_000)
  for (let i = 0; i <= 10; i++) d.reject('p', capacity())
  assert.deepEqual(
    bans.map((b) => b.ms),
    [COOL_OFF_MS, COOL_OFF_MS],
  )
})

test('cool-offs never exceed the ban', () => {
  const { d, bans, advance } = setup({ threshold: 1000, windowMs: 600_000, banMs: 5000 })
  for (let k = 0; k < 4; k++) {
    for (let i = 0; i <= 10; i++) d.reject('p', capacity())
    advance(bans.at(-1)!.ms)
  }
  assert.deepEqual(
    bans.map((b) => b.ms),
    [1000, 4000, 5000, 5000],
  )
})

test('relayed gossip and our own frames never count against the tolerance; blamed rejections reach the ban threshold; conclusive ones ban at once', () => {
  const { d, bans, events } = setup({ threshold: 3, windowMs: 60_000, banMs: 300_000 })
  for (let i = 0; i < 100; i++) assert.equal(d.reject('p', capacity(), { relayed: true }).penalise, false)
  for (let i = 0; i < 100; i++) assert.equal(d.reject('me', capacity('me')).penalise, false)
  assert.equal(bans.length, 0)
  for (let i = 0; i < 3; i++) d.reject('q', new BroadcastRejectError('bad-signature', 'forged'))
  assert.deepEqual(bans, [{ peer: 'q', ms: 300_000, at: bans[0]!.at }])
  const ban = events.find((e) => e.type === 'ban')!.detail as BanEvent
  assert.deepEqual(ban.reasons, { 'bad-signature': 3 })
  d.reject('r', new BroadcastRejectError('oversized', 'junk on the topic'), { conclusive: true })
  assert.equal(bans.at(-1)!.peer, 'r')
})

test('penalties off: refusals are counted and reported, nobody is ever cut off or banned', () => {
  const { d, bans } = setup(false)
  for (let i = 0; i < 1000; i++) d.reject('p', capacity())
  for (let i = 0; i < 1000; i++) d.reject('p', new BroadcastRejectError('bad-signature', 'forged'), { conclusive: true })
  assert.equal(bans.length, 0)
  assert.equal(d.rejected['over-capacity'], 1000)
  assert.equal(d.coolOffCount, 0)
})

test('an epoch change (setMembers) moves the tolerance to 2(n + 1) of the new membership, without refilling anyone', () => {
  const { d, bans } = setup()
  // 4 members: 10 tolerated; peer 'a' uses 3 of them before the change
  for (let i = 0; i < 3; i++) assert.equal(d.reject('a', capacity('a')).penalise, false)
  assert.equal(d.tolerance(), REFUSAL_BURST_PER_MEMBER * (4 + 1))
  d.setMembers(10)
  assert.equal(d.tolerance(), REFUSAL_BURST_PER_MEMBER * (10 + 1))
  // a peer first refused after the change gets the new tolerance: 22, then a flood
  for (let i = 0; i < REFUSAL_BURST_PER_MEMBER * 11; i++) assert.equal(d.reject('b', capacity('b')).penalise, false, `refusal ${i + 1} of 22`)
  const flood = d.reject('b', capacity('b'))
  assert.equal(flood.penalise, true)
  assert.match(flood.detail, /refused 22 times/)
  assert.deepEqual(
    bans.map((b) => b.peer),
    ['b'],
  )
  // 'a' is not refilled by the change: 7 left of its old burst (the clock did not move), then a flood
  for (let i = 0; i < 7; i++) assert.equal(d.reject('a', capacity('a')).penalise, false)
  assert.equal(d.reject('a', capacity('a')).penalise, true)
  // shrinking cuts a fuller bucket down to the new tolerance: 'c' has 21 of 22 left, then 2(1 + 1) = 4
  assert.equal(d.reject('c', capacity('c')).penalise, false)
  d.setMembers(1)
  for (let i = 0; i < 4; i++) assert.equal(d.reject('c', capacity('c')).penalise, false)
  assert.equal(d.reject('c', capacity('c')).penalise, true)
})
