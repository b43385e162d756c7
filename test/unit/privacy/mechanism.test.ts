import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { InvalidConfigError, MonnaError } from '../../../src/errors.ts'
import {
  analyticGaussianNoiseStd,
  clipToNorm,
  computeEpsilon,
  EpsilonAboveClassicBoundError,
  gaussianDelta,
  gaussianNoiseStd,
  InvalidPrivacyParameterError,
  meanSensitivity,
  NonFiniteGradientError,
  noiseMultiplierFromStd,
  noiseStdFromMultiplier,
} from '../../../src/privacy/index.ts'
import { Rng } from '../../../src/rng.ts'

function l2(v: ArrayLike<number>): number {
  let s = 0
  for (let i = 0; i < v.length; i++) s += v[i]! * v[i]!
  return Math.sqrt(s)
}

function randomVector(rng: Rng, dim: number, scale: number): Float32Array {
  return Float32Array.from({ length: dim }, () => rng.normal() * scale)
}

describe('gaussianNoiseStd (ALGORITHMS §6 per-step Gaussian mechanism)', () => {
  it('matches s = (2G/b)·√(2 ln(1.25/δ))/ε', () => {
    const cases = [
      { clipNorm: 1, batchSize: 1, epsilon: 1, delta: 1e-5 },
      { clipNorm: 1, batchSize: 32, epsilon: 0.5, delta: 1e-5 },
      { clipNorm: 4, batchSize: 256, epsilon: 0.1, delta: 1e-6 },
      { clipNorm: 0.25, batchSize: 60, epsilon: 0.9, delta: 1e-3 },
    ]
    for (const c of cases) {
      const expected = ((2 * c.clipNorm) / c.batchSize) * (Math.sqrt(2 * Math.log(1.25 / c.delta)) / c.epsilon)
      assert.ok(Math.abs(gaussianNoiseStd(c) - expected) <= 1e-15 * expected, JSON.stringify(c))
    }
    // A hand-computed value: G=1, b=1, ε=1, δ=1e-5 → 2·√(2 ln 125000) = 2·4.844805… = 9.689611 (python3 math)
    assert.ok(Math.abs(gaussianNoiseStd(cases[0]!) - 9.689611) < 1e-6)
  })

  it('scales as G/(b·ε)', () => {
    const base = gaussianNoiseStd({ clipNorm: 1, batchSize: 10, epsilon: 0.5, delta: 1e-5 })
    assert.ok(Math.abs(gaussianNoiseStd({ clipNorm: 3, batchSize: 10, epsilon: 0.5, delta: 1e-5 }) - 3 * base) < 1e-12)
    assert.ok(Math.abs(gaussianNoiseStd({ clipNorm: 1, batchSize: 40, epsilon: 0.5, delta: 1e-5 }) - base / 4) < 1e-12)
    assert.ok(Math.abs(gaussianNoiseStd({ clipNorm: 1, batchSize: 10, epsilon: 0.25, delta: 1e-5 }) - 2 * base) < 1e-12)
  })

  it('refuses ε > 1 with a typed error that points to the alternatives, and accepts ε = 1', () => {
    assert.ok(gaussianNoiseStd({ clipNorm: 1, batchSize: 8, epsilon: 1, delta: 1e-5 }) > 0)
    assert.throws(
      () => gaussianNoiseStd({ clipNorm: 1, batchSize: 8, epsilon: 2, delta: 1e-5 }),
      (e: unknown) =>
        e instanceof EpsilonAboveClassicBoundError &&
        e instanceof InvalidConfigError &&
        e instanceof MonnaError &&
        e.name === 'EpsilonAboveClassicBoundError' &&
        e.epsilon === 2 &&
        e.path === 'epsilon',
    )
  })

  it('rejects out-of-range parameters with InvalidPrivacyParameterError naming the parameter', () => {
    const ok = { clipNorm: 1, batchSize: 8, epsilon: 0.5, delta: 1e-5 }
    const bad: [Partial<typeof ok>, string][] = [
      [{ clipNorm: 0 }, 'clipNorm'],
      [{ clipNorm: -1 }, 'clipNorm'],
      [{ clipNorm: Number.POSITIVE_INFINITY }, 'clipNorm'],
      [{ batchSize: 0 }, 'batchSize'],
      [{ batchSize: 2.5 }, 'batchSize'],
      [{ epsilon: 0 }, 'epsilon'],
      [{ epsilon: -0.1 }, 'epsilon'],
      [{ epsilon: Number.NaN }, 'epsilon'],
      [{ delta: 0 }, 'delta'],
      [{ delta: 1 }, 'delta'],
      [{ delta: Number.NaN }, 'delta'],
    ]
    for (const [patch, parameter] of bad) {
      assert.throws(
        () => gaussianNoiseStd({ ...ok, ...patch }),
        (e: unknown) =>
          e instanceof InvalidPrivacyParameterError &&
          e.name === 'InvalidPrivacyParameterError' &&
          e.parameter === parameter &&
          e.path === parameter,
        JSON.stringify(patch),
      )
    }
  })
})

