/**
 * Known answers, computed by hand, for every rule on small inputs. The main case is the unit
 * square's corners plus one outlier: X = (0,0), (1,0), (0,1), (1,1), (10,10), k = 5, f = 1.
 * Squared distances: adjacent corners 1, diagonal 2, (10,10)–(1,1) 162, –(1,0) 181, –(0,0) 200.
 */
import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { meamedColumn, medianColumn, trimmedMeanColumn } from '../../../src/aggregation/coordinatewise.ts'
import { createAggregator, kappaBound, kappaLowerBound, pairwiseSquaredDistances } from '../../../src/aggregation/index.ts'
import { binomial, select } from '../../../src/aggregation/kernels.ts'

const X = () => [
  [0, 0],
  [1, 0],
  [0, 1],
  [1, 1],
  [10, 10],
].map((v) => Float32Array.from(v))

function run(rule: string, params: Record<string, unknown> = {}, context = {}, inputs = X(), f = 1): number[] {
  return Array.from(createAggregator({ rule, f, ...params }).aggregate(inputs, context))
}

function close(actual: number[], expected: number[], tol = 1e-6): void {
  assert.equal(actual.length, expected.length)
  for (let i = 0; i < actual.length; i++) assert.ok(Math.abs(actual[i] - expected[i]) <= tol, `[${actual}] vs [${expected}]`)
}

