/**
 * Base class of every error monna throws. Each condition is its own subclass with a fixed
 * `name` (match on `err.name` or `instanceof`, never on the message) and typed details.
 */
export class MonnaError extends Error {
  override name = 'MonnaError'
}

/** A configuration value (options object, swarm file, CLI flag) is wrong; the message says what to fix. */
export class InvalidConfigError extends MonnaError {
  override name = 'InvalidConfigError'
  readonly path: string
  constructor(path: string, message: string, options?: ErrorOptions) {
    super(path === '' ? message : `${path}: ${message}`, options)
    this.path = path
  }
}

/** The operation was aborted through its AbortSignal. */
export class AbortError extends MonnaError {
  override name = 'AbortError'
  constructor(message = 'the operation was aborted') {
    super(message)
  }
}

/**
 * Exit code of a member process whose listen address was taken (EADDRINUSE) before it bound it:
 * nothing ran, and the same member on another port would have. The topology runner retries on
 * fresh ports when a member exits with it.
 */
export const EXIT_ADDRESS_IN_USE = 4
