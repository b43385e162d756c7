/** Errors of the learning core (one class per condition; match on `.name` or `instanceof`). */
import { MonnaError } from '../errors.ts'

/** A data file is not what it claims to be: bad magic, impossible dimensions, truncation, bad values. */
export class CorruptDatasetError extends MonnaError {
  override name = 'CorruptDatasetError'
  readonly file: string
  readonly reason: 'bad-magic' | 'bad-dimensions' | 'truncated' | 'trailing-data' | 'bad-value' | 'mismatch'
  constructor(file: string, reason: CorruptDatasetError['reason'], detail: string) {
    super(`${file}: ${detail}`)
    this.file = file
    this.reason = reason
  }
}

/** A data file or a data package is missing. */
export class DatasetNotFoundError extends MonnaError {
  override name = 'DatasetNotFoundError'
  readonly file: string
  constructor(file: string, hint: string, options?: ErrorOptions) {
    super(`${file} not found: ${hint}`, options)
    this.file = file
  }
}

/** The requested compute backend cannot be used on this machine. */
export class BackendUnavailableError extends MonnaError {
  override name = 'BackendUnavailableError'
  readonly backend: string
  constructor(backend: string, detail: string, options?: ErrorOptions) {
    super(`backend '${backend}' is unavailable: ${detail}`, options)
    this.backend = backend
  }
}

/** Tensors were asked for before TensorFlow.js was loaded (it loads on demand: `await loadTf()`). */
export class TfNotLoadedError extends MonnaError {
  override name = 'TfNotLoadedError'
  constructor() {
    super('TensorFlow.js is not loaded yet: await loadTf() (monna/learning) before using tensors')
  }
}

/** A gradient had a NaN or infinite coordinate (diverged training or a broken model); nothing was applied. */
export class NonFiniteGradientError extends MonnaError {
  override name = 'NonFiniteGradientError'
  readonly round: number
  constructor(round: number) {
    super(`round ${round}: the gradient has non-finite values (training diverged? lower the learning rate); the step was not applied`)
    this.round = round
  }
}
