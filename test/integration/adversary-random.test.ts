/**
 * Randomised adversarial test of the signed echo broadcast under real round engines (issue 12,
 * "Must show"): real libp2p nodes on 127.0.0.1 (test/unit/broadcast/harness.ts), f Byzantine
 * members driven by the adversary toolkit (src/adversary), the honest members running real
 * `RoundEngine`s with a tiny learner (d = 16 floats) and a coordinate-wise median.
 *
 * A schedule is R honest rounds (8 here, ADVERSARY_ROUNDS; 12 in the bench), unpaced or paced
 * at 100–200 ms a round, during which the Byzantine member(s) play a seeded random sequence of
 * 20–60 actions (`Rng`, src/rng.ts): valid SENDs for random rounds in [t − 2W, t + 1000]
 * (t = the honest round now, W = 8) to random subsets, sometimes a burst over consecutive
 * rounds; equivocation (two SENDs for one round to overlapping subsets — at once, or the second
 * after a burst of other instances or for a round certified earlier, issue 12's eviction
 * attack, with both certificates spread); FINALs built from the echoes they collect
 * (certified only when honest echoes make a quorum, colluders' echoes added when f = 2) sent to
 * random subsets and/or published; FINALs with forged signatures for far-future rounds;
 * mutated and garbage frames (on streams and on the FINAL topic); SEND headers claiming the
 * largest payload then stalled; trickled frames; FETCH floods; PULL and QUERY for random
 * instances. A swarm is reused for several schedules (each continues the rounds where the
 * previous one stopped, engines resumed from the previous snapshot), so state an attack leaves
 * behind meets the next schedule.
 *
 * Invariants, checked after every schedule (and the memory bound at every sample):
 *   (a) no honest member delivers two payloads for one (sender, round), and no two honest
 *       members deliver different payloads for one (sender, round) — every 'deliver' event is
 *       recorded, over the whole life of the swarm;
 *   (b) every honest engine completes all R rounds (hang guard: 120 s per schedule);
 *   (c) broadcast `stats().pendingBytes` ≤ n · maxPendingBytesPerPeer and
 *       `stats().deliveredBytes` ≤ n · (2W + 1) · maxPayloadBytes at every sample;
 *   (d) no honest member bans an honest member, nor even counts a penalised rejection against
 *       one (README: "An honest member earns no penalised rejection");
 *   (e) no honest engine catches up past the honest frontier (a catch-up to round r needs an
 *       honest member that reached r + 1: f members cannot make anyone skip rounds).
 *
 * Stalls (a round short of n − f after the 10 s round timeout) are counted and printed, not
 * failed on (they are a timing criterion); ADVERSARY_STRICT_STALLS=1 makes them violations.
 *
 * Env: ADVERSARY_SCHEDULES (default 100: 94 at n = 4, f = 1 and 6 at n = 7, f = 2),
 * ADVERSARY_SCHEDULES_PER_SWARM (10), ADVERSARY_ROUNDS (8), ADVERSARY_SEED ('adversary-random').
 * A failure prints the schedule's seed and its action list (the seed fixes every action; only
 * timing varies between runs). test/bench/adversary.bench.ts runs the same
 * generator at scale (this module exports it; the tests below only register when it is run
 * as the main module).
 */
import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import type { PrivateKey, Stream } from '@libp2p/interface'
import { type Adversary, createAdversary } from '../../src/adversary/index.ts'
import { bytesEqual, hashPayload, toHex } from '../../src/broadcast/crypto.ts'
import type { BanEvent, Delivery, EchoBroadcast, Rejection } from '../../src/broadcast/index.ts'
import type { PenaltyOptions } from '../../src/broadcast/penalties.ts'
import { encodeFrame, type Frame } from '../../src/broadcast/wire.ts'
import { quorum } from '../../src/net/membership.ts'
import { type AggregatorPort, type EngineSnapshot, type LearnerPort, RoundEngine } from '../../src/node/engine.ts'
import { Rng } from '../../src/rng.ts'
import { type Swarm, startSwarm } from '../unit/broadcast/harness.ts'

// ------------------------------------------------------------------ parameters

export const W = 8
export const DIM = 16
/** R: honest rounds per schedule (the bench's default; the test runs 8 to fit CI, ADVERSARY_ROUNDS) */
export const ROUNDS_PER_SCHEDULE = 12
/** Largest payload the members accept: room for the stalled max-size SENDs to weigh something. */
export const MAX_PAYLOAD_BYTES = 64 * 1024
export const MAX_PENDING_PER_PEER = 2 * MAX_PAYLOAD_BYTES + 1024 * 1024
/** Hang guard of one schedule (a liveness failure, never a timing assertion). */
export const SCHEDULE_GUARD_MS = 120_000

export const actionKinds = [
  'send',
  'equivocate',
  'final',
  'forged-final',
  'garbage',
  'stall',
  'trickle',
  'fetch-flood',
  'pull',
  'query',
  'gossip-junk',
] as const
export type ActionKind = (typeof actionKinds)[number]
const weights: Record<ActionKind, number> = {
  send: 3,
  equivocate: 2,
  final: 2,
  'forged-final': 2,
  garbage: 3,
  stall: 1,
  trickle: 1,
  'fetch-flood': 1,
  pull: 1,
  query: 1,
  'gossip-junk': 1,
}

/** One Byzantine action; rounds are offsets from the honest round t at the moment it runs. */
export interface Action {
  kind: ActionKind
  /** pause before launching it (ms) */
  delayMs: number
  /** which Byzantine member acts (index into the Byzantine members) */
  actor: number
  /** its own random stream (payloads, subsets, offsets): the schedule's seed fixes everything but timing */
  seed: number
}

export interface Schedule {
  seed: string
  actions: Action[]
  /**
   * Honest pace (engine `minRoundMs`; 0 = as fast as they can): with real models rounds take
   * seconds, and an adversary much faster than the rounds can do more within one window.
   */
  paceMs: number
}

function pickKind(rng: Rng): ActionKind {
  const total = actionKinds.reduce((a, k) => a + weights[k], 0)
  let x = rng.int(total)
  for (const k of actionKinds) {
    x -= weights[k]
    if (x < 0) return k
  }
  return 'send'
}

