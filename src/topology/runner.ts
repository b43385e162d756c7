/**
 * Runs a scenario: a whole swarm on this machine, Byzantine members included, then writes
 * the report and returns it with the verdict.
 *
 * Two modes:
 * - `process` (default): every member is its own OS process running the real program
 *   (`node bin/monna.js start --config <member>.yaml --progress json`), talking TCP on
 *   127.0.0.1 on free ports. Keys, the swarm file and one node config per member are written
 *   into the output directory; each member's stdout (one JSON RoundReport per line) feeds the
 *   report, its stderr goes to `logs/<name>.log`.
 * - `in-process`: every member is a `createSwarmNode` in this process — the same stack (libp2p
 *   with Noise, yamux and gossipsub, the signed echo broadcast, the round engine) over libp2p's
 *   in-memory transport instead of TCP. Members share what is safe to share: one copy of the
 *   data set, decoded certified models, and verified signatures (by their exact bytes).
 *
 * Network conditions are applied in both modes by wrapping each member's broadcast port
 * (`network.ts`).
 */
import { spawn } from 'node:child_process'
import { mkdir, open, writeFile } from 'node:fs/promises'
import { flushCompileCache } from 'node:module'
import { createServer } from 'node:net'
import { join, resolve } from 'node:path'
import { createInterface } from 'node:readline'
import { stringify as toYaml } from 'yaml'
import { parseSwarm, type SwarmConfig, } from '../config/schema.ts'
import { AbortError, EXIT_ADDRESS_IN_USE, MonnaError } from '../errors.ts'
import { type Logger, silentLogger } from '../logger.ts'
import { loadOrCreateKey, peerIdOfKey } from '../net/index.ts'
import { type BroadcastPort, createDecodeCache, createSwarmNode, type RoundPhases, type RoundReport, type SwarmNode } from '../node/index.ts'
import { Rng } from '../rng.ts'
import { createTopologyBehaviour, needsLabelFlip } from './behaviours.ts'
import { memberProgram } from './member-program.ts'
import { conditionedPort, isIdealNetwork } from './network.ts'
import { buildReport, type MemberInfo, type MemberRound, median, type TopologyReport, writeReport } from './report.ts'
import { byzantineByMember, memberName, type Scenario } from './schema.ts'

/** One progress line: a round that every running honest member has completed. */
export interface RoundProgress {
  kind: 'round'
  round: number
  rounds: number
  honestReported: number
  /** min / median honest accuracy when this round was an evaluation round */
  accuracy?: { min: number; median: number }
  /** private tasks: the largest whole-run ε any honest member has spent by this round (RDP accountant) */
  epsilon?: number
  roundMs: number
  /** median over the honest members of where their round's time went (RoundReport.phases) */
  phases?: RoundPhases
}

export type ProgressEvent =
  | RoundProgress
  | { kind: 'start'; scenario: string; mode: 'process' | 'in-process'; n: number; outDir: string; members: MemberInfo[] }
  | { kind: 'member-exit'; name: string; byzantine: boolean; code: number | null; error?: string }
  | { kind: 'ended'; reason: string }
  /** the program members run (process mode): monna's bundle, or its sources and why */
  | { kind: 'program'; program: string; bundled: boolean; reason?: string }

export interface RunTopologyOptions {
  outDir: string
  mode?: 'process' | 'in-process'
  signal?: AbortSignal
  logger?: Logger
  onProgress?: (e: ProgressEvent) => void
  /** every member's RoundReport as it arrives (Byzantine members' too), in both modes */
  onRound?: (r: RoundReport) => void
  /** the program to start members with (process mode); default monna's own, bundled (member-program.ts) */
  program?: string
}

export interface TopologyRun {
  report: TopologyReport
  files: { json: string; html: string; svgs: string[] }
}

/**
 * Members run monna's bundled program (member-program.ts: the same sources, 12–31 MB less per
 * member at n = 26); the sources module by module when no bundle can be made, which the run's progress says.
 */
async function chooseMemberProgram(logger: Logger, emit: (e: ProgressEvent) => void): Promise<string> {
  const chosen = await memberProgram()
  if (chosen.built) logger.info('bundled the members\' program', { program: chosen.program })
  if (chosen.reason !== undefined) logger.warn('members run from the sources, module by module', { reason: chosen.reason })
  emit({ kind: 'program', program: chosen.program, bundled: chosen.bundled, ...(chosen.reason === undefined ? {} : { reason: chosen.reason }) })
  return chosen.program
}

