/**
 * The package as npm installs it: built JavaScript (dist/, `npm run build`) inside a
 * node_modules directory, where Node refuses to strip TypeScript types. A consumer imports the
 * library by name (root and a part), type-checks against its declarations, and runs the
 * `monna` program through its bin shim — nothing may still point at a .ts file.
 */
import assert from 'node:assert/strict'
import { execFile } from 'node:child_process'
import { existsSync } from 'node:fs'
import { cp, mkdir, readFile, rm, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { after, before, it } from 'node:test'
import { promisify } from 'node:util'
import { repoRoot } from '../unit/node/cli-harness.ts'

const run = promisify(execFile)
const tsc = join(repoRoot, 'node_modules', 'typescript', 'bin', 'tsc')
// under the repository's node_modules, so the package's dependencies resolve from there
const home = join(repoRoot, 'node_modules', '.cache', `monna-package-test-${process.pid}`)
const pkg = join(home, 'node_modules', 'monna')

before(async () => {
  await rm(home, { recursive: true, force: true })
  await mkdir(pkg, { recursive: true })
  const manifest = JSON.parse(await readFile(join(repoRoot, 'package.json'), 'utf8')) as { files: string[] }
  // what `npm pack` ships (package.json `files`), with dist/ built fresh into the copy
  for (const entry of manifest.files) {
    if (entry === 'dist/') continue
    const from = join(repoRoot, entry)
    if (existsSync(from)) await cp(from, join(pkg, entry), { recursive: true })
  }
  await cp(join(repoRoot, 'package.json'), join(pkg, 'package.json'))
  // the native kernels npm's postinstall would build (when this checkout has them)
  if (existsSync(join(repoRoot, 'build'))) await cp(join(repoRoot, 'build'), join(pkg, 'build'), { recursive: true })
  await run(process.execPath, [tsc, '-p', join(repoRoot, 'tsconfig.build.json'), '--outDir', join(pkg, 'dist')], { cwd: repoRoot })
})

after(async () => {
  await rm(home, { recursive: true, force: true })
})

it('ships built JavaScript only: no module of the package imports a .ts file', async () => {
  const out = await run('grep', ['-rlE', String.raw`(from|import\() *['"][^'"]+\.ts['"]`, join(pkg, 'dist'), '--include=*.js']).catch((e: { code?: number; stdout?: string }) => {
    if (e.code === 1) return { stdout: '' } // grep: no match
    throw e
  })
  assert.equal(out.stdout, '', `modules importing .ts files:\n${out.stdout}`)
  assert.ok(existsSync(join(pkg, 'dist', 'src', 'index.js')))
  assert.ok(existsSync(join(pkg, 'dist', 'src', 'index.d.ts')))
})

it('a consumer imports the library by name and runs it (root and a part, kernel worker threads)', async () => {
  const script = join(home, 'consumer.mjs')
  await writeFile(
    script,
    `import { createAggregator, createSwarmNode, nearestToMedianMean, parseScenario, runTopology } from 'monna'
import { kernelThreads, nativeStatus, registerFallbackKernels } from 'monna/compute'
const agg = createAggregator({ rule: 'nna', f: 1 })
const inputs = [[0, 0], [1, 1], [2, 2], [100, 100]].map((v) => Float32Array.from(v))
const out = agg.aggregate(inputs, { own: 0 })
await registerFallbackKernels('wasm', { threads: 2 })
const api = [createSwarmNode, parseScenario, runTopology].map((f) => typeof f)
console.log(JSON.stringify({ nna: [...out], catchUp: [...nearestToMedianMean(inputs, 1)], native: nativeStatus(), threads: kernelThreads(), api }))
`,
  )
  // with the native kernels off, threads: 2 starts a wasm kernel worker (dist/src/compute/worker.js)
  const { stdout } = await run(process.execPath, [script], { cwd: home, env: { ...process.env, MONNA_NATIVE: 'off' } })
  const res = JSON.parse(stdout) as { nna: number[]; catchUp: number[]; native: string; threads: number; api: string[] }
  assert.deepEqual(res.api, ['function', 'function', 'function'])
  assert.deepEqual(res.nna, [1, 1]) // own [0,0] and its 2 nearest of k − f = 3: [0,0], [1,1], [2,2]
  assert.deepEqual(res.catchUp, [1, 1])
  assert.match(res.native, /^off/)
  assert.equal(res.threads, 2)
  if (existsSync(join(repoRoot, 'build', 'monna-kernels.node'))) {
    // and the native kernels load from the package's build/ directory
    const native = await run(process.execPath, ['--input-type=module', '-e', "import { nativeStatus } from 'monna/compute'; console.log(nativeStatus())"], { cwd: home })
    assert.match(native.stdout, /^native/)
  }
})

it("a TypeScript consumer type-checks against the package's declarations", async () => {
  await writeFile(
    join(home, 'consumer.ts'),
    `import { createAggregator, type RoundReport } from 'monna'
const agg = createAggregator({ rule: 'nna', f: 1 })
const out: Float32Array = agg.aggregate([new Float32Array(2)], { own: 0 })
const r: Pick<RoundReport, 'round'> = { round: out.length }
// @ts-expect-error: the declarations carry the types (f is a number)
createAggregator({ rule: 'nna', f: 'one' })
export { r }
`,
  )
  await writeFile(
    join(home, 'tsconfig.json'),
    JSON.stringify({ compilerOptions: { module: 'NodeNext', moduleResolution: 'NodeNext', target: 'ES2023', strict: true, noEmit: true, skipLibCheck: true, types: [] }, files: ['consumer.ts'] }),
  )
  const res = await run(process.execPath, [tsc, '-p', join(home, 'tsconfig.json')], { cwd: home }).catch((e: { stdout: string }) => e)
  assert.equal(res.stdout, '', `tsc:\n${res.stdout}`)
})

it('the installed `monna` program runs from its build', async () => {
  const bin = join(pkg, 'bin', 'monna.js')
  const version = JSON.parse(await readFile(join(repoRoot, 'package.json'), 'utf8')).version as string
  const v = await run(process.execPath, [bin, '--version'], { cwd: home })
  assert.equal(v.stdout.trim(), version)
  const init = await run(process.execPath, [bin, 'swarm', 'init', '--nodes', '4', '--f', '1', '--dir', join(home, 'lan'), '--base-port', '9400'], { cwd: home })
  assert.match(init.stdout, /4 members, f = 1/)
  assert.ok(existsSync(join(home, 'lan', 'node-3.yaml')))
})

it('the installed program runs a multi-process topology (members spawned from the package)', { timeout: 120_000 }, async () => {
  const bin = join(pkg, 'bin', 'monna.js')
  const out = join(home, 'run')
  const res = await run(process.execPath, [bin, 'run', join(pkg, 'topologies', 'ci-smoke.yaml'), '--out', out, '--quiet'], { cwd: home, timeout: 110_000 })
  const report = JSON.parse(await readFile(join(out, 'report.json'), 'utf8')) as { passed: boolean; nodes: unknown[] }
  assert.equal(report.passed, true, res.stdout + res.stderr)
  assert.equal(report.nodes.length, 4)
})