/** The seeded schedule generator: 20–60 actions, spread over about the schedule's expected length. */
export function generateSchedule(seed: string, byzantine: number, rounds = ROUNDS_PER_SCHEDULE): Schedule {
  const rng = new Rng(seed)
  const count = 20 + rng.int(41)
  const paceMs = [0, 0, 0, 100, 200][rng.int(5)]!
  const spreadMs = Math.max(75 * rounds, 0.8 * rounds * paceMs)
  const actions: Action[] = []
  for (let i = 0; i < count; i++) {
    actions.push({ kind: pickKind(rng), delayMs: rng.int(Math.max(1, Math.round((2 * spreadMs) / count))), actor: rng.int(byzantine), seed: rng.nextUint32() })
  }
  return { seed, actions, paceMs }
}

/** Round of an action: near the window most of the time, anywhere up to t + 1000 otherwise. */
function pickRound(rng: Rng, t: number): number {
  const r = rng.next() < 0.6 ? t - 2 * W + rng.int(3 * W + 3) : t - 2 * W + rng.int(2 * W + 1001)
  return Math.max(0, r)
}

function randomBytes(rng: Rng, n: number): Uint8Array {
  const out = new Uint8Array(n)
  const dv = new DataView(out.buffer)
  let i = 0
  for (; i + 4 <= n; i += 4) dv.setUint32(i, rng.nextUint32())
  for (; i < n; i++) out[i] = rng.int(256)
  return out
}

function subset<T>(rng: Rng, xs: readonly T[], min = 1): T[] {
  const s = rng.shuffle([...xs])
  return s.slice(0, min + rng.int(s.length - min + 1))
}

/** A payload for a Byzantine SEND: a plausible model, random bytes, or the largest allowed. */
function byzPayload(rng: Rng): Uint8Array {
  const x = rng.next()
  if (x < 0.5) {
    const m = new Float32Array(DIM)
    for (let i = 0; i < DIM; i++) m[i] = rng.normal() * (rng.next() < 0.2 ? 1e6 : 1)
    return new Uint8Array(m.buffer)
  }
  if (x < 0.8) return randomBytes(rng, rng.int(257))
  if (x < 0.95) return randomBytes(rng, 1 + rng.int(8192))
  return randomBytes(rng, MAX_PAYLOAD_BYTES)
}

// ------------------------------------------------------------------ learner and aggregator

/** d floats; each step moves θ deterministically by a small amount (no data, no randomness). */
export function tinyLearner(dim: number, member: number): LearnerPort {
  let theta = Float32Array.from({ length: dim }, (_, i) => Math.sin(i + 1))
  let m = new Float32Array(dim)
  return {
    dim,
    getParams: () => theta.slice(),
    setParams: (x) => {
      theta = x.slice()
    },
    getMomentum: () => m.slice(),
    setMomentum: (x) => {
      m = x.slice()
    },
    getRngState: () => undefined,
    setRngState: () => {},
    async step(round) {
      let loss = 0
      for (let i = 0; i < dim; i++) {
        const g = 0.1 * theta[i]! + 0.001 * (((round + i + member) % 3) - 1)
        m[i] = 0.5 * m[i]! + 0.5 * g
        theta[i] = theta[i]! - 0.1 * m[i]!
        loss += theta[i]! * theta[i]!
      }
      return { halfStep: theta.slice(), loss }
    },
  }
}

/** Coordinate-wise median (robust to the Byzantine models the engines accept). */
export function medianAggregator(): AggregatorPort {
  return {
    aggregate(inputs) {
      const k = inputs.length
      const d = inputs[0]!.length
      const out = new Float32Array(d)
      const col = new Float64Array(k)
      for (let j = 0; j < d; j++) {
        for (let i = 0; i < k; i++) col[i] = inputs[i]![j]!
        col.sort()
        out[j] = k % 2 === 1 ? col[(k - 1) / 2]! : (col[k / 2 - 1]! + col[k / 2]!) / 2
      }
      return out
    },
  }
}

// ------------------------------------------------------------------ invariant (a)

/**
 * Records every honest delivery; reports a member delivering one (sender, round) twice, or two
 * members delivering different payloads for it. Keys never expire: a swarm's whole life counts.
 */
export class DeliveryChecker {
  /** `${sender}/${round}` → hash (hex) first delivered by anyone */
  private readonly first = new Map<string, { hash: string; member: string }>()
  /** per member: keys delivered */
  private readonly byMember = new Map<string, Map<string, string>>()
  readonly violations: string[] = []
  checked = 0
  private readonly cap: number

  constructor(cap = 100_000) {
    this.cap = cap
  }

  record(member: string, d: { sender: string; round: number; hash: Uint8Array; payload: Uint8Array }): void {
    this.checked++
    const key = `${d.sender}/${d.round}`
    const hash = toHex(d.hash)
    if (!bytesEqual(hashPayload(d.payload), d.hash)) this.violations.push(`${short(member)} delivered ${short(d.sender)} round ${d.round} with a payload that does not hash to its certified hash`)
    let mine = this.byMember.get(member)
    if (mine === undefined) {
      mine = new Map()
      this.byMember.set(member, mine)
    }
    const before = mine.get(key)
    if (before !== undefined) {
      this.violations.push(
        before === hash
          ? `${short(member)} delivered ${short(d.sender)} round ${d.round} twice (same payload ${hash.slice(0, 12)})`
          : `${short(member)} delivered two different payloads for ${short(d.sender)} round ${d.round}: ${before.slice(0, 12)} then ${hash.slice(0, 12)}`,
      )
    } else if (mine.size < this.cap) mine.set(key, hash)
    const f = this.first.get(key)
    if (f === undefined) {
      if (this.first.size < this.cap) this.first.set(key, { hash, member })
    } else if (f.hash !== hash && f.member !== member) {
      this.violations.push(`${short(f.member)} and ${short(member)} delivered different payloads for ${short(d.sender)} round ${d.round}: ${f.hash.slice(0, 12)} vs ${hash.slice(0, 12)}`)
    }
  }

  /** Delivered instances known (sender, round, hash) — targets for PULL and QUERY. */
  sample(rng: Rng): { sender: string; round: number; hash: Uint8Array } | undefined {
    if (this.first.size === 0) return undefined
    const keys = [...this.first.keys()]
    const key = keys[keys.length - 1 - rng.int(Math.min(keys.length, 64))]!
    const slash = key.lastIndexOf('/')
    return { sender: key.slice(0, slash), round: Number(key.slice(slash + 1)), hash: Uint8Array.from(Buffer.from(this.first.get(key)!.hash, 'hex')) }
  }
}

function short(id: string): string {
  return id.length > 8 ? `…${id.slice(-6)}` : id
}

// ------------------------------------------------------------------ the swarm under attack

