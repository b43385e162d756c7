/**
 * `npm run bench:hub`: this checkout's in-process swarm (the real protocol: libp2p over its memory
 * transport, signed echo broadcast) against the memory hub it replaced — a re-implementation of the
 * broadcast's semantics without signatures, window or budgets, deleted after commit 28ecd7e —
 * side by side on paper-mnist-none (26 members, LeNet), alternating the two `BENCH_PAIRS` times.
 *
 * The hub runs from a detached git worktree of 28ecd7e in a temporary directory (this repository's
 * history is needed: a full clone), with this checkout's node_modules, its own native kernels built
 * there, and hub-28ecd7e.patch applied to its bench: the same window as bench:inprocess (end of
 * round 0 to end of round R − 2) and the process's CPU time per round. Prints each run's line and
 * per pair the ratios main / hub (wall and CPU), with the machine.
 *
 *   BENCH_PAIRS=3 BENCH_ROUNDS=12 npm run bench:hub
 */
import { execFileSync, spawnSync } from 'node:child_process'
import { existsSync, mkdtempSync, rmSync, symlinkSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { machine } from './swarm-bench.ts'

const HUB_COMMIT = '28ecd7e'
const root = join(import.meta.dirname, '../..')
const pairs = Number(process.env.BENCH_PAIRS ?? 3)
const rounds = Number(process.env.BENCH_ROUNDS ?? 12)
const node = process.execPath

console.log(JSON.stringify({ bench: 'hub', machine: machine(), node: process.version, hubCommit: HUB_COMMIT, pairs, rounds }))

const dir = mkdtempSync(join(tmpdir(), 'monna-bench-hub-'))
const hub = join(dir, 'hub')
const git = (...args: string[]): string => execFileSync('git', ['-C', root, ...args], { encoding: 'utf8' })
try {
  git('worktree', 'add', '--detach', hub, HUB_COMMIT)
  symlinkSync(join(root, 'node_modules'), join(hub, 'node_modules'))
  execFileSync('git', ['-C', hub, 'apply', join(import.meta.dirname, 'hub-28ecd7e.patch')])
  execFileSync(node, [join(hub, 'scripts/build-native.mjs')], { cwd: hub, stdio: 'inherit' })
  if (!existsSync(join(hub, 'build/monna-kernels.node'))) throw new Error('the hub checkout has no native kernels: see the build output above')

  /** The bench's figure line for `kind`, run in its own process. */
  const runOnce = (kind: 'hub' | 'main'): { secondsPerRound: number; processCpuSecondsPerRound: number } => {
    const cwd = kind === 'hub' ? hub : root
    const env: NodeJS.ProcessEnv = { ...process.env, BENCH_ROUNDS: String(rounds), ...(kind === 'hub' ? { BENCH_ORDER: 'hub' } : {}) }
    delete env.BENCH_CPU_PROFILE
    const r = spawnSync(node, [join(cwd, 'test/bench/inprocess.bench.ts')], { cwd, env, encoding: 'utf8', maxBuffer: 64 << 20 })
    const line = r.stdout
      .split('\n')
      .filter((l) => l.includes('"secondsPerRound"'))
      .at(-1)
    if (r.status !== 0 || line === undefined) throw new Error(`${kind} bench failed (exit ${r.status}):\n${r.stderr.slice(-2000)}`)
    const fig = JSON.parse(line) as { secondsPerRound: number; processCpuSecondsPerRound: number }
    console.log(JSON.stringify({ bench: 'hub', run: kind, secondsPerRound: fig.secondsPerRound, processCpuSecondsPerRound: fig.processCpuSecondsPerRound }))
    return fig
  }

  for (let p = 0; p < pairs; p++) {
    // alternate which goes first: a machine getting busier or quieter does not favour one side
    const order: Array<'hub' | 'main'> = p % 2 === 0 ? ['hub', 'main'] : ['main', 'hub']
    const fig: Record<string, { secondsPerRound: number; processCpuSecondsPerRound: number }> = {}
    for (const kind of order) fig[kind] = runOnce(kind)
    const ratio = (k: 'secondsPerRound' | 'processCpuSecondsPerRound'): number => Number((fig.main![k] / fig.hub![k]).toFixed(2))
    console.log(JSON.stringify({ bench: 'hub', pair: p + 1, wallRatio: ratio('secondsPerRound'), cpuRatio: ratio('processCpuSecondsPerRound'), target: 1.2, load: machine().load }))
  }
} finally {
  try {
    git('worktree', 'remove', '--force', hub)
  } catch {
    // not created
  }
  rmSync(dir, { recursive: true, force: true })
}