/**
 * Node flags members are started with (process mode). A young generation of 8 MiB semi-spaces
 * instead of V8's default (sized from the machine's memory: a member's new space held 26–40 MB
 * at its peak on a 24 GB machine): the short-lived garbage of a round (stream chunks, frames,
 * promises) is collected sooner and the V8 heap stays small (docs/memory.md). 2 MiB kept it
 * smaller still, but the 26-process swarm then spent ≈ 17 % more CPU collecting it: 15.2–16.7 s
 * per round and 428–436 MB per member with 2 MiB against 12.6–13.3 s and 451–456 MB with 8 MiB and
 * 12.8–13.9 s and 468–471 MB with 16 MiB (bench:round, alternated, 2026-12-06).
 */
export const memberNodeFlags: readonly string[] = ['--max-semi-space-size=8']

/**
 * Environment members are started with, unless the caller's environment sets them. glibc's
 * malloc raises its mmap threshold to the size of the largest block freed (up to 32 MiB), so
 * after the first 1.7 MB payload is freed every later one comes from the brk heap, whose freed
 * blocks stay resident (a member's [heap] grew to ≈ 150 MB with ≈ 80 MB of it live): a fixed
 * threshold of 128 KiB keeps payload-sized blocks in their own mappings, returned to the
 * system when freed. Other C libraries ignore the variable.
 */
export const memberEnv: Readonly<Record<string, string>> = { MALLOC_MMAP_THRESHOLD_: '131072' }

interface Prepared {
  swarm: SwarmConfig
  ids: string[]
  keyFiles: string[]
  ports: number[]
  members: MemberInfo[]
}

/** Binds `port` (0: any) on 127.0.0.1 and closes it again; the port bound, or undefined if taken. */
function tryPort(port: number): Promise<number | undefined> {
  return new Promise((res) => {
    const srv = createServer()
    srv.once('error', () => res(undefined))
    srv.listen(port, '127.0.0.1', () => {
      const addr = srv.address()
      const bound = typeof addr === 'object' && addr !== null ? addr.port : undefined
      srv.close(() => res(bound))
    })
  })
}

/**
 * A TCP port free on 127.0.0.1 now, for a member to listen on a moment later. Drawn from
 * 20000–32767, below the ephemeral range Linux hands out for outgoing connections and port-0
 * listeners (32768–60999): a port-0 pick lands in that range, where any process on the machine
 * may take it before the member binds it (seen in CI: EADDRINUSE, the member never started).
 */
async function freePort(taken: Set<number>): Promise<number> {
  for (let attempt = 0; attempt < 200; attempt++) {
    const port = 20_000 + Math.floor(Math.random() * 12_768)
    if (!taken.has(port) && (await tryPort(port)) === port) return port
  }
  const any = await tryPort(0)
  if (any === undefined) throw new Error('no free TCP port on 127.0.0.1')
  return any
}

async function prepare(s: Scenario, outDir: string, withPorts: boolean): Promise<Prepared> {
  await mkdir(join(outDir, 'keys'), { recursive: true })
  const keyFiles: string[] = []
  const ids: string[] = []
  for (let i = 0; i < s.n; i++) {
    const file = join(outDir, 'keys', `${memberName(i)}.key`)
    keyFiles.push(file)
    ids.push(peerIdOfKey(await loadOrCreateKey(file)))
  }
  const ports: number[] = []
  if (withPorts) for (let i = 0; i < s.n; i++) ports.push(await freePort(new Set(ports)))
  const swarm = parseSwarm(
    {
      version: 1,
      name: s.name,
      seed: s.seed,
      f: s.f,
      ...(s.r !== undefined ? { r: s.r } : {}),
      members: ids.map((id, i) => ({
        id,
        name: memberName(i),
        addresses: withPorts ? [`/ip4/127.0.0.1/tcp/${ports[i]}/p2p/${id}`] : [],
      })),
      task: s.task,
      aggregator: s.aggregator,
      timing: s.timing,
      limits: s.limits,
      ...(s.encoding !== undefined ? { encoding: s.encoding } : {}),
    },
    `${s.name} (generated swarm)`,
  )
  await writeFile(join(outDir, 'swarm.yaml'), toYaml(swarm))
  const byz = byzantineByMember(s)
  const members: MemberInfo[] = ids.map((id, i) => ({
    index: i,
    name: memberName(i),
    id,
    byzantine: byz[i] !== undefined,
    behaviour: byz[i]?.behaviour ?? 'honest',
  }))
  return { swarm, ids, keyFiles, ports, members }
}