export interface AdversarialSwarmOptions {
  n: number
  f: number
  label: string
  /** default: bans on (64 penalised rejections in 60 s) for 3 s, so a banned adversary comes back */
  penalties?: PenaltyOptions | false
  rounds?: number
}

export interface ScheduleResult {
  seed: string
  held: boolean
  violations: string[]
  actions: Record<ActionKind, number>
  /** actions whose stream could not be opened (adversary banned, …) or ended in an error */
  refused: number
  roundsFrom: number
  roundsTo: number
  catchUps: number
  stalls: number
  ms: number
}

/** Resolves with `p`'s settlement or after `ms`, whichever comes first (the timer is cleared). */
async function within(p: Promise<unknown>, ms: number): Promise<void> {
  let timer: ReturnType<typeof setTimeout> | undefined
  await Promise.race([p.then(() => {}, () => {}), new Promise<void>((resolve) => {
    timer = setTimeout(resolve, ms)
  })])
  clearTimeout(timer)
}

/** Resolves after `ms`, or at once when `signal` aborts (the adversaries' pacing; also test/bench/adversary.bench.ts's). */
export const sleep = (ms: number, signal?: AbortSignal): Promise<void> =>
  new Promise((resolve) => {
    if (signal?.aborted) return resolve()
    const t = setTimeout(done, ms)
    function done(): void {
      clearTimeout(t)
      signal?.removeEventListener('abort', done)
      resolve()
    }
    signal?.addEventListener('abort', done, { once: true })
  })

export class AdversarialSwarm {
  readonly swarm: Swarm
  readonly n: number
  readonly f: number
  readonly honestIdx: number[]
  readonly honestIds: string[]
  readonly byzIds: string[]
  readonly advs: Adversary[]
  readonly honest: EchoBroadcast[]
  readonly checker = new DeliveryChecker()
  readonly label: string
  readonly rounds: number
  /** rounds the next schedule starts at, and the engines' state to resume from */
  private nextRound = 0
  private snaps: Array<EngineSnapshot | undefined>
  private readonly learners: LearnerPort[]
  readonly totals = {
    actions: Object.fromEntries(actionKinds.map((k) => [k, 0])) as Record<ActionKind, number>,
    refused: 0,
    peakPendingBytes: 0,
    peakDeliveredBytes: 0,
    samples: 0,
    catchUps: 0,
    stalls: 0,
    bans: 0,
    honestBans: 0,
    /** penalised rejections whose peer is honest (invariant (d)) */
    honestPenalised: 0,
    honestPenalisedReasons: {} as Record<string, number>,
    rejections: {} as Record<string, number>,
  }
  /** set once a schedule could not complete: the swarm's state is unknown, do not reuse it */
  broken = false
  private readonly memoryViolations: string[] = []
  private readonly otherViolations: string[] = []
  private sampler: ReturnType<typeof setInterval> | undefined
  private readonly listeners: Array<() => void> = []

  private constructor(swarm: Swarm, o: AdversarialSwarmOptions) {
    this.swarm = swarm
    this.n = o.n
    this.f = o.f
    this.label = o.label
    this.rounds = o.rounds ?? ROUNDS_PER_SCHEDULE
    const ids = swarm.membership.members
    this.honestIdx = Array.from({ length: o.n - o.f }, (_, i) => i)
    this.honestIds = this.honestIdx.map((i) => ids[i]!)
    this.byzIds = ids.slice(o.n - o.f)
    this.honest = this.honestIdx.map((i) => swarm.bcasts[i]!)
    this.advs = this.byzIds.map((_, k) => createAdversary({ node: swarm.nodes[o.n - o.f + k]!, privateKey: swarm.keys[o.n - o.f + k]! as PrivateKey, membership: swarm.membership }))
    this.snaps = this.honestIdx.map(() => undefined)
    this.learners = this.honestIdx.map((i) => tinyLearner(DIM, i))
    const honestSet = new Set(this.honestIds)
    for (const [k, b] of this.honest.entries()) {
      const me = this.honestIds[k]!
      const onDeliver = (e: Event): void => {
        this.checker.record(me, (e as CustomEvent<Delivery>).detail)
        this.sample()
      }
      const onBan = (e: Event): void => {
        const ban = (e as CustomEvent<BanEvent>).detail
        this.totals.bans++
        if (honestSet.has(ban.peer)) {
          this.totals.honestBans++
          this.otherViolations.push(`(d) honest ${short(me)} banned honest ${short(ban.peer)} for ${JSON.stringify(ban.reasons)}`)
        }
      }
      const onReject = (e: Event): void => {
        const r = (e as CustomEvent<Rejection>).detail
        this.totals.rejections[r.reason] = (this.totals.rejections[r.reason] ?? 0) + 1
        if (r.penalise && r.peer !== undefined && honestSet.has(r.peer)) {
          this.totals.honestPenalised++
          this.totals.honestPenalisedReasons[r.reason] = (this.totals.honestPenalisedReasons[r.reason] ?? 0) + 1
          if (this.otherViolations.length < 50) this.otherViolations.push(`(d) honest ${short(me)} penalised honest ${short(r.peer)}: ${r.reason}: ${r.detail}`)
        }
      }
      b.addEventListener('deliver', onDeliver)
      b.addEventListener('ban', onBan)
      b.addEventListener('reject', onReject)
      this.listeners.push(() => {
        b.removeEventListener('deliver', onDeliver)
        b.removeEventListener('ban', onBan)
        b.removeEventListener('reject', onReject)
      })
    }
    this.sampler = setInterval(() => this.sample(), 25)
  }

  static async start(o: AdversarialSwarmOptions): Promise<AdversarialSwarm> {
    const swarm = await startSwarm({
      n: o.n,
      f: o.f,
      swarmId: o.label.replace(/[^A-Za-z0-9._-]/g, '-'),
      withoutBroadcast: Array.from({ length: o.f }, (_, k) => o.n - o.f + k),
      broadcast: {
        roundWindow: W,
        maxPayloadBytes: MAX_PAYLOAD_BYTES,
        maxPendingBytesPerPeer: MAX_PENDING_PER_PEER,
        penalties: o.penalties ?? { threshold: 64, windowMs: 60_000, banMs: 3000 },
      },
    })
    return new AdversarialSwarm(swarm, o)
  }

