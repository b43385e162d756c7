/**
 * `npm run bench:scale`: how an in-process swarm on the real protocol (libp2p over its memory
 * transport, signed echo broadcast, the round engine) scales with its size. For each n (26, 50
 * and 100 by default: ≈ 1.5 min on the 2-core dev machine; with 200, ≈ 10 min more and ≈ 7 GB,
 * see README.md, Benchmarks) one swarm with f = ⌊n/5⌋ declared, one Byzantine member playing ALIE,
 * logistic regression on synthetic 10-class data (330 parameters: the protocol's cost, not the
 * model's, is what is measured). One JSON line per n — seconds per round in steady state,
 * signature checks per member (`signaturesVerified`) and verifications actually run (the
 * process-wide cache, `verifyCacheStats`), the process's CPU per round and of it the milliseconds
 * in those verifications and in SHA-256 of payloads, broadcast frames and bytes per member per
 * round, training and aggregation ms per round, peak RSS — each with the machine and `os.loadavg()`; then a summary line: the
 * largest n with ≥ 1 round per second and the growth exponent of each cost between successive n
 * (log(cost ratio) / log(n ratio)).
 *
 *   BENCH_NS=26,50,100,200 BENCH_ROUNDS=4 npm run bench:scale
 */
import { spawn } from 'node:child_process'
import { once } from 'node:events'
import { mkdtemp, rm } from 'node:fs/promises'
import { cpus, loadavg, tmpdir, totalmem } from 'node:os'
import { join } from 'node:path'
import { getHeapStatistics } from 'node:v8'
import { hashStats, verifyCacheStats } from '../../src/broadcast/crypto.ts'
import { chunkStats } from '../../src/broadcast/frame-stream.ts'
import type { RoundPhases } from '../../src/node/index.ts'
import { runTopology } from '../../src/topology/runner.ts'
import { parseScenario, type Scenario } from '../../src/topology/schema.ts'

const ns = (process.env.BENCH_NS ?? '26,50,100').split(',').map((v) => Number(v.trim()))
const rounds = Number(process.env.BENCH_ROUNDS ?? 4)
if (ns.some((n) => !Number.isInteger(n) || n < 4) || !Number.isInteger(rounds) || rounds < 3) throw new Error('BENCH_NS: integers ≥ 4; BENCH_ROUNDS: an integer ≥ 3')

const machine = { cpu: cpus()[0]?.model, cores: cpus().length, memoryGB: Math.round(totalmem() / 2 ** 30) }
const load = (): number[] => loadavg().map((v) => Number(v.toFixed(2)))

/** The swarm of n members: f = ⌊n/5⌋, member n − 1 plays ALIE, logistic regression on 32-dim Gaussian mixtures. */
export function scaleScenario(n: number, r: number): Scenario {
  const f = Math.floor(n / 5)
  return parseScenario({
    name: `scale-${n}`,
    seed: 1,
    n,
    f,
    task: {
      dataset: { kind: 'gaussian-mixture', classes: 10, dim: 32, trainSize: 100 * n, testSize: 1000, seed: 1 },
      partition: { scheme: 'iid' },
      model: { kind: 'logreg' },
      batchSize: 25,
      schedule: { kind: 'constant', lr: 1 },
      beta: 0.99,
      rounds: r,
      evalEvery: 1_000_000, // only the final evaluation
      evalExamples: 1000,
    },
    aggregator: { rule: 'nna' },
    timing: { roundTimeoutMs: 120_000, roundWindow: 8 },
    byzantine: [{ members: [n - 1], behaviour: 'alie' }],
    runtime: { backend: 'cpu', timeoutMs: 3_600_000 },
  })
}

