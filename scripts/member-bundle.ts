/**
 * Makes (or finds current) the program members run, monna's command line bundled by esbuild
 * (src/topology/member-program.ts), so that the first `monna start` or `monna run` after a change
 * does not wait for it — run before the tests (`npm test`'s pretest). Prints one line; never fails:
 * without a bundle members run from the sources, and the line says why.
 */
import { memberProgram } from '../src/topology/member-program.ts'

const started = performance.now()
const p = await memberProgram()
const ms = Math.round(performance.now() - started)
if (p.bundled) console.log(`member bundle: ${p.program} (${p.built ? `made in ${ms} ms` : 'current'})`)
else console.log(`member bundle: none, members run from the sources (${p.reason})`)
