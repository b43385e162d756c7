/**
 * The program the members of a process-mode run start with: monna's command line bundled by
 * esbuild into a few ES modules under build/member/<hash>/, made from this package's own
 * sources (node/cli.ts in a checkout, dist/node/cli.js in a built package) and made again
 * whenever one of the files it was made from changed.
 *
 * Why: run from its ≈ 1,100 modules, a member's V8 heap holds ≈ 23 MB of loaded code, and the
 * round's full collection spends most of its time marking it; bundled, ≈ 10 MB, and each member
 * of the 26-process swarm peaks 12–31 MB lower for 2–12 % less CPU (docs/memory.md, session 35).
 * The members run the same code: the bundle is these sources, nothing is left out or replaced.
 *
 * Falls back to bin/monna.js (the sources, module by module) when esbuild is missing, the
 * package directory is not writable, or MONNA_MEMBER_BUNDLE=0; `reason` says why.
 */
import { createHash, randomBytes } from 'node:crypto'
import { existsSync } from 'node:fs'
import { mkdir, readdir, readFile, rename, rm, stat, writeFile } from 'node:fs/promises'
import { dirname, isAbsolute, join, relative, resolve } from 'node:path'
import { packageRoot } from '../package-root.ts'

export interface MemberProgram {
  /** the file members run (`node <program> start …`) */
  program: string
  /** true when `program` is a bundle under `dir` */
  bundled: boolean
  /** true when this call made the bundle (its sources changed, or there was none) */
  built: boolean
  /** why the members run from the sources instead, when they do */
  reason?: string
}

export interface MemberProgramOptions {
  /** the module to bundle (default: node/cli.ts in a checkout, dist/node/cli.js in a built package) */
  entry?: string
  /** where bundles are kept (default: build/member/ of the package) */
  dir?: string
  /** what to run when no bundle can be made (default: bin/monna.js of the package) */
  fallback?: string
  /** the environment read for MONNA_MEMBER_BUNDLE (default: process.env) */
  env?: NodeJS.ProcessEnv
}

/**
 * Bundles no longer current are removed once older than a day, or than an hour when more than
 * `KEEP_RECENT` newer ones are there (each is ≈ 6 MB; a run started before may still load chunks
 * of its own, or start a member again).
 */
const KEEP_OLD_MS = 24 * 3600 * 1000
const KEEP_BUSY_MS = 3600 * 1000
const KEEP_RECENT = 8
const MANIFEST = 'current.json'
const MANIFEST_VERSION = 1

interface Manifest {
  version: number
  entry: string
  out: string
  /** every file the bundle was made from: path (relative to the working directory of the build), mtime (ms), size */
  inputs: Array<[string, number, number]>
}

/**
 * The program for members: the current bundle of `entry` (made or made again when needed), or
 * `fallback` with the reason. Safe to call from concurrent runs: a bundle is written under a
 * temporary name and renamed into place, and its directory is named by the hash of its content.
 */
export async function memberProgram(opts: MemberProgramOptions = {}): Promise<MemberProgram> {
  const root = packageRoot()
  const fallback = opts.fallback ?? join(root, 'bin', 'monna.js')
  const env = opts.env ?? process.env
  if (env.MONNA_MEMBER_BUNDLE === '0') return { program: fallback, bundled: false, built: false, reason: 'MONNA_MEMBER_BUNDLE=0' }
  const entry = opts.entry ?? defaultEntry(root)
  if (entry === undefined) return { program: fallback, bundled: false, built: false, reason: 'neither node/cli.ts nor dist/node/cli.js is in the package' }
  const dir = opts.dir ?? join(root, 'build', 'member')
  const current = await currentBundle(dir, entry)
  if (current !== undefined) return { program: current, bundled: true, built: false }
  try {
    return { program: await build(entry, dir), bundled: true, built: true }
  } catch (err) {
    return { program: fallback, bundled: false, built: false, reason: `no bundle could be made (${buildError(err)})` }
  }
}

/** esbuild's first message (file, line and text) or the error's first line. */
function buildError(err: unknown): string {
  const first = (err as { errors?: Array<{ text?: string; location?: { file?: string; line?: number } | null }> }).errors?.[0]
  if (first?.text !== undefined) return first.location?.file !== undefined ? `${first.location.file}:${first.location.line ?? 0}: ${first.text}` : first.text
  return err instanceof Error ? (err.message.split('\n')[0] ?? err.name) : String(err)
}

function defaultEntry(root: string): string | undefined {
  for (const f of [join(root, 'node', 'cli.ts'), join(root, 'dist', 'node', 'cli.js')]) if (existsSync(f)) return f
  return undefined
}

