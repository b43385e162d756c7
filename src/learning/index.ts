/**
 * The learning core (contract §1): data sets, partitions, models with a flat parameter layout,
 * the MoNNA local step (ALGORITHMS §1) and compute backends. Knows nothing of the network.
 */
export type { BackendChoice, BackendInfo, BackendOptions } from './backend.ts'
export { backendReady, ensureTfBackend, initBackend } from './backend.ts'
export type { Dataset, DatasetSpec } from './data.ts'
export { clearDatasetCache, defaultSeparation, fashionTrainPerClass, flipLabels, leastSquares, loadDataset, loadShard, maxLinearDim, subset, validateDatasetSpec, wholeTestChunks } from './data.ts'
export { BackendUnavailableError, CorruptDatasetError, DatasetNotFoundError, TfNotLoadedError } from './errors.ts'
export type { IdxArray } from './idx.ts'
export { maxIdxBytes, pixelsToFloat, readIdx, readIdxPair, readIdxPairBytes, readIdxRowRange, readIdxRows } from './idx.ts'
export type { EvaluationResult, Learner, LearnerOptions, LearnerRngState, PreconditionOptions, PrivacyHook, StepResult } from './learner.ts'
export { createLearner, defaultLearnerOptions, evaluateChunks, validateLearnerOptions } from './learner.ts'
export type { Model, ModelSpec, ParamSlot } from './models.ts'
export { createModel, flatten, initParams, paramCount, unflatten } from './models.ts'
export type { PartitionSpec } from './partition.ts'
export { labelHistogram, partition } from './partition.ts'
export type { LrSchedule } from './schedule.ts'
export { learningRate, validateSchedule } from './schedule.ts'
// tfjs is loaded on demand (a member on the native kernels never loads it): `await loadTf()`
export { loadTf, tfIfLoaded } from './tf-loader.ts'