  /** Invariant (c), at every sample: the broadcast's stated memory bounds. */
  private sample(): void {
    this.totals.samples++
    const pendingBound = this.n * MAX_PENDING_PER_PEER
    const deliveredBound = this.n * (2 * W + 1) * MAX_PAYLOAD_BYTES
    for (const [k, b] of this.honest.entries()) {
      const s = b.stats()
      if (s.pendingBytes > this.totals.peakPendingBytes) this.totals.peakPendingBytes = s.pendingBytes
      if (s.deliveredBytes > this.totals.peakDeliveredBytes) this.totals.peakDeliveredBytes = s.deliveredBytes
      if (this.memoryViolations.length < 20) {
        if (s.pendingBytes > pendingBound) this.memoryViolations.push(`(c) ${short(this.honestIds[k]!)} pendingBytes ${s.pendingBytes} > n·maxPendingBytesPerPeer = ${pendingBound}`)
        if (s.deliveredBytes > deliveredBound) this.memoryViolations.push(`(c) ${short(this.honestIds[k]!)} deliveredBytes ${s.deliveredBytes} > n·(2W+1)·maxPayloadBytes = ${deliveredBound}`)
      }
    }
  }

  /** The honest round now (the slowest honest engine's). */
  private t = 0

  /** Runs one schedule: R honest rounds under the schedule's actions; then checks the invariants. */
  async runSchedule(schedule: Schedule): Promise<ScheduleResult> {
    const started = performance.now()
    const from = this.nextRound
    const to = from + this.rounds
    this.t = from
    const violationsBefore = this.checker.violations.length
    const memBefore = this.memoryViolations.length
    const otherBefore = this.otherViolations.length
    const counts = Object.fromEntries(actionKinds.map((k) => [k, 0])) as Record<ActionKind, number>
    let refused = 0
    let catchUps = 0
    let stalls = 0
    const runCtl = new AbortController()
    const engines = this.honestIdx.map(
      (i, k) =>
        new RoundEngine({
          self: this.honestIds[k]!,
          membership: this.swarm.membership,
          swarmSeed: this.label,
          port: this.honest[k]!,
          learner: this.learners[k]!,
          aggregator: medianAggregator(),
          rounds: to,
          roundTimeoutMs: 10_000,
          roundWindow: W,
          ...(schedule.paceMs > 0 ? { minRoundMs: schedule.paceMs } : {}),
          ...(this.snaps[k] !== undefined ? { resume: this.snaps[k] } : {}),
          name: `h${i}`,
        }),
    )
    const violations: string[] = []
    for (const [k, e] of engines.entries()) {
      e.addEventListener('round', () => {
        this.t = Math.min(...engines.map((x) => x.round))
      })
      e.addEventListener('stall', (ev) => {
        stalls++
        // reported, not a violation (a timing criterion) unless ADVERSARY_STRICT_STALLS is set
        if (process.env.ADVERSARY_STRICT_STALLS !== undefined) violations.push(`(b) ${short(this.honestIds[k]!)} stalled: ${JSON.stringify((ev as CustomEvent).detail)}`)
      })
      e.addEventListener('catch-up', (ev) => {
        catchUps++
        const c = (ev as CustomEvent<{ from: number; to: number }>).detail
        // (e) a certified round r + 1 by f + 1 senders means an honest member reached it
        const frontier = Math.max(...engines.filter((_, j) => j !== k).map((x) => x.round))
        if (c.to + 1 > frontier) violations.push(`(e) ${short(this.honestIds[k]!)} caught up to round ${c.to} while no other honest member had reached ${c.to + 1} (frontier ${frontier})`)
      })
    }
    const runs = engines.map((e) => e.run({ signal: runCtl.signal }))
    for (const r of runs) r.catch(() => {})

    // the adversary plays the schedule while the engines run
    const attackCtl = new AbortController()
    const running = new Set<Promise<void>>()
    const driver = (async () => {
      for (const a of schedule.actions) {
        await sleep(a.delayMs)
        if (this.broken) return
        while (running.size >= 16) await Promise.race(running)
        counts[a.kind]++
        const p = this.perform(a, attackCtl.signal).then(
          (ok) => {
            if (!ok) refused++
          },
          () => {
            refused++
          },
        )
        running.add(p)
        p.finally(() => running.delete(p))
      }
    })()

    // (b) liveness: every honest engine completes all R rounds (hang guard, never a timing assertion)
    let guard: ReturnType<typeof setTimeout> | undefined
    const hang = new Promise<'hang'>((resolve) => {
      guard = setTimeout(() => resolve('hang'), SCHEDULE_GUARD_MS)
    })
    const outcome = await Promise.race([Promise.allSettled(runs).then(() => 'done' as const), hang])
    clearTimeout(guard)
    if (outcome === 'hang') {
      violations.push(
        `(b) honest engines did not complete rounds ${from}..${to - 1} within ${SCHEDULE_GUARD_MS / 1000} s: at rounds ${engines.map((e) => e.round).join(', ')}; ` +
          `progress ${this.honest.map((b) => b.newestCertifiedRound()).join(', ')}`,
      )
      this.broken = true
      runCtl.abort()
    } else {
      for (const [k, r] of (await Promise.allSettled(runs)).entries()) {
        if (r.status === 'rejected') violations.push(`(b) engine ${short(this.honestIds[k]!)} failed: ${String(r.reason)}`)
        else if (engines[k]!.round !== to) violations.push(`(b) engine ${short(this.honestIds[k]!)} stopped at round ${engines[k]!.round}, not ${to}`)
      }
    }
    const enginesMs = performance.now() - started
    await driver
    // stragglers (stalled and trickled streams) end with the schedule
    await within(Promise.allSettled([...running]), 100)
    attackCtl.abort()
    await within(Promise.allSettled([...running]), 20_000)
    if (process.env.ADVERSARY_DEBUG !== undefined) console.log(`# ${schedule.seed}: engines ${enginesMs.toFixed(0)} ms, total ${(performance.now() - started).toFixed(0)} ms, ${schedule.actions.length} actions`)
    for (const [k, e] of engines.entries()) {
      this.snaps[k] = e.snapshot()
      e.dispose()
    }
    this.nextRound = to
    this.sample()

    violations.push(...this.checker.violations.slice(violationsBefore))
    violations.push(...this.memoryViolations.slice(memBefore))
    violations.push(...this.otherViolations.slice(otherBefore))
    for (const k of actionKinds) this.totals.actions[k] += counts[k]
    this.totals.refused += refused
    this.totals.catchUps += catchUps
    this.totals.stalls += stalls
    return { seed: schedule.seed, held: violations.length === 0, violations, actions: counts, refused, roundsFrom: from, roundsTo: to, catchUps, stalls, ms: performance.now() - started }
  }

