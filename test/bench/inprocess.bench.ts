/**
 * `npm run bench:inprocess`: seconds per round of an in-process swarm on the real protocol
 * (libp2p over its memory transport, signed echo broadcast) on the reference experiment
 * (topologies/paper-mnist-none.yaml: 26 members, LeNet, MNIST, nna) cut to a few rounds, with
 * the protocol's own figures. Prints JSON figure lines and the machine. (Until the old memory
 * hub — a re-implementation of the broadcast without signatures, window or budgets — was
 * deleted, this bench ran both side by side; the last comparison is in README.md, Benchmarks.)
 *
 *   BENCH_ROUNDS=8 BENCH_SCENARIO=topologies/paper-mnist-none.yaml npm run bench:inprocess
 *
 * With BENCH_CPU_PROFILE=<file.cpuprofile>: a V8 CPU profile of the measured rounds only (from
 * the first honest report of round 1 to the first of round R − 2: no setup, no final
 * evaluation), and `profile` figures — the main thread's busy and garbage-collection time in that
 * window, per round.
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { Session } from 'node:inspector/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { payloadCacheStats, verifyCacheStats } from '../../src/broadcast/crypto.ts'
import { chunkStats } from '../../src/broadcast/frame-stream.ts'
import { sharedEd25519Stats } from '../../src/net/index.ts'
import { benchScenario, machine, measureRun } from './swarm-bench.ts'

const rounds = Number(process.env.BENCH_ROUNDS ?? 8)
const file = process.env.BENCH_SCENARIO ?? join(import.meta.dirname, '../../topologies/paper-mnist-none.yaml')
const order = ['libp2p']

console.log(JSON.stringify({ bench: 'inprocess', machine: machine(), node: process.version, scenario: file, rounds }))

let peakRss = 0
const sampler = setInterval(() => {
  peakRss = Math.max(peakRss, process.memoryUsage().rss)
}, 250)

const results: Record<string, number> = {}
for (const kind of order) {
  const s = await benchScenario(file, rounds)
  const dir = await mkdtemp(join(tmpdir(), `monna-bench-inprocess-${kind}-`))
  peakRss = process.memoryUsage().rss
  const hits0 = verifyCacheStats.hits
  const misses0 = verifyCacheStats.misses
  const gossip0 = { ...sharedEd25519Stats }
  const payloads0 = { ...payloadCacheStats }
  const chunks0 = { ...chunkStats }
  const prof = profiler(process.env.BENCH_CPU_PROFILE, rounds)
  try {
    // the process's CPU time over the same window as secondsPerRound (last report of round 0 to
    // the last of round R − 2): less moved by other jobs on the machine than wall time
    const cpuAt = new Map<number, NodeJS.CpuUsage>()
    const run = await measureRun(s, {
      outDir: dir,
      mode: 'in-process',
      onRound: (r) => {
        cpuAt.set(r.round, process.cpuUsage())
        prof?.onRound(r)
      },
    })
    const c0 = cpuAt.get(0)
    const c1 = cpuAt.get(rounds - 2)
    const cpuMsPerRound = c0 !== undefined && c1 !== undefined && rounds >= 3 ? (c1.user + c1.system - c0.user - c0.system) / 1000 / (rounds - 2) : Number.NaN
    const { report } = run
    results[kind] = run.secondsPerRound
    const sig = report.nodes.reduce((a, n) => a + (n.signaturesVerified ?? 0), 0)
    console.log(
      JSON.stringify({
        bench: 'inprocess',
        transport: kind,
        n: s.n,
        rounds: run.rounds,
        secondsPerRound: Number(run.secondsPerRound.toFixed(3)),
        processCpuSecondsPerRound: Number((cpuMsPerRound / 1000).toFixed(3)),
        wallSeconds: Number(run.wallSeconds.toFixed(1)),
        peakRssMB: Math.round(peakRss / 2 ** 20),
        passed: report.passed,
        // median honest member, mean over rounds 1 … R − 2 (not the last, with its evaluation): where a round's time goes
        phasesMs: run.phasesMs,
        signaturesCheckedByMembers: sig,
        // an honest swarm cuts nobody off and refuses little (refusals without blame under lag only)
        coolOffs: report.nodes.reduce((a, n) => a + (n.coolOffs ?? 0), 0),
        rejected: report.nodes.reduce<Record<string, number>>((a, n) => {
          for (const [k, v] of Object.entries(n.rejected)) if (v > 0) a[k] = (a[k] ?? 0) + v
          return a
        }, {}),
        signatureVerificationsRun: verifyCacheStats.misses - misses0,
        signatureCacheHits: verifyCacheStats.hits - hits0,
        // gossipsub's own message signatures (libp2p keys), checked once per process
        gossipSignatureChecksRun: sharedEd25519Stats.misses - gossip0.misses,
        gossipSignatureChecksShared: sharedEd25519Stats.hits - gossip0.hits,
        // payload copies received: views of the sender's own checked bytes (nothing compared,
        // hashed or copied), copies compared with a checked payload, copies hashed
        payloadsReceived: {
          views: payloadCacheStats.views - payloads0.views,
          compared: payloadCacheStats.compared - payloads0.compared,
          hashed: payloadCacheStats.misses - payloads0.misses,
        },
        // the broadcast's streams: chunks (stream 'message' events) read per round, and their mean size
        chunksReadPerRound: Math.round((chunkStats.chunks - chunks0.chunks) / rounds),
        kbPerChunk: Math.round((chunkStats.bytes - chunks0.bytes) / Math.max(1, chunkStats.chunks - chunks0.chunks) / 1024),
        ...(prof === undefined ? {} : { profile: await prof.done() }),
        mbSentPerMemberPerRound: Number((report.nodes.reduce((a, n) => a + n.bytesSent, 0) / s.n / rounds / 1e6).toFixed(1)),
      }),
    )
  } finally {
    await rm(dir, { recursive: true, force: true })
  }
}
clearInterval(sampler)

/**
 * Profiles the rounds between the first report of round 1 and the first of round R − 2 (the
 * steady state bench:inprocess measures); `done` writes the profile and returns the window's
 * figures per round.
 */
