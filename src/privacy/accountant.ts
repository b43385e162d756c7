/**
 * Whole-run privacy accounting: a Rényi-DP accountant for the sampled Gaussian mechanism
 * (see rdp.ts), its one-shot form `computeEpsilon`, and the inverse `noiseMultiplierFor`
 * (the noise needed for a target (ε, δ) after a given number of steps).
 *
 * What the numbers mean (also docs/privacy.md): example-level (ε, δ)-DP for ONE member's
 * training data, covering everything the member releases (every broadcast half-step is
 * post-processing of the noisy gradients). Each step clips every example's gradient to G,
 * averages the b clipped gradients and adds N(0, s²) per coordinate; the noise multiplier is
 * σ = s·b/G throughout. Two sampling models (`Sampling`):
 *  - 'without-replacement' (default; what monna's learner does): b distinct examples drawn
 *    uniformly from the N held, independently each step; replace-one adjacency, so the
 *    sensitivity of the sum is 2G and the bound of Wang, Balle & Kasiviswanathan 2019 is
 *    applied at noise multiplier σ/2 (wor.ts).
 *  - 'poisson': each example in the batch independently with probability q; add-or-remove-one
 *    adjacency, sensitivity G, the sampled Gaussian mechanism of Mironov, Talwar & Zhang 2019
 *    at σ (rdp.ts). This is what TF Privacy and Opacus report, and what the published
 *    reference values are computed with.
 */
import { InvalidPrivacyParameterError, PrivacyBudgetUnreachableError } from './errors.ts'
import {
  type PrivacySpent,
  type RdpConversion,
  rdpToDelta,
  rdpToEpsilon,
  sampledGaussianRdp,
  validateDelta,
  validateOrders,
  validateSgm,
} from './rdp.ts'
import { withoutReplacementGaussianRdp } from './wor.ts'

/** How a step's batch is drawn — decides the adjacency and the RDP bound (see the file comment). */
export type Sampling = 'without-replacement' | 'poisson'

/** monna's learner draws b distinct examples uniformly per step (src/learning/learner.ts). */
export const defaultSampling: Sampling = 'without-replacement'

/** The adjacency each sampling model's guarantee is stated for. */
export function adjacencyOf(sampling: Sampling): 'replace-one' | 'add-remove' {
  return sampling === 'poisson' ? 'add-remove' : 'replace-one'
}

/** RDP of ONE step at every order, for noise multiplier σ = s·b/G. */
export function stepRdp(opts: {
  sampling: Sampling
  samplingRate: number
  noiseMultiplier: number
  orders: readonly number[]
}): Float64Array {
  validateSampling(opts.sampling)
  validateSgm(opts.samplingRate, opts.noiseMultiplier)
  validateOrders(opts.orders)
  const { samplingRate: q, noiseMultiplier: sigma, orders } = opts
  if (opts.sampling === 'without-replacement') {
    // Replace-one sensitivity of the sum of clipped gradients is 2G: the multiplier against it is σ/2.
    return withoutReplacementGaussianRdp(q, sigma / 2, orders)
  }
  return Float64Array.from(orders, (order) => sampledGaussianRdp({ samplingRate: q, noiseMultiplier: sigma, order }))
}

function validateSampling(sampling: string): void {
  if (sampling !== 'without-replacement' && sampling !== 'poisson') {
    throw new InvalidPrivacyParameterError(
      'sampling',
      sampling,
      "the sampling model must be 'without-replacement' (fixed-size uniform batches, monna's learner) or 'poisson'",
    )
  }
}

/**
 * Default RDP orders: Opacus' `RDPAccountant.DEFAULT_ALPHAS` (1.1, 1.2, …, 10.9, 12, …, 63),
 * fine where DP-SGD's optimum usually lies (ε ≈ 1–10), plus 128, 256, 512 as in TF Privacy's
 * `compute_dp_sgd_privacy` orders, which tighten small-ε / large-σ runs.
 */
export const defaultRdpOrders: readonly number[] = Object.freeze([
  ...Array.from({ length: 99 }, (_, x) => 1 + (x + 1) / 10),
  ...Array.from({ length: 52 }, (_, k) => 12 + k),
  128,
  256,
  512,
])

/** Contract §4. */
export interface PrivacyAccountant {
  step(): void
  spent(delta: number): { epsilon: number; delta: number; order: number }
  readonly steps: number
}

/** One homogeneous run of the sampled Gaussian mechanism. */
export interface SgmEvent {
  samplingRate: number
  noiseMultiplier: number
  steps: number
}