/** Behaviour parameters for member i (the optimal-* attacks get the swarm's rule). */
function behaviourParams(s: Scenario, i: number): ({ behaviour: string } & Record<string, unknown>) | undefined {
  const b = byzantineByMember(s)[i]
  if (b === undefined) return undefined
  const { members: _m, ...params } = b
  if (b.behaviour.startsWith('optimal-') && params.aggregator === undefined) params.aggregator = s.aggregator
  return params
}

/**
 * Collects round reports and turns them into progress lines: one per round, once every running
 * honest member finished it — or moved past it (a member that caught up skipped it and never
 * reports it).
 */
export class ProgressTracker {
  private readonly counts = new Map<number, MemberRound[]>()
  private readonly honest: Set<string>
  private readonly exited = new Set<string>()
  /** each honest member's newest round reported */
  private readonly newest = new Map<string, number>()
  private next = 0
  private readonly rounds: number
  private readonly emit: (e: ProgressEvent) => void
  readonly all: MemberRound[] = []
  private readonly onRound: ((r: RoundReport) => void) | undefined
  constructor(members: MemberInfo[], rounds: number, emit: (e: ProgressEvent) => void, onRound?: (r: RoundReport) => void) {
    this.rounds = rounds
    this.emit = emit
    this.onRound = onRound
    this.honest = new Set(members.filter((m) => !m.byzantine).map((m) => m.id))
  }

  add(r: MemberRound): void {
    this.all.push(r)
    this.onRound?.(r)
    if (!this.honest.has(r.member)) return
    this.newest.set(r.member, Math.max(r.round, this.newest.get(r.member) ?? -1))
    const list = this.counts.get(r.round) ?? []
    list.push(r)
    this.counts.set(r.round, list)
    this.flush()
  }

  memberGone(id: string): void {
    this.exited.add(id)
    this.flush()
  }

  private flush(): void {
    for (;;) {
      const list = this.counts.get(this.next) ?? []
      const reported = new Set(list.map((r) => r.member))
      for (const h of this.honest) if (!reported.has(h) && !this.exited.has(h) && (this.newest.get(h) ?? -1) <= this.next) return
      if (list.length === 0) {
        // every running honest member moved past this round without reporting it: no line
        if (![...this.newest.values()].some((r) => r > this.next)) return
        this.next++
        continue
      }
      const accs = list.flatMap((r) => (r.accuracy === undefined ? [] : [r.accuracy]))
      const e: RoundProgress = {
        kind: 'round',
        round: this.next,
        rounds: this.rounds,
        honestReported: list.length,
        roundMs: median(list.map((r) => r.roundMs)),
      }
      const ph = list.flatMap((r) => (r.phases === undefined ? [] : [r.phases]))
      if (ph.length === list.length && ph.length > 0) {
        e.phases = {
          trainMs: median(ph.map((p) => p.trainMs)),
          waitMs: median(ph.map((p) => p.waitMs)),
          aggregateMs: median(ph.map((p) => p.aggregateMs)),
          evaluateMs: median(ph.map((p) => p.evaluateMs)),
          checkpointMs: median(ph.map((p) => p.checkpointMs)),
        }
      }
      if (accs.length > 0) e.accuracy = { min: Math.min(...accs), median: median(accs) }
      const eps = list.flatMap((r) => (r.epsilon === undefined ? [] : [r.epsilon]))
      if (eps.length > 0) e.epsilon = Math.max(...eps)
      this.emit(e)
      this.counts.delete(this.next)
      this.next++
    }
  }
}

/** The run was ended by the runner because it could not go on (see `QuorumWatch`). */
export class RunEndedError extends MonnaError {
  override name = 'RunEndedError'
}

/**
 * Ends a run that can no longer make progress. A round waits for n − r certified models, and a
 * member that stopped with an error (crashed, or its model diverged) never sends another: once
 * fewer than n − r members are left running, the others would wait out the scenario's timeout
 * (a heterogeneity cell that ran its 40 rounds in 1.5 min took the whole 10-min timeout when one
 * honest model diverged next to two crashed Byzantine members).
 */