/** The bundle's main module if the manifest names one whose every input is unchanged since. */
async function currentBundle(dir: string, entry: string): Promise<string | undefined> {
  let manifest: Manifest
  try {
    manifest = JSON.parse(await readFile(join(dir, MANIFEST), 'utf8')) as Manifest
  } catch {
    return undefined
  }
  if (manifest.version !== MANIFEST_VERSION || manifest.entry !== entry || typeof manifest.out !== 'string' || !/^[0-9a-f]{16}$/.test(manifest.out)) return undefined
  const main = join(dir, manifest.out, 'main.js')
  if (!existsSync(main) || !Array.isArray(manifest.inputs) || manifest.inputs.length === 0) return undefined
  const base = dirname(dir)
  const same = await Promise.all(
    manifest.inputs.map(async ([file, mtime, size]) => {
      try {
        const s = await stat(isAbsolute(file) ? file : resolve(base, file))
        return s.mtimeMs === mtime && s.size === size
      } catch {
        return false
      }
    }),
  )
  return same.every(Boolean) ? main : undefined
}

// the bundled packages that load node's built-ins with `require` (CommonJS inside ES modules)
const banner = "import { createRequire as __monnaCreateRequire } from 'node:module';\nconst require = __monnaCreateRequire(import.meta.url);"

// the entry members start: Node's compile cache first (as bin/monna.js), then the bundle
const mainModule = `// made by monna (src/topology/member-program.ts): the program members of a run start with
import module from 'node:module'
module.enableCompileCache?.()
await import('./cli.js')
`

async function build(entry: string, dir: string): Promise<string> {
  // a variable specifier: esbuild is loaded only here, when a bundle is to be made
  const specifier = 'esbuild'
  const esbuild = (await import(specifier)) as typeof import('esbuild')
  const base = dirname(dir)
  const staging = join(dir, 'staging')
  await mkdir(dir, { recursive: true })
  const started = Date.now()
  const result = await esbuild.build({
    entryPoints: { cli: entry },
    absWorkingDir: base,
    bundle: true,
    splitting: true,
    format: 'esm',
    platform: 'node',
    target: 'node22',
    outdir: staging,
    write: false,
    metafile: true,
    logLevel: 'silent',
    // tfjs (loaded only by models that need it) and the native addon stay files of their own, and
    // so does UPnP: @achingbrain/ssdp reads its package.json beside its own module (a test checks
    // that no bundled package looks for files beside itself)
    external: ['@tensorflow/*', '*.node', '@libp2p/upnp-nat'],
    banner: { js: banner },
  })
  const files = result.outputFiles.map((f) => ({ name: relative(staging, f.path), contents: f.contents }))
  files.push({ name: 'main.js', contents: new TextEncoder().encode(mainModule) })
  files.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0))
  const hash = createHash('sha256')
  for (const f of files) hash.update(`${f.name}\0${f.contents.length}\0`).update(f.contents)
  const out = hash.digest('hex').slice(0, 16)
  const target = join(dir, out)
  if (!existsSync(join(target, 'main.js'))) {
    const tmp = join(dir, `.tmp-${process.pid}-${randomBytes(4).toString('hex')}`)
    await mkdir(tmp)
    try {
      for (const f of files) {
        await mkdir(dirname(join(tmp, f.name)), { recursive: true })
        await writeFile(join(tmp, f.name), f.contents)
      }
      await rename(tmp, target)
    } catch (err) {
      // another run put the same bundle in place meanwhile: take it
      await rm(tmp, { recursive: true, force: true })
      if (!existsSync(join(target, 'main.js'))) throw err
    }
  }
  const inputs: Manifest['inputs'] = []
  for (const file of Object.keys(result.metafile.inputs)) {
    // esbuild's namespaced inputs (none expected) are not files to watch
    if (file.includes(':')) continue
    const s = await stat(resolve(base, file))
    inputs.push([file, s.mtimeMs, s.size])
  }
  // a file changed while esbuild read the sources may be in the bundle in its old form: this run
  // takes the bundle (as one started a moment earlier would have), the next one makes it again
  // (a file dated in the future, too, is checked again at every run)
  if (inputs.some(([, mtime]) => Math.floor(mtime) > started)) return join(target, 'main.js')
  const manifest: Manifest = { version: MANIFEST_VERSION, entry, out, inputs }
  const tmpManifest = join(dir, `.${MANIFEST}-${process.pid}-${randomBytes(4).toString('hex')}`)
  await writeFile(tmpManifest, JSON.stringify(manifest))
  await rename(tmpManifest, join(dir, MANIFEST))
  await pruneOld(dir, out)
  return join(target, 'main.js')
}

/** Removes old bundles other than `keep` (best effort; see `KEEP_OLD_MS`). */
async function pruneOld(dir: string, keep: string): Promise<void> {
  try {
    const others: Array<{ name: string; age: number }> = []
    for (const name of await readdir(dir)) {
      if (name === keep || !/^[0-9a-f]{16}$/.test(name)) continue
      others.push({ name, age: Date.now() - (await stat(join(dir, name))).mtimeMs })
    }
    others.sort((a, b) => a.age - b.age)
    for (const [i, o] of others.entries()) {
      if (o.age > KEEP_OLD_MS || (i >= KEEP_RECENT && o.age > KEEP_BUSY_MS)) await rm(join(dir, o.name), { recursive: true, force: true })
    }
  } catch {
    // another run pruning at the same time, or a file gone: nothing to do
  }
}
