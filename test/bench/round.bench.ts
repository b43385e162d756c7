/**
 * `npm run bench:round`: seconds per round of the reference experiment
 * (topologies/paper-mnist-none.yaml: 26 members, LeNet, MNIST, nna) for a fixed number of
 * rounds, in one process (`--in-process`: libp2p's memory transport) and as one OS process per
 * member (`monna run`: TCP on 127.0.0.1), with where a round's time goes (median honest member)
 * and peak memory per member. In process mode every member's peak RSS is read by this process
 * from /proc/<pid>/status (VmHWM: the kernel's high-water mark of the member's resident set),
 * sampled until the member exits; beside it the highest RssAnon sampled (every 200 ms): the
 * member's anonymous pages — its heaps, buffers and stacks, its alone — without the file-backed
 * pages it maps (the node binary's code and data, the addon), which all members share. Also per
 * run: the members' minor page faults per member and round (first touches of fresh memory), each
 * round's seconds and CPU on its own (`perRound`), and the window's second half alone
 * (`secondHalf`: the first rounds also pay for the swarm's warm-up). Prints one JSON line per
 * mode and the machine.
 *
 *   BENCH_ROUNDS=6 BENCH_MODE=both|process|in-process BENCH_MEMBERS=26 npm run bench:round
 *
 * BENCH_MEMBERS runs the same task (model, data set, partition scheme) with fewer members (f
 * lowered to ⌊(members − 1)/3⌋ when needed). BENCH_PROGRAM starts members with another build
 * of the program (e.g. an older checkout's bin/monna.js) for side-by-side comparisons;
 * BENCH_PROGRAMS=a.js,b.js runs process mode once per program, alternating, BENCH_REPEAT times.
 * Without them members run monna's bundled program (src/topology/member-program.ts; `memberBundle`
 * in the output line; MONNA_MEMBER_BUNDLE=0 runs them from the sources instead).
 * BENCH_OUT=<dir> keeps each run's report (report.json, plots) in <dir>/<mode>[-<i>] instead of a
 * temporary directory.
 */
