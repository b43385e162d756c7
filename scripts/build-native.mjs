#!/usr/bin/env node
// Builds monna's optional native kernels (native/kernels.cc → build/monna-kernels.node) with the
// system C++ compiler against the Node-API headers of the `node-api-headers` package. Runs on
// `npm install` (postinstall) and as `npm run build:native`. It never fails the install: without a
// compiler (or on Windows) it says so in one line and monna trains on its wasm kernels instead.
// MONNA_NATIVE=off skips the build; CXX picks the compiler (default c++).
import { execFileSync } from 'node:child_process'
import { mkdirSync, renameSync, rmSync } from 'node:fs'
import { createRequire } from 'node:module'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'

const root = join(dirname(fileURLToPath(import.meta.url)), '..')
const out = join(root, 'build', 'monna-kernels.node')
const say = (msg) => console.log(`monna: ${msg}`)
const strict = process.argv.includes('--strict')

function build() {
  if (process.env.MONNA_NATIVE === 'off') return say('native kernels not built (MONNA_NATIVE=off); training uses the wasm kernels')
  if (process.platform === 'win32') return say('native kernels are not built on Windows yet; training uses the wasm kernels')
  const require = createRequire(import.meta.url)
  const headers = join(dirname(require.resolve('node-api-headers/package.json')), 'include')
  const cxx = process.env.CXX || 'c++'
  const tmp = `${out}.${process.pid}.tmp`
  mkdirSync(dirname(out), { recursive: true })
  const flags = ['-O3', '-std=c++17', '-shared', '-fPIC', '-fvisibility=hidden', '-fno-exceptions', '-I', headers, join(root, 'native', 'kernels.cc'), '-o', tmp]
  if (process.platform === 'darwin') flags.push('-undefined', 'dynamic_lookup')
  const t0 = Date.now()
  try {
    execFileSync(cxx, flags, { stdio: ['ignore', 'ignore', 'pipe'] })
    // load it before it replaces a working build
    const probe = { exports: {} }
    process.dlopen(probe, tmp)
    const simd = probe.exports.simd()
    renameSync(tmp, out)
    say(`native kernels built (${simd}, ${cxx}, ${((Date.now() - t0) / 1000).toFixed(1)} s): build/monna-kernels.node`)
  } catch (err) {
    rmSync(tmp, { force: true })
    const detail = String(err?.stderr ?? err?.message ?? err).trim().split('\n')[0]
    say(`native kernels not built (${cxx}: ${detail}); training uses the wasm kernels`)
    if (strict) process.exitCode = 1
  }
}

build()
