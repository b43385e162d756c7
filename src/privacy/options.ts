/**
 * The privacy mode of a member as configuration: typed options, defaults, and
 * `resolvePrivacy`, which validates them and turns them — with the run's batch size, the
 * member's number of examples and the planned number of steps — into the learner's
 * `PrivacyHook` plus an accountant to track the run. Noise is either derived from a
 * whole-run target ε (recommended) or given directly as a noise multiplier.
 */
import {
  adjacencyOf,
  computeEpsilon,
  createRdpAccountant,
  defaultRdpOrders,
  defaultSampling,
  noiseMultiplierFor,
  type RdpAccountant,
  type Sampling,
} from './accountant.ts'
import { InvalidPrivacyParameterError } from './errors.ts'
import type { RdpConversion } from './rdp.ts'
import { validateDelta } from './rdp.ts'

export interface PrivacyOptions {
  /** Per-example L2 clipping norm G. */
  clipNorm: number
  /** δ of the whole-run guarantee; keep it well below 1/(examples held). */
  delta: number
  /** Whole-run ε target: the noise is the smallest that meets it after `steps` steps. Exactly one of `epsilon` / `noiseMultiplier`. */
  epsilon?: number
  /** Noise given directly as σ = s·b/G (the run's ε is then reported, not targeted). */
  noiseMultiplier?: number
  sampling: Sampling
  conversion: RdpConversion
  orders: readonly number[]
}

export const defaultPrivacyOptions = {
  /** TF Privacy's MNIST DP-SGD tutorial (l2_norm_clip = 1.0); Abadi et al. 2016 used 4 with PCA inputs. */
  clipNorm: 1,
  /** TF Privacy's MNIST tutorial; ≪ 1/N for the ≈ 2 900 examples per member of ALGORITHMS §7. */
  delta: 1e-5,
  /** monna's learner samples b distinct examples uniformly per step. */
  sampling: defaultSampling,
  /** Canonne-Kamath-Steinke 2020 / Balle et al. 2020, as Opacus and TF Privacy today. */
  conversion: 'improved' as RdpConversion,
  orders: defaultRdpOrders,
} satisfies Omit<PrivacyOptions, 'epsilon' | 'noiseMultiplier'>

export interface PrivacyRun {
  /** The learner's batch size. */
  batchSize: number
  /** Examples this member holds (N); when N < b the learner uses all N each step. */
  datasetSize: number
  /** Local steps planned for the run (rounds); used to derive the noise from `epsilon`. */
  steps: number
}

export interface ResolvedPrivacy {
  /** For `LearnerOptions.privacy`. */
  hook: { clipNorm: number; noiseStd: number }
  noiseMultiplier: number
  samplingRate: number
  delta: number
  sampling: Sampling
  conversion: RdpConversion
  adjacency: 'replace-one' | 'add-remove'
  /** ε the run will have spent after `steps` steps (≤ the target when `epsilon` was given). */
  plannedEpsilon: number
  /** A fresh accountant with these parameters; call `step()` after every local step. */
  createAccountant(): RdpAccountant
}

/** Validates options (errors name the field under `path`, e.g. `privacy.epsilon`) and derives the hook. */
export function resolvePrivacy(partial: Partial<PrivacyOptions>, run: PrivacyRun, path = 'privacy'): ResolvedPrivacy {
  const opts = { ...defaultPrivacyOptions, ...partial }
  const at = (field: string): string => (path === '' ? field : `${path}.${field}`)
  const fail = (field: string, value: unknown, rule: string): never => {
    throw new InvalidPrivacyParameterError(at(field), value, rule)
  }
  if (!(opts.clipNorm > 0 && Number.isFinite(opts.clipNorm))) fail('clipNorm', opts.clipNorm, 'must be a finite number > 0')
  try {
    validateDelta(opts.delta)
  } catch {
    fail('delta', opts.delta, 'must be in (0, 1), well below 1/(examples held), e.g. 1e-5')
  }
  if (opts.sampling !== 'without-replacement' && opts.sampling !== 'poisson') {
    fail('sampling', opts.sampling, "must be 'without-replacement' (what the learner does) or 'poisson'")
  }
  if (opts.conversion !== 'improved' && opts.conversion !== 'classic') {
    fail('conversion', opts.conversion, "must be 'improved' or 'classic'")
  }
  const hasEps = opts.epsilon !== undefined
  const hasSigma = opts.noiseMultiplier !== undefined
  if (hasEps === hasSigma) {
    fail('epsilon', opts.epsilon, 'give exactly one of epsilon (whole-run target) and noiseMultiplier (σ = s·b/G)')
  }
  if (hasEps && !(opts.epsilon! > 0 && Number.isFinite(opts.epsilon!))) fail('epsilon', opts.epsilon, 'must be a finite number > 0')
  if (hasSigma && !(opts.noiseMultiplier! >= 0 && Number.isFinite(opts.noiseMultiplier!))) {
    fail('noiseMultiplier', opts.noiseMultiplier, 'must be a finite number ≥ 0')
  }
  if (!(Number.isInteger(run.batchSize) && run.batchSize >= 1)) fail('batchSize', run.batchSize, 'must be an integer ≥ 1')
  if (!(Number.isInteger(run.datasetSize) && run.datasetSize >= 1)) fail('datasetSize', run.datasetSize, 'must be an integer ≥ 1')
  if (!(Number.isInteger(run.steps) && run.steps >= 0)) fail('steps', run.steps, 'must be an integer ≥ 0')

  // The learner averages over min(b, N) examples (all of them when the shard is smaller than a batch).
  const b = Math.min(run.batchSize, run.datasetSize)
  const samplingRate = b / run.datasetSize
  const { sampling, conversion, orders, delta, clipNorm } = opts
  const noiseMultiplier = hasEps
    ? noiseMultiplierFor({ targetEpsilon: opts.epsilon!, delta, samplingRate, steps: run.steps, sampling, conversion, orders })
    : opts.noiseMultiplier!
  const plannedEpsilon = computeEpsilon({ samplingRate, noiseMultiplier, steps: run.steps, delta, sampling, conversion, orders })
  return {
    hook: { clipNorm, noiseStd: (noiseMultiplier * clipNorm) / b },
    noiseMultiplier,
    samplingRate,
    delta,
    sampling,
    conversion,
    adjacency: adjacencyOf(sampling),
    plannedEpsilon,
    createAccountant: () => createRdpAccountant({ samplingRate, noiseMultiplier, sampling, conversion, orders }),
  }
}
