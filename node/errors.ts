/** How the program reports failures: one line on stderr and an exit code. */
import { InvalidConfigError, MonnaError } from '../src/errors.ts'

/** Bad input on the command line or in a file: exit code 2. */
export class UsageError extends MonnaError {
  override name = 'UsageError'
}

export const exitCodes = {
  ok: 0,
  failure: 1,
  usage: 2,
  /** a Byzantine "crash" behaviour stopped the member on purpose */
  crashed: 3,
} as const

/** Whether an error is the user's input to fix (exit 2) rather than a failure at run time. */
export function isUsageError(err: unknown): boolean {
  if (err instanceof UsageError || err instanceof InvalidConfigError) return true
  const name = (err as { name?: unknown } | null)?.name
  return (
    name === 'MalformedKeyFileError' ||
    name === 'CheckpointMismatchError' ||
    name === 'DataDirError' ||
    name === 'InvalidParameterError' ||
    name === 'InvalidPrivacyParameterError' ||
    name === 'EpsilonAboveClassicBoundError' ||
    name === 'DatasetNotFoundError' ||
    name === 'FaultBoundError' ||
    name === 'MemberChangeError' ||
    name === 'EpochRejectedError'
  )
}
