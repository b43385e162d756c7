/**
 * Rényi differential privacy of the sampled Gaussian mechanism (SGM) and its conversion to
 * (ε, δ)-DP.
 *
 * The SGM releases Σ_{i∈S} g_i + N(0, σ²·G²·I) where S is a Poisson sample (each record in
 * independently with probability q) and every g_i has ‖g_i‖ ≤ G; σ is the *noise
 * multiplier*. Its RDP of order α for add-or-remove-one adjacency is ε(α) = log(A_α)/(α−1),
 * with A_α computed as in Mironov, Talwar & Zhang 2019, "Rényi Differential Privacy of the
 * Sampled Gaussian Mechanism" (arXiv:1908.10530), §3.3: a finite binomial sum for integer α,
 * a rapidly converging two-sided series with erfc terms for fractional α. All sums run in log
 * space. This is the same quantity TensorFlow Privacy's and Opacus' `compute_rdp` return;
 * the code here is written from the paper.
 *
 * Composition: RDP adds up over steps at every order (Mironov 2017, Prop. 1), also when q
 * and σ change between steps.
 */
import { InvalidPrivacyParameterError, PrivacyNumericsError } from './errors.ts'

// ------------------------------------------------------------------ log-space arithmetic

/** log(e^a + e^b) without overflow. */
export function logAdd(a: number, b: number): number {
  const hi = Math.max(a, b)
  const lo = Math.min(a, b)
  if (lo === Number.NEGATIVE_INFINITY) return hi
  return hi + Math.log1p(Math.exp(lo - hi))
}

/** log(e^a − e^b) for a ≥ b. */
export function logSub(a: number, b: number): number {
  if (b === Number.NEGATIVE_INFINITY) return a
  if (a < b) throw new PrivacyNumericsError(`log-space subtraction of a larger term (${a} − ${b})`)
  if (a === b) return Number.NEGATIVE_INFINITY
  const d = a - b
  // e^a − e^b = e^b·(e^(a−b) − 1); for large a−b the −1 is lost anyway.
  return d > 700 ? a : b + Math.log(Math.expm1(d))
}

const LOG_SQRT_PI = 0.5 * Math.log(Math.PI)

/**
 * log(erfc(x)) for every real x, accurate to ~1e-14 relative where erfc is representable and
 * without underflow for large x (erfc(30) ≈ 1e-393 is still fine in log space).
 *   x < 0:        erfc(x) = 2 − erfc(−x)
 *   0 ≤ x < 2.5:  erfc = 1 − erf, erf by its all-positive series
 *                 erf(x) = (2/√π)·e^(−x²)·Σ_n 2ⁿx^(2n+1)/(1·3·…·(2n+1))  (no cancellation)
 *   x ≥ 2.5:      Laplace's continued fraction erfc(x) = (e^(−x²)/√π)·1/(x + ½/(x + 1/(x + (3/2)/(x + …)))),
 *                 evaluated bottom-up.
 */
export function logErfc(x: number): number {
  if (Number.isNaN(x)) return Number.NaN
  if (x < 0) return Math.log(2 - Math.exp(logErfc(-x)))
  if (x < 2.5) {
    const x2 = x * x
    let term = x
    let sum = x
    for (let n = 1; n < 200; n++) {
      term *= (2 * x2) / (2 * n + 1)
      sum += term
      if (term < sum * 1e-17) break
    }
    const erf = (2 / Math.sqrt(Math.PI)) * Math.exp(-x2) * sum
    return Math.log1p(-erf)
  }
  if (x === Number.POSITIVE_INFINITY) return Number.NEGATIVE_INFINITY
  let t = x
  for (let k = 120; k >= 1; k--) t = x + k / 2 / t
  return -x * x - LOG_SQRT_PI - Math.log(t)
}

/** log of the standard normal CDF Φ(x) = erfc(−x/√2)/2. */
export function logNormalCdf(x: number): number {
  return Math.log(0.5) + logErfc(-x / Math.SQRT2)
}

// ------------------------------------------------------------------ RDP of the SGM

/** log A_α for integer α ≥ 2: A_α = Σ_{i=0..α} C(α,i)·qⁱ(1−q)^(α−i)·exp((i²−i)/(2σ²)). */
function logAInteger(q: number, sigma: number, alpha: number): number {
  const logQ = Math.log(q)
  const log1mQ = Math.log1p(-q)
  const twoSigma2 = 2 * sigma * sigma
  let logBinom = 0 // log C(α, 0)
  let logA = Number.NEGATIVE_INFINITY
  for (let i = 0; i <= alpha; i++) {
    if (i > 0) logBinom += Math.log(alpha - i + 1) - Math.log(i)
    const s = logBinom + i * logQ + (alpha - i) * log1mQ + (i * i - i) / twoSigma2
    logA = logAdd(logA, s)
  }
  return logA
}