describe('analytic Gaussian mechanism (Balle & Wang 2018)', () => {
  it('is exactly (ε, δ)-DP at the returned noise and tighter than the classic bound', () => {
    for (const epsilon of [0.1, 0.5, 1]) {
      const opts = { clipNorm: 1, batchSize: 16, epsilon, delta: 1e-5 }
      const s = analyticGaussianNoiseStd(opts)
      const sensitivity = meanSensitivity({ ...opts, adjacency: 'replace-one' })
      const d = gaussianDelta({ sensitivity, noiseStd: s, epsilon })
      assert.ok(d <= 1e-5 && d > 1e-5 * (1 - 1e-6), `δ at the calibrated noise: ${d}`)
      assert.ok(s < gaussianNoiseStd(opts))
    }
  })

  it('gives σ ≈ 3.7306 for Δ = 1, ε = 1, δ = 1e-5 (Balle & Wang 2018, analytic vs 4.845 classic)', () => {
    const s = analyticGaussianNoiseStd({ clipNorm: 1, batchSize: 1, epsilon: 1, delta: 1e-5, adjacency: 'add-remove' })
    assert.ok(Math.abs(s - 3.7306) < 1e-3, String(s))
  })

  it('also works above ε = 1, where the classic bound refuses', () => {
    const s = analyticGaussianNoiseStd({ clipNorm: 1, batchSize: 8, epsilon: 4, delta: 1e-5 })
    assert.ok(s > 0 && s < analyticGaussianNoiseStd({ clipNorm: 1, batchSize: 8, epsilon: 2, delta: 1e-5 }))
  })
})

describe('noise multiplier convention (σ = s·b/G against the add/remove sensitivity G/b)', () => {
  it('round-trips between noise std and noise multiplier', () => {
    const s = noiseStdFromMultiplier({ noiseMultiplier: 1.1, clipNorm: 2, batchSize: 64 })
    assert.ok(Math.abs(s - (1.1 * 2) / 64) < 1e-15)
    assert.ok(Math.abs(noiseMultiplierFromStd({ noiseStd: s, clipNorm: 2, batchSize: 64 }) - 1.1) < 1e-12)
  })

  it('makes the accountant agree with the per-step mechanism: one full-batch step at the classic noise is within (ε, δ)', () => {
    // The classic formula is for replace-one (Δ = 2G/b), as is the default
    // ('without-replacement') accountant, which takes σ = s·b/G and accounts it against the
    // replace-one sensitivity itself. One unsampled step at the classic noise must not be
    // reported as spending more than the ε the noise was built for.
    for (const epsilon of [0.2, 0.5, 1]) {
      const opts = { clipNorm: 1.5, batchSize: 32, epsilon, delta: 1e-5 }
      const sigma = noiseMultiplierFromStd({ ...opts, noiseStd: gaussianNoiseStd(opts) })
      const spent = computeEpsilon({ samplingRate: 1, noiseMultiplier: sigma, steps: 1, delta: 1e-5 })
      assert.ok(spent <= epsilon, `ε ${epsilon}: accountant says ${spent}`)
      assert.ok(spent > 0.5 * epsilon, `ε ${epsilon}: accountant says ${spent} (unexpectedly loose)`)
    }
  })

  it('sensitivity of the mean is 2G/b for replace-one and G/b for add/remove', () => {
    assert.equal(meanSensitivity({ clipNorm: 3, batchSize: 6, adjacency: 'replace-one' }), 1)
    assert.equal(meanSensitivity({ clipNorm: 3, batchSize: 6, adjacency: 'add-remove' }), 0.5)
  })
})

