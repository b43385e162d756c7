import assert from 'node:assert/strict'
import { test } from 'node:test'
import type { RoundReport } from '../../../src/node/index.ts'
import type { MemberInfo } from '../../../src/topology/report.ts'
import { type ProgressEvent, ProgressTracker } from '../../../src/topology/runner.ts'

const members: MemberInfo[] = ['a', 'b', 'c', 'z'].map((id, index) => ({ index, name: `m${index}`, id, byzantine: id === 'z', behaviour: id === 'z' ? 'alie' : 'honest' }))
const report = (member: string, round: number): RoundReport => ({ member, round, loss: 1, delivered: 3, needed: 3, rejected: {}, roundMs: 10, bytesSent: 0, bytesReceived: 0, stalled: false })

test('a progress line per round once every running honest member finished it or moved past it (caught up), without waiting for its exit', () => {
  const lines: ProgressEvent[] = []
  const t = new ProgressTracker(members, 10, (e) => lines.push(e))
  const rounds = (): number[] => lines.flatMap((e) => (e.kind === 'round' ? [e.round] : []))
  for (const m of ['a', 'b', 'c']) t.add(report(m, 0))
  assert.deepEqual(rounds(), [0])
  // c falls behind and catches up: it next reports round 5, skipping 1–4
  t.add(report('a', 1))
  t.add(report('b', 1))
  assert.deepEqual(rounds(), [0], 'c has not reported round 1 nor any later one: waited for')
  t.add(report('c', 5))
  assert.deepEqual(rounds(), [0, 1], 'c moved past round 1')
  for (let r = 2; r <= 5; r++) for (const m of ['a', 'b']) t.add(report(m, r))
  assert.deepEqual(rounds(), [0, 1, 2, 3, 4, 5])
  const line4 = lines.find((e) => e.kind === 'round' && e.round === 4)
  assert.equal(line4?.kind === 'round' ? line4.honestReported : -1, 2)
  // the Byzantine member's reports never hold a line up
  t.add(report('a', 6))
  t.add(report('b', 6))
  t.add(report('c', 6))
  assert.deepEqual(rounds().at(-1), 6)
  // a round every honest member skipped gets no line, and the next one is not held up by it
  for (const m of ['a', 'b', 'c']) t.add(report(m, 8))
  assert.deepEqual(rounds().slice(-2), [6, 8])
})

test('a member that exited is not waited for', () => {
  const lines: ProgressEvent[] = []
  const t = new ProgressTracker(members, 10, (e) => lines.push(e))
  t.add(report('a', 0))
  t.add(report('b', 0))
  assert.equal(lines.length, 0)
  t.memberGone('c')
  assert.equal(lines.length, 1)
})