describe('known answers', () => {
  it('mean', () => close(run('mean'), [2.4, 2.4]))
  it('cwmed: sorted column 0,0,1,1,10 → 1; even k averages the middle pair', () => {
    close(run('cwmed'), [1, 1])
    close(run('cwmed', {}, {}, X().slice(0, 4), 1), [0.5, 0.5])
  })
  it('cwtm: drops 0 and 10, averages 0,1,1', () => close(run('cwtm'), [2 / 3, 2 / 3]))
  it('meamed: median 1, drops 10 (farthest), averages 0,0,1,1', () => close(run('meamed'), [0.5, 0.5]))
  it('meamed can leave the honest range: honest 0,0,10 with f = 2 at −9 gives −3', () => {
    // median 0; drop 10 (distance 10) then one −9 (distance 9): mean(−9, 0, 0) = −3 < 0 = honest min
    close(run('meamed', {}, {}, [[0], [0], [10], [-9], [-9]].map((v) => Float32Array.from(v)), 2), [-3])
  })
  it('krum: every corner scores 2 (two neighbours at distance 1), ties go to the first', () => close(run('krum'), [0, 0]))
  it('multikrum: the four corners', () => close(run('multikrum'), [0.5, 0.5]))
  it('multikrum with m = 2: the two best-scoring (ties by index) (0,0), (1,0)', () => close(run('multikrum', { m: 2 }), [0.5, 0]))
  it('mda: excluding (10,10) leaves diameter 2', () => close(run('mda'), [0.5, 0.5]))
  it("mda ties: the first kept subset in lexicographic order (ByzFL's README example)", () => {
    const inputs = [Float32Array.of(1, 2, 3), Float32Array.of(4, 5, 6), Float32Array.of(7, 8, 9)]
    // kept {0,1} and {1,2} both have diameter √27; {0,1} comes first
    close(run('mda', {}, {}, inputs), [2.5, 3.5, 4.5])
  })
  it('cge: drops the largest norm (10,10)', () => close(run('cge'), [0.5, 0.5]))
  it('ce: drops the input farthest from the reference', () => {
    close(run('ce', {}, { reference: Float32Array.from([0, 0]) }), [0.5, 0.5])
    // from (10,10) the farthest is (0,0): mean of (1,0),(0,1),(1,1),(10,10) = (3,3)
    close(run('ce', {}, { reference: Float32Array.from([10, 10]) }), [3, 3])
    close(run('ce', {}, { own: 4 }), [3, 3])
  })
  it('nna: mean of the k − f nearest to own, own included', () => {
    close(run('nna', {}, { own: 0 }), [0.5, 0.5])
    close(run('nna', {}, { own: 4 }), [3, 3])
  })
  it('nna keeps own even when another input is at distance 0', () => {
    const inputs = [[5], [5], [5], [0], [9]].map((v) => Float32Array.from(v))
    // own = 2, f = 2: the k − f = 3 nearest are own and the two other 5s → 5
    close(run('nna', {}, { own: 2 }, inputs, 2), [5])
  })
  it('gm, one smoothed Weiszfeld step from 0 (ν = 0.1): weights 10, 1, 1, 1/√2, 1/(10√2)', () => {
    close(run('gm', { T: 1 }), [0.1889378659588684, 0.1889378659588684], 1e-6)
    // started at the mean, many steps converge to the geometric median (a, a), a = (3 + √3)/6, where
    // the unit vectors to the five points cancel: (1 − 2a)/√((1 − a)² + a²) = −1/√2
    close(run('gm', { T: 300, start: 'mean', nu: 1e-9 }), [(3 + Math.sqrt(3)) / 6, (3 + Math.sqrt(3)) / 6], 1e-4)
  })
  it('cc, τ = 1, L = 1 from (0,0): clipped differences sum to (1 + √2, 1 + √2)/… → 0.4828', () => {
    close(run('cc', { tau: 1, L: 1 }, { reference: Float32Array.from([0, 0]) }), [0.48284271247461896, 0.48284271247461896])
    // without a reference, v0 = own input
    close(run('cc', { tau: 1, L: 1 }, { own: 0 }), [0.48284271247461896, 0.48284271247461896])
  })
  it('cc without reference or own starts at the coordinate-wise median (1,1)', () => {
    // from (1,1): differences (−1,−1)→clip(−.707,−.707), (0,−1), (−1,0), (0,0), (9,9)→(.707,.707); sum (−1,−1)/5
    close(run('cc', { tau: 1, L: 1 }), [0.8, 0.8])
  })
  it('nnm+mean: corners become (0.5,0.5), the outlier (3,3); their mean is (1,1)', () => close(run('nnm+mean'), [1, 1]))
  it('nnm+cwtm: columns 0.5,0.5,0.5,0.5,3 → drop one 0.5 and 3', () => close(run('nnm+cwtm'), [0.5, 0.5]))
  it('nnm+krum picks a mixed corner (0.5,0.5)', () => close(run('nnm+krum'), [0.5, 0.5]))

  it('pairwise squared distances', () => {
    const D = pairwiseSquaredDistances(X())
    assert.deepEqual(Array.from(D.subarray(0, 5)), [0, 1, 1, 2, 200])
    assert.equal(D[4 * 5 + 3], 162)
    assert.equal(D[3 * 5 + 4], 162)
  })

  it('column reducers and selection', () => {
    const col = Float64Array.from([9, 1, 8, 2, 7, 3, 6, 4, 5, 0, 11, 10, 12, 13])
    select(col, 0, col.length - 1, 6)
    assert.equal(col[6], 6)
    for (let i = 0; i < 6; i++) assert.ok(col[i] <= 6)
    for (let i = 7; i < col.length; i++) assert.ok(col[i] >= 6)
    assert.equal(medianColumn(Float64Array.from([3, 1, 2]), 3, 0), 2)
    assert.equal(medianColumn(Float64Array.from([4, 1, 3, 2]), 4, 0), 2.5)
    assert.equal(trimmedMeanColumn(Float64Array.from([100, 1, 2, 3, -100]), 5, 1), 2)
    // median 3; drop 100 (97 away) then 1 vs 5: |3−1| = 2 = |5−3|, tie drops the larger (5) → mean(1,2,3) = 2
    assert.equal(meamedColumn(Float64Array.from([5, 1, 3, 100, 2]), 5, 2), 2)
    assert.equal(binomial(26, 5), 65780)
    assert.equal(binomial(50, 10), 10272278170)
  })

  it('documents κ bounds (Allouah et al. 2023) and the lower bound f/(k − 2f)', () => {
    assert.equal(kappaLowerBound(26, 5), 5 / 16)
    assert.equal(kappaBound('cwtm', 26, 5), 6 * (5 / 16) * (1 + 5 / 16))
    assert.equal(kappaBound('nnm+cwtm', 26, 5), (40 / 21) * (6 * (5 / 16) * (1 + 5 / 16) + 1))
    assert.equal(kappaBound('mean', 26, 5), undefined)
  })
})