interface Figures {
  n: number
  f: number
  secondsPerRound: number
  signaturesCheckedPerMember: number
  signatureVerificationsRun: number
  bytesSentPerMemberPerRound: number
  bytesReceivedPerMemberPerRound: number
  trainMs: number | null
  aggregateMs: number | null
  waitMs: number | null
  peakRssMB: number
  /** the process's CPU (user + system) per round, all members together */
  cpuMsPerRound: number | null
  /** of it, in Ed25519 verifications actually run (the process shares one cache of results), and in SHA-256 of payloads */
  verifyMsPerRound: number | null
  hashMsPerRound: number | null
  /** broadcast frames written per member per round (SEND, ECHO, FINAL, requests and replies; gossip messages not counted) */
  framesSentPerMemberPerRound: number | null
}

/** Process-wide counters read at the end of each round (the steady rounds are between two of them). */
interface Sample {
  cpuMs: number
  verifyMs: number
  hashMs: number
  frames: number
}
const sample = (): Sample => {
  const c = process.cpuUsage()
  return { cpuMs: (c.user + c.system) / 1000, verifyMs: verifyCacheStats.ms, hashMs: hashStats.ms, frames: chunkStats.framesWritten }
}

// V8's default heap limit (≈ 4 GB here) is too small for n = 200 in one process (out of memory
// in round 1): run again with 3/4 of the machine's memory unless the limit was set
const heapWanted = Math.floor((0.75 * totalmem()) / 2 ** 20)
if (import.meta.main && Math.max(...ns) > 100 && getHeapStatistics().heap_size_limit < 0.5 * heapWanted * 2 ** 20 && process.env.BENCH_SCALE_CHILD === undefined) {
  const child = spawn(process.execPath, [`--max-old-space-size=${heapWanted}`, ...process.execArgv, ...process.argv.slice(1)], { stdio: 'inherit', env: { ...process.env, BENCH_SCALE_CHILD: '1' } })
  for (const sig of ['SIGINT', 'SIGTERM'] as const) process.on(sig, () => child.kill(sig))
  const [code] = (await once(child, 'exit')) as [number | null]
  process.exit(code ?? 1)
}