  async stop(): Promise<void> {
    clearInterval(this.sampler)
    for (const l of this.listeners) l()
    await this.swarm.stop()
  }

  // ---------------------------------------------------------------- actions

  private signalFor(outer: AbortSignal, ms = 15_000): AbortSignal {
    return AbortSignal.any([outer, AbortSignal.timeout(ms)])
  }

  /** SENDs to `peers`, collects their echoes (plus colluders'); the FINAL when they make a quorum. */
  private async collect(adv: Adversary, peers: string[], round: number, payload: Uint8Array, signal: AbortSignal, collude: boolean): Promise<Extract<Frame, { type: 'FINAL' }> | undefined> {
    const hash = hashPayload(payload)
    const extraEchoes = collude ? this.advs.filter((other) => other !== adv).map((other) => other.echoSignature(round, adv.id, hash)) : []
    const { final } = await adv.collect(peers, round, payload, { extraEchoes, signal: this.signalFor(signal) })
    if (final === undefined) return undefined
    const mine = this.certified.get(adv.id) ?? []
    mine.push(final)
    if (mine.length > 64) mine.shift()
    this.certified.set(adv.id, mine)
    return final
  }

  /** Certificates each Byzantine member obtained (targets of a later equivocation), newest last. */
  private readonly certified = new Map<string, Array<Extract<Frame, { type: 'FINAL' }>>>()

  /** Sends one frame (or raw bytes) per peer; true when at least one stream opened. */
  private async sendEach(adv: Adversary, peers: string[], frames: Array<Frame | Uint8Array>, signal: AbortSignal, o: { replies?: number; chunkBytes?: number; intervalMs?: number } = {}): Promise<boolean> {
    const res = await Promise.allSettled(peers.map((p) => adv.exchange(p, frames, { ...o, signal: this.signalFor(signal, o.chunkBytes !== undefined ? 60_000 : 15_000) })))
    for (const r of res) if (r.status === 'fulfilled' && r.value.ended !== 'closed') r.value.stream.abort(new Error('done'))
    return res.some((r) => r.status === 'fulfilled')
  }

  private async distributeFinal(adv: Adversary, rng: Rng, final: Frame, signal: AbortSignal): Promise<boolean> {
    let ok = true
    const how = rng.int(3)
    if (how !== 1) ok = await this.sendEach(adv, subset(rng, this.honestIds), [final], signal, { replies: 0 })
    if (how !== 0) await adv.publish(encodeFrame(final)).catch(() => {})
    return ok
  }

