/**
 * The per-step Gaussian mechanism of DP-SGD as monna runs it (ALGORITHMS §6):
 * each of the b examples of a mini-batch gets its own gradient clipped to L2 norm G, the b
 * clipped gradients are averaged, and N(0, s²) is added to every coordinate.
 *
 * Sensitivity of the average of b per-example-clipped gradients:
 *   - replace-one adjacency (one example swapped for another):  Δ = 2G/b
 *   - add-or-remove-one adjacency (one example more or less):    Δ = G/b
 * The papers' per-step formula uses replace-one; the RDP accountant (and TF Privacy, Opacus)
 * uses add-or-remove-one. The *noise multiplier* is always stated against the add/remove
 * sensitivity: σ = s / (G/b) = s·b/G (the Opacus / TF Privacy convention: std of the noise
 * on the SUM of clipped gradients divided by G).
 */
import { EpsilonAboveClassicBoundError, InvalidPrivacyParameterError, NonFiniteGradientError } from './errors.ts'
import { logNormalCdf, logSub, validateDelta } from './rdp.ts'

export type Adjacency = 'replace-one' | 'add-remove'

export interface GaussianStepOptions {
  /** Per-example L2 clipping norm G (> 0). */
  clipNorm: number
  /** Examples averaged per step b (integer ≥ 1). */
  batchSize: number
  /** Per-step ε. */
  epsilon: number
  /** Per-step δ in (0, 1). */
  delta: number
}

function validateClipAndBatch(clipNorm: number, batchSize: number): void {
  if (!(clipNorm > 0 && Number.isFinite(clipNorm))) {
    throw new InvalidPrivacyParameterError('clipNorm', clipNorm, 'the clipping norm G must be a finite number > 0')
  }
  if (!(Number.isInteger(batchSize) && batchSize >= 1)) {
    throw new InvalidPrivacyParameterError('batchSize', batchSize, 'the batch size b must be an integer ≥ 1')
  }
}

function validatePositiveEpsilon(epsilon: number): void {
  if (!(epsilon > 0 && Number.isFinite(epsilon))) {
    throw new InvalidPrivacyParameterError('epsilon', epsilon, 'ε must be a finite number > 0')
  }
}

/** L2 sensitivity of the mean of `batchSize` gradients each clipped to `clipNorm`. */
export function meanSensitivity(opts: { clipNorm: number; batchSize: number; adjacency: Adjacency }): number {
  validateClipAndBatch(opts.clipNorm, opts.batchSize)
  return ((opts.adjacency === 'replace-one' ? 2 : 1) * opts.clipNorm) / opts.batchSize
}

/**
 * Per-step noise std of ALGORITHMS §6: s = (2G/b)·√(2·ln(1.25/δ))/ε — the classic Gaussian
 * mechanism (Dwork & Roth 2014, Thm A.1) with replace-one sensitivity Δ = 2G/b. The theorem
 * holds for ε ≤ 1 (also ε = 1, by continuity); a larger ε throws
 * `EpsilonAboveClassicBoundError` — use `analyticGaussianNoiseStd` (exact for every ε) or
 * `noiseMultiplierFor` (whole-run budget via the RDP accountant) instead.
 * This guarantees (ε, δ) for ONE step; the whole run is accounted by `createRdpAccountant`.
 */
export function gaussianNoiseStd(opts: GaussianStepOptions): number {
  validateClipAndBatch(opts.clipNorm, opts.batchSize)
  validatePositiveEpsilon(opts.epsilon)
  validateDelta(opts.delta)
  if (opts.epsilon > 1) throw new EpsilonAboveClassicBoundError(opts.epsilon)
  const delta2 = (2 * opts.clipNorm) / opts.batchSize
  return (delta2 * Math.sqrt(2 * Math.log(1.25 / opts.delta))) / opts.epsilon
}

/**
 * δ(ε) of the Gaussian mechanism with sensitivity Δ and noise std s, exactly (Balle & Wang
 * 2018, "Improving the Gaussian Mechanism for Differential Privacy", Thm 8):
 *   δ = Φ(Δ/(2s) − εs/Δ) − e^ε·Φ(−Δ/(2s) − εs/Δ).
 */
