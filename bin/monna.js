#!/usr/bin/env node
// Entry point of the `monna` program. The program lives in node/: run from source (TypeScript,
// by Node >= 22.18 type stripping) in a checkout, from its build (dist/, `npm run build`) in an
// installed package, where Node does not strip types. This shim checks the runtime and hands over.
import { existsSync } from 'node:fs'

const [major, minor] = process.versions.node.split('.').map(Number)
if (major < 22 || (major === 22 && minor < 18)) {
  console.error(`monna needs Node.js >= 22.18 (this is ${process.versions.node}); run it through npm (\`npm run monna -- ...\`), which uses the Node installed by \`npm install\`, or install a newer Node.`)
  process.exit(1)
}
const source = new URL('../node/cli.ts', import.meta.url)
const built = new URL('../dist/node/cli.js', import.meta.url)
if (existsSync(source) && !import.meta.url.includes('/node_modules/')) await import(source.href)
else if (existsSync(built)) await import(built.href)
else {
  console.error('monna: neither node/cli.ts (a checkout) nor dist/node/cli.js (a built package) is here; run `npm run build`')
  process.exit(1)
}
