/**
 * The directory of monna's package.json: the repository root when run from source (src/…),
 * the package directory when run from the built JavaScript (dist/src/…) of an installed package.
 * Files the package ships outside its modules (bin/, build/ for the native kernels) are found
 * from here, whichever layout runs.
 */
import { existsSync, readFileSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'

let root: string | undefined

export function packageRoot(): string {
  if (root !== undefined) return root
  let dir = dirname(fileURLToPath(import.meta.url))
  for (;;) {
    const file = join(dir, 'package.json')
    if (existsSync(file) && (JSON.parse(readFileSync(file, 'utf8')) as { name?: string }).name === 'monna') {
      root = dir
      return dir
    }
    const up = dirname(dir)
    if (up === dir) throw new Error(`monna's package.json not found above ${fileURLToPath(import.meta.url)}`)
    dir = up
  }
}
