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
