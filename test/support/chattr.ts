/** The immutable attribute in tests: a directory nobody can write in, root included. */
import { execFileSync } from 'node:child_process'

/** `chattr <flag> <path>` (`+i`, `-i`); false where the file system or the user cannot (the caller then skips what needs it). */
export function chattr(flag: string, path: string): boolean {
  try {
    execFileSync('chattr', [flag, path], { stdio: 'ignore' })
    return true
  } catch {
    return false
  }
}
