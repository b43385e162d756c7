import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { InvalidConfigError } from '../../../src/errors.ts'
import type { PartitionSpec } from '../../../src/learning/index.ts'
import { labelHistogram, partition } from '../../../src/learning/index.ts'
import { Rng } from '../../../src/rng.ts'

function randomLabels(n: number, k: number, seed: string): Int32Array {
  const rng = new Rng(seed)
  return Int32Array.from({ length: n }, () => rng.int(k))
}

/** Every example index in exactly one part. */
function assertExactCover(parts: Int32Array[], n: number): void {
  const seen = new Uint8Array(n)
  let total = 0
  for (const p of parts) {
    for (const i of p) {
      assert.ok(i >= 0 && i < n, `index ${i} out of range`)
      assert.equal(seen[i], 0, `example ${i} is in two parts`)
      seen[i] = 1
      total++
    }
  }
  assert.equal(total, n, 'some examples were lost')
}

function meanMaxClassFraction(labels: Int32Array, parts: Int32Array[], k: number): number {
  let sum = 0
  let counted = 0
  for (const p of parts) {
    if (p.length === 0) continue
    const h = labelHistogram(labels, p, k)
    sum += Math.max(...h) / p.length
    counted++
  }
  return sum / counted
}

const schemes: PartitionSpec[] = [
  { scheme: 'iid' },
  { scheme: 'dirichlet', alpha: 0.1 },
  { scheme: 'dirichlet', alpha: 1 },
  { scheme: 'dirichlet', alpha: 100 },
  { scheme: 'dirichlet', alpha: 0.5, mode: 'per-class' },
  { scheme: 'shards', labelsPerMember: 2 },
]

describe('partition', () => {
  const labels = randomLabels(5003, 10, 'labels')

  for (const spec of schemes) {
    it(`${JSON.stringify(spec)}: parts neither overlap nor lose examples, and are deterministic in the seed`, () => {
      for (const members of [1, 7, 21]) {
        const parts = partition(labels, 10, members, spec, 'seed-1')
        assert.equal(parts.length, members)
        assertExactCover(parts, labels.length)
        const again = partition(labels, 10, members, spec, 'seed-1')
        assert.deepEqual(again, parts)
      }
      if (spec.scheme !== 'iid' || labels.length > 1) {
        const other = partition(labels, 10, 7, spec, 'seed-2')
        assert.notDeepEqual(other, partition(labels, 10, 7, spec, 'seed-1'))
      }
    })
  }

  it('iid parts differ in size by at most one', () => {
    const sizes = partition(labels, 10, 21, { scheme: 'iid' }, 's').map((p) => p.length)
    assert.ok(Math.max(...sizes) - Math.min(...sizes) <= 1, `sizes ${sizes}`)
  })

  it('Dirichlet skew responds to α: small α gives much more skewed label histograms than large α', () => {
    const big = randomLabels(20000, 10, 'big')
    for (const mode of ['per-member', 'per-class'] as const) {
      const skew = (alpha: number) => meanMaxClassFraction(big, partition(big, 10, 21, { scheme: 'dirichlet', alpha, mode }, 'skew'), 10)
      const s01 = skew(0.1)
      const s1 = skew(1)
      const s100 = skew(100)
      // Uniform labels: an unskewed member's largest class is ≈ 0.1 of its data; with α = 0.1 most
      // members are dominated by one or two classes.
      assert.ok(s01 > 0.5, `${mode}: α=0.1 mean max-class fraction ${s01}`)
      assert.ok(s100 < 0.2, `${mode}: α=100 mean max-class fraction ${s100}`)
      assert.ok(s01 > s1 && s1 > s100, `${mode}: skew should decrease with α: ${s01}, ${s1}, ${s100}`)
    }
  })

  it('per-member Dirichlet (MoNNA reference) keeps shard sizes near N/members; per-class does not', () => {
    const big = randomLabels(21000, 10, 'sizes')
    const spread = (mode: 'per-member' | 'per-class') => {
      const sizes = partition(big, 10, 21, { scheme: 'dirichlet', alpha: 0.3, mode }, 'sz').map((p) => p.length)
      return Math.max(...sizes) / Math.min(...sizes)
    }
    assert.ok(spread('per-member') < spread('per-class'), `${spread('per-member')} vs ${spread('per-class')}`)
  })

  it('Dirichlet gives every member at least minPerMember examples when it can', () => {
    const small = randomLabels(300, 10, 'small')
    const parts = partition(small, 10, 21, { scheme: 'dirichlet', alpha: 0.5, minPerMember: 3 }, 'x')
    assertExactCover(parts, small.length)
    assert.ok(parts.every((p) => p.length >= 3), `sizes ${parts.map((p) => p.length)}`)
  })

  it('tiny α never loses examples (gamma draws underflowing)', () => {
    for (const mode of ['per-member', 'per-class'] as const) {
      const parts = partition(labels, 10, 5, { scheme: 'dirichlet', alpha: 1e-6, mode, minPerMember: 0 }, 'tiny')
      assertExactCover(parts, labels.length)
    }
  })

  it('shards give each member at most labelsPerMember labels plus boundary spill', () => {
    const sorted = Int32Array.from({ length: 1000 }, (_, i) => i % 10)
    const parts = partition(sorted, 10, 10, { scheme: 'shards', labelsPerMember: 2 }, 'sh')
    assertExactCover(parts, sorted.length)
    for (const p of parts) {
      const present = labelHistogram(sorted, p, 10).filter((c) => c > 0).length
      // 100 examples per label, shards of 50: shard boundaries align with labels here.
      assert.ok(present <= 2, `member has ${present} labels`)
    }
  })

  it('labelHistogram counts the labels of the given indices', () => {
    const y = Int32Array.from([0, 1, 1, 2, 2, 2])
    assert.deepEqual(labelHistogram(y, [1, 3, 4, 5], 4), [0, 1, 3, 0])
  })

  it('rejects bad specs and out-of-range labels with InvalidConfigError', () => {
    assert.throws(() => partition(labels, 10, 3, { scheme: 'dirichlet', alpha: 0 }, 1), InvalidConfigError)
    assert.throws(() => partition(labels, 10, 3, { scheme: 'dirichlet', alpha: 1, mode: 'x' as 'per-class' }, 1), InvalidConfigError)
    assert.throws(() => partition(labels, 10, 0, { scheme: 'iid' }, 1), InvalidConfigError)
    assert.throws(() => partition(labels, 10, 3, { scheme: 'shards', labelsPerMember: 0 }, 1), InvalidConfigError)
    assert.throws(() => partition(labels, 10, 3, { scheme: 'nope' } as unknown as PartitionSpec, 1), InvalidConfigError)
    assert.throws(() => partition(Int32Array.from([0, 10]), 10, 1, { scheme: 'iid' }, 1), InvalidConfigError)
  })
})
