/**
 * Differential privacy for honest members (ALGORITHMS §6, issue 8): the per-step Gaussian
 * mechanism with per-example clipping, and a Rényi-DP accountant for the whole run
 * (sampled Gaussian mechanism, Mironov, Talwar & Zhang 2019). See docs/privacy.md.
 */

export {
  adjacencyOf,
  computeEpsilon,
  computeEpsilonWithoutSampling,
  computePrivacySpent,
  createRdpAccountant,
  defaultRdpOrders,
  defaultSampling,
  describePrivacy,
  type EpsilonQuery,
  maxNoiseMultiplier,
  noiseMultiplierFor,
  type PrivacyAccountant,
  privacyForBudget,
  type RdpAccountant,
  type RdpAccountantOptions,
  type RdpAccountantState,
  replaceOneGuarantee,
  type Sampling,
  type SgmEvent,
  stepRdp,
} from './accountant.ts'
export {
  EpsilonAboveClassicBoundError,
  InvalidPrivacyParameterError,
  NonFiniteGradientError,
  PrivacyBudgetUnreachableError,
  PrivacyNumericsError,
} from './errors.ts'
export {
  type Adjacency,
  analyticGaussianNoiseStd,
  clipToNorm,
  type GaussianStepOptions,
  gaussianDelta,
  gaussianNoiseStd,
  meanSensitivity,
  noiseMultiplierFromStd,
  noiseStdFromMultiplier,
} from './mechanism.ts'
export {
  defaultPrivacyOptions,
  type PrivacyOptions,
  type PrivacyRun,
  type ResolvedPrivacy,
  resolvePrivacy,
} from './options.ts'
export {
  computeRdp,
  logErfc,
  type PrivacySpent,
  type RdpConversion,
  rdpToDelta,
  rdpToEpsilon,
  sampledGaussianRdp,
} from './rdp.ts'
export { withoutReplacementGaussianRdp } from './wor.ts'