/**
 * log A_α for fractional α > 1 (MTZ19 §3.3): A_α splits at z0 = σ²·ln(1/q − 1) + ½ into two
 * series whose i-th terms carry the generalised binomial C(α,i) (sign alternates once
 * i > α) and an erfc tail; both are summed until their terms fall below e^−30.
 */
function logAFractional(q: number, sigma: number, alpha: number): number {
  const logQ = Math.log(q)
  const log1mQ = Math.log1p(-q)
  const twoSigma2 = 2 * sigma * sigma
  const sqrt2Sigma = Math.SQRT2 * sigma
  const z0 = sigma * sigma * Math.log(1 / q - 1) + 0.5
  const logHalf = Math.log(0.5)
  let logA0 = Number.NEGATIVE_INFINITY
  let logA1 = Number.NEGATIVE_INFINITY
  let logAbsBinom = 0 // log |C(α, 0)|
  let sign = 1
  for (let i = 0; i < 100000; i++) {
    if (i > 0) {
      const factor = (alpha - i + 1) / i
      if (factor < 0) sign = -sign
      logAbsBinom += Math.log(Math.abs(factor))
    }
    const j = alpha - i
    const logT0 = logAbsBinom + i * logQ + j * log1mQ
    const logT1 = logAbsBinom + j * logQ + i * log1mQ
    const logE0 = logHalf + logErfc((i - z0) / sqrt2Sigma)
    const logE1 = logHalf + logErfc((z0 - j) / sqrt2Sigma)
    const logS0 = logT0 + (i * i - i) / twoSigma2 + logE0
    const logS1 = logT1 + (j * j - j) / twoSigma2 + logE1
    if (sign > 0) {
      logA0 = logAdd(logA0, logS0)
      logA1 = logAdd(logA1, logS1)
    } else {
      logA0 = logSub(logA0, logS0)
      logA1 = logSub(logA1, logS1)
    }
    if (Math.max(logS0, logS1) < -30) break
  }
  return logAdd(logA0, logA1)
}

/**
 * RDP of order α of ONE step of the sampled Gaussian mechanism with sampling rate q and
 * noise multiplier σ (add-or-remove-one adjacency). q = 0 → 0; σ = 0 → ∞; q = 1 is the plain
 * Gaussian mechanism, α/(2σ²); α = ∞ → ∞.
 */
export function sampledGaussianRdp(opts: { samplingRate: number; noiseMultiplier: number; order: number }): number {
  const { samplingRate: q, noiseMultiplier: sigma, order: alpha } = opts
  if (q === 0) return 0
  if (sigma === 0) return Number.POSITIVE_INFINITY
  if (q === 1) return alpha / (2 * sigma * sigma)
  if (alpha === Number.POSITIVE_INFINITY) return Number.POSITIVE_INFINITY
  const logA = Number.isInteger(alpha) ? logAInteger(q, sigma, alpha) : logAFractional(q, sigma, alpha)
  return logA / (alpha - 1)
}

/** RDP at each order of `steps` compositions of the SGM (`steps`·per-step RDP). */
export function computeRdp(opts: {
  samplingRate: number
  noiseMultiplier: number
  steps: number
  orders: readonly number[]
}): Float64Array {
  validateSgm(opts.samplingRate, opts.noiseMultiplier)
  validateOrders(opts.orders)
  if (!(Number.isFinite(opts.steps) && opts.steps >= 0)) {
    throw new InvalidPrivacyParameterError('steps', opts.steps, 'steps must be a finite number ≥ 0')
  }
  const out = new Float64Array(opts.orders.length)
  for (let k = 0; k < opts.orders.length; k++) {
    const r = sampledGaussianRdp({ ...opts, order: opts.orders[k]! })
    out[k] = opts.steps === 0 ? 0 : r * opts.steps
  }
  return out
}

// ------------------------------------------------------------------ RDP → (ε, δ)

/**
 * How RDP is turned into (ε, δ)-DP.
 * - `'classic'`: ε = min_α RDP(α) + log(1/δ)/(α−1) (Mironov 2017, "Rényi Differential
 *   Privacy", Prop. 3). Used by TensorFlow Privacy until Dec 2020 and by the numbers its
 *   MNIST tutorial publishes (ε = 3.01).
 * - `'improved'`: ε = min_α RDP(α) + log(1 − 1/α) − (log δ + log α)/(α−1) (Canonne, Kamath &
 *   Steinke 2020, arXiv:2004.00010, Prop. 12; Balle et al. 2020, arXiv:1905.09982, Thm. 21),
 *   with TF Privacy's guards: orders α ≤ 1.01 are skipped (unstable), an order whose
 *   RDP r satisfies δ² ≥ 1 − e^−r gives ε = 0 (the KL bound δ ≤ √(1−e^−KL)), and ε ≥ 0.
 *   Used by Opacus' RDPAccountant and TF Privacy since Dec 2020. Always ≤ the classic value.
 */
