/**
 * Known answers for every attack of ALGORITHMS.md §5 on a hand-computed honest set:
 * honest = (1,2), (3,4), (5,0) → μ = (3, 2), σ (unbiased) = (2, 2).
 */
import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { createAggregator, InvalidParameterError, MissingContextError, UnknownRuleError } from '../../../src/aggregation/index.ts'
import { alieZ, attackedDeviation, attackKinds, createAttack, honestStats, lineMaximize, normalQuantile } from '../../../src/attacks/index.ts'
import { Rng } from '../../../src/rng.ts'

const honest = () => [Float32Array.from([1, 2]), Float32Array.from([3, 4]), Float32Array.from([5, 0])]
const ctx = (extra: Record<string, unknown> = {}) => ({ honest: honest(), n: 5, f: 2, rng: new Rng(1), ...extra })

function close(actual: ArrayLike<number>, expected: number[], tol = 1e-6): void {
  assert.equal(actual.length, expected.length)
  for (let i = 0; i < expected.length; i++) assert.ok(Math.abs(actual[i] - expected[i]) <= tol, `[${Array.from(actual)}] vs [${expected}]`)
}

describe('attacks', () => {
  it('lists the kinds of the contract', () => {
    assert.deepEqual([...attackKinds].sort(), ['alie', 'foe', 'gaussian', 'ipm', 'mimic', 'non-finite', 'optimal-alie', 'optimal-foe', 'sign-flip'])
  })

  it('honest statistics', () => {
    const { mean, std } = honestStats(honest())
    close(mean, [3, 2])
    close(std, [2, 2])
  })

  it('sign-flip sends −μ', () => close(createAttack({ kind: 'sign-flip' }).craft(ctx()), [-3, -2]))

  it('alie with a fixed z sends μ − zσ', () => close(createAttack({ kind: 'alie', z: 1.5 }).craft(ctx()), [0, -1]))

  it('alie with z from (n, f): n = 5, f = 2 → s = 1, z = Φ⁻¹(2/3) = 0.430727', () => {
    assert.ok(Math.abs(alieZ(5, 2) - 0.43072729929545733) < 1e-8)
    const z = 0.43072729929545733
    close(createAttack({ kind: 'alie' }).craft(ctx()), [3 - 2 * z, 2 - 2 * z], 1e-6)
    // the MoNNA setting n = 26, f = 5: s = 9, z = Φ⁻¹(12/21)
    assert.ok(Math.abs(alieZ(26, 5) - normalQuantile(12 / 21)) < 1e-15)
  })

  it('Φ⁻¹ matches reference quantiles', () => {
    const cases: [number, number][] = [
      [0.5, 0],
      [0.975, 1.959963984540054],
      [0.025, -1.959963984540054],
      [0.8413447460685429, 1],
      [0.001, -3.090232306167813],
      [1e-10, -6.361340902404056],
    ]
    for (const [p, q] of cases) assert.ok(Math.abs(normalQuantile(p) - q) < 1e-8 * Math.max(1, Math.abs(q)), `Φ⁻¹(${p}) = ${normalQuantile(p)}`)
    assert.equal(normalQuantile(0), Number.NEGATIVE_INFINITY)
    assert.ok(Number.isNaN(normalQuantile(1.5)))
  })

  it('foe sends −εμ (ε = 0.1), ipm the same with ε = 1 by default', () => {
    close(createAttack({ kind: 'foe' }).craft(ctx()), [-0.3, -0.2])
    close(createAttack({ kind: 'ipm' }).craft(ctx()), [-3, -2])
    close(createAttack({ kind: 'ipm', epsilon: 4 }).craft(ctx()), [-12, -8])
  })

  it('mimic copies the target honest vector (a new array)', () => {
    const c = ctx()
    const v = createAttack({ kind: 'mimic', target: 1 }).craft(c)
    close(v, [3, 4])
    assert.notEqual(v, c.honest[1])
    assert.throws(() => createAttack({ kind: 'mimic', target: 3 }).craft(ctx()), InvalidParameterError)
  })

  it('gaussian draws N(mean, std²) from ctx.rng, reproducibly', () => {
    close(createAttack({ kind: 'gaussian', std: 0, mean: 5 }).craft(ctx()), [5, 5])
    const big = { honest: [new Float32Array(20_000)], n: 4, f: 1, rng: new Rng(9) }
    const v = createAttack({ kind: 'gaussian', std: 3 }).craft(big)
    let s = 0
    let q = 0
    for (const x of v) {
      s += x
      q += x * x
    }
    assert.ok(Math.abs(s / v.length) < 0.1)
    assert.ok(Math.abs(Math.sqrt(q / v.length) - 3) < 0.1)
    const again = createAttack({ kind: 'gaussian', std: 3 }).craft({ ...big, rng: new Rng(9) })
    assert.deepEqual(again, v)
  })

  it('non-finite fills every coordinate, or poisons one', () => {
    const nan = createAttack({ kind: 'non-finite' }).craft(ctx())
    assert.ok(Number.isNaN(nan[0]) && Number.isNaN(nan[1]))
    const mixed = createAttack({ kind: 'non-finite', value: 'mixed' }).craft({ ...ctx(), honest: [new Float32Array(3)] })
    assert.ok(Number.isNaN(mixed[0]) && mixed[1] === Number.POSITIVE_INFINITY && mixed[2] === Number.NEGATIVE_INFINITY)
    const one = createAttack({ kind: 'non-finite', value: 'inf', coordinates: 1 }).craft({ ...ctx(), honest: [new Float32Array(100)] })
    assert.equal(one.filter((x) => !Number.isFinite(x)).length, 1)
  })

  it('line search finds the maximiser of a concave function within its budget', () => {
    let calls = 0
    const r = lineMaximize((x) => {
      calls++
      return -((x - 3) ** 2)
    }, 20)
    assert.equal(calls, 20)
    assert.ok(Math.abs(r.x - 3) < 0.05, `x = ${r.x}`)
    const g = lineMaximize((x) => -((x - 0.2) ** 2), 20)
    assert.ok(Math.abs(g.x - 0.2) < 0.05, `x = ${g.x}`)
  })

  it('optimal-foe against mean: the deviation grows with ε; evals = 4 → ε = 1 + 0.618·3 (golden section in [1, 4])', () => {
    const mean = createAggregator({ rule: 'mean', f: 2 })
    const v = createAttack({ kind: 'optimal-foe', evals: 4 }).craft(ctx({ aggregator: mean }))
    const eps = 1 + ((Math.sqrt(5) - 1) / 2) * 3
    close(v, [-3 * eps, -2 * eps], 1e-5)
  })

  it('optimal-alie does at least as well as every z it tried, and better than fixed z = 1.5 against cwmed', () => {
    const rng = new Rng('opt')
    const h = Array.from({ length: 9 }, () => Float32Array.from({ length: 30 }, () => rng.normal()))
    const c = { honest: h, n: 12, f: 3, rng, aggregator: createAggregator({ rule: 'cwmed', f: 3 }) }
    const { mean } = honestStats(h)
    const best = attackedDeviation(c, c.aggregator, createAttack({ kind: 'optimal-alie', evals: 12 }).craft(c), mean)
    const fixed = attackedDeviation(c, c.aggregator, createAttack({ kind: 'alie', z: 1.5 }).craft(c), mean)
    assert.ok(best >= fixed, `${best} < ${fixed}`)
  })

  it('an optimal attack never picks a candidate that overflowed (honest members refuse it as non-finite), and the search does not throw on one', () => {
    // models near float32's range: the doubling search's larger factors overflow to ±Infinity
    const big = [Float32Array.of(1e37, -1e37), Float32Array.of(-1e37, 1e37), Float32Array.of(3e37, 0)]
    const c = { honest: big, n: 5, f: 2, rng: new Rng(1), aggregator: createAggregator({ rule: 'mean', f: 2 }) }
    const { mean } = honestStats(big)
    assert.equal(attackedDeviation(c, c.aggregator, Float32Array.of(Number.NEGATIVE_INFINITY, 0), mean), Number.NEGATIVE_INFINITY)
    for (const kind of ['optimal-alie', 'optimal-foe']) {
      const v = createAttack({ kind }).craft(c)
      for (const x of v) assert.ok(Number.isFinite(x), `${kind}: ${Array.from(v)}`)
    }
  })

  it('optimal attacks aggregate around ctx.own for nna (prepended when not among honest)', () => {
    const nna = createAggregator({ rule: 'nna', f: 2 })
    const own = Float32Array.from([3, 2])
    const v = createAttack({ kind: 'optimal-foe', evals: 6 }).craft(ctx({ aggregator: nna, own }))
    assert.equal(v.length, 2)
    assert.ok(v.every(Number.isFinite))
  })

  it('typed errors: unknown kind, unknown or bad parameter, missing aggregator', () => {
    assert.throws(() => createAttack({ kind: 'label-flip' }), UnknownRuleError)
    assert.throws(() => createAttack({ kind: 'alie', epsilon: 1 }), (e: unknown) => e instanceof InvalidParameterError && e.parameter === 'epsilon')
    assert.throws(() => createAttack({ kind: 'alie', z: 'big' }), InvalidParameterError)
    assert.throws(() => createAttack({ kind: 'gaussian', std: -1 }), InvalidParameterError)
    assert.throws(() => createAttack({ kind: 'optimal-alie', evals: 0 }), InvalidParameterError)
    assert.throws(() => createAttack({ kind: 'non-finite', value: 'zero' }), InvalidParameterError)
    assert.throws(() => createAttack({ kind: 'optimal-foe' }).craft(ctx()), MissingContextError)
  })
})
