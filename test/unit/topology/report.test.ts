import assert from 'node:assert/strict'
import { mkdtemp, readFile, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { describe, it } from 'node:test'
import { buildReport, MAX_COLOURED_MEMBERS, type MemberInfo, type MemberRound, maxPairwiseDistance, median, renderSvg, reportPlots, verdict, writeReport } from '../../../src/topology/report.ts'
import { parseScenario } from '../../../src/topology/schema.ts'

const scenario = parseScenario({
  name: 'r',
  n: 4,
  f: 1,
  task: { rounds: 3, dataset: { kind: 'gaussian-mixture' } },
  byzantine: [{ members: 3, behaviour: 'sign-flip' }],
  expect: { minHonestAccuracy: 0.8, maxHonestSpread: 1 },
})
const members: MemberInfo[] = [0, 1, 2, 3].map((i) => ({ index: i, name: `m${i}`, id: `peer${i}`, byzantine: i === 3, behaviour: i === 3 ? 'sign-flip' : 'honest' }))

function rounds(accs: number[]): MemberRound[] {
  const out: MemberRound[] = []
  for (const m of members) {
    for (let r = 0; r < 3; r++) {
      const last = r === 2
      out.push({
        member: m.id,
        round: r,
        loss: 1 / (r + 1),
        delivered: 3,
        needed: 3,
        rejected: {},
        roundMs: 10 + r,
        bytesSent: 100 * (r + 1),
        bytesReceived: 100 * (r + 1),
        stalled: false,
        ...(last ? { accuracy: accs[m.index]!, sketch: [m.index * 0.1, 0], final: true } : {}),
      })
    }
  }
  return out
}

describe('report', () => {
  it('median and spread helpers', () => {
    assert.equal(median([3, 1, 2]), 2)
    assert.equal(median([4, 1, 2, 3]), 2.5)
    assert.equal(maxPairwiseDistance([[0, 0], [3, 4], [1, 1]]), 5)
  })

  it('judges honest members only and passes when every expectation holds', () => {
    const r = buildReport({ scenario, mode: 'in-process', members, rounds: rounds([0.9, 0.85, 0.95, 0.1]), startedAt: new Date(), durationMs: 5 })
    assert.equal(r.nodes.length, 4)
    assert.equal(r.nodes[3]!.byzantine, true)
    assert.equal(r.nodes[0]!.finalAccuracy, 0.9)
    assert.equal(r.nodes[0]!.roundsCompleted, 3)
    assert.equal(r.honest.minFinalAccuracy, 0.85)
    assert.ok(Math.abs(r.honest.finalSpread! - 0.2) < 1e-12)
    assert.deepEqual(r.expectations.map((e) => [e.name, e.passed]), [['minHonestAccuracy', true], ['maxHonestSpread', true], ['minRoundsCompleted', true]])
    assert.equal(r.passed, true)
    assert.match(verdict(r), /^PASS/)
  })

  it('fails when an honest member is below the bar or did not finish', () => {
    const rs = rounds([0.9, 0.5, 0.95, 0.99]).filter((x) => !(x.member === 'peer2' && x.round === 2))
    const r = buildReport({ scenario, mode: 'process', members, rounds: rs, startedAt: new Date(), durationMs: 5 })
    assert.equal(r.passed, false)
    const byName = Object.fromEntries(r.expectations.map((e) => [e.name, e]))
    assert.equal(byName.minHonestAccuracy!.passed, false)
    assert.equal(byName.minHonestAccuracy!.value, 0)
    assert.equal(byName.minRoundsCompleted!.value, 2)
    assert.match(verdict(r), /^FAIL \(minHonestAccuracy, minRoundsCompleted\)/)
  })

  it('writes report.json and a self-contained report.html with SVG plots', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'monna-report-'))
    try {
      const r = buildReport({ scenario, mode: 'in-process', members, rounds: rounds([0.9, 0.85, 0.95, 0.1]), startedAt: new Date(), durationMs: 5 })
      const out = await writeReport(r, dir)
      const json = JSON.parse(await readFile(out.json, 'utf8'))
      assert.equal(json.nodes[1].id, 'peer1')
      assert.equal(typeof json.nodes[1].finalAccuracy, 'number')
      assert.equal(json.expectations.length, 3)
      const html = await readFile(out.html, 'utf8')
      assert.equal((html.match(/<svg/g) ?? []).length, 4)
      assert.doesNotMatch(html, /<script/)
      assert.match(html, /m3 \(Byzantine: sign-flip\)/)
    } finally {
      await rm(dir, { recursive: true, force: true })
    }
  })

  it('large swarms: honest members as a min–median–max band over faint lines, Byzantine members apart; legends in the members\' order', async () => {
    const n = 14
    const big = parseScenario({ name: 'big', n, f: 2, task: { rounds: 3, dataset: { kind: 'gaussian-mixture' } }, byzantine: [{ members: [12, 13], behaviour: 'alie' }] })
    const ms: MemberInfo[] = Array.from({ length: n }, (_, i) => ({ index: i, name: `m${i}`, id: `peer${i}`, byzantine: i >= 12, behaviour: i >= 12 ? 'alie' : 'honest' }))
    const rs: MemberRound[] = ms.flatMap((m) =>
      [0, 1, 2].map((r) => ({ member: m.id, round: r, loss: 1, delivered: 12, needed: 12, rejected: {}, roundMs: 10 + m.index, bytesSent: 100 * (r + 1), bytesReceived: 1, stalled: false, accuracy: 0.5 + 0.01 * m.index + 0.1 * r })),
    )
    const report = buildReport({ scenario: big, mode: 'in-process', members: ms, rounds: rs, startedAt: new Date(), durationMs: 5 })
    const acc = reportPlots(report).accuracy as unknown as { layer: Array<{ mark: { type: string }; data: { values: Array<Record<string, number>> }; encoding: { color?: { scale: { domain: string[] } } } }> }
    assert.ok(n > MAX_COLOURED_MEMBERS)
    assert.deepEqual(acc.layer.map((l) => l.mark.type), ['line', 'area', 'line', 'line'])
    const band = acc.layer[1]!.data.values
    assert.deepEqual(band[0], { round: 1, min: 0.5, median: 0.555, max: 0.61 }, 'round 1: honest m0 … m11 only')
    assert.deepEqual(acc.layer[3]!.encoding.color!.scale.domain, ['m12 (Byzantine: alie)', 'm13 (Byzantine: alie)'])
    assert.match(await renderSvg(reportPlots(report).accuracy!), /<svg/)
    // a small swarm keeps a colour per member, its legend in numeric order (m2 before m10)
    const small = parseScenario({ name: 'small', n: 4, f: 1, task: { rounds: 3, dataset: { kind: 'gaussian-mixture' } } })
    const few = [10, 2, 0, 1].map((i, k) => ({ index: k, name: `m${i}`, id: `peer${i}`, byzantine: false, behaviour: 'honest' }))
    const r2 = buildReport({ scenario: small, mode: 'in-process', members: few, rounds: rs.filter((x) => ['peer0', 'peer1', 'peer2', 'peer10'].includes(x.member)), startedAt: new Date(), durationMs: 5 })
    const spec = reportPlots(r2).accuracy as unknown as { encoding: { color: { scale: { domain: string[] } } } }
    assert.deepEqual(spec.encoding.color.scale.domain, ['m0', 'm1', 'm2', 'm10'])
  })
})