export type RdpConversion = 'classic' | 'improved'

export interface PrivacySpent {
  epsilon: number
  delta: number
  /** The RDP order at which the bound was tightest (NaN when nothing was spent). */
  order: number
}

/** ε for a target δ from total RDP values at `orders`, minimised over the orders. */
export function rdpToEpsilon(opts: {
  orders: readonly number[]
  rdp: ArrayLike<number>
  delta: number
  conversion?: RdpConversion
}): PrivacySpent {
  const { orders, rdp, delta } = opts
  const conversion = opts.conversion ?? 'improved'
  validateDelta(delta)
  if (orders.length !== rdp.length) {
    throw new InvalidPrivacyParameterError('rdp', rdp.length, `need one RDP value per order (${orders.length} orders)`)
  }
  let best = Number.POSITIVE_INFINITY
  let bestOrder = Number.NaN
  const logDelta = Math.log(delta)
  for (let k = 0; k < orders.length; k++) {
    const a = orders[k]!
    const r = rdp[k]!
    let eps: number
    if (Number.isNaN(r) || r === Number.POSITIVE_INFINITY || a === Number.POSITIVE_INFINITY) eps = Number.POSITIVE_INFINITY
    else if (conversion === 'classic') eps = a > 1 ? r - logDelta / (a - 1) : Number.POSITIVE_INFINITY
    else if (delta * delta + Math.expm1(-r) >= 0) eps = 0
    else if (a > 1.01) eps = r + Math.log1p(-1 / a) - (logDelta + Math.log(a)) / (a - 1)
    else eps = Number.POSITIVE_INFINITY
    if (eps < best) {
      best = eps
      bestOrder = a
    }
  }
  return { epsilon: Math.max(0, best), delta, order: bestOrder }
}

/** δ for a target ε from total RDP values (the inverse view of `rdpToEpsilon`, same conversions). */
export function rdpToDelta(opts: {
  orders: readonly number[]
  rdp: ArrayLike<number>
  epsilon: number
  conversion?: RdpConversion
}): PrivacySpent {
  const { orders, rdp, epsilon } = opts
  const conversion = opts.conversion ?? 'improved'
  if (!(epsilon >= 0)) throw new InvalidPrivacyParameterError('epsilon', epsilon, 'ε must be ≥ 0')
  if (orders.length !== rdp.length) {
    throw new InvalidPrivacyParameterError('rdp', rdp.length, `need one RDP value per order (${orders.length} orders)`)
  }
  let best = Number.POSITIVE_INFINITY
  let bestOrder = Number.NaN
  for (let k = 0; k < orders.length; k++) {
    const a = orders[k]!
    const r = rdp[k]!
    let logDelta: number
    if (Number.isNaN(r) || r === Number.POSITIVE_INFINITY || a === Number.POSITIVE_INFINITY || !(a > 1)) {
      logDelta = Number.POSITIVE_INFINITY
    } else if (conversion === 'classic') {
      logDelta = (r - epsilon) * (a - 1)
    } else {
      logDelta = 0.5 * Math.log1p(-Math.exp(-r))
      if (a > 1.01) logDelta = Math.min(logDelta, (a - 1) * (r - epsilon + Math.log1p(-1 / a)) - Math.log(a))
    }
    if (logDelta < best) {
      best = logDelta
      bestOrder = a
    }
  }
  return { epsilon, delta: Math.min(1, Math.exp(best)), order: bestOrder }
}

// ------------------------------------------------------------------ validation helpers

export function validateSgm(samplingRate: number, noiseMultiplier: number): void {
  if (!(samplingRate >= 0 && samplingRate <= 1)) {
    throw new InvalidPrivacyParameterError(
      'samplingRate',
      samplingRate,
      'the sampling rate q = batch size / examples held must be in [0, 1]',
    )
  }
  if (!(noiseMultiplier >= 0 && Number.isFinite(noiseMultiplier))) {
    throw new InvalidPrivacyParameterError(
      'noiseMultiplier',
      noiseMultiplier,
      'the noise multiplier σ (noise std / sensitivity) must be a finite number ≥ 0',
    )
  }
}

export function validateDelta(delta: number): void {
  if (!(delta > 0 && delta < 1)) {
    throw new InvalidPrivacyParameterError(
      'delta',
      delta,
      'δ must be in (0, 1); choose δ well below 1/(examples held), e.g. 1e-5 for 60 000 examples',
    )
  }
}

export function validateOrders(orders: readonly number[]): void {
  if (orders.length === 0) throw new InvalidPrivacyParameterError('orders', '[]', 'give at least one RDP order α > 1')
  for (const a of orders) {
    if (!(a > 1)) throw new InvalidPrivacyParameterError('orders', a, 'every RDP order α must be > 1')
  }
}