if (import.meta.main) {
  console.log(JSON.stringify({ bench: 'scale', machine, node: process.version, ns, rounds, heapLimitMB: Math.round(getHeapStatistics().heap_size_limit / 2 ** 20), loadavg: load() }))
  let peakRss = 0
  const sampler = setInterval(() => {
    peakRss = Math.max(peakRss, process.memoryUsage().rss)
  }, 250)
  const all: Figures[] = []
  for (const n of ns) {
    const s = scaleScenario(n, rounds)
    const dir = await mkdtemp(join(tmpdir(), `monna-bench-scale-${n}-`))
    // peak RSS of this n: what it holds on top of what the earlier ones left (the process is shared)
    global.gc?.()
    peakRss = process.memoryUsage().rss
    const rssBefore = peakRss
    const roundEnds: number[] = []
    const samples: Sample[] = []
    const phases: RoundPhases[] = []
    const started = performance.now()
    const hits0 = verifyCacheStats.hits
    const misses0 = verifyCacheStats.misses
    const loadBefore = load()
    try {
      const { report } = await runTopology(s, {
        outDir: dir,
        mode: 'in-process',
        onProgress: (e) => {
          if (e.kind !== 'round') return
          roundEnds.push(performance.now())
          samples.push(sample())
          // progress on stderr (the figure lines are on stdout)
          console.error(`n = ${n}: round ${e.round + 1}/${e.rounds} at ${((performance.now() - started) / 1000).toFixed(1)} s, loadavg ${load().join(' ')}`)
          if (e.phases !== undefined && e.round >= 1 && e.round < e.rounds - 1) phases.push(e.phases)
        },
      })
      // steady state as in inprocess.bench.ts: from the end of round 0 to the end of the one
      // before the last (the last ends with every member's evaluation, one after the other)
      const perRound = roundEnds.length >= 3 ? (roundEnds.at(-2)! - roundEnds[0]!) / 1000 / (roundEnds.length - 2) : Number.NaN
      const honest = report.nodes.filter((m) => !m.byzantine)
      const perMember = (k: 'bytesSent' | 'bytesReceived'): number => Math.round(report.nodes.reduce((a, m) => a + m[k], 0) / n / rounds)
      // the same steady rounds as perRound: from the end of round 0 to the end of the one before the last
      const steady = (k: keyof Sample, per = 1): number | null =>
        samples.length >= 3 ? Number(((samples.at(-2)![k] - samples[0]![k]) / (samples.length - 2) / per).toFixed(1)) : null
      const phase = (k: keyof RoundPhases): number | null => (phases.length === 0 ? null : Number((phases.reduce((a, p) => a + p[k], 0) / phases.length).toFixed(2)))
      const fig: Figures = {
        n,
        f: s.f,
        secondsPerRound: Number(perRound.toFixed(3)),
        signaturesCheckedPerMember: Math.round(report.nodes.reduce((a, m) => a + (m.signaturesVerified ?? 0), 0) / n),
        signatureVerificationsRun: verifyCacheStats.misses - misses0,
        bytesSentPerMemberPerRound: perMember('bytesSent'),
        bytesReceivedPerMemberPerRound: perMember('bytesReceived'),
        trainMs: phase('trainMs'),
        aggregateMs: phase('aggregateMs'),
        waitMs: phase('waitMs'),
        peakRssMB: Math.round(peakRss / 2 ** 20),
        cpuMsPerRound: steady('cpuMs'),
        verifyMsPerRound: steady('verifyMs'),
        hashMsPerRound: steady('hashMs'),
        framesSentPerMemberPerRound: steady('frames', n),
      }
      all.push(fig)
      console.log(
        JSON.stringify({
          bench: 'scale',
          ...fig,
          rounds: roundEnds.length,
          wallSeconds: Number(((performance.now() - started) / 1000).toFixed(1)),
          // creating and connecting the members, then round 0
          setupSeconds: roundEnds.length === 0 ? null : Number(((roundEnds[0]! - started) / 1000).toFixed(1)),
          rssBeforeMB: Math.round(rssBefore / 2 ** 20),
          signatureCacheHits: verifyCacheStats.hits - hits0,
          passed: report.passed,
          honestAccuracy: { min: report.honest.minFinalAccuracy, median: report.honest.medianFinalAccuracy },
          roundsCompletedMin: Math.min(...honest.map((m) => m.roundsCompleted)),
          coolOffs: report.nodes.reduce((a, m) => a + (m.coolOffs ?? 0), 0),
          rejected: report.nodes.reduce<Record<string, number>>((a, m) => {
            for (const [k, v] of Object.entries(m.rejected)) if (v > 0) a[k] = (a[k] ?? 0) + v
            return a
          }, {}),
          machine,
          loadavg: { before: loadBefore, after: load() },
        }),
      )
    } finally {
      await rm(dir, { recursive: true, force: true })
    }
  }
  clearInterval(sampler)
  const exponent = (k: keyof Figures): Record<string, number | null> => {
    const out: Record<string, number | null> = {}
    for (let i = 1; i < all.length; i++) {
      const a = all[i - 1]!
      const b = all[i]!
      const va = a[k] as number | null
      const vb = b[k] as number | null
      out[`${a.n}→${b.n}`] = va === null || vb === null || va <= 0 || vb <= 0 ? null : Number((Math.log(vb / va) / Math.log(b.n / a.n)).toFixed(2))
    }
    return out
  }
  const fast = all.filter((x) => x.secondsPerRound <= 1)
  console.log(
    JSON.stringify({
      bench: 'scale',
      summary: true,
      largestNAtOneRoundPerSecond: fast.length === 0 ? null : Math.max(...fast.map((x) => x.n)),
      growthExponent: Object.fromEntries(
        (['secondsPerRound', 'cpuMsPerRound', 'verifyMsPerRound', 'hashMsPerRound', 'framesSentPerMemberPerRound', 'signaturesCheckedPerMember', 'signatureVerificationsRun', 'bytesSentPerMemberPerRound', 'bytesReceivedPerMemberPerRound', 'trainMs', 'aggregateMs', 'peakRssMB'] as const).map((k) => [k, exponent(k)]),
      ),
      machine,
      loadavg: load(),
    }),
  )
}
