import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { attachProgress, formatRound } from '../../../node/progress.ts'
import type { RoundReport } from '../../../src/node/index.ts'

const report: RoundReport = {
  member: '12D3KooWabcdef',
  name: 'node-2',
  round: 11,
  loss: 0.34567,
  accuracy: 0.9123,
  delivered: 5,
  needed: 5,
  rejected: { 'bad-length': 1, equivocation: 2 },
  roundMs: 312,
  bytesSent: 1,
  bytesReceived: 2,
  stalled: true,
  epsilon: 1.234,
}

describe('progress output', () => {
  it('shows round, loss, accuracy, delivered/needed, rejections, time, ε and STALLED on one line', () => {
    const line = formatRound(report, 100)
    assert.equal(line, 'node-2  round 12/100  loss 0.3457  acc 91.2%  delivered 5/5  rejected 3 (equivocation 2, bad-length 1)  312 ms  ε 1.234  STALLED')
    assert.match(formatRound({ ...report, rejected: { 'bad-length': 0 } }, 100), /delivered 5\/5 {2}rejected 0 {2}312 ms/)
  })

  it('prints stall and recover events: a line in pretty mode, an `event` object in json mode', () => {
    for (const format of ['pretty', 'json'] as const) {
      const lines: string[] = []
      const node = new EventTarget()
      attachProgress(node, { format, rounds: 50, name: 'node-0', write: (l) => lines.push(l) })
      node.dispatchEvent(new CustomEvent('stall', { detail: { round: 4, delivered: 2, needed: 5, waitedMs: 30_000 } }))
      node.dispatchEvent(new CustomEvent('recover', { detail: { round: 4, delivered: 5, needed: 5, stalledMs: 1500 } }))
      node.dispatchEvent(new CustomEvent('round', { detail: { ...report, stalled: false } }))
      assert.equal(lines.length, 3)
      if (format === 'pretty') {
        assert.match(lines[0]!, /round 5\/50 {2}STALLED {2}delivered 2\/5 after 30\.0 s/)
        assert.match(lines[1]!, /recovered/)
      } else {
        assert.deepEqual(JSON.parse(lines[0]!), { event: 'stall', name: 'node-0', stalled: true, round: 4, delivered: 2, needed: 5, waitedMs: 30_000 })
        assert.equal(JSON.parse(lines[1]!).event, 'recover')
        assert.equal(JSON.parse(lines[2]!).event, undefined)
        assert.equal(JSON.parse(lines[2]!).round, 11)
      }
    }
  })

  it('json: models certified after the last round come as `late` lines; before it, RoundReports carry them', () => {
    for (const format of ['pretty', 'json'] as const) {
      const lines: string[] = []
      const node = new EventTarget()
      attachProgress(node, { format, rounds: 12, name: 'node-0', write: (l) => lines.push(l) })
      node.dispatchEvent(new CustomEvent('late', { detail: { round: 10, sender: 'a' } }))
      node.dispatchEvent(new CustomEvent('round', { detail: { ...report, lateSenders: ['a'] } }))
      node.dispatchEvent(new CustomEvent('round', { detail: { ...report, round: 11, final: true } }))
      node.dispatchEvent(new CustomEvent('late', { detail: { round: 11, sender: 'b' } }))
      if (format === 'pretty') assert.equal(lines.length, 2)
      else {
        assert.equal(lines.length, 3)
        assert.deepEqual(JSON.parse(lines[2]!), { event: 'late', name: 'node-0', round: 11, sender: 'b' })
      }
    }
  })
})
