/**
 * The data directory (checkpoints, stored membership epochs) is checked when a member starts,
 * before it joins: it exists or can be created (mkdir -p), it is a directory, and a file can be
 * created and removed in it. Otherwise the first checkpoint would fail rounds later.
 */
import { mkdir, open, rm, stat } from 'node:fs/promises'
import { dirname, join } from 'node:path'
import { MonnaError } from '../errors.ts'

/** The data directory cannot be used; the message names the path and what to change. */
export class DataDirError extends MonnaError {
  override name = 'DataDirError'
  readonly path: string
  /** errno code of the failing call (ENOTDIR, EACCES, EROFS, …), when there was one */
  readonly code: string | undefined
  constructor(path: string, message: string, code?: string, options?: ErrorOptions) {
    super(message, options)
    this.path = path
    this.code = code
  }
}

/** The file-system calls the check makes (tests inject failures). */
export interface DataDirFs {
  mkdir(path: string, opts: { recursive: true }): Promise<unknown>
  stat(path: string): Promise<{ isDirectory(): boolean }>
  /** creates `path` exclusively (fails if it exists) and closes it */
  touch(path: string): Promise<void>
  rm(path: string): Promise<void>
}

const nodeFs: DataDirFs = {
  mkdir: (path, opts) => mkdir(path, opts),
  stat: (path) => stat(path),
  touch: async (path) => {
    const fh = await open(path, 'wx', 0o600)
    await fh.close()
  },
  rm: (path) => rm(path),
}

const codeOf = (err: unknown): string | undefined => (err as NodeJS.ErrnoException | null)?.code

/** The nearest existing ancestor of `path` that is not a directory, if any. */
async function fileAncestor(path: string, fs: DataDirFs): Promise<string | undefined> {
  for (let p = path; ; ) {
    try {
      return (await fs.stat(p)).isDirectory() ? undefined : p
    } catch {
      // absent (or unreadable): look further up
    }
    const up = dirname(p)
    if (up === p) return undefined
    p = up
  }
}

const other = 'choose another data directory (dataDir in the node config, --data-dir on the command line)'

/**
 * Throws DataDirError unless `dir` is a writable directory, creating it (and its parents) when
 * absent. Leaves nothing behind but the directory.
 */
export async function checkDataDir(dir: string, fs: DataDirFs = nodeFs): Promise<void> {
  try {
    await fs.mkdir(dir, { recursive: true })
  } catch (err) {
    const code = codeOf(err)
    if (code === 'EEXIST' || code === 'ENOTDIR') {
      const file = await fileAncestor(dir, fs)
      if (file === dir) throw new DataDirError(dir, `data directory ${dir} is a file, not a directory; move the file away or ${other}`, code, { cause: err })
      if (file !== undefined) throw new DataDirError(dir, `cannot create data directory ${dir}: ${file} is a file, not a directory; ${other}`, code, { cause: err })
    }
    throw new DataDirError(dir, `cannot create data directory ${dir} (${code ?? String(err)}); create it with write permission for this user, or ${other}`, code, { cause: err })
  }
  let isDir: boolean
  try {
    isDir = (await fs.stat(dir)).isDirectory()
  } catch (err) {
    throw new DataDirError(dir, `cannot read data directory ${dir} (${codeOf(err) ?? String(err)}); ${other}`, codeOf(err), { cause: err })
  }
  if (!isDir) throw new DataDirError(dir, `data directory ${dir} is not a directory; move it away or ${other}`)
  // checkpoints are written as temporary files, renamed, and old ones removed: create and remove one
  const probe = join(dir, `.monna-write-probe-${Math.random().toString(36).slice(2)}`)
  try {
    await fs.touch(probe)
    await fs.rm(probe)
  } catch (err) {
    const code = codeOf(err)
    throw new DataDirError(dir, `data directory ${dir} is not writable (${code ?? String(err)}); give this user write permission on it (chmod u+w, chown), or ${other}`, code, { cause: err })
  }
}