describe('clipToNorm', () => {
  it('bounds every clipped vector by G (exactly, in float64) and returns the original norm', () => {
    const rng = new Rng('clip')
    for (const dim of [1, 7, 100, 10_000]) {
      for (const scale of [1e-3, 0.1, 1, 10, 1e6, 1e30]) {
        for (const G of [1e-3, 0.5, 1, 4]) {
          const g = randomVector(rng, dim, scale)
          const before = l2(g)
          const copy = Float32Array.from(g)
          const returned = clipToNorm(g, G)
          assert.ok(Math.abs(returned - before) <= 1e-12 * before, 'returns the original norm')
          const after = l2(g)
          assert.ok(after <= G, `dim ${dim} scale ${scale} G ${G}: ${after} > ${G}`)
          if (before <= G) assert.deepEqual(g, copy, 'a vector inside the ball is untouched')
          else {
            assert.ok(after > G * (1 - 1e-5), 'clipped onto the sphere, not far inside')
            // Direction kept: g ∝ copy.
            const k = after / before
            for (let i = 0; i < dim; i += Math.max(1, dim >> 4)) {
              assert.ok(Math.abs(g[i]! - copy[i]! * k) <= 1e-6 * Math.abs(copy[i]! * k) + 1e-30)
            }
          }
        }
      }
    }
  })

  it('per-example clipping bounds the change of the batch mean by 2G/b when one example is replaced', () => {
    const rng = new Rng('sensitivity')
    const b = 16
    const G = 1
    const dim = 50
    for (let trial = 0; trial < 50; trial++) {
      const batch = Array.from({ length: b }, () => randomVector(rng, dim, 1 + 100 * rng.next()))
      const other = randomVector(rng, dim, 1000 * rng.next())
      const mean = (gs: Float32Array[]): Float64Array => {
        const m = new Float64Array(dim)
        for (const g of gs) {
          const c = Float32Array.from(g)
          clipToNorm(c, G)
          for (let i = 0; i < dim; i++) m[i] = m[i]! + c[i]! / gs.length
        }
        return m
      }
      const m1 = mean(batch)
      const m2 = mean([other, ...batch.slice(1)])
      const diff = m1.map((v, i) => v - m2[i]!)
      assert.ok(l2(diff) <= (2 * G) / b + 1e-12, `trial ${trial}: ${l2(diff)}`)
      assert.ok(l2(m1) <= G + 1e-12)
    }
  })

  it('rejects non-finite gradients and bad clip norms with typed errors', () => {
    assert.throws(() => clipToNorm(Float32Array.of(1, Number.NaN), 1), NonFiniteGradientError)
    assert.throws(
      () => clipToNorm(Float32Array.of(1, Number.POSITIVE_INFINITY), 1),
      (e: unknown) => e instanceof NonFiniteGradientError && e.name === 'NonFiniteGradientError',
    )
    assert.throws(() => clipToNorm(Float32Array.of(1), 0), InvalidPrivacyParameterError)
    assert.throws(() => clipToNorm(Float32Array.of(1), Number.NaN), InvalidPrivacyParameterError)
  })

  it('handles the empty and the zero vector', () => {
    assert.equal(clipToNorm(new Float32Array(0), 1), 0)
    const z = new Float32Array(5)
    assert.equal(clipToNorm(z, 1), 0)
    assert.deepEqual(z, new Float32Array(5))
  })
})