export class QuorumWatch {
  readonly failed: string[] = []
  reason: string | undefined
  private readonly n: number
  private readonly needed: number
  private readonly onLost: (reason: string) => void
  constructor(n: number, needed: number, onLost: (reason: string) => void) {
    this.n = n
    this.needed = needed
    this.onLost = onLost
  }
  /** `name` stopped with an error (not after its last round, not stopped by the runner). */
  memberFailed(name: string): void {
    if (this.reason !== undefined) return
    this.failed.push(name)
    const left = this.n - this.failed.length
    if (left >= this.needed) return
    this.reason = `only ${left} of ${this.n} members left running (${this.failed.join(', ')} stopped) and a round needs ${this.needed} (n − r): no round can complete`
    this.onLost(this.reason)
  }
}

function toMemberRound(r: RoundReport): MemberRound {
  return r
}

/** Runs the scenario and writes `report.json` / `report.html` into `opts.outDir`. */
export async function runTopology(s: Scenario, opts: RunTopologyOptions): Promise<TopologyRun> {
  const mode = opts.mode ?? 'process'
  const logger = opts.logger ?? silentLogger
  const emit = opts.onProgress ?? (() => {})
  const outDir = resolve(opts.outDir)
  opts.signal?.throwIfAborted()
  let prepared = await prepare(s, outDir, mode === 'process')
  emit({ kind: 'start', scenario: s.name, mode, n: s.n, outDir, members: prepared.members })
  let tracker = new ProgressTracker(prepared.members, s.task.rounds, emit, opts.onRound)
  let startedAt = new Date()
  const timeout = AbortSignal.timeout(s.runtime.timeoutMs)
  const lost = new AbortController()
  const signal = AbortSignal.any([...(opts.signal === undefined ? [] : [opts.signal]), timeout, lost.signal])
  let endedEarly: string | undefined
  const watch = (): QuorumWatch =>
    new QuorumWatch(s.n, s.n - (s.r ?? s.f), (reason) => {
      endedEarly = reason
      logger.warn('ending the run early', { reason })
      emit({ kind: 'ended', reason })
      lost.abort(new RunEndedError(reason))
    })
  if (mode === 'in-process') await runInProcess(s, prepared, tracker, emit, signal, logger, watch())
  else {
    // A port found free is bound by its member a few seconds later (the process must start): a
    // program — another run on the machine — may take it in between (CI: EADDRINUSE, the
    // Byzantine member never started and the run went on without its attack). Such a member
    // exits with EXIT_ADDRESS_IN_USE before any round; the run starts again on fresh ports.
    const program = opts.program ?? (await chooseMemberProgram(logger, emit))
    for (let attempt = 1; ; attempt++) {
      const outcome = await runProcesses(s, prepared, outDir, tracker, emit, signal, program, watch())
      if (outcome !== 'address-in-use' || attempt >= 3) break
      logger.warn('a member could not listen on its port (taken meanwhile); starting the run again on fresh ports', { attempt })
      prepared = await prepare(s, outDir, true)
      tracker = new ProgressTracker(prepared.members, s.task.rounds, emit, opts.onRound)
      startedAt = new Date()
    }
  }
  opts.signal?.throwIfAborted()
  const report = buildReport({ scenario: s, mode, members: prepared.members, rounds: tracker.all, startedAt, durationMs: Date.now() - startedAt.getTime(), ...(endedEarly === undefined ? {} : { endedEarly }) })
  const files = await writeReport(report, outDir)
  return { report, files }
}