  /** Runs one action; false when nothing could be sent (e.g. the adversary is banned). */
  async perform(a: Action, signal: AbortSignal): Promise<boolean> {
    const rng = new Rng(a.seed)
    const adv = this.advs[a.actor % this.advs.length]!
    const t = this.t
    const q = quorum(this.n, this.f)
    const collude = this.advs.length > 1 && rng.next() < 0.5
    switch (a.kind) {
      case 'send': {
        // valid SENDs for random rounds to random subsets; the echoes are kept, no FINAL
        // (withholding). One in ten is a burst over consecutive rounds from t − 2 on (to every
        // honest member): the pressure on per-sender instance records that used to evict
        if (rng.next() < 0.1) {
          const from = Math.max(0, t - 2 + rng.int(3))
          const k = W + rng.int(4)
          const out = await Promise.allSettled(Array.from({ length: k }, (_, i) => this.collect(adv, this.honestIds, from + i, byzPayload(rng), signal, collude)))
          return out.some((r) => r.status === 'fulfilled')
        }
        const k = 1 + rng.int(4)
        const out = await Promise.allSettled(Array.from({ length: k }, () => this.collect(adv, subset(rng, this.honestIds), pickRound(rng, t), byzPayload(rng), signal, collude)))
        return out.some((r) => r.status === 'fulfilled')
      }
      case 'equivocate': {
        // two different SENDs for one round to overlapping subsets; every FINAL obtained is spread.
        // Or the second SEND comes later, after other instances (issue 12's eviction attack): for
        // a round it got certified earlier, or right after a burst of SENDs for the rounds above
        const mode = rng.next()
        const atLeast2 = Math.min(2, this.honestIds.length)
        const earlier = (this.certified.get(adv.id) ?? []).filter((fin) => fin.round >= t - 1)
        if (mode < 0.3 && earlier.length > 0) {
          const first = earlier[rng.int(earlier.length)]!
          const fin = await this.collect(adv, subset(rng, this.honestIds, atLeast2), first.round, byzPayload(rng), signal, collude)
          // both certificates go out (a second one means safety is already lost)
          if (fin !== undefined) await Promise.all([this.distributeFinal(adv, rng, fin, signal), this.distributeFinal(adv, rng, first, signal)])
          return true
        }
        if (mode < 0.6) {
          const round = t + rng.int(W >> 1)
          const first = await this.collect(adv, subset(rng, this.honestIds, atLeast2), round, byzPayload(rng), signal, collude)
          if (first !== undefined) await this.distributeFinal(adv, rng, first, signal)
          const k = W + rng.int(3)
          await Promise.allSettled(Array.from({ length: k }, (_, i) => this.collect(adv, this.honestIds, round + 1 + i, byzPayload(rng), signal, collude)))
          const second = await this.collect(adv, subset(rng, this.honestIds, atLeast2), round, byzPayload(rng), signal, collude)
          if (second !== undefined) await Promise.all([this.distributeFinal(adv, rng, second, signal), ...(first !== undefined ? [this.distributeFinal(adv, rng, first, signal)] : [])])
          return true
        }
        const round = rng.next() < 0.8 ? Math.max(0, t - 1 + rng.int(W + 2)) : pickRound(rng, t)
        const shuffled = rng.shuffle([...this.honestIds])
        const cut = 1 + rng.int(shuffled.length - 1)
        const A = shuffled.slice(0, Math.min(shuffled.length, cut + rng.int(2)))
        const B = shuffled.slice(Math.max(0, cut - rng.int(2)))
        const p1 = byzPayload(rng)
        let p2 = byzPayload(rng)
        if (bytesEqual(p1, p2)) p2 = Uint8Array.of(...p2, 1)
        const finals = await Promise.all([this.collect(adv, A, round, p1, signal, collude), this.collect(adv, B, round, p2, signal, collude)])
        for (const fin of finals) if (fin !== undefined) await this.distributeFinal(adv, rng, fin, signal)
        return true
      }
      case 'final': {
        // a FINAL from the echoes collected: certified only if honest echoes make a quorum;
        // otherwise the short certificate it has is sent anyway
        const round = pickRound(rng, t)
        const payload = byzPayload(rng)
        const peers = subset(rng, this.honestIds)
        const fin = await this.collect(adv, peers, round, payload, signal, collude)
        const frame: Frame = fin ?? { type: 'FINAL', ...adv.instance(round), hash: hashPayload(payload), certificate: [adv.echoSignature(round, adv.id, hashPayload(payload))] }
        return this.distributeFinal(adv, rng, frame, signal)
      }
      case 'forged-final': {
        // far-future FINALs whose certificate signatures are forged (random bytes, honest signers)
        const k = 1 + rng.int(4)
        let ok = false
        for (let i = 0; i < k; i++) {
          const round = rng.next() < 0.7 ? t + W + 1 + rng.int(1000) : pickRound(rng, t)
          const hash = randomBytes(rng, 32)
          const signers = rng.shuffle([...this.honestIds, ...this.byzIds]).slice(0, q)
          const certificate = signers.map((s) => (s === adv.id && rng.next() < 0.5 ? adv.echoSignature(round, adv.id, hash) : { signer: s, signature: randomBytes(rng, 64) }))
          const sender = rng.next() < 0.7 ? adv.id : this.honestIds[rng.int(this.honestIds.length)]!
          const frame: Frame = { type: 'FINAL', ...adv.instance(round), sender, hash, certificate }
          ok = (await this.distributeFinal(adv, rng, frame, signal)) || ok
        }
        return ok
      }
      case 'garbage':
        return this.sendEach(adv, subset(rng, this.honestIds), [this.garbage(adv, rng, t)], signal, rng.next() < 0.5 ? { replies: 1 } : {})
      case 'stall': {
        // SEND headers claiming the largest payload, part of it written, then the stream held
        const peer = this.honestIds[rng.int(this.honestIds.length)]!
        const streams = 1 + rng.int(6)
        const held: Stream[] = []
        const opened = await Promise.allSettled(
          Array.from({ length: streams }, async () => {
            const payload = randomBytes(rng, MAX_PAYLOAD_BYTES)
            const bytes = encodeFrame(adv.sendFrame(pickRound(rng, t), payload))
            const prefix = bytes.subarray(0, bytes.byteLength - MAX_PAYLOAD_BYTES + rng.int(MAX_PAYLOAD_BYTES))
            const r = await adv.exchange(peer, [prefix], { holdOpen: true, signal: this.signalFor(signal, 60_000) })
            held.push(r.stream)
          }),
        )
        // hold until the schedule ends (or a while), then drop
        await sleep(rng.next() < 0.5 ? 200 + rng.int(2000) : 60_000, signal)
        for (const s of held) s.abort(new Error('stall over'))
        return opened.some((r) => r.status === 'fulfilled')
      }
      case 'trickle': {
        // a frame written a few bytes at a time: a SEND, a FETCH, or a certified FINAL
        const peer = this.honestIds[rng.int(this.honestIds.length)]!
        const x = rng.next()
        const frame: Frame =
          x < 0.5
            ? adv.sendFrame(pickRound(rng, t), byzPayload(rng))
            : x < 0.8
              ? { type: 'FETCH', swarmId: this.swarm.membership.swarmId, epoch: 0, round: Math.max(0, t - 1 - rng.int(3)), have: [] }
              : { type: 'QUERY', ...adv.instance(Math.max(0, t - rng.int(3))), sender: this.honestIds[rng.int(this.honestIds.length)]! }
        return this.sendEach(adv, [peer], [frame], signal, { chunkBytes: 1 + rng.int(16), intervalMs: 20 + rng.int(200) })
      }
      case 'fetch-flood': {
        const streams = 1 + rng.int(4)
        const out = await Promise.allSettled(
          Array.from({ length: streams }, () => {
            const k = 5 + rng.int(36)
            const frames: Frame[] = Array.from({ length: k }, () => ({
              type: 'FETCH' as const,
              swarmId: this.swarm.membership.swarmId,
              epoch: 0,
              round: Math.max(0, t - 2 * W + rng.int(2 * W + 2)),
              have: rng.next() < 0.7 ? [] : subset(rng, this.swarm.membership.members),
            }))
            return this.sendEach(adv, [this.honestIds[rng.int(this.honestIds.length)]!], frames, signal)
          }),
        )
        return out.some((r) => r.status === 'fulfilled' && r.value)
      }
      case 'pull':
      case 'query': {
        const k = 1 + rng.int(8)
        const frames: Frame[] = []
        for (let i = 0; i < k; i++) {
          const known = rng.next() < 0.6 ? this.checker.sample(rng) : undefined
          const sender = known?.sender ?? this.swarm.membership.members[rng.int(this.n)]!
          const round = known?.round ?? pickRound(rng, t)
          const inst = { swarmId: this.swarm.membership.swarmId, epoch: 0, round, sender }
          frames.push(a.kind === 'pull' ? { type: 'PULL', ...inst, hash: known?.hash ?? randomBytes(rng, 32) } : { type: 'QUERY', ...inst })
        }
        // one stream with all of them, or one stream each
        if (rng.next() < 0.5) return this.sendEach(adv, subset(rng, this.honestIds), frames, signal)
        const out = await Promise.allSettled(frames.map((fr) => this.sendEach(adv, [this.honestIds[rng.int(this.honestIds.length)]!], [fr], signal)))
        return out.some((r) => r.status === 'fulfilled' && r.value)
      }
      case 'gossip-junk': {
        const k = 1 + rng.int(5)
        for (let i = 0; i < k; i++) {
          const x = rng.next()
          const data = x < 0.4 ? randomBytes(rng, 1 + rng.int(rng.next() < 0.1 ? 512 * 1024 : 2048)) : this.garbage(adv, rng, t)
          await adv.publish(data).catch(() => {})
        }
        return true
      }
    }
  }