export interface RdpAccountantState {
  kind: 'rdp'
  sampling: Sampling
  history: SgmEvent[]
}

export interface RdpAccountant extends PrivacyAccountant {
  readonly samplingRate: number
  readonly noiseMultiplier: number
  readonly orders: readonly number[]
  readonly conversion: RdpConversion
  readonly sampling: Sampling
  /** Account `count` (default 1) steps at the accountant's own q and σ. */
  step(count?: number): void
  /** Account steps run with other parameters (e.g. σ or batch size changed mid-run); RDP composes additively. */
  compose(event: SgmEvent): void
  /** Total RDP at each order so far. */
  rdp(): Float64Array
  /** (ε, δ) spent so far for a target δ; ε = 0 and order = NaN before the first step. */
  spent(delta: number): PrivacySpent
  /** δ spent so far for a target ε. */
  spentDelta(epsilon: number): PrivacySpent
  /** Serializable history (checkpoints) and its restore. */
  getState(): RdpAccountantState
  setState(state: RdpAccountantState): void
}

export interface RdpAccountantOptions {
  /** q = batch size / examples held (for 'poisson': each example's probability of being in a batch). */
  samplingRate: number
  /** σ = s·b/G: per-coordinate noise std on the mean, times b/G (see mechanism.ts). */
  noiseMultiplier: number
  orders?: readonly number[]
  /** RDP → (ε, δ) conversion; default 'improved' (as Opacus and TF Privacy today). */
  conversion?: RdpConversion
  /** Default 'without-replacement' (what the learner does). */
  sampling?: Sampling
}

function validateConversion(conversion: string): void {
  if (conversion !== 'classic' && conversion !== 'improved') {
    throw new InvalidPrivacyParameterError('conversion', conversion, "the RDP conversion must be 'classic' or 'improved'")
  }
}

function validateEvent(e: SgmEvent): void {
  validateSgm(e.samplingRate, e.noiseMultiplier)
  if (!(Number.isInteger(e.steps) && e.steps >= 0)) {
    throw new InvalidPrivacyParameterError('steps', e.steps, 'the number of steps must be an integer ≥ 0')
  }
}

export function createRdpAccountant(opts: RdpAccountantOptions): RdpAccountant {
  const orders = Object.freeze([...(opts.orders ?? defaultRdpOrders)])
  const conversion = opts.conversion ?? 'improved'
  const sampling = opts.sampling ?? defaultSampling
  validateOrders(orders)
  validateConversion(conversion)
  validateSampling(sampling)
  validateSgm(opts.samplingRate, opts.noiseMultiplier)
  const { samplingRate, noiseMultiplier } = opts

  // Per-step RDP vectors by (q, σ), so step() is O(1) and spent() is O(orders).
  const perStep = new Map<string, Float64Array>()
  const perStepRdp = (q: number, sigma: number): Float64Array => {
    const key = `${q}|${sigma}`
    let v = perStep.get(key)
    if (v === undefined) {
      v = stepRdp({ sampling, samplingRate: q, noiseMultiplier: sigma, orders })
      perStep.set(key, v)
    }
    return v
  }
  let history: SgmEvent[] = []
  let steps = 0

  const add = (e: SgmEvent): void => {
    if (e.steps === 0) return
    const last = history.at(-1)
    if (last !== undefined && last.samplingRate === e.samplingRate && last.noiseMultiplier === e.noiseMultiplier) {
      last.steps += e.steps
    } else {
      history.push({ ...e })
    }
    steps += e.steps
  }

  const total = (): Float64Array => {
    const out = new Float64Array(orders.length)
    for (const e of history) {
      const r = perStepRdp(e.samplingRate, e.noiseMultiplier)
      for (let k = 0; k < out.length; k++) out[k] = out[k]! + (r[k]! === 0 ? 0 : r[k]! * e.steps)
    }
    return out
  }

  return {
    samplingRate,
    noiseMultiplier,
    orders,
    conversion,
    sampling,
    get steps() {
      return steps
    },
    step(count = 1) {
      validateEvent({ samplingRate, noiseMultiplier, steps: count })
      add({ samplingRate, noiseMultiplier, steps: count })
    },
    compose(event) {
      validateEvent(event)
      add(event)
    },
    rdp: total,
    spent(delta) {
      validateDelta(delta)
      if (steps === 0) return { epsilon: 0, delta, order: Number.NaN }
      return rdpToEpsilon({ orders, rdp: total(), delta, conversion })
    },
    spentDelta(epsilon) {
      if (steps === 0) return { epsilon, delta: 0, order: Number.NaN }
      return rdpToDelta({ orders, rdp: total(), epsilon, conversion })
    },
    getState() {
      return { kind: 'rdp', sampling, history: history.map((e) => ({ ...e })) }
    },
    setState(state) {
      if (state?.kind !== 'rdp' || !Array.isArray(state.history)) {
        throw new InvalidPrivacyParameterError('state', JSON.stringify(state), 'not an RDP accountant state')
      }
      if (state.sampling !== sampling) {
        throw new InvalidPrivacyParameterError(
          'state.sampling',
          state.sampling,
          `the saved history was accounted for '${state.sampling}' sampling, this accountant uses '${sampling}'`,
        )
      }
      state.history.forEach(validateEvent)
      history = []
      steps = 0
      state.history.forEach(add)
    },
  }
}

