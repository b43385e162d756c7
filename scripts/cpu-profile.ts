/**
 * Where the CPU goes, from V8 CPU profiles (`.cpuprofile`, written by `node --cpu-prof`): self
 * time by function or by package, summed over profiles, within a window of each profile's time.
 *
 *   NODE_OPTIONS="--cpu-prof --cpu-prof-dir=/tmp/prof" BENCH_ROUNDS=6 BENCH_MODE=process npm run bench:round
 *   node scripts/cpu-profile.ts /tmp/prof --only-with src/node/engine.ts --from 40 --to 130 --by package
 *
 * (`NODE_OPTIONS` reaches every member process; `--only-with` keeps the profiles of processes
 * that ran a matching script — the members, not the bench itself.) Prints one line per entry,
 * largest first: its share of the samples' time in the window, in percent.
 */
import { readdirSync, readFileSync, statSync } from 'node:fs'
import { join } from 'node:path'
import { Command, InvalidArgumentError } from 'commander'

/** The parts of V8's profile format read here. */
export interface CpuProfile {
  nodes: { id: number; callFrame: { functionName: string; url: string; lineNumber: number } }[]
  startTime: number
  samples: number[]
  /** microseconds since the previous sample */
  timeDeltas: number[]
}

export type GroupBy = 'function' | 'package'

export interface SummaryOptions {
  /** window start, ms after each profile's start (default 0) */
  fromMs?: number
  /** window end, ms after each profile's start (default: the end) */
  toMs?: number
  by?: GroupBy
}

/** The key a sample's frame is counted under. */
export function keyOf(frame: { functionName: string; url: string; lineNumber: number }, by: GroupBy): string {
  const url = frame.url
  if (by === 'function') {
    const where = url.includes('node_modules/') ? url.replace(/.*node_modules\//, '') : url.replace(/.*\/(src|node)\//, '$1/')
    const name = frame.functionName || '(anonymous)'
    return url === '' ? name : `${name} ${where}:${frame.lineNumber + 1}`
  }
  if (url === '') return frame.functionName // (garbage collector), (idle), (program), native functions
  const pkg = url.match(/node_modules\/((@[^/]+\/)?[^/]+)/)
  if (pkg !== null) return pkg[1]!
  if (url.startsWith('node:')) return url.replace(/^(node:internal\/[^/]+|node:[^/]+).*/, '$1')
  const own = url.match(/\/(src|node)\/([^/]+)\//)
  if (own !== null) return own[1] === 'src' ? `monna ${own[2]}` : 'monna cli'
  return url
}

/** Self time per key over the window of every profile, as [key, share of the window's time] largest first (ties by key). */
export function summarize(profiles: CpuProfile[], o: SummaryOptions = {}): { total: number; entries: [string, number][] } {
  const from = (o.fromMs ?? 0) * 1000
  const to = o.toMs === undefined ? Number.POSITIVE_INFINITY : o.toMs * 1000
  const by = o.by ?? 'function'
  const time = new Map<string, number>()
  let total = 0
  for (const p of profiles) {
    const frames = new Map(p.nodes.map((n) => [n.id, n.callFrame]))
    let t = 0
    for (let i = 0; i < p.samples.length; i++) {
      t += p.timeDeltas[i] ?? 0
      if (t < from || t >= to) continue
      const frame = frames.get(p.samples[i]!)
      if (frame === undefined) continue
      const dt = p.timeDeltas[i] ?? 0
      const k = keyOf(frame, by)
      time.set(k, (time.get(k) ?? 0) + dt)
      total += dt
    }
  }
  const entries = [...time].map(([k, v]): [string, number] => [k, total === 0 ? 0 : v / total]).sort((a, b) => b[1] - a[1] || (a[0] < b[0] ? -1 : 1))
  return { total, entries }
}

function profileFiles(paths: string[]): string[] {
  return paths.flatMap((p) =>
    statSync(p).isDirectory()
      ? readdirSync(p)
          .filter((f) => f.endsWith('.cpuprofile'))
          .sort()
          .map((f) => join(p, f))
      : [p],
  )
}

const seconds = (v: string): number => {
  const x = Number(v)
  if (!Number.isFinite(x) || x < 0) throw new InvalidArgumentError('a number of seconds ≥ 0')
  return x
}
const count = (v: string): number => {
  const x = Number(v)
  if (!Number.isInteger(x) || x < 1) throw new InvalidArgumentError('an integer ≥ 1')
  return x
}

if (import.meta.main) {
  const program = new Command('cpu-profile')
    .description('self time by function or package from V8 CPU profiles (.cpuprofile files or directories of them)')
    .argument('<paths...>', '.cpuprofile files or directories holding them')
    .option('--from <s>', 'window start, seconds after each profile starts', seconds, 0)
    .option('--to <s>', 'window end, seconds after each profile starts', seconds)
    .option('--by <what>', 'function or package', 'function')
    .option('--top <n>', 'entries printed', count, 30)
    .option('--only-with <text>', 'keep only profiles with a frame whose script URL contains this text')
    .action((paths: string[], o: { from: number; to?: number; by: string; top: number; onlyWith?: string }) => {
      if (o.by !== 'function' && o.by !== 'package') program.error(`--by must be function or package, got '${o.by}'`)
      const files = profileFiles(paths)
      const profiles = files.map((f) => JSON.parse(readFileSync(f, 'utf8')) as CpuProfile).filter((p) => o.onlyWith === undefined || p.nodes.some((n) => n.callFrame.url.includes(o.onlyWith!)))
      if (profiles.length === 0) program.error(`no profile to read in ${paths.join(', ')}${o.onlyWith === undefined ? '' : ` with a script matching '${o.onlyWith}'`}`)
      const { total, entries } = summarize(profiles, { fromMs: o.from * 1000, ...(o.to === undefined ? {} : { toMs: o.to * 1000 }), by: o.by as GroupBy })
      console.log(`# ${profiles.length} of ${files.length} profiles, ${(total / 1e6).toFixed(1)} s of samples in the window`)
      for (const [k, share] of entries.slice(0, o.top)) console.log(`${(100 * share).toFixed(1).padStart(5)} %  ${k}`)
    })
  program.parse()
}