  /** A malformed, mutated or otherwise invalid frame (bytes). */
  private garbage(adv: Adversary, rng: Rng, t: number): Uint8Array {
    const swarmId = this.swarm.membership.swarmId
    const round = pickRound(rng, t)
    const payload = byzPayload(rng)
    const valid = (): Uint8Array => {
      const x = rng.int(5)
      if (x === 0) return encodeFrame(adv.sendFrame(round, payload))
      if (x === 1) return encodeFrame({ type: 'FINAL', ...adv.instance(round), hash: hashPayload(payload), certificate: [adv.echoSignature(round, adv.id, hashPayload(payload))] })
      if (x === 2) return encodeFrame({ type: 'FETCH', swarmId, epoch: 0, round, have: [] })
      if (x === 3) return encodeFrame({ type: 'QUERY', ...adv.instance(round) })
      return encodeFrame({ type: 'PULL', ...adv.instance(round), hash: hashPayload(payload) })
    }
    const header = (version: number, type: number, flags: number, meta: number, pay: number): Uint8Array => {
      const b = new Uint8Array(12)
      const dv = new DataView(b.buffer)
      dv.setUint8(0, version)
      dv.setUint8(1, type)
      dv.setUint16(2, flags)
      dv.setUint32(4, meta)
      dv.setUint32(8, pay)
      return b
    }
    switch (rng.int(16)) {
      case 0:
        return randomBytes(rng, 1 + rng.int(512))
      case 1: {
        const b = valid().slice()
        for (let k = 1 + rng.int(4); k > 0; k--) b[rng.int(b.length)] ^= 1 + rng.int(255)
        return b
      }
      case 2: {
        const b = valid()
        return b.subarray(0, rng.int(b.length))
      }
      case 3:
        return Uint8Array.of(...valid(), ...randomBytes(rng, 1 + rng.int(32)))
      case 4:
        return header([1, 3, 0, 255][rng.int(4)]!, 1 + rng.int(8), 0, 10, 0)
      case 5:
        return header(2, [0, 9, 200, 255][rng.int(4)]!, 0, 10, 0)
      case 6:
        return header(2, 1 + rng.int(8), 1 + rng.int(0xffff), 10, 0)
      case 7:
        return header(2, 1 + rng.int(8), 0, 65_537 + rng.int(1 << 20), 0)
      case 8:
        return header(2, 1, 0, 100, MAX_PAYLOAD_BYTES + 1 + rng.int(1 << 30))
      case 9:
        // unsolicited ECHO / PAYLOAD / END
        return [
          encodeFrame({ type: 'ECHO', ...adv.instance(round), hash: hashPayload(payload), ...adv.echoSignature(round, adv.id, hashPayload(payload)) }),
          encodeFrame({ type: 'PAYLOAD', ...adv.instance(round), hash: hashPayload(payload), payload }),
          encodeFrame({ type: 'END' }),
        ][rng.int(3)]!
      case 10:
        // another swarm, or another epoch
        return rng.next() < 0.5 ? encodeFrame({ ...adv.sendFrame(round, payload), swarmId: 'other-swarm' }) : encodeFrame(adv.sendFrame(round, payload, { epoch: 1 + rng.int(5) }))
      case 11: {
        // a SEND naming an honest sender (signed by us), or with a bad signature
        const s = adv.sendFrame(round, payload)
        return rng.next() < 0.5 ? encodeFrame({ ...s, sender: this.honestIds[rng.int(this.honestIds.length)]! }) : encodeFrame({ ...s, signature: randomBytes(rng, 64) })
      }
      case 12:
        // a validly signed SEND whose payload does not hash to the declared hash
        return encodeFrame(adv.sendFrame(round, payload, { hash: randomBytes(rng, 32) }))
      case 13: {
        // a FINAL naming one signer twice, or reusing echo signatures of another round
        const hash = hashPayload(payload)
        const e = adv.echoSignature(round, adv.id, hash)
        const cert = rng.next() < 0.5 ? Array.from({ length: q(this) }, () => e) : Array.from({ length: q(this) }, () => adv.echoSignature(round + 1, adv.id, hash))
        return encodeFrame({ type: 'FINAL', ...adv.instance(round), hash, certificate: cert })
      }
      case 14:
        // a FINAL carrying a payload (answers a FETCH only)
        return encodeFrame({ type: 'FINAL', ...adv.instance(round), hash: hashPayload(payload), certificate: [adv.echoSignature(round, adv.id, hashPayload(payload))], payload: randomBytes(rng, 1 + rng.int(4096)) })
      default:
        // a FETCH with an oversized `have` list
        return encodeFrame({ type: 'FETCH', swarmId, epoch: 0, round, have: Array.from({ length: 1025 + rng.int(100) }, (_, i) => `p${i}`) })
    }
  }
}

function q(s: AdversarialSwarm): number {
  return quorum(s.n, s.f)
}

export function formatActions(counts: Record<ActionKind, number>): string {
  return actionKinds.map((k) => `${k}=${counts[k]}`).join(' ')
}

/**
 * Runs `count` schedules over swarms of n members (f Byzantine), `perSwarm` schedules per swarm;
 * calls `onResult` after each. A swarm whose schedule hung is replaced.
 */
export async function runSchedules(o: {
  n: number
  f: number
  count: number
  perSwarm: number
  seed: string
  /** honest rounds per schedule (default ROUNDS_PER_SCHEDULE) */
  rounds?: number
  penalties?: (swarmIndex: number) => PenaltyOptions | false
  onResult?: (r: ScheduleResult, s: AdversarialSwarm) => void
}): Promise<{ results: ScheduleResult[]; swarms: AdversarialSwarm['totals'][]; deliveries: number }> {
  const results: ScheduleResult[] = []
  const totals: AdversarialSwarm['totals'][] = []
  let deliveries = 0
  for (let sw = 0; results.length < o.count; sw++) {
    const label = `adv-n${o.n}-s${sw}`
    const pen = o.penalties?.(sw)
    const ts = performance.now()
    const s = await AdversarialSwarm.start({ n: o.n, f: o.f, label, ...(pen !== undefined ? { penalties: pen } : {}), ...(o.rounds !== undefined ? { rounds: o.rounds } : {}) })
    if (process.env.ADVERSARY_DEBUG !== undefined) console.log(`# swarm ${label} started in ${(performance.now() - ts).toFixed(0)} ms`)
    try {
      for (let k = 0; k < o.perSwarm && results.length < o.count && !s.broken; k++) {
        const schedule = generateSchedule(`${o.seed}/n${o.n}/${sw}/${k}`, o.f, s.rounds)
        const r = await s.runSchedule(schedule)
        results.push(r)
        o.onResult?.(r, s)
      }
    } finally {
      deliveries += s.checker.checked
      totals.push(s.totals)
      await s.stop()
    }
  }
  return { results, swarms: totals, deliveries }
}

