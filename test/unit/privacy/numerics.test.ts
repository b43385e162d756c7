/**
 * The special functions and series under the accountant, checked against independent
 * computations: erfc against tabulated values, and the sampled Gaussian's A_α (MTZ19 §3.3
 * series) against direct numerical integration of its definition, in the spirit of TF
 * Privacy's `test_compute_log_a_equals_mp` (which integrates with mpmath).
 */
import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { logErfc, sampledGaussianRdp } from '../../../src/privacy/index.ts'

describe('logErfc', () => {
  it('matches tabulated erfc values to 1e-12 relative, including far tails', () => {
    // erfc values: Abramowitz & Stegun Table 7.1 extended; reproduced with Python's math.erfc.
    const table: [number, number][] = [
      [0, 1],
      [0.5, 0.4795001221869535],
      [1, 0.15729920705028513],
      [2, 0.004677734981047266],
      [2.4, 6.885138966450786e-4],
      [2.5, 4.06952017444959e-4],
      [3, 2.209049699858544e-5],
      [5, 1.5374597944280349e-12],
      [10, 2.088487583762545e-45],
      [-0.5, 1.5204998778130465],
      [-1, 1.8427007929497148],
      [-3, 1.9999779095030015],
    ]
    for (const [x, v] of table) {
      const got = Math.exp(logErfc(x))
      assert.ok(Math.abs(got / v - 1) < 1e-12, `erfc(${x}) = ${got}, table ${v}`)
    }
  })

  it('stays finite where erfc underflows, following the asymptote −x² − log(x√π) − 1/(2x²)', () => {
    for (const x of [30, 100, 1000]) {
      const asymptote = -x * x - Math.log(x * Math.sqrt(Math.PI)) - 1 / (2 * x * x)
      assert.ok(Math.abs(logErfc(x) - asymptote) < 1e-6 * Math.abs(asymptote) + 1e-6, `x = ${x}`)
    }
    assert.equal(logErfc(Number.POSITIVE_INFINITY), Number.NEGATIVE_INFINITY)
  })
})

/** log A_α by trapezoid integration of A_α = E_{z∼N(0,σ²)}[((1 − q) + q·e^{(2z − 1)/(2σ²)})^α]. */
function logAByIntegration(q: number, sigma: number, alpha: number): number {
  const lo = -40 * sigma
  const hi = alpha + 40 * sigma
  const h = sigma / 200
  const n = Math.ceil((hi - lo) / h)
  const logNorm = -0.5 * Math.log(2 * Math.PI * sigma * sigma)
  let max = Number.NEGATIVE_INFINITY
  const values = new Float64Array(n + 1)
  for (let i = 0; i <= n; i++) {
    const z = lo + i * h
    const a = Math.log1p(-q)
    const b = Math.log(q) + (2 * z - 1) / (2 * sigma * sigma)
    const mix = Math.max(a, b) + Math.log1p(Math.exp(-Math.abs(a - b)))
    const v = logNorm - (z * z) / (2 * sigma * sigma) + alpha * mix + (i === 0 || i === n ? Math.log(0.5) : 0)
    values[i] = v
    if (v > max) max = v
  }
  let sum = 0
  for (const v of values) sum += Math.exp(v - max)
  return max + Math.log(sum) + Math.log(h)
}

describe('sampled Gaussian A_α', () => {
  // (q, σ, α) from TF Privacy's rdp_accountant_test `params` where double-precision
  // integration is meaningful (log A not within 1e-12 of 0).
  const cases: [number, number, number][] = [
    [1e-3, 1, 2],
    [0.01, 10, 20],
    [0.1, 100, 20.5],
    [1e-6, 1, 27],
    [0.99, 0.1, 256],
    [0.01, 2.5, 1.5],
    [0.05, 1, 3.7],
    [0.3, 0.8, 12.25],
  ]
  it('the integer and fractional series agree with numerical integration (rtol 1e-6, atol 1e-14 for the summation noise)', () => {
    for (const [q, sigma, alpha] of cases) {
      const series = (alpha - 1) * sampledGaussianRdp({ samplingRate: q, noiseMultiplier: sigma, order: alpha })
      const integral = logAByIntegration(q, sigma, alpha)
      assert.ok(Math.abs(series - integral) <= 1e-6 * Math.abs(integral) + 1e-14, `q=${q} σ=${sigma} α=${alpha}: ${series} vs ${integral}`)
    }
  })

  it('is continuous across integer orders (fractional series vs integer sum)', () => {
    for (const [q, sigma] of [
      [0.01, 1.1],
      [0.2, 2],
    ]) {
      for (const a of [3, 8, 20]) {
        const at = sampledGaussianRdp({ samplingRate: q, noiseMultiplier: sigma, order: a })
        const near = sampledGaussianRdp({ samplingRate: q, noiseMultiplier: sigma, order: a + 1e-7 })
        assert.ok(Math.abs(at - near) <= 1e-5 * at, `q=${q} σ=${sigma} α=${a}: ${at} vs ${near}`)
      }
    }
  })
})
