/**
 * Errors of the privacy library. One class per condition, matched by `name` or `instanceof`,
 * never by message. Parameter errors extend `InvalidConfigError` so a swarm-file loader that
 * catches configuration errors also catches them (`path` names the offending field).
 */
import { InvalidConfigError, MonnaError } from '../errors.ts'

/** A privacy parameter (ε, δ, clip norm, batch size, sampling rate, noise multiplier, orders…) is out of its range. */
export class InvalidPrivacyParameterError extends InvalidConfigError {
  override name = 'InvalidPrivacyParameterError'
  readonly parameter: string
  readonly value: unknown
  constructor(parameter: string, value: unknown, rule: string) {
    super(parameter, `${rule} (got ${String(value)})`)
    this.parameter = parameter
    this.value = value
  }
}

/**
 * The classic Gaussian-mechanism bound s = Δ·√(2 ln(1.25/δ))/ε (Dwork & Roth 2014, Thm A.1)
 * is only proven for ε ≤ 1; it was asked for a larger ε. Use `analyticGaussianNoiseStd`
 * (exact for any ε > 0) or calibrate the whole run with `noiseMultiplierFor` (RDP accountant).
 */
export class EpsilonAboveClassicBoundError extends InvalidConfigError {
  override name = 'EpsilonAboveClassicBoundError'
  readonly epsilon: number
  constructor(epsilon: number) {
    super(
      'epsilon',
      `the classic Gaussian bound holds only for 0 < ε ≤ 1 (got ${epsilon}); for a larger per-step ε use ` +
        'analyticGaussianNoiseStd(), or choose the noise for the whole run with noiseMultiplierFor() (RDP accountant)',
    )
    this.epsilon = epsilon
  }
}

/** No noise multiplier up to `maxNoiseMultiplier` reaches the target ε for the given δ, q and steps. */
export class PrivacyBudgetUnreachableError extends MonnaError {
  override name = 'PrivacyBudgetUnreachableError'
  readonly targetEpsilon: number
  readonly delta: number
  readonly maxNoiseMultiplier: number
  constructor(targetEpsilon: number, delta: number, maxNoiseMultiplier: number) {
    super(
      `no noise multiplier ≤ ${maxNoiseMultiplier} reaches ε = ${targetEpsilon} at δ = ${delta}; ` +
        'raise ε or δ, lower the sampling rate, or train for fewer steps',
    )
    this.targetEpsilon = targetEpsilon
    this.delta = delta
    this.maxNoiseMultiplier = maxNoiseMultiplier
  }
}

/** A gradient handed to `clipToNorm` has a NaN or infinite coordinate: its norm cannot be bounded. */
export class NonFiniteGradientError extends MonnaError {
  override name = 'NonFiniteGradientError'
  readonly norm: number
  constructor(norm: number) {
    super(`cannot clip a gradient whose norm is ${norm}: it has a non-finite coordinate`)
    this.norm = norm
  }
}

/** A log-space subtraction went negative: the RDP series lost precision (should not happen for valid inputs). */
export class PrivacyNumericsError extends MonnaError {
  override name = 'PrivacyNumericsError'
  readonly detail: string
  constructor(detail: string) {
    super(`RDP computation lost precision: ${detail}`)
    this.detail = detail
  }
}