export interface EpsilonQuery {
  samplingRate: number
  noiseMultiplier: number
  steps: number
  delta: number
  orders?: readonly number[]
  conversion?: RdpConversion
  /** Default 'without-replacement' (what the learner does). */
  sampling?: Sampling
}

/** (ε, δ, optimal order) after `steps` steps of the sampled Gaussian mechanism. */
export function computePrivacySpent(opts: EpsilonQuery): PrivacySpent {
  const orders = opts.orders ?? defaultRdpOrders
  const conversion = opts.conversion ?? 'improved'
  validateConversion(conversion)
  validateEvent(opts)
  validateDelta(opts.delta)
  if (opts.steps === 0) return { epsilon: 0, delta: opts.delta, order: Number.NaN }
  const perStep = stepRdp({ ...opts, sampling: opts.sampling ?? defaultSampling, orders })
  const rdp = perStep.map((r) => (r === 0 ? 0 : r * opts.steps))
  return rdpToEpsilon({ orders, rdp, delta: opts.delta, conversion })
}

/** Contract §4: ε after `steps` steps of the sampled Gaussian mechanism, for a target δ. */
export function computeEpsilon(opts: EpsilonQuery): number {
  return computePrivacySpent(opts).epsilon
}

/** Largest noise multiplier `noiseMultiplierFor` tries before giving up (as Opacus' MAX_SIGMA). */
export const maxNoiseMultiplier = 1e6

/**
 * The smallest noise multiplier σ (to `relativeTolerance`, default 1e-6) for which
 * `steps` steps at sampling rate q spend at most `targetEpsilon` at `delta`. The value
 * returned is the upper end of the final bracket, so its ε never exceeds the target.
 * Throws `PrivacyBudgetUnreachableError` if even σ = 1e6 is not enough.
 */
export function noiseMultiplierFor(opts: {
  targetEpsilon: number
  delta: number
  samplingRate: number
  steps: number
  orders?: readonly number[]
  conversion?: RdpConversion
  sampling?: Sampling
  relativeTolerance?: number
}): number {
  const { targetEpsilon, delta, samplingRate, steps } = opts
  if (!(targetEpsilon > 0 && Number.isFinite(targetEpsilon))) {
    throw new InvalidPrivacyParameterError('targetEpsilon', targetEpsilon, 'the target ε must be a finite number > 0')
  }
  validateDelta(delta)
  validateEvent({ samplingRate, noiseMultiplier: 1, steps })
  if (steps === 0 || samplingRate === 0) return 0
  const tol = opts.relativeTolerance ?? 1e-6
  if (!(tol > 0 && tol < 1)) throw new InvalidPrivacyParameterError('relativeTolerance', tol, 'must be in (0, 1)')
  const eps = (sigma: number): number => computeEpsilon({ ...opts, noiseMultiplier: sigma })
  let hi = 1
  while (eps(hi) > targetEpsilon) {
    hi *= 2
    if (hi > maxNoiseMultiplier) throw new PrivacyBudgetUnreachableError(targetEpsilon, delta, maxNoiseMultiplier)
  }
  let lo = hi / 2
  while (eps(lo) <= targetEpsilon) {
    hi = lo
    lo /= 2
    if (lo < 1e-6) return hi
  }
  while (hi - lo > hi * tol) {
    const mid = (lo + hi) / 2
    if (eps(mid) > targetEpsilon) lo = mid
    else hi = mid
  }
  return hi
}

/**
 * ε for the same noise when batches are NOT Poisson-sampled but each example is used in
 * exactly `participations` steps (e.g. one pass per epoch over a shuffled shard): no
 * amplification by subsampling, plain Gaussian composition (q = 1 per participation). This
 * is the bound to quote when the sampling assumption of the main accountant does not hold;
 * TF Privacy's privacy statement reports the same quantity ("each example occurring once per
 * epoch").
 */
