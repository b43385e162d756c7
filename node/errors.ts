/** How the program reports failures: one line on stderr and an exit code. */
import { EXIT_ADDRESS_IN_USE, InvalidConfigError, MonnaError } from '../src/errors.ts'

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
  /** a listen address is taken by another program (EADDRINUSE): nothing ran; another port will do */
  addressInUse: EXIT_ADDRESS_IN_USE,
} as const

/** The address a libp2p listen failure names as already in use, if that is what it is. */
export function addressInUse(err: unknown): string | undefined {
  if (!(err instanceof Error) || err.name !== 'UnsupportedListenAddressesError' || !err.message.includes('EADDRINUSE')) return undefined
  return /(\/ip[46]\/\S+?\/tcp\/\d+)/.exec(err.message)?.[1] ?? 'a listen address'
}

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