export function gaussianDelta(opts: { sensitivity: number; noiseStd: number; epsilon: number }): number {
  const { sensitivity: d, noiseStd: s, epsilon: e } = opts
  if (s === 0) return 1
  const u = d / (2 * s)
  const v = (e * s) / d
  const a = logNormalCdf(u - v)
  const b = e + logNormalCdf(-u - v)
  return a <= b ? 0 : Math.exp(logSub(a, b))
}

/**
 * The smallest per-step noise std s for which one step is exactly (ε, δ)-DP (Balle & Wang
 * 2018, analytic Gaussian mechanism), for any ε > 0; replace-one sensitivity 2G/b as in
 * `gaussianNoiseStd`, which it never exceeds. Found by bisection on s to 1e-12 relative.
 */
export function analyticGaussianNoiseStd(opts: GaussianStepOptions & { adjacency?: Adjacency }): number {
  validatePositiveEpsilon(opts.epsilon)
  validateDelta(opts.delta)
  const sensitivity = meanSensitivity({ ...opts, adjacency: opts.adjacency ?? 'replace-one' })
  const deltaAt = (s: number): number => gaussianDelta({ sensitivity, noiseStd: s, epsilon: opts.epsilon })
  let hi = sensitivity
  while (deltaAt(hi) > opts.delta) hi *= 2
  let lo = hi / 2
  while (lo > 0 && deltaAt(lo) <= opts.delta) lo /= 2
  while (hi - lo > hi * 1e-12) {
    const mid = (lo + hi) / 2
    if (deltaAt(mid) > opts.delta) lo = mid
    else hi = mid
  }
  return hi
}

/** Noise multiplier σ = s·b/G (noise std against the add/remove sensitivity G/b) — what the accountant takes. */
export function noiseMultiplierFromStd(opts: { noiseStd: number; clipNorm: number; batchSize: number }): number {
  validateClipAndBatch(opts.clipNorm, opts.batchSize)
  if (!(opts.noiseStd >= 0 && Number.isFinite(opts.noiseStd))) {
    throw new InvalidPrivacyParameterError('noiseStd', opts.noiseStd, 'the noise std must be a finite number ≥ 0')
  }
  return (opts.noiseStd * opts.batchSize) / opts.clipNorm
}

/** Per-coordinate noise std s = σ·G/b to add to the mean of b clipped gradients — what the learner's PrivacyHook takes. */
export function noiseStdFromMultiplier(opts: { noiseMultiplier: number; clipNorm: number; batchSize: number }): number {
  validateClipAndBatch(opts.clipNorm, opts.batchSize)
  if (!(opts.noiseMultiplier >= 0 && Number.isFinite(opts.noiseMultiplier))) {
    throw new InvalidPrivacyParameterError(
      'noiseMultiplier',
      opts.noiseMultiplier,
      'the noise multiplier must be a finite number ≥ 0',
    )
  }
  return (opts.noiseMultiplier * opts.clipNorm) / opts.batchSize
}

// Float32 rounding of the scaled coordinates can raise the norm by at most a relative
// 2⁻²⁴ (each coordinate moves by ≤ 2⁻²⁴ of itself); shrinking the scale by 2⁻²² more keeps
// the clipped norm ≤ G exactly, as the sensitivity argument requires.
const CLIP_SAFETY = 1 - 2 ** -22

/**
 * Clips `g` in place to L2 norm ≤ `clipNorm` (g ← g·min(1, G/‖g‖)) and returns the ORIGINAL
 * norm. The norm is accumulated in float64. A gradient with a NaN or infinite coordinate
 * throws `NonFiniteGradientError` (its contribution could not be bounded).
 */
export function clipToNorm(g: Float32Array, clipNorm: number): number {
  if (!(clipNorm > 0 && Number.isFinite(clipNorm))) {
    throw new InvalidPrivacyParameterError('clipNorm', clipNorm, 'the clipping norm G must be a finite number > 0')
  }
  let sum = 0
  for (let i = 0; i < g.length; i++) {
    const v = g[i]!
    sum += v * v
  }
  const norm = Math.sqrt(sum)
  if (!Number.isFinite(norm)) {
    // sum can overflow float64 only when a coordinate is non-finite (float32 max² · length < 1e308 for any real length).
    throw new NonFiniteGradientError(norm)
  }
  if (norm > clipNorm) {
    const scale = (clipNorm / norm) * CLIP_SAFETY
    for (let i = 0; i < g.length; i++) g[i] = g[i]! * scale
  }
  return norm
}