export function computeEpsilonWithoutSampling(opts: {
  noiseMultiplier: number
  participations: number
  delta: number
  /** Default 'replace-one' (sensitivity 2G, as the 'without-replacement' accountant). */
  adjacency?: 'replace-one' | 'add-remove'
  orders?: readonly number[]
  conversion?: RdpConversion
}): number {
  return computeEpsilon({
    sampling: (opts.adjacency ?? 'replace-one') === 'replace-one' ? 'without-replacement' : 'poisson',
    samplingRate: 1,
    noiseMultiplier: opts.noiseMultiplier,
    steps: opts.participations,
    delta: opts.delta,
    orders: opts.orders,
    conversion: opts.conversion,
  })
}

/**
 * Group privacy of size 2: an (ε, δ) add-or-remove-one guarantee implies a replace-one
 * (substitution) guarantee (2ε, (1 + e^ε)·δ), since a substitution is a removal followed by
 * an addition (Dwork & Roth 2014, §2.3 / Vadhan 2017 Lemma 2.2 with k = 2).
 */
export function replaceOneGuarantee(addRemove: { epsilon: number; delta: number }): { epsilon: number; delta: number } {
  return { epsilon: 2 * addRemove.epsilon, delta: (1 + Math.exp(addRemove.epsilon)) * addRemove.delta }
}

/**
 * Everything the learner and the report need for a whole-run budget: the noise multiplier
 * for (ε, δ) after `steps` steps at q = b / datasetSize, and the per-coordinate noise std
 * s = σG/b for the learner's `PrivacyHook`, where b = min(batchSize, datasetSize) (the learner
 * uses the whole shard when it is smaller than a batch). See also `resolvePrivacy`.
 */
export function privacyForBudget(opts: {
  epsilon: number
  delta: number
  clipNorm: number
  batchSize: number
  datasetSize: number
  steps: number
  orders?: readonly number[]
  conversion?: RdpConversion
  sampling?: Sampling
}): { clipNorm: number; noiseStd: number; noiseMultiplier: number; samplingRate: number } {
  if (!(Number.isInteger(opts.datasetSize) && opts.datasetSize >= 1)) {
    throw new InvalidPrivacyParameterError('datasetSize', opts.datasetSize, 'the number of examples held must be an integer ≥ 1')
  }
  if (!(Number.isInteger(opts.batchSize) && opts.batchSize >= 1)) {
    throw new InvalidPrivacyParameterError('batchSize', opts.batchSize, 'the batch size must be an integer ≥ 1')
  }
  if (!(opts.clipNorm > 0 && Number.isFinite(opts.clipNorm))) {
    throw new InvalidPrivacyParameterError('clipNorm', opts.clipNorm, 'the clipping norm G must be a finite number > 0')
  }
  const b = Math.min(opts.batchSize, opts.datasetSize)
  const samplingRate = b / opts.datasetSize
  const noiseMultiplier = noiseMultiplierFor({
    targetEpsilon: opts.epsilon,
    delta: opts.delta,
    samplingRate,
    steps: opts.steps,
    orders: opts.orders,
    conversion: opts.conversion,
    sampling: opts.sampling,
  })
  return {
    clipNorm: opts.clipNorm,
    noiseStd: (noiseMultiplier * opts.clipNorm) / b,
    noiseMultiplier,
    samplingRate,
  }
}

function fmt(x: number, digits: number): string {
  if (!Number.isFinite(x)) return String(x)
  return Number(x.toPrecision(digits)).toString()
}

/**
 * One line for progress output and reports, e.g.
 * `ε=2.6 δ=1e-5 (RDP, Poisson sampling, add/remove-one, improved conversion; q=0.00427 σ=1.1, 14063 steps, α=8.1)`.
 */
export function describePrivacy(accountant: RdpAccountant, delta: number): string {
  const s = accountant.spent(delta)
  const history = accountant.getState().history
  const only = history.length === 1 ? history[0]! : accountant
  const params =
    history.length > 1 ? 'mixed q/σ' : `q=${fmt(only.samplingRate, 3)} σ=${fmt(only.noiseMultiplier, 3)}`
  const order = Number.isNaN(s.order) ? '' : `, α=${s.order}`
  return (
    `ε=${fmt(s.epsilon, 3)} δ=${delta.toExponential()} (RDP, ` +
    (accountant.sampling === 'poisson' ? 'Poisson sampling, add/remove-one' : 'sampling w/o replacement, replace-one') +
    `, ${accountant.conversion} conversion; ` +
    `${params}, ${accountant.steps} steps${order})`
  )
}