async function runInProcess(
  s: Scenario,
  p: Prepared,
  tracker: ProgressTracker,
  emit: (e: ProgressEvent) => void,
  signal: AbortSignal,
  logger: Logger,
  watch: QuorumWatch,
): Promise<void> {
  // the real member stack — libp2p (Noise, yamux, gossipsub), the signed echo broadcast, the round
  // engine — over libp2p's in-memory transport: the transport is the only difference from processes
  const memoryAddr = (id: string): string => `/memory/${id}/p2p/${id}`
  const ideal = isIdealNetwork(s.network, s.n)
  const nodes: SwarmNode[] = []
  // one copy of the data set for every member
  const learning = await import('../learning/index.ts')
  await learning.initBackend({ backend: s.runtime.backend, deferLoading: true, ...(s.runtime.threads === undefined ? {} : { threads: s.runtime.threads }) })
  const datasets = {
    train: await learning.loadDataset(s.task.dataset, 'train', { signal }),
    test: await learning.loadDataset(s.task.dataset, 'test', { signal }),
  }
  // decode each certified model once for every member (by its certified round, sender and hash)
  const decode = createDecodeCache({ entries: 4 * s.n })
  try {
    for (let i = 0; i < s.n; i++) {
      const params = behaviourParams(s, i)
      const node = await createSwarmNode({
        swarm: p.swarm,
        privateKey: await loadOrCreateKey(p.keyFiles[i]!),
        transport: { kind: 'libp2p', network: 'memory' },
        // the members created before this one: each pair is dialled once, by the later member.
        // Given every member, the members already up dialled the ones not yet created every 2 s
        // (the redial loop), n² failing dials a minute while a large swarm was being created
        peers: p.ids.slice(0, i).map(memoryAddr),
        decode,
        datasets,
        signal,
        backend: s.runtime.backend,
        ...(s.runtime.threads === undefined ? {} : { threads: s.runtime.threads }),
        minRoundMs: s.runtime.minRoundMs,
        ...(params === undefined ? {} : { behaviour: createTopologyBehaviour(params, `byzantine (${memberName(i)})`), labelFlip: needsLabelFlip(params) }),
        ...(ideal
          ? {}
          : { wrapBroadcast: (port: BroadcastPort) => conditionedPort(port, { self: i, members: p.ids, network: s.network, rng: new Rng(`${s.seed}/network/${i}`) }) }),
        logger: logger.child(memberName(i)),
      })
      node.addEventListener('round', (e) => tracker.add(toMemberRound((e as CustomEvent<RoundReport>).detail)))
      nodes.push(node)
    }
    // Start the rounds once every member is connected to every other. Members are created one
    // after the other and dial each other at start: a member still connecting when the others
    // start misses their first SENDs (re-sent with back-off), falls two rounds behind at once and
    // catches up (seen at n = 16 and 26: the last member created caught up from round 0).
    await allConnected(nodes, s.n - 1, signal, logger)
    const onAbort = (): void => {
      for (const n of nodes) void n.stop().catch(() => {})
    }
    signal.addEventListener('abort', onAbort, { once: true })
    try {
      await Promise.all(
        nodes.map(async (node, i) => {
          const m = p.members[i]!
          try {
            await node.run({ signal })
            emit({ kind: 'member-exit', name: m.name, byzantine: m.byzantine, code: 0 })
          } catch (err) {
            if (watch.reason !== undefined && err instanceof AbortError) {
              // stopped by the runner: the run could not go on
              m.error = `stopped by the runner: ${watch.reason}`
              m.exitCode = 0
            } else {
              m.error = err instanceof Error ? `${err.name}: ${err.message}` : String(err)
              m.exitCode = 1
            }
            emit({ kind: 'member-exit', name: m.name, byzantine: m.byzantine, code: m.exitCode, error: m.error })
            if (m.exitCode !== 0 && !signal.aborted) watch.memberFailed(m.name)
          } finally {
            tracker.memberGone(m.id)
          }
        }),
      )
    } finally {
      signal.removeEventListener('abort', onAbort)
    }
  } finally {
    await Promise.allSettled(nodes.map((n) => n.stop()))
  }
}

/** Waits (at most 30 s) until every node is connected to `others` members. */
async function allConnected(nodes: SwarmNode[], others: number, signal: AbortSignal, logger: Logger): Promise<void> {
  const deadline = performance.now() + 30_000
  for (;;) {
    const short = nodes.filter((n) => n.status().peers.length < others).length
    if (short === 0) return
    if (performance.now() > deadline) {
      logger.warn('starting although some members are not connected to every other yet', { members: short })
      return
    }
    signal.throwIfAborted()
    await new Promise((resolve) => setTimeout(resolve, 50))
  }
}