import { mkdir, mkdtemp, readdir, readFile, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { benchScenario, machine, measureRun } from './swarm-bench.ts'

const fail = (msg: string): never => {
  console.error(`bench:round: ${msg}`)
  process.exit(2)
}
const intEnv = (name: string, def: number, min: number): number => {
  const raw = process.env[name]
  if (raw === undefined || raw === '') return def
  const v = Number(raw)
  if (!Number.isInteger(v) || v < min) fail(`${name} must be an integer ≥ ${min}, got '${raw}'`)
  return v
}
const rounds = intEnv('BENCH_ROUNDS', 6, 3)
const members = process.env.BENCH_MEMBERS === undefined ? undefined : intEnv('BENCH_MEMBERS', 26, 4)
const repeat = intEnv('BENCH_REPEAT', 1, 1)
const modeEnv = process.env.BENCH_MODE ?? 'both'
if (!['both', 'process', 'in-process'].includes(modeEnv)) fail(`BENCH_MODE must be both, process or in-process, got '${modeEnv}'`)
const modes = modeEnv === 'both' ? (['in-process', 'process'] as const) : ([modeEnv] as Array<'in-process' | 'process'>)
const file = process.env.BENCH_SCENARIO ?? join(import.meta.dirname, '../../topologies/paper-mnist-none.yaml')
const programs: Array<string | undefined> = (process.env.BENCH_PROGRAMS ?? process.env.BENCH_PROGRAM ?? '').split(',').map((p) => (p.trim() === '' ? undefined : p.trim()))

const MB = 2 ** 20
// USER_HZ: the unit of /proc/<pid>/stat's CPU times (100 on Linux whatever the kernel's tick)
const CLOCK_TICKS = 100
console.log(JSON.stringify({ bench: 'round', case: 'machine', machine: machine(), scenario: file, rounds, members: members ?? null, modes }))

/** VmHWM / VmRSS / RssAnon (bytes) of a process, or undefined once it is gone. */
async function memoryOf(pid: number): Promise<{ hwm: number; rss: number; anon: number } | undefined> {
  try {
    const status = await readFile(`/proc/${pid}/status`, 'utf8')
    const kb = (k: string): number => Number(new RegExp(`^${k}:\\s+(\\d+) kB`, 'm').exec(status)?.[1] ?? Number.NaN) * 1024
    return { hwm: kb('VmHWM'), rss: kb('VmRSS'), anon: kb('RssAnon') }
  } catch {
    return undefined
  }
}

/** This process's children (the members, in process mode), each with its CPU so far (user + system, seconds) and its minor page faults so far. */
async function children(): Promise<Array<{ pid: number; cpuSeconds: number; minorFaults: number }>> {
  const out: Array<{ pid: number; cpuSeconds: number; minorFaults: number }> = []
  for (const e of await readdir('/proc')) {
    if (!/^\d+$/.test(e)) continue
    try {
      const stat = await readFile(`/proc/${e}/stat`, 'utf8')
      // pid (comm) state ppid …: comm may hold spaces and parentheses, so split after the last ')'
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
      // fields[1] is ppid; minflt (the 10th of stat) is fields[7]; utime and stime (the 14th and 15th) are fields[11] and fields[12], in clock ticks
      if (Number(fields[1]) === process.pid) out.push({ pid: Number(e), cpuSeconds: (Number(fields[11]) + Number(fields[12])) / CLOCK_TICKS, minorFaults: Number(fields[7]) })
    } catch {}
  }
  return out
}

/**
 * Samples the peak RSS of every child process (and of this one) until stopped, and the children's
 * CPU together: `cpuAt(t)` is the first sample's at or after `t` (performance.now()); `faultsAt(t)` the
 * children's minor page faults (first touches of fresh memory, mostly) the same way.
 */
function memorySampler(): {
  stop: () => Promise<{ self: number; members: number[]; anon: number[]; cpuAt: (t: number) => number | undefined; faultsAt: (t: number) => number | undefined }>
} {
  const peaks = new Map<number, number>()
  const anonPeaks = new Map<number, number>()
  const cpu: Array<{ t: number; seconds: number; faults: number }> = []
  let self = process.memoryUsage().rss
  let running = true
  const loop = (async () => {
    while (running) {
      self = Math.max(self, process.memoryUsage().rss)
      if (process.platform === 'linux') {
        const list = await children()
        cpu.push({ t: performance.now(), seconds: list.reduce((a, c) => a + c.cpuSeconds, 0), faults: list.reduce((a, c) => a + c.minorFaults, 0) })
        for (const { pid } of list) {
          const m = await memoryOf(pid)
          if (m !== undefined && Number.isFinite(m.hwm)) peaks.set(pid, Math.max(peaks.get(pid) ?? 0, m.hwm))
          if (m !== undefined && Number.isFinite(m.anon)) anonPeaks.set(pid, Math.max(anonPeaks.get(pid) ?? 0, m.anon))
        }
      }
      await new Promise((r) => setTimeout(r, 200))
    }
  })()
  return {
    stop: async () => {
      running = false
      await loop
      return { self, members: [...peaks.values()], anon: [...anonPeaks.values()], cpuAt: (t) => cpu.find((c) => c.t >= t)?.seconds, faultsAt: (t) => cpu.find((c) => c.t >= t)?.faults }
    },
  }
}

const honestAccuracy = (nodes: Array<{ byzantine: boolean; finalAccuracy: number | null }>): { min: number; median: number } | null => {
  const accs = nodes.flatMap((n) => (n.byzantine || n.finalAccuracy === null ? [] : [n.finalAccuracy]))
  return accs.length === 0 ? null : { min: Number(Math.min(...accs).toFixed(4)), median: Number(q(accs, 0.5).toFixed(4)) }
}

/** max / median / min of byte counts, in MB */
const spread = (xs: number[]): { max: number; median: number; min: number } => ({ max: Math.round(Math.max(...xs) / MB), median: Math.round(q(xs, 0.5) / MB), min: Math.round(Math.min(...xs) / MB) })

const q = (xs: number[], p: number): number => {
  const s = [...xs].sort((a, b) => a - b)
  return s[Math.min(s.length - 1, Math.floor(p * s.length))]!
}

for (let rep = 0; rep < repeat; rep++) {
  for (const mode of modes) {
    for (const program of mode === 'process' ? programs : [undefined]) {
      const s = await benchScenario(file, rounds, members)
      const keep = process.env.BENCH_OUT
      const dir = keep !== undefined && keep !== '' ? join(keep, `${mode}${repeat * programs.length > 1 ? `-${rep}-${programs.indexOf(program)}` : ''}`) : await mkdtemp(join(tmpdir(), `monna-bench-round-${mode}-`))
      if (keep !== undefined && keep !== '') await mkdir(dir, { recursive: true })
      const sampler = memorySampler()
      try {
        const run = await measureRun(s, { outDir: dir, mode, ...(program === undefined ? {} : { program }) })
        const mem = await sampler.stop()
        const { report } = run
        const perMember =
          mode === 'process'
            ? {
                peakRssMBPerMember: spread(mem.members),
                peakRssMBAllMembers: Math.round(mem.members.reduce((a, b) => a + b, 0) / MB),
                // the highest RssAnon sampled: the member's own pages, without the shared file-backed ones
                peakAnonMBPerMember: spread(mem.anon),
                peakAnonMBAllMembers: Math.round(mem.anon.reduce((a, b) => a + b, 0) / MB),
                membersSampled: mem.members.length,
              }
            : { peakRssMBProcess: Math.round(mem.self / MB), peakRssMBPerMember: { shareOfProcess: Math.round(mem.self / s.n / MB) } }
        // CPU of all member processes from the end of round 0 to the end of round R − 2, per round (the window of secondsPerRound)
        const c0 = run.roundsWindow === undefined ? undefined : mem.cpuAt(run.roundsWindow.from)
        const c1 = run.roundsWindow === undefined ? undefined : mem.cpuAt(run.roundsWindow.to)
        const cpuSecondsPerRound = mode === 'process' && c0 !== undefined && c1 !== undefined ? Number(((c1 - c0) / (s.task.rounds - 2)).toFixed(2)) : null
        const f0 = run.roundsWindow === undefined ? undefined : mem.faultsAt(run.roundsWindow.from)
        const f1 = run.roundsWindow === undefined ? undefined : mem.faultsAt(run.roundsWindow.to)
        const minorFaultsPerMemberPerRound = mode === 'process' && f0 !== undefined && f1 !== undefined ? Math.round((f1 - f0) / (s.task.rounds - 2) / s.n) : null
        // each round of the window on its own (its end minus the previous round's end), and the window's
        // second half alone: the first rounds also pay for the swarm's warm-up (compilation, meshes forming,
        // periodic gossip not yet backed off), which a long run spreads over many rounds
        const ends = run.roundEnds
        const cpuBetween = (a: number, b: number): number | undefined => {
          const x = mem.cpuAt(a)
          const y = mem.cpuAt(b)
          return x === undefined || y === undefined ? undefined : y - x
        }
        const perRound =
          ends === undefined || ends.length < 3
            ? null
            : {
                seconds: ends.slice(1).map((e, i) => Number(((e - ends[i]!) / 1000).toFixed(2))),
                ...(mode === 'process' ? { cpuSecondsAllMembers: ends.slice(1).map((e, i) => cpuBetween(ends[i]!, e)).map((c) => (c === undefined ? null : Number(c.toFixed(2)))) } : {}),
              }
        const half = ends === undefined || ends.length < 3 ? undefined : Math.floor((ends.length - 1) / 2)
        const halfCpu = ends === undefined || half === undefined ? undefined : cpuBetween(ends[half]!, ends.at(-1)!)
        const secondHalf =
          ends === undefined || half === undefined
            ? null
            : {
                rounds: `${half + 1}…${ends.length - 1}`,
                secondsPerRound: Number(((ends.at(-1)! - ends[half]!) / 1000 / (ends.length - 1 - half)).toFixed(3)),
                ...(mode === 'process' ? { cpuSecondsPerRoundAllMembers: halfCpu === undefined ? null : Number((halfCpu / (ends.length - 1 - half)).toFixed(2)) } : {}),
              }
        console.log(
          JSON.stringify({
            bench: 'round',
            mode,
            ...(program === undefined ? {} : { program }),
            // members ran monna's bundle (the default) or its sources (src/topology/member-program.ts)
            ...(run.memberProgram === undefined ? {} : { memberBundle: run.memberProgram.bundled, ...(run.memberProgram.reason === undefined ? {} : { memberBundleReason: run.memberProgram.reason }) }),
            n: s.n,
            f: s.f,
            rounds: run.rounds,
            secondsPerRound: Number(run.secondsPerRound.toFixed(3)),
            ...(mode === 'process' ? { cpuSecondsPerRoundAllMembers: cpuSecondsPerRound, minorFaultsPerMemberPerRound } : {}),
            secondHalf,
            perRound,
            wallSeconds: Number(run.wallSeconds.toFixed(1)),
            passed: report.passed,
            // final accuracy of the honest members on the whole test split (min / median)
            honestAccuracy: honestAccuracy(report.nodes),
            // median honest member, mean over rounds 1 … R − 2: where a round's time goes (waitMs: waiting for n − f certified models, broadcast included)
            phasesMs: run.phasesMs,
            // the last round: its evaluation is on the whole test set
            lastRoundPhasesMs: run.lastRoundPhasesMs,
            ...perMember,
            mbSentPerMemberPerRound: Number((report.nodes.reduce((a, n) => a + n.bytesSent, 0) / s.n / rounds / 1e6).toFixed(1)),
            // whole payloads written beyond one SEND per member and round (what lifts the bytes above the floor (n − 1)·4d): SENDs repeated after a failed or refused attempt, payloads served to others' PULL/FETCH — per member per round
            extraPayloadsPerMemberPerRound: {
              sendsRepeated: Number((report.nodes.reduce((a, n) => a + (n.sendsRepeated ?? 0), 0) / s.n / rounds).toFixed(2)),
              served: Number((report.nodes.reduce((a, n) => a + (n.payloadsServed ?? 0), 0) / s.n / rounds).toFixed(2)),
              servedToFetch: Number((report.nodes.reduce((a, n) => a + (n.payloadsServedToFetch ?? 0), 0) / s.n / rounds).toFixed(2)),
            },
            machine: machine(),
          }),
        )
      } finally {
        await sampler.stop()
        if (keep === undefined || keep === '') await rm(dir, { recursive: true, force: true })
      }
    }
  }
}
