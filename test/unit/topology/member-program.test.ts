import assert from 'node:assert/strict'
import { execFileSync, spawnSync } from 'node:child_process'
import { readFileSync } from 'node:fs'
import { mkdir, mkdtemp, readdir, rm, utimes, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { basename, dirname, join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { pathToFileURL } from 'node:url'
import { packageRoot } from '../../../src/package-root.ts'
import { memberProgram } from '../../../src/topology/member-program.ts'

const run = (program: string, ...args: string[]): string => execFileSync(process.execPath, [program, ...args], { encoding: 'utf8', timeout: 60_000 }).trim()

describe('the members\' program (bundled)', () => {
  let tmp: string
  before(async () => {
    tmp = await mkdtemp(join(tmpdir(), 'monna-member-program-'))
  })
  after(async () => {
    await rm(tmp, { recursive: true, force: true })
  })

  it('bundles an entry, keeps the bundle while its files are unchanged, and makes it again when one changes', async () => {
    const src = join(tmp, 'a')
    const dir = join(src, 'build', 'member')
    await mkdir(src, { recursive: true })
    await writeFile(join(src, 'entry.js'), "import { v } from './dep.js'\nconsole.log(v)\n")
    await writeFile(join(src, 'dep.js'), "export const v = 'one'\n")
    const opts = { entry: join(src, 'entry.js'), dir, fallback: 'fallback.js', env: {} }

    const first = await memberProgram(opts)
    assert.equal(first.bundled, true, first.reason)
    assert.equal(first.built, true)
    assert.equal(dirname(dirname(first.program)), dir)
    assert.equal(run(first.program), 'one')

    const again = await memberProgram(opts)
    assert.deepEqual(again, { program: first.program, bundled: true, built: false })

    // touched, same content: checked again, same bundle
    const later = new Date(Date.now() + 5_000)
    await utimes(join(src, 'dep.js'), later, later)
    const touched = await memberProgram(opts)
    assert.equal(touched.built, true)
    assert.equal(touched.program, first.program)
    // dated after the build started (as a file edited while esbuild read it would be): not
    // recorded as current, so the next run checks it again
    assert.equal((await memberProgram(opts)).built, true)

    // an input changed: a new bundle, which runs the new code
    await writeFile(join(src, 'dep.js'), "export const v = 'two'\n")
    const changed = await memberProgram(opts)
    assert.equal(changed.built, true)
    assert.notEqual(changed.program, first.program)
    assert.equal(run(changed.program), 'two')
    assert.equal((await memberProgram(opts)).built, false)
  })

  it('concurrent runs making the same bundle all get it', async () => {
    const src = join(tmp, 'b')
    await mkdir(src, { recursive: true })
    await writeFile(join(src, 'entry.js'), "console.log('b')\n")
    const opts = { entry: join(src, 'entry.js'), dir: join(src, 'build', 'member'), fallback: 'fallback.js', env: {} }
    const all = await Promise.all([memberProgram(opts), memberProgram(opts), memberProgram(opts), memberProgram(opts)])
    for (const p of all) assert.equal(p.bundled, true, p.reason)
    assert.equal(new Set(all.map((p) => p.program)).size, 1)
    assert.equal(run(all[0]!.program), 'b')
  })

  it('removes old bundles when it makes one: a day old, or an hour old beyond the eight newest', async () => {
    const src = join(tmp, 'd')
    const dir = join(src, 'build', 'member')
    await mkdir(dir, { recursive: true })
    await writeFile(join(src, 'entry.js'), "console.log('d')\n")
    const old = async (name: string, ageMs: number): Promise<void> => {
      await mkdir(join(dir, name))
      const t = new Date(Date.now() - ageMs)
      await utimes(join(dir, name), t, t)
    }
    await old('0000000000000000', 10 * 60_000) // recent: kept
    for (let i = 1; i <= 9; i++) await old(`${i}`.repeat(16), 2 * 3600_000) // 7 of 9 kept (8 newest in all)
    await old('ffffffffffffffff', 2 * 24 * 3600_000) // a day old: removed
    await mkdir(join(dir, 'notes')) // not a bundle's name: left alone
    const p = await memberProgram({ entry: join(src, 'entry.js'), dir, fallback: 'fallback.js', env: {} })
    assert.equal(p.built, true, p.reason)
    const left = (await readdir(dir)).filter((n) => /^[0-9a-f]{16}$/.test(n))
    const current = basename(dirname(p.program))
    assert.equal(left.length, 9)
    assert.ok(left.includes(current) && left.includes('0000000000000000'))
    assert.ok(!left.includes('ffffffffffffffff'))
    assert.equal(left.filter((n) => n !== current && /^([1-9])\1{15}$/.test(n)).length, 7)
    assert.ok((await readdir(dir)).includes('notes'))
  })

  it('falls back to the sources, saying why, when switched off or when the entry cannot be bundled', async () => {
    const src = join(tmp, 'c')
    await mkdir(src, { recursive: true })
    await writeFile(join(src, 'entry.js'), "import { nothing } from './missing.js'\nconsole.log(nothing)\n")
    const opts = { entry: join(src, 'entry.js'), dir: join(src, 'build', 'member'), fallback: 'fallback.js' }
    const off = await memberProgram({ ...opts, env: { MONNA_MEMBER_BUNDLE: '0' } })
    assert.deepEqual(off, { program: 'fallback.js', bundled: false, built: false, reason: 'MONNA_MEMBER_BUNDLE=0' })
    const broken = await memberProgram({ ...opts, env: {} })
    assert.equal(broken.bundled, false)
    assert.equal(broken.program, 'fallback.js')
    assert.match(broken.reason ?? '', /no bundle could be made/)
  })

  it('`monna start` runs the bundle, and the sources with MONNA_MEMBER_BUNDLE=0', async () => {
    // a hook preloaded in the child writes the URLs of the modules it loaded
    const hook = join(tmp, 'loaded.mjs')
    await writeFile(
      hook,
      `import module from 'node:module'
import { writeFileSync } from 'node:fs'
const urls = []
module.registerHooks({ load(url, context, next) { urls.push(url); return next(url, context) } })
process.on('exit', () => writeFileSync(process.env.LOADED_OUT, JSON.stringify(urls)))
`,
    )
    const loaded = (env: Record<string, string>): string[] => {
      const out = join(tmp, `loaded-${Object.keys(env).length}.json`)
      const r = spawnSync(process.execPath, ['--import', hook, join(packageRoot(), 'bin', 'monna.js'), 'start', '--help'], { encoding: 'utf8', timeout: 60_000, env: { ...process.env, ...env, LOADED_OUT: out } })
      assert.equal(r.status, 0, r.stderr)
      assert.match(r.stdout, /--config/)
      return JSON.parse(readFileSync(out, 'utf8')) as string[]
    }
    const bundled = loaded({})
    const memberDir = pathToFileURL(join(packageRoot(), 'build', 'member')).href
    assert.ok(bundled.some((u) => u.startsWith(memberDir) && u.endsWith('/cli.js')), 'the bundle was not loaded')
    assert.ok(!bundled.some((u) => u.endsWith('/node/cli.ts')), 'node/cli.ts was loaded')
    const sources = loaded({ MONNA_MEMBER_BUNDLE: '0' })
    assert.ok(sources.some((u) => u.endsWith('/node/cli.ts')))
    assert.ok(!sources.some((u) => u.startsWith(memberDir)))
  })

  it('monna\'s own program bundles and runs; no bundled package looks for files beside its own module', async () => {
    const p = await memberProgram({ env: {} })
    assert.equal(p.bundled, true, p.reason)
    // a package reading files relative to itself (import.meta.url, __dirname) would read them
    // relative to the bundle instead (@achingbrain/ssdp did: UPnP members failed at start); esbuild
    // names each module's source in a comment before its code
    const dir = dirname(p.program)
    const offenders: string[] = []
    for (const file of (await readdir(dir)).filter((f) => f.endsWith('.js'))) {
      let module = ''
      for (const line of readFileSync(join(dir, file), 'utf8').split('\n')) {
        const source = /^\/\/ (\S+\.(?:[cm]?js|ts|json))$/.exec(line)
        if (source !== null) module = source[1]!
        else if (/import\.meta\.url|\b__dirname\b|\b__filename\b/.test(line) && !line.includes('__monnaCreateRequire(import.meta.url)') && module.includes('node_modules/')) offenders.push(`${file}: ${module}: ${line.trim()}`)
      }
    }
    assert.deepEqual(offenders, [])
    const pkg = JSON.parse(readFileSync(join(packageRoot(), 'package.json'), 'utf8')) as { version: string }
    assert.equal(run(p.program, '--version'), pkg.version)
  })
})
