/**
 * ProgressEvidence alone: the newest round certified by f + 1 distinct members — what every
 * "the swarm is ahead" decision follows. No f members can move it, whatever rounds they certify
 * and in whatever order (a seeded random schedule of Byzantine and honest certificates).
 */
import assert from 'node:assert/strict'
import { test } from 'node:test'
import { ProgressEvidence } from '../../../src/broadcast/progress.ts'
import { Rng } from '../../../src/rng.ts'

const members = (n: number): Set<string> => new Set(Array.from({ length: n }, (_, i) => `m${i}`))

test('f members far ahead move nothing; the (f + 1)-th does, to the lowest of the f + 1 newest', () => {
  const p = new ProgressEvidence()
  const m = members(7)
  assert.equal(p.round, -1)
  assert.equal(p.note('m0', 1000, m, 2), false)
  assert.equal(p.note('m1', 125_000, m, 2), false)
  assert.equal(p.round, -1, 'two senders (f = 2) are no evidence')
  assert.equal(p.note('m2', 5, m, 2), true)
  assert.equal(p.round, 5, 'the third newest of three senders')
  assert.equal(p.note('m3', 7, m, 2), true)
  assert.equal(p.round, 7)
  // older certificates of a sender change nothing; the evidence never goes back
  assert.equal(p.note('m3', 3, m, 2), false)
  assert.equal(p.round, 7)
})

test('senders that are not members of the newest epoch do not count', () => {
  const p = new ProgressEvidence()
  const with_ = new Set(['m0', 'm1', 'm2', 'gone'])
  p.note('gone', 50, with_, 1)
  p.note('m0', 50, with_, 1)
  assert.equal(p.round, 50, 'two members with f = 1')
  const q = new ProgressEvidence()
  const without = new Set(['m0', 'm1', 'm2'])
  q.note('gone', 50, without, 1)
  q.note('m0', 50, without, 1)
  assert.equal(q.round, -1, 'one member and one non-member: no evidence with f = 1')
})

test('random schedules: f Byzantine members certifying any rounds never lift the evidence above the (f + 1)-th newest honest round', () => {
  for (let seed = 0; seed < 200; seed++) {
    const rng = new Rng(`progress-${seed}`)
    const n = 4 + rng.int(20)
    const f = Math.floor((n - 1) / 3)
    const m = members(n)
    const byzantine = new Set(Array.from({ length: f }, (_, i) => `m${i}`))
    const honestNewest = new Map<string, number>()
    const p = new ProgressEvidence()
    for (let k = 0; k < 300; k++) {
      const sender = `m${rng.int(n)}`
      const round = byzantine.has(sender) ? rng.int(1_000_000) : rng.int(50 + k)
      p.note(sender, round, m, f)
      if (!byzantine.has(sender)) honestNewest.set(sender, Math.max(round, honestNewest.get(sender) ?? -1))
      // the bound: at least one of any f + 1 senders is honest, so the evidence is at most the
      // newest round some honest member certified
      const honestMax = Math.max(-1, ...honestNewest.values())
      assert.ok(p.round <= honestMax, `seed ${seed}, step ${k}: evidence ${p.round} above every honest member's newest ${honestMax}`)
    }
  }
})

test('random schedules: the evidence equals the (f + 1)-th newest round over member senders, recomputed from scratch after every note', () => {
  for (let seed = 0; seed < 200; seed++) {
    const rng = new Rng(`progress-exact-${seed}`)
    const n = 4 + rng.int(40)
    const f = Math.floor((n - 1) / 3)
    // some senders are not members of the newest epoch
    const m = new Set([...members(n)].filter(() => rng.int(10) > 0))
    const newest = new Map<string, number>()
    const p = new ProgressEvidence()
    let expected = -1
    for (let k = 0; k < 400; k++) {
      const sender = `m${rng.int(n)}`
      const round = rng.int(10 + k)
      const moved = p.note(sender, round, m, f)
      newest.set(sender, Math.max(round, newest.get(sender) ?? -1))
      const rounds = [...newest].filter(([s]) => m.has(s)).map(([, r]) => r).sort((a, b) => b - a)
      const fromScratch = Math.max(expected, rounds.length > f ? rounds[f]! : -1)
      assert.equal(moved, fromScratch > expected, `seed ${seed}, step ${k}: moved`)
      expected = fromScratch
      assert.equal(p.round, expected, `seed ${seed}, step ${k}`)
    }
  }
})