function profiler(file: string | undefined, rounds: number): { onRound: (r: { round: number }) => void; done: () => Promise<Record<string, number>> } | undefined {
  if (file === undefined || file === '' || rounds < 4) return undefined
  const session = new Session()
  session.connect()
  let state: 'idle' | 'starting' | 'running' | 'stopped' = 'idle'
  let started = 0
  let startedCpu = process.cpuUsage()
  let gcMs = 0
  let profile: unknown
  let stopping: Promise<void> | undefined
  const gc = new PerformanceObserver((list) => {
    if (state === 'running') for (const e of list.getEntries()) gcMs += e.duration
  })
  gc.observe({ entryTypes: ['gc'] })
  let window = { ms: 0, cpuMs: 0, gcMs: 0 }
  const start = async (): Promise<void> => {
    await session.post('Profiler.enable')
    await session.post('Profiler.setSamplingInterval', { interval: 500 })
    await session.post('Profiler.start')
    started = performance.now()
    startedCpu = process.cpuUsage()
    state = 'running'
  }
  const stop = async (): Promise<void> => {
    const cpu = process.cpuUsage(startedCpu)
    window = { ms: performance.now() - started, cpuMs: (cpu.user + cpu.system) / 1000, gcMs }
    state = 'stopped'
    profile = (await session.post('Profiler.stop')).profile
  }
  return {
    onRound: (r) => {
      if (state === 'idle' && r.round === 1) {
        state = 'starting'
        start().catch((err) => console.error('profiler', err))
      } else if (state === 'running' && r.round === rounds - 2) stopping = stop()
    },
    done: async () => {
      await stopping
      gc.disconnect()
      if (profile !== undefined) await writeFile(file, JSON.stringify(profile))
      session.disconnect()
      const per = rounds - 3
      return {
        roundsProfiled: per,
        wallMsPerRound: Math.round(window.ms / per),
        processCpuMsPerRound: Math.round(window.cpuMs / per),
        gcMsPerRound: Math.round(window.gcMs / per),
      }
    },
  }
}
