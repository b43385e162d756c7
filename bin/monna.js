#!/usr/bin/env node
// Entry point of the `monna` program. The program lives in node/ (TypeScript, run by
// Node >= 22.18 type stripping); this shim only checks the runtime and hands over.
const [major, minor] = process.versions.node.split('.').map(Number)
if (major < 22 || (major === 22 && minor < 18)) {
  console.error(`monna needs Node.js >= 22.18 (this is ${process.versions.node}); run it through npm (\`npm run monna -- ...\`), which uses the Node installed by \`npm install\`, or install a newer Node.`)
  process.exit(1)
}
await import('../node/cli.ts')
