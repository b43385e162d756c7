#!/usr/bin/env node
// Entry point of the `monna` program. The program lives in node/: run from source (TypeScript,
// by Node >= 22.18 type stripping) in a checkout, from its build (dist/, `npm run build`) in an
// installed package, where Node does not strip types. This shim checks the runtime and hands over.
import { existsSync } from 'node:fs'
import module from 'node:module'
import { fileURLToPath, pathToFileURL } from 'node:url'

const [major, minor] = process.versions.node.split('.').map(Number)
if (major < 22 || (major === 22 && minor < 18)) {
  console.error(`monna needs Node.js >= 22.18 (this is ${process.versions.node}); run it through npm (\`npm run monna -- ...\`), which uses the Node installed by \`npm install\`, or install a newer Node.`)
  process.exit(1)
}
// Node's compile cache (os.tmpdir()/node-compile-cache, or NODE_COMPILE_CACHE; NODE_DISABLE_COMPILE_CACHE=1
// turns it off): the compiled modules, and a checkout's TypeScript already stripped of its types,
// are read from disk by every later monna process, which then starts in ≈ 0.3 CPU-s less and
// without Node's type stripper (docs/memory.md). Entries are keyed by the source's hash: an edited
// file is compiled again.
module.enableCompileCache?.()
const source = new URL('../node/cli.ts', import.meta.url)
const built = new URL('../dist/node/cli.js', import.meta.url)
const fromSource = existsSync(source) && !import.meta.url.includes('/node_modules/')
if (!fromSource && !existsSync(built)) {
  console.error('monna: neither node/cli.ts (a checkout) nor dist/node/cli.js (a built package) is here; run `npm run build`')
  process.exit(1)
}
// `monna start` runs one member: as the members of `monna run` do, it starts monna's program
// bundled by esbuild (the same sources in ≈ 44 modules instead of ≈ 1,100: less memory and CPU per
// member; src/topology/member-program.ts), made again whenever a source changed; from the sources
// when no bundle can be made or MONNA_MEMBER_BUNDLE=0.
const command = process.argv.slice(2).find((a) => !a.startsWith('-'))
let bundle
if (command === 'start' && process.env.MONNA_MEMBER_BUNDLE !== '0') {
  const { memberProgram } = await import(fromSource ? '../src/topology/member-program.ts' : '../dist/src/topology/member-program.js')
  const chosen = await memberProgram({ entry: fileURLToPath(fromSource ? source : built) })
  if (chosen.bundled) bundle = pathToFileURL(chosen.program).href
}
await import(bundle ?? (fromSource ? source.href : built.href))
