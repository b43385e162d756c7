/**
 * RDP of the Gaussian mechanism under sampling WITHOUT replacement — the sampling monna's
 * learner actually does (each step: `batchSize` distinct examples drawn uniformly from the
 * member's N examples, independently across steps) — for replace-one adjacency (N public).
 *
 * Bound: Wang, Balle & Kasiviswanathan 2019, "Subsampled Rényi Differential Privacy and
 * Analytical Moments Accountant" (AISTATS, arXiv:1808.00087), Thm 9 with the strengthened
 * terms of Thm 27 for the Gaussian; the same bound TensorFlow Privacy / dp_accounting use for
 * `SampledWithoutReplacementDpEvent`. For integer α ≥ 2, with ε_G(a) = a/(2σ²) the Gaussian's
 * RDP and q = b/N:
 *
 *   A_α = 1 + q²·C(α,2)·min(4(e^{ε_G(2)} − 1), 2e^{ε_G(2)})
 *           + Σ_{j=3..α} q^j·C(α,j)·min(4·√(D_{2⌊j/2⌋}·D_{2⌈j/2⌉}), 2e^{(j−1)ε_G(j)}),
 *   RDP(α) = log(A_α)/(α − 1),
 *
 * where D_m is the m-th forward difference at −1 of f(k) = e^{(k+1)k/(2σ²)}. Fractional α:
 * linear interpolation of log A between ⌊α⌋ and ⌈α⌉ (WBK19 Cor. 10, convexity of the CGF).
 * For α > 256 only the second argument of the min is used (as TF Privacy does). Finally the
 * result is capped by the unsampled Gaussian's α/(2σ²): for replace-one neighbours the two
 * batches can be coupled to differ in at most one example, and Rényi divergence is jointly
 * quasi-convex, so subsampling never hurts (this only bites at fractional α < 2, where the
 * interpolation above is loose).
 *
 * The D_m are computed here without forward differencing: f(k) = E[Z^k] for Z = e^Y,
 * Y ~ N(c, 2c), c = 1/(2σ²), so D_m = E[Z^{−1}(Z − 1)^m], an integral of a positive function
 * for the even m the bound uses. A trapezoid rule in log space on a fine grid evaluates it
 * without the catastrophic cancellation of differencing a fast-growing sequence.
 *
 * Here σ is the ratio of the noise std to the REPLACE-ONE sensitivity of the released sum
 * (2G for per-example clipping to G); the accountant converts from its add/remove convention.
 */
import { logAdd } from './rdp.ts'

const MAX_EXACT_ORDER = 256
// Below this replace-one multiplier the quadrature grid grows as 1/σ (0.3 s at σ = 0.05) and
// the run's ε is astronomical anyway; the forward-difference argument of the min is then
// dropped, which keeps the bound valid (a min over fewer upper bounds) and only looser.
const MIN_SIGMA_FOR_DIFFS = 0.05

function logAbsExpm1(y: number): number {
  // log|e^y − 1|
  if (y > 0) return y + Math.log(-Math.expm1(-y))
  if (y < 0) return Math.log(-Math.expm1(y))
  return Number.NEGATIVE_INFINITY
}

/** log D_m for even m = 2, 4, …, maxEven (index m/2 − 1). */
function logEvenForwardDiffs(sigma: number, maxEven: number): Float64Array {
  const c = 1 / (2 * sigma * sigma)
  const sd = Math.sqrt(2 * c)
  const lo = -c - 40 * sd
  const hi = c + 2 * c * maxEven + 40 * sd
  const h = sd / 16
  const points = Math.ceil((hi - lo) / h) + 1
  const count = maxEven / 2
  const acc = new Float64Array(count).fill(Number.NEGATIVE_INFINITY)
  const logNorm = -0.5 * Math.log(2 * Math.PI * 2 * c)
  for (let p = 0; p < points; p++) {
    const y = lo + p * h
    const w = p === 0 || p === points - 1 ? Math.log(0.5) : 0
    const base = w + logNorm - ((y - c) * (y - c)) / (4 * c) - y
    const l = logAbsExpm1(y)
    if (l === Number.NEGATIVE_INFINITY) continue
    for (let k = 0; k < count; k++) acc[k] = logAdd(acc[k]!, base + 2 * (k + 1) * l)
  }
  const logH = Math.log(h)
  for (let k = 0; k < count; k++) acc[k] = acc[k]! + logH
  return acc
}

/**
 * Per-order RDP of one step of the Gaussian mechanism with replace-one noise multiplier
 * `sigma` under uniform sampling without replacement of a fraction `q`, at every order.
 */
export function withoutReplacementGaussianRdp(q: number, sigma: number, orders: readonly number[]): Float64Array {
  const out = new Float64Array(orders.length)
  if (q === 0) return out
  if (sigma === 0) return out.fill(Number.POSITIVE_INFINITY)
  if (q === 1) {
    for (let k = 0; k < orders.length; k++) out[k] = orders[k]! / (2 * sigma * sigma)
    return out
  }
  const eps = (a: number): number => a / (2 * sigma * sigma)
  let maxInt = 2
  for (const a of orders) if (Number.isFinite(a)) maxInt = Math.max(maxInt, Math.ceil(a))
  const maxExact = sigma < MIN_SIGMA_FOR_DIFFS ? 0 : Math.min(maxInt, MAX_EXACT_ORDER)
  const maxEven = 2 * Math.ceil(maxExact / 2)
  const logD = maxExact >= 3 ? logEvenForwardDiffs(sigma, maxEven) : new Float64Array(0)
  const logQ = Math.log(q)
  const log2Term = Math.min(Math.log(4) + Math.log(Math.expm1(eps(2))), Math.log(2) + eps(2))

  const logACache = new Map<number, number>()
  const logAInt = (alpha: number): number => {
    if (alpha <= 1) return 0
    const cached = logACache.get(alpha)
    if (cached !== undefined) return cached
    let logA = 0 // the leading 1
    let logBinom = Math.log((alpha * (alpha - 1)) / 2) // C(α, 2)
    logA = logAdd(logA, 2 * logQ + logBinom + log2Term)
    for (let j = 3; j <= alpha; j++) {
      logBinom += Math.log(alpha - j + 1) - Math.log(j)
      let bound = Math.log(2) + (j - 1) * eps(j)
      if (alpha <= maxExact) {
        const dLo = logD[2 * Math.floor(j / 2) / 2 - 1]!
        const dHi = logD[2 * Math.ceil(j / 2) / 2 - 1]!
        bound = Math.min(bound, Math.log(4) + 0.5 * (dLo + dHi))
      }
      logA = logAdd(logA, j * logQ + logBinom + bound)
    }
    logACache.set(alpha, logA)
    return logA
  }

  for (let k = 0; k < orders.length; k++) {
    const a = orders[k]!
    if (a === Number.POSITIVE_INFINITY) {
      out[k] = Number.POSITIVE_INFINITY
      continue
    }
    let r: number
    if (Number.isInteger(a)) {
      r = logAInt(a) / (a - 1)
    } else {
      const f = Math.floor(a)
      const t = a - f
      r = ((1 - t) * logAInt(f) + t * logAInt(f + 1)) / (a - 1)
    }
    out[k] = Math.min(r, eps(a))
  }
  return out
}