async function runProcesses(
  s: Scenario,
  p: Prepared,
  outDir: string,
  tracker: ProgressTracker,
  emit: (e: ProgressEvent) => void,
  signal: AbortSignal,
  program: string,
  watch: QuorumWatch,
): Promise<'done' | 'address-in-use'> {
  await mkdir(join(outDir, 'logs'), { recursive: true })
  const ideal = isIdealNetwork(s.network, s.n)
  const commands: string[][] = []
  for (let i = 0; i < s.n; i++) {
    const name = memberName(i)
    const params = behaviourParams(s, i)
    // a node config exactly as `monna start` reads it (src/node/config.ts)
    const config: Record<string, unknown> = {
      swarm: join(outDir, 'swarm.yaml'),
      key: p.keyFiles[i],
      listen: [`/ip4/127.0.0.1/tcp/${p.ports[i]}`],
      mdns: false,
      backend: s.runtime.backend,
      ...(s.runtime.threads === undefined ? {} : { threads: s.runtime.threads }),
      minRoundMs: s.runtime.minRoundMs,
      logFormat: 'json',
      logLevel: 'info',
      progress: 'json',
      ...(params === undefined ? {} : { byzantine: params, labelFlip: needsLabelFlip(params) }),
    }
    const file = join(outDir, `${name}.yaml`)
    await writeFile(file, toYaml(config))
    if (ideal) {
      commands.push(['start', '--config', file, '--progress', 'json'])
    } else {
      const net = join(outDir, `${name}.network.json`)
      await writeFile(net, JSON.stringify({ self: i, members: p.ids, seed: s.seed, network: s.network }, null, 2))
      commands.push(['topology-member', '--config', file, '--network', net])
    }
  }
  // Members keep serving (echoing, answering catch-up requests) after their last round until
  // every honest member is done; then the runner stops them all.
  const finished = new Set<string>()
  const honest = p.members.filter((m) => !m.byzantine).map((m) => m.id)
  const live = new Map<string, () => void>()
  const checkAllDone = (): void => {
    if (honest.every((id) => finished.has(id))) for (const stop of live.values()) stop()
  }
  // a member that could not bind its port before any round ran: stop everyone, start again
  let addressTaken = false
  // what this process compiled so far goes to the compile cache now (bin/monna.js enables it), so
  // that members started together find the modules they share with it already there
  flushCompileCache()
  const children = commands.map((args, i) => {
    const m = p.members[i]!
    return (async () => {
      const log = await open(join(outDir, 'logs', `${m.name}.log`), 'w')
      try {
        const child = spawn(process.execPath, [...memberNodeFlags, program, ...args], { stdio: ['ignore', 'pipe', log.fd], env: { ...memberEnv, ...process.env } })
        let stopping = false
        let killTimer: ReturnType<typeof setTimeout> | undefined
        const stop = (): void => {
          if (stopping || child.exitCode !== null || child.signalCode !== null) return
          stopping = true
          child.kill('SIGTERM')
          // a member that does not stop within 10 s (e.g. stuck closing connections) is killed
          killTimer = setTimeout(() => child.kill('SIGKILL'), 10_000)
        }
        live.set(m.id, stop)
        signal.addEventListener('abort', stop, { once: true })
        const lines = createInterface({ input: child.stdout! })
        lines.on('line', (line) => {
          if (!line.startsWith('{')) return
          let r: MemberRound & { event?: string }
          try {
            r = JSON.parse(line) as MemberRound & { event?: string }
          } catch {
            return
          }
          if (r.event !== undefined || typeof r.round !== 'number' || typeof r.member !== 'string') return
          tracker.add(r)
          if (r.final === true) {
            finished.add(m.id)
            checkAllDone()
          }
        })
        const code: number | null = await new Promise((res) => child.once('exit', (c) => res(c)))
        clearTimeout(killTimer)
        live.delete(m.id)
        signal.removeEventListener('abort', stop)
        if (code === EXIT_ADDRESS_IN_USE && tracker.all.length === 0) {
          addressTaken = true
          for (const other of live.values()) other()
          return
        }
        if (addressTaken) return
        // stopped by us after the run (SIGTERM → null or 143) counts as a clean exit, as does a
        // member stopped because the run could not go on (its error says so)
        const cut = watch.reason !== undefined && !finished.has(m.id) && (code === 0 || code === null || code === 143)
        const stoppedByUs = finished.has(m.id) || honest.every((id) => finished.has(id)) || cut
        const clean = code === 0 || (stoppedByUs && (code === null || code === 143))
        m.exitCode = clean ? 0 : code
        if (!clean) m.error = `exited with code ${code} (see logs/${m.name}.log)`
        else if (cut) m.error = `stopped by the runner: ${watch.reason}`
        emit({ kind: 'member-exit', name: m.name, byzantine: m.byzantine, code: m.exitCode, ...(m.error === undefined ? {} : { error: m.error }) })
        if (!clean && !signal.aborted) watch.memberFailed(m.name)
        finished.add(m.id)
        tracker.memberGone(m.id)
        checkAllDone()
      } finally {
        await log.close()
      }
    })()
  })
  await Promise.all(children)
  if (signal.aborted && !(signal.reason instanceof DOMException && signal.reason.name === 'TimeoutError') && !(signal.reason instanceof RunEndedError)) throw new AbortError()
  return addressTaken ? 'address-in-use' : 'done'
}