export function summarise(label: string, res: Awaited<ReturnType<typeof runSchedules>>, ms: number): string {
  const actions = Object.fromEntries(actionKinds.map((k) => [k, 0])) as Record<ActionKind, number>
  const sum = { refused: 0, catchUps: 0, stalls: 0, bans: 0, honestPenalised: 0, peakPending: 0, peakDelivered: 0, samples: 0 }
  const honestReasons: Record<string, number> = {}
  for (const t of res.swarms) {
    for (const k of actionKinds) actions[k] += t.actions[k]
    sum.refused += t.refused
    sum.catchUps += t.catchUps
    sum.stalls += t.stalls
    sum.bans += t.bans
    sum.honestPenalised += t.honestPenalised
    sum.samples += t.samples
    sum.peakPending = Math.max(sum.peakPending, t.peakPendingBytes)
    sum.peakDelivered = Math.max(sum.peakDelivered, t.peakDeliveredBytes)
    for (const [r, c] of Object.entries(t.honestPenalisedReasons)) honestReasons[r] = (honestReasons[r] ?? 0) + c
  }
  const held = res.results.filter((r) => r.held).length
  return (
    `# ${label}: ${held}/${res.results.length} schedules held in ${(ms / 1000).toFixed(1)} s; actions ${formatActions(actions)} ` +
    `(refused/failed ${sum.refused}); deliveries checked ${res.deliveries}; memory samples ${sum.samples}, peak pendingBytes ${sum.peakPending}, ` +
    `peak deliveredBytes ${sum.peakDelivered}; catch-ups ${sum.catchUps}, stalls ${sum.stalls}, bans of the adversary ${sum.bans}; ` +
    `penalised rejections of honest peers ${sum.honestPenalised}${sum.honestPenalised > 0 ? ` ${JSON.stringify(honestReasons)}` : ''}`
  )
}

// ------------------------------------------------------------------ the tests

if (import.meta.main) {
  const SCHEDULES = Number(process.env.ADVERSARY_SCHEDULES ?? 100)
  const PER_SWARM = Number(process.env.ADVERSARY_SCHEDULES_PER_SWARM ?? 10)
  const SEED = process.env.ADVERSARY_SEED ?? 'adversary-random'
  // 8 rounds (not the bench's 12) keep about 100 schedules within ~3 min on a loaded 2-core machine
  const ROUNDS = Number(process.env.ADVERSARY_ROUNDS ?? 8)
  // n = 7 schedules cost about 3× those of n = 4 (five honest engines): 6 of the default 100
  const N7 = SCHEDULES >= 2 ? Math.max(1, Math.floor(SCHEDULES / 16)) : 0
  const N4 = SCHEDULES - N7

  const report = (r: ScheduleResult): void => {
    if (r.held) return
    console.log(`# schedule ${r.seed} (rounds ${r.roundsFrom}..${r.roundsTo - 1}) FAILED:\n#   ${r.violations.slice(0, 10).join('\n#   ')}`)
    const schedule = generateSchedule(r.seed, 1, ROUNDS)
    console.log(`#   actions: ${schedule.actions.map((a) => a.kind).join(',')}`)
  }
  const failures = (res: Awaited<ReturnType<typeof runSchedules>>): string =>
    res.results
      .filter((r) => !r.held)
      .map((r) => `${r.seed}: ${r.violations.slice(0, 5).join('; ')}`)
      .join('\n')

  describe('randomised adversarial schedules against real round engines', () => {
    it('the invariant checker itself reports conflicting and repeated deliveries (sanity)', () => {
      const c = new DeliveryChecker()
      const p1 = Uint8Array.of(1, 2, 3)
      const p2 = Uint8Array.of(4, 5, 6)
      const d = (payload: Uint8Array, hash = hashPayload(payload)) => ({ sender: 'byz', round: 7, payload, hash })
      c.record('h0', d(p1))
      c.record('h1', d(p1))
      assert.equal(c.violations.length, 0, 'agreeing deliveries are fine')
      c.record('h2', d(p2)) // another member, another payload
      assert.equal(c.violations.length, 1)
      assert.match(c.violations[0]!, /delivered different payloads/)
      c.record('h0', d(p2)) // one member, a second payload for the instance
      assert.ok(c.violations.some((v) => /delivered two different payloads/.test(v)))
      c.record('h1', d(p1)) // one member, the same instance twice
      assert.ok(c.violations.some((v) => /twice/.test(v)))
      const before = c.violations.length
      c.record('h3', d(p1, hashPayload(p2))) // a payload that does not match its hash
      assert.ok(c.violations.slice(before).some((v) => /does not hash/.test(v)))
      assert.equal(c.checked, 6)
    })

    it(`n = 4, f = 1: ${N4} random schedules of ${ROUNDS} rounds hold every invariant`, { timeout: 1_800_000, skip: N4 === 0 }, async () => {
      const t0 = performance.now()
      const res = await runSchedules({
        n: 4,
        f: 1,
        count: N4,
        perSwarm: PER_SWARM,
        seed: SEED,
        rounds: ROUNDS,
        // alternate: bans on (3 s, the adversary comes back) and off (it never stops)
        penalties: (sw) => (sw % 2 === 0 ? { threshold: 64, windowMs: 60_000, banMs: 3000 } : false),
        onResult: report,
      })
      console.log(summarise('n=4 f=1', res, performance.now() - t0))
      assert.equal(res.results.length, N4)
      const failed = res.results.filter((r) => !r.held)
      assert.equal(failed.length, 0, `${failed.length} of ${N4} schedules broke an invariant:\n${failures(res)}`)
      // every honest member delivers at least the honest instances: 3 · 3 per round (90 % of it at least)
      assert.ok(res.deliveries >= 0.9 * N4 * ROUNDS * 3 * 3, `only ${res.deliveries} deliveries checked`)
    })

    it(`n = 7, f = 2 (colluding): ${N7} random schedules hold every invariant`, { timeout: 1_800_000, skip: N7 === 0 }, async () => {
      const t0 = performance.now()
      const res = await runSchedules({ n: 7, f: 2, count: N7, perSwarm: PER_SWARM, seed: SEED, rounds: ROUNDS, onResult: report })
      console.log(summarise('n=7 f=2', res, performance.now() - t0))
      const failed = res.results.filter((r) => !r.held)
      assert.equal(failed.length, 0, `${failed.length} of ${N7} schedules broke an invariant:\n${failures(res)}`)
      assert.ok(res.deliveries >= 0.9 * N7 * ROUNDS * 5 * 5, `only ${res.deliveries} deliveries checked`)
    })
  })
}
