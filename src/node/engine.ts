/**
 * The asynchronous MoNNA round engine of one member (ALGORITHMS §1 and §3), over any
 * `BroadcastPort`. Round t:
 *
 * 1. local step (momentum, half step) → θ_{t+½};
 * 2. broadcast θ_{t+½} as little-endian float32 (a Byzantine member's behaviour acts instead);
 * 3. wait for valid certified deliveries of round t from n − r distinct members, its own
 *    included — never for more (if n − r others are certified before its own, the round closes
 *    without it); every delivery is checked (exact length d·4, all finite) and an invalid one is
 *    counted as a rejection and ignored;
 * 4. aggregate ALL valid deliveries held at that moment with the configured rule; this member's
 *    own θ_{t+½} is always among the inputs (own = its index), set θ_{t+1}, next round.
 *
 * r is the swarm's redundancy (docs/redundancy.md, src/node/redundancy.ts): the members a round
 * may go without, f ≤ r < n, default f. The aggregator's f and the broadcast's quorum stay tied
 * to f; only how many certified models a round waits for (n − r) follows r.
 *
 * Deliveries of closed rounds are dropped. The round timeout only matters when fewer than n − r
 * arrive: the engine then reports a stall ('stall' event, log, metric) and keeps waiting, and
 * reports 'recover' when the round completes. Once a round's aggregate is θ and the floor has
 * moved, the engine emits 'aggregated' ({ round, bytesReceived, last }), before the round's evaluation
 * and its 'round' report: the payloads below the floor are garbage from then on (member processes
 * collect on it, node/memory.ts). A member that sees certified FINALs of a round
 * at least `catchUpLag` ahead of its own catches up: it fetches the certified deliveries of the
 * newest complete round, aggregates them robustly (no own model exists for that round: with
 * the configured rule when it needs none, else — nna — the mean of the k − f models nearest
 * their coordinate-wise median), restarts
 * its momentum at zero (its old momentum, if any, was computed at models the swarm has left
 * behind) and continues from the next one. A joining member (`join`, or `joinFrom` above its
 * round) does nothing until the swarm has certified a round it may catch up to.
 *
 * Membership epochs (`membershipAt`, see src/membership): before each round t the engine asks
 * which epoch is in force at t and, when it changed, switches n, f, r, the quorum of n − r, the
 * aggregator (its f) and the broadcast's membership at that round boundary; a member no longer
 * listed stops ('removed' event). An epoch for the current round that arrives while the round is
 * open (received late) is switched to at once.
 */
import type { Adversary } from '../adversary/index.ts'
import { firstNonFinite } from '../aggregation/kernels.ts'
import { AbortError, InvalidConfigError, MonnaError } from '../errors.ts'
import { type Logger, silentLogger } from '../logger.ts'
import { Rng, type RngState } from '../rng.ts'
import { type ByzantineBehaviour, type ByzantineContext, ByzantineCrashError } from './behaviour.ts'

export { ByzantineCrashError }

/**
 * An honest member's model left the floats (a non-finite parameter after its local step): every
 * member refuses such a payload, so it can never count towards a round again — the engine stops
 * with this error instead of broadcasting it (a round that needed it would wait for ever).
 */
export class ModelDivergedError extends MonnaError {
  override name = 'ModelDivergedError'
  readonly round: number
  readonly coordinate: number
  constructor(round: number, coordinate: number, value: number) {
    super(`the model diverged at round ${round}: parameter ${coordinate} is ${value} after the local step; lower the learning rate, clip gradients, or aggregate with a robust rule`)
    this.round = round
    this.coordinate = coordinate
  }
}

import type { NodeMetrics } from './metrics.ts'
import { type DecodedModel, decodeModel, encodedBytes, encodeModel, type ModelEncoding } from './payload.ts'
import type { BroadcastPort, Delivery, Membership, SendSeen } from './port.ts'
import { epochR, rushingHonestMin } from './redundancy.ts'

/** The part of a contract §1 `Learner` the engine uses. */
export interface LearnerPort {
  readonly dim: number
  getParams(): Float32Array
  setParams(theta: Float32Array): void
  getMomentum(): Float32Array
  /** getMomentum into `into` (length dim), without a fresh buffer; optional */
  copyMomentum?(into: Float32Array): void
  setMomentum(m: Float32Array): void
  getRngState(): unknown
  setRngState(s: unknown): void
  /** `halfStep` is handed over: the learner never writes it afterwards (it may become the payload's bytes) */
  step(round: number): Promise<{ halfStep: Float32Array; loss: number; gradNorm?: number }>
}

/** The part of a contract §2 `Aggregator` the engine uses. */
export interface AggregatorPort {
  aggregate(inputs: Float32Array[], context?: { own?: number; reference?: Float32Array }): Float32Array
}

/** The part of a contract §4 `PrivacyAccountant` the engine uses. */
export interface AccountantPort {
  step(): void
  spent(delta: number): { epsilon: number }
  readonly steps: number
}

export interface RoundReport {
  member: string
  name?: string
  round: number
  /** local mini-batch loss of this round's step */
  loss: number
  accuracy?: number
  testLoss?: number
  /** least squares with a known θ* (the `linear` data set): ‖θ − θ*‖/‖θ*‖ of the aggregated θ, at evaluation rounds */
  distance?: number
  /** valid deliveries aggregated / n − r (r = f unless the swarm declares r) */
  delivered: number
  needed: number
  /** the redundancy r in force this round (members the round may go without; present when r ≠ f) */
  r?: number
  /** ms since this member's run started, at the end of this round (time-to-accuracy) */
  elapsedMs?: number
  /** cumulative, by reason (the engine's payload checks and the broadcast's own rejections) */
  rejected: Record<string, number>
  roundMs: number
  bytesSent: number
  bytesReceived: number
  /** signatures checked by this member's broadcast so far */
  signaturesVerified?: number
  /** whole payloads this member's broadcast wrote beyond one SEND per member and round, so far: SENDs written whole again after a failed or refused transfer, payloads served to others' PULL/FETCH */
  sendsRepeated?: number
  payloadsServed?: number
  payloadsServedToFetch?: number
  /** peers this member's broadcast cut off for a while so far, for floods of refused frames (none in an honest swarm) */
  coolOffs?: number
  /** this round waited past the round timeout */
  stalled: boolean
  epsilon?: number
  /** at evaluation rounds: 64-dim seeded random projection of θ after aggregation (same on all members) */
  sketch?: number[]
  /** last report of the run */
  final?: boolean
  /** members whose models were aggregated this round (sorted by member index) */
  senders?: string[]
  /** set on the first report after a catch-up: the round this member was at when it fell behind */
  caughtUpFrom?: number
  /** membership epoch this round ran in (when the node follows epochs) */
  epoch?: number
  /** largest L2 distance from this member's own model to another model it aggregated this round (absent when it aggregated only its own) */
  spread?: number
  /** members whose certified models of already-closed rounds arrived since the previous report (delivered, too late to use) */
  lateSenders?: string[]
  /**
   * Where this round's wall time went, ms: the local step (and a Byzantine behaviour's act),
   * waiting for n − r certified models (in one process this includes the other members' work),
   * aggregation, evaluation and checkpoint.
   */
  phases?: RoundPhases
}

export interface RoundPhases {
  trainMs: number
  waitMs: number
  aggregateMs: number
  evaluateMs: number
  checkpointMs: number
}

/** Everything needed to resume: written by checkpoints. */
export interface EngineSnapshot {
  /** the next round to run */
  round: number
  params: Float32Array
  momentum: Float32Array
  learnerRng: unknown
  engineRng: RngState
  privacySteps: number
}

export interface StallEvent {
  /** set when the stall is a catch-up that did not complete in time */
  catchUp?: boolean
  round: number
  delivered: number
  needed: number
  waitedMs: number
}

export interface RecoverEvent {
  round: number
  delivered: number
  needed: number
  stalledMs: number
}

export interface CatchUpEvent {
  from: number
  to: number
  delivered: number
}

/** The membership epoch switched at `round` (the first round run with it). */
export interface EpochEvent {
  epoch: number
  previous: number
  round: number
  n: number
  f: number
  /** the redundancy in force from this round (members a round may go without) */
  r: number
  members: string[]
}

/** What the engine uses at one round: the epoch's membership and an aggregator with its f. */
export interface EpochView {
  epoch: number
  /** first round of the epoch (its signed activation round); default: the round it is applied at */
  from?: number
  membership: Membership
  aggregator: AggregatorPort
  /** r in force in this epoch (default: the engine's `r` clamped to the epoch, `epochR`) */
  r?: number
}

export interface RoundEngineOptions {
  /** payload → model decoder (default `decodeModel`; in-process swarms share a `createDecodeCache()`) */
  decode?: (bytes: Uint8Array, dim: number, key?: string, encoding?: ModelEncoding, view?: boolean) => DecodedModel
  /** the swarm's model encoding on the wire (default float32; src/node/payload.ts) */
  encoding?: ModelEncoding
  self: string
  name?: string
  membership: Membership
  /**
   * The swarm's declared redundancy r (docs/redundancy.md): a round waits for n − r certified
   * models. Default f. Clamped per epoch (`epochR`) unless an `EpochView` gives its own.
   */
  r?: number
  swarmSeed: number | string
  port: BroadcastPort
  learner: LearnerPort
  aggregator: AggregatorPort
  /** total rounds of the run (rounds 0 … rounds − 1) */
  rounds: number
  /** resume: state to start from (else round 0 with the learner's θ₀) */
  resume?: EngineSnapshot
  /** after this long with fewer than n − r deliveries the round is reported stalled */
  roundTimeoutMs: number
  /**
   * Once n − r certified models are held, keep waiting up to this long for the other members'
   * (until all n are held) before closing the round; default 0 (close at n − r). What a round
   * aggregates then is every certified model that arrived in time (docs/exact.md §2, §4.7).
   */
  waitAllMs?: number
  /** W: how many rounds ahead deliveries are buffered (default 8) */
  roundWindow?: number
  /** fall behind by this many certified rounds → catch up (default 2: see `defaultEngineOptions`) */
  catchUpLag?: number
  /** membership epochs: the epoch in force at a round (default: `membership` forever, epoch 0) */
  membershipAt?: (round: number) => EpochView
  /** wait for the swarm's certified rounds and catch up before running any round (a late joiner) */
  join?: boolean
  /** never run a round below this one (a member added by an epoch activating there): catch up to it */
  joinFrom?: number
  /**
   * Report `spread` every round (the live page's largest distance from this member's model to
   * another it aggregated): one pass over the inputs, ≈ 18 ms a round for a LeNet with 21 inputs,
   * so off unless something shows it.
   */
  measureSpread?: boolean
  /** the epoch number of `membership` (default 0) */
  epoch?: number
  /**
   * Catch-up aggregate: the configured aggregator without an own vector (for rules that need
   * none: mean, cwmed, cwtm, gm, krum…), instead of the default mean of the k − f models nearest
   * their coordinate-wise median (which rules built around an own vector, like nna, need).
   */
  catchUpWithRule?: boolean
  evalEvery?: number
  evaluate?: (opts: { final: boolean; round: number }) => Promise<{ accuracy: number; loss: number; distance?: number }>
  behaviour?: ByzantineBehaviour
  /** Byzantine members on libp2p: the adversary toolkit on this member's node (protocol-level behaviours, equivocation) */
  adversary?: Adversary
  /**
   * A catch-up that has not completed after this long reports a stall ('stall' event with
   * `catchUp: true`) and hands back to the round loop, which decides afresh (default: the round timeout).
   */
  catchUpTimeoutMs?: number
  privacy?: { accountant: AccountantPort; delta: number }
  checkpointEvery?: number
  /** pace (demos, tests; default 0): rounds start on a grid of this step of the wall clock, so they last at least about this long */
  minRoundMs?: number
  checkpoint?: (snapshot: EngineSnapshot) => Promise<void>
  metrics?: NodeMetrics
  logger?: Logger
}

export const defaultEngineOptions = {
  roundWindow: 8,
  // A member whose round t is still open while some member already broadcast a certified round
  // t + 2 has had every chance to receive round t (n − r members finished it, so their
  // deliveries exist); it is behind (typically after a restart) rather than merely slow.
  catchUpLag: 2,
  evalEvery: 10,
  // How often the waiting loop re-checks timeouts and catch-up when no delivery arrives.
  pollMs: 200,
  // A round still short of n − r that has received no new delivery for this long, while some
  // member is already certified at this round or later, asks peers for the round's certified
  // deliveries (ones dropped out of the broadcast's window while this member was behind); again
  // after twice as long without progress, and so on (at most half the round timeout). Counted
  // from the last delivery, not from the round's start: a round that is merely slow (a large
  // swarm in one process, rounds of several seconds) keeps receiving deliveries and fetches
  // nothing — fetching there asked every member in turn for models still on their way, once a
  // second per member, and at n = 50 that load made the rounds 30× slower (scale.bench.ts).
  // Each such fetch asks r + 1 members (f + 1 by default: at least one honest), the next ones in turn the next
  // time: asking every member each time, the fetches of the members waiting in a round of a
  // 140-member swarm in one process opened ≈ 12,000 FETCH streams per round (scale.bench.ts).
  fetchAfterMs: 1000,
  // A member behind the swarm holding n − r − 1 certified models of its round waits this long for
  // its own model's certificate (or the missing model, which the fetches every fetchAfterMs may
  // bring) before catching up instead. Shorter, and a member that is merely slow catches up —
  // skipping rounds — where two fetches would have completed the round.
  ownCertifyGraceMs: 3000,
} as const

type Held = { model: Float32Array } | { invalid: true }

/**
 * Robust aggregate without an own model (catch-up): the coordinate-wise median as reference,
 * then the mean of the k − f inputs nearest to it. With k ≥ 2f + 1 the median lies within the
 * honest range in every coordinate, so up to f Byzantine inputs cannot drag the reference.
 */
export function nearestToMedianMean(inputs: Float32Array[], f: number): Float32Array {
  const k = inputs.length
  if (k === 0) throw new InvalidConfigError('inputs', 'need at least one model')
  const d = inputs[0]!.length
  const ref = new Float32Array(d)
  const col = new Float64Array(k)
  for (let j = 0; j < d; j++) {
    for (let i = 0; i < k; i++) col[i] = inputs[i]![j]!
    col.sort()
    ref[j] = k % 2 === 1 ? col[(k - 1) / 2]! : (col[k / 2 - 1]! + col[k / 2]!) / 2
  }
  const keep = Math.max(1, k - f)
  const dist = inputs.map((x, i) => {
    let s = 0
    for (let j = 0; j < d; j++) {
      const diff = x[j]! - ref[j]!
      s += diff * diff
    }
    return { i, s }
  })
  dist.sort((a, b) => a.s - b.s || a.i - b.i)
  const out = new Float64Array(d)
  for (const { i } of dist.slice(0, keep)) {
    const x = inputs[i]!
    for (let j = 0; j < d; j++) out[j]! += x[j]!
  }
  const res = new Float32Array(d)
  for (let j = 0; j < d; j++) res[j] = out[j]! / keep
  return res
}

/** 64-dim random projection of θ (Rademacher ±1/8, seeded): the same projection on every member. */
const sketchSigns = new Map<string, Uint32Array>()

/** Largest L2 distance from `own` to another of `inputs` (undefined when there is no other): the live page's "spread". */
export function spreadFrom(own: Float32Array, inputs: Float32Array[]): number | undefined {
  let max: number | undefined
  for (const x of inputs) {
    if (x === own || x.length !== own.length) continue
    let s = 0
    for (let i = 0; i < x.length; i++) {
      const d = x[i]! - own[i]!
      s += d * d
    }
    const v = Math.sqrt(s)
    if (max === undefined || v > max) max = v
  }
  return max
}

/**
 * A 64-dim random ±1 projection of θ scaled by 1/√dims (Johnson–Lindenstrauss sketch, the
 * same on every member for one seed), for estimating distances between members' models.
 * The sign bits are drawn once per (seed, d, dims) and kept (d·dims/8 bytes: 3.4 MB for the
 * LeNet): 7× faster than drawing them on every call (55–75 vs 350–520 ms at d = 431 080).
 */
export function sketchOf(theta: Float32Array, seed: number | string, dims = 64): number[] {
  const n = theta.length
  const key = `${seed}/${n}/${dims}`
  let bits = sketchSigns.get(key)
  if (bits === undefined) {
    const rng = new Rng(`${seed}/sketch`)
    bits = new Uint32Array(Math.ceil((n * dims) / 32))
    for (let w = 0; w < bits.length; w++) bits[w] = rng.nextUint32()
    if (sketchSigns.size > 8) sketchSigns.clear()
    sketchSigns.set(key, bits)
  }
  const out = new Float64Array(dims)
  for (let j = 0; j < dims; j++) {
    let acc = 0
    for (let i = 0; i < n; i++) {
      const bit = i * dims + j
      acc += (((bits[bit >>> 5]! >>> (bit & 31)) & 1) * 2 - 1) * theta[i]!
    }
    out[j] = acc
  }
  const scale = 1 / Math.sqrt(dims)
  return Array.from(out, (x) => x * scale)
}

export class RoundEngine extends EventTarget {
  readonly self: string
  n: number
  f: number
  /** members a round may go without (f ≤ r < n); the round waits for n − r */
  r: number
  needed: number
  /** membership epoch in force (0 = the swarm file) */
  epoch = 0
  /** the newest epoch handed to the broadcast ahead of its rounds (`learnEpochs`) */
  private knownEpoch = 0
  private membership: Membership
  private aggregator: AggregatorPort
  private joined: boolean
  private readonly opts: RoundEngineOptions
  private readonly log: Logger
  private readonly port: BroadcastPort
  private readonly learner: LearnerPort
  private readonly rng: Rng
  private readonly window: number
  private readonly encoding: ModelEncoding
  private memberIndex: Map<string, number>
  /** round currently open (deliveries below it are late) */
  private current: number
  private readonly held = new Map<number, Map<string, Held>>()
  private readonly seen = new Map<number, Map<string, Float32Array>>()
  private readonly rejectedHere: Record<string, number> = {}
  private readonly wakers = new Set<() => void>()
  private snap: EngineSnapshot
  private momentumBuf: Float32Array | undefined
  private readonly timers = new Set<ReturnType<typeof setTimeout>>()
  private readonly onDeliver = (e: Event): void => this.handleDelivery((e as CustomEvent<Delivery>).detail)
  private readonly onSend = (e: Event): void => this.handleSend((e as CustomEvent<SendSeen>).detail)
  private readonly onReject = (e: Event): void => {
    this.opts.metrics?.rejection((e as CustomEvent<{ reason: string }>).detail.reason)
  }
  private pendingCaughtUpFrom: number | undefined
  /** Deliveries seen: valid ones accepted into a round, and late ones (round already closed) dropped. */
  readonly counters = { valid: 0, late: 0 }
  private readonly lateSince = new Set<string>()
  private running = false
  /** performance.now() when run() started (RoundReport.elapsedMs) */
  private runStarted = 0

  constructor(opts: RoundEngineOptions) {
    super()
    this.encoding = opts.encoding ?? 'float32'
    const { membership } = opts
    this.opts = opts
    this.self = opts.self
    this.n = membership.members.length
    this.f = membership.f
    this.r = epochR(opts.r, this.n, this.f)
    this.needed = this.n - this.r
    this.memberIndex = new Map(membership.members.map((m, i) => [m, i]))
    this.membership = membership
    this.aggregator = opts.aggregator
    this.joined = opts.join !== true
    this.epoch = opts.epoch ?? 0
    this.knownEpoch = this.epoch
    opts.metrics?.setEpoch?.(this.epoch)
    opts.metrics?.setQuorum?.(this.needed, this.r)
    if (!this.memberIndex.has(opts.self)) throw new InvalidConfigError('self', `${opts.self} is not a member of swarm ${membership.swarmId}`)
    if (!Number.isInteger(opts.rounds) || opts.rounds < 1) throw new InvalidConfigError('rounds', `must be a positive integer, got ${opts.rounds}`)
    if (!(opts.roundTimeoutMs > 0)) throw new InvalidConfigError('roundTimeoutMs', `must be > 0, got ${opts.roundTimeoutMs}`)
    if (opts.waitAllMs !== undefined && !(opts.waitAllMs >= 0 && Number.isFinite(opts.waitAllMs))) {
      throw new InvalidConfigError('waitAllMs', `must be a finite number ≥ 0, got ${opts.waitAllMs}`)
    }
    this.log = opts.logger ?? silentLogger
    this.port = opts.port
    this.learner = opts.learner
    this.window = opts.roundWindow ?? defaultEngineOptions.roundWindow
    this.rng = new Rng(`${opts.swarmSeed}/byzantine/${opts.self}`)
    if (opts.resume !== undefined) {
      const r = opts.resume
      this.learner.setParams(r.params)
      this.learner.setMomentum(r.momentum)
      if (r.learnerRng !== undefined) this.learner.setRngState(r.learnerRng)
      this.rng.setState(r.engineRng)
      for (let i = opts.privacy?.accountant.steps ?? 0; i < r.privacySteps; i++) opts.privacy?.accountant.step()
      this.current = r.round
    } else {
      this.current = 0
    }
    this.snap = this.snapshotNow(this.current)
    this.port.addEventListener('deliver', this.onDeliver)
    this.port.addEventListener('send', this.onSend)
    this.port.addEventListener('reject', this.onReject)
  }

  /** Frames and deliveries refused so far, by reason: the broadcast's and this engine's own. */
  rejections(fromPort: Record<string, number> = this.port.stats().rejected): Record<string, number> {
    const rejected: Record<string, number> = { ...fromPort }
    for (const [k, v] of Object.entries(this.rejectedHere)) rejected[k] = (rejected[k] ?? 0) + v
    return rejected
  }

  /** The next round to run. */
  get round(): number {
    return this.current
  }

  /** State after the last completed round (what a checkpoint holds); the caller's to keep. */
  snapshot(): EngineSnapshot {
    // the momentum is the engine's own buffer, rewritten every round: a copy (params never are)
    return { ...this.snap, momentum: this.snap.momentum.slice() }
  }

  /**
   * The learner's momentum, in one buffer the engine reuses round after round when the learner
   * can copy into it (a fresh d-length array per member and round made a quarter of an
   * in-process swarm's garbage: every 64 MB of new array buffers starts a full garbage collection).
   */
  private momentumNow(): Float32Array {
    if (this.learner.copyMomentum === undefined) return this.learner.getMomentum()
    this.momentumBuf ??= new Float32Array(this.learner.dim)
    this.learner.copyMomentum(this.momentumBuf)
    return this.momentumBuf
  }

  /** `params`: θ as the learner now holds it, when the caller has it already (never written to afterwards) */
  private snapshotNow(round: number, params?: Float32Array): EngineSnapshot {
    return {
      round,
      params: params ?? this.learner.getParams(),
      momentum: this.momentumNow(),
      learnerRng: this.learner.getRngState(),
      engineRng: this.rng.getState(),
      privacySteps: this.opts.privacy?.accountant.steps ?? 0,
    }
  }

  /**
   * payload → model in the swarm's encoding (through the shared cache when there is one).
   * `view`: the bytes are a certified delivery's, never written afterwards and held by the
   * broadcast for as long as the model is: a float32 model may be read in place (no copy).
   */
  private decode(bytes: Uint8Array, key?: string, view = false): DecodedModel {
    return this.opts.decode !== undefined ? this.opts.decode(bytes, this.learner.dim, key, this.encoding, view) : decodeModel(bytes, this.learner.dim, this.encoding, { view })
  }

  private reject(reason: string, detail: Record<string, unknown>): void {
    this.rejectedHere[reason] = (this.rejectedHere[reason] ?? 0) + 1
    this.opts.metrics?.rejection(reason)
    this.log.warn('delivery rejected', { reason, ...detail })
  }

  private heldFor(round: number): Map<string, Held> {
    let h = this.held.get(round)
    if (h === undefined) {
      h = new Map()
      this.held.set(round, h)
    }
    return h
  }

  private handleDelivery(d: Delivery): void {
    if (d.round < this.current) {
      this.counters.late++
      this.lateSince.add(d.sender)
      this.opts.metrics?.delivery('late')
      this.dispatchEvent(new CustomEvent('late', { detail: { round: d.round, sender: d.sender } }))
      return
    }
    if (d.round > this.current + this.window) return // the port keeps it; read back when the round opens
    this.accept(d)
  }

  /** Validates and stores one certified delivery of an open or upcoming round. */
  private accept(d: Delivery): void {
    if (!this.memberIndex.has(d.sender)) return
    const h = this.heldFor(d.round)
    if (h.has(d.sender)) return
    const decoded = this.decode(d.payload, `${d.round}/${d.sender}/${Buffer.from(d.hash).toString('base64')}`, true)
    if ('problem' in decoded) {
      h.set(d.sender, { invalid: true })
      this.reject(decoded.problem, { round: d.round, sender: d.sender, bytes: d.payload.byteLength, expected: encodedBytes(this.learner.dim, this.encoding) })
    } else {
      h.set(d.sender, { model: decoded.model })
      this.counters.valid++
      this.opts.metrics?.delivery('valid')
      if (d.sender !== this.self) this.see(d.round, d.sender, decoded.model)
    }
    this.wake()
  }

  private handleSend(s: SendSeen): void {
    if (this.opts.behaviour === undefined || s.sender === this.self || s.round < this.current) return
    const decoded = this.decode(s.payload)
    if ('model' in decoded) this.see(s.round, s.sender, decoded.model)
  }

  private see(round: number, sender: string, model: Float32Array): void {
    if (this.opts.behaviour === undefined) return
    let m = this.seen.get(round)
    if (m === undefined) {
      m = new Map()
      this.seen.set(round, m)
    }
    if (!m.has(sender)) {
      m.set(sender, model)
      this.wake()
    }
  }

  private wake(): void {
    for (const w of [...this.wakers]) w()
  }

  private validCount(round: number): number {
    let c = 0
    for (const v of this.heldFor(round).values()) if ('model' in v) c++
    return c
  }

  /**
   * Hands the broadcast every epoch of later rounds this member has received, before it reaches
   * them: without it, certificates of rounds past the boundary name an epoch the broadcast does not
   * know and are refused ('wrong-epoch'), so a member still before the boundary — catching up to a
   * round the swarm has left, whose members may be gone — never sees the swarm move past it
   * (a newcomer sat 150 s catching up to round 37 with 4 of 6 models while the swarm ran on in
   * the epoch that began at 39).
   */
  private learnEpochs(): void {
    const at = this.opts.membershipAt
    if (at === undefined || this.port.knowEpoch === undefined) return
    const later: EpochView[] = []
    for (let v = at(Number.MAX_SAFE_INTEGER); v.epoch > Math.max(this.epoch, this.knownEpoch) && v.from !== undefined && v.from > 0; v = at(v.from - 1)) later.push(v)
    for (const v of later.reverse()) {
      this.port.knowEpoch(v.membership, v.from!, v.epoch)
      this.knownEpoch = v.epoch
    }
  }

  /** Resolves on the next delivery (or after `ms`); rejects on abort. */
  private idle(ms: number, signal?: AbortSignal): Promise<void> {
    this.learnEpochs()
    return new Promise<void>((resolve, reject) => {
      if (signal?.aborted) return reject(new AbortError())
      const done = (): void => {
        clearTimeout(timer)
        this.timers.delete(timer)
        signal?.removeEventListener('abort', onAbort)
        this.wakers.delete(waker)
      }
      const onAbort = (): void => {
        done()
        reject(new AbortError())
      }
      const timer = setTimeout(() => {
        done()
        resolve()
      }, ms)
      this.timers.add(timer)
      const waker = (): void => {
        done()
        resolve()
      }
      this.wakers.add(waker)
      signal?.addEventListener('abort', onAbort, { once: true })
    })
  }

  private sleep(ms: number, signal?: AbortSignal): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      if (signal?.aborted) return reject(new AbortError())
      const onAbort = (): void => {
        clearTimeout(timer)
        this.timers.delete(timer)
        reject(new AbortError())
      }
      const timer = setTimeout(() => {
        this.timers.delete(timer)
        signal?.removeEventListener('abort', onAbort)
        resolve()
      }, ms)
      this.timers.add(timer)
      signal?.addEventListener('abort', onAbort, { once: true })
    })
  }

  private gc(): void {
    for (const r of this.held.keys()) if (r < this.current) this.held.delete(r)
    for (const r of this.seen.keys()) if (r < this.current) this.seen.delete(r)
  }

  private openRound(t: number): void {
    this.current = t
    this.gc()
    for (const d of this.port.delivered(t)) this.accept(d)
  }

  /** Runs rounds until `rounds`; resolves with the reports of this run. */
  async run(opts: { signal?: AbortSignal } = {}): Promise<RoundReport[]> {
    if (this.running) throw new InvalidConfigError('run', 'the engine is already running')
    this.running = true
    this.runStarted = performance.now()
    const { signal } = opts
    const reports: RoundReport[] = []
    try {
      while (this.current < this.opts.rounds) {
        // Let the event loop turn once per round. Deliveries wake the round (`idle`) from
        // promise callbacks, and libp2p's in-memory transport moves bytes in promise callbacks
        // too: in an in-process swarm, members could otherwise run round after round without
        // the loop ever reaching timers (protocol timeouts, gossipsub heartbeats, pings) or a
        // member that awaits one — 25 of 26 members ran for 380 s while the last one waited in
        // round 0 for a timer, then had to catch up. One setImmediate per round costs nothing.
        await new Promise<void>((resolve) => setImmediate(resolve))
        signal?.throwIfAborted()
        this.learnEpochs()
        if (!this.joined || this.current < (this.opts.joinFrom ?? 0)) {
          await this.joinSwarm(signal)
          continue
        }
        if (!this.applyEpoch(this.current)) {
          this.removed(this.current)
          break
        }
        const t = this.current
        const lag = this.opts.catchUpLag ?? defaultEngineOptions.catchUpLag
        const newest = this.port.newestCertifiedRound()
        const target = this.catchUpTarget(newest)
        if (newest >= t + lag && target > t) {
          // behind: catch up unless this round's deliveries are still held (then it completes at once)
          this.openRound(t)
          if (this.validCount(t) + (this.heldFor(t).has(this.self) ? 0 : 1) < this.needed) {
            await this.catchUp(t, target, signal)
            continue
          }
        }
        const report = await this.runRound(t, signal)
        if (report === undefined) continue // caught up instead
        reports.push(report)
        // pace (never while behind: a member that the swarm is ahead of must be able to catch up).
        // Rounds start on a grid of the wall clock, so paced members start them together: with a
        // per-member delay instead, a member whose rounds started later (a newcomer, a restarted
        // member) would keep that phase and never be among anyone's first n − r. "Behind" includes
        // one round: when some model of the round about to start is already certified, the swarm
        // has started it — pacing then (it used to, `newest <= current`) put this member on the
        // grid one round late for good, below the catch-up lag, its model never among the first
        // n − r (a joining member in a 6-member swarm, 400 rounds, under CPU load).
        const pace = this.opts.minRoundMs ?? 0
        if (pace > 0 && this.current < this.opts.rounds && this.port.newestCertifiedRound() < this.current) {
          const now = Date.now()
          await this.sleep(Math.ceil((now + 1) / pace) * pace - now, signal)
        }
      }
      return reports
    } catch (err) {
      if (signal?.aborted && !(err instanceof ByzantineCrashError)) throw new AbortError('run aborted')
      throw err
    } finally {
      this.running = false
    }
  }

  private async runRound(t: number, signal?: AbortSignal): Promise<RoundReport | undefined> {
    const started = performance.now()
    this.openRound(t)
    const { halfStep, loss } = await this.learner.step(t)
    this.opts.privacy?.accountant.step()
    const self = this.self
    let ownCertifiedNeeded = true
    const behaviour = this.opts.behaviour
    // the own vector this member aggregates: what the others decode from its payload (a lossy
    // encoding must not give it a more precise own model than everyone else holds of it)
    let own = halfStep
    if (behaviour === undefined) {
      const bad = firstNonFinite(halfStep)
      if (bad >= 0) throw new ModelDivergedError(t, bad, halfStep[bad]!)
      // the half-step is the engine's (LearnerPort.step) and only read from now on: its float32 bytes are the payload
      const payload = encodeModel(halfStep, this.encoding, { view: true })
      if (this.encoding !== 'float32') {
        const decoded = this.decode(payload)
        // not decodable (overflowed the encoding's range): refused by everyone, own kept as today's float32 non-finite case
        if ('model' in decoded) own = decoded.model
      }
      this.sendModel(t, payload, signal, true)
    } else {
      ownCertifiedNeeded = false
      await behaviour.act(this.byzantineContext(t, halfStep, signal))
      // a simulated attacker whose own training diverged (it aggregates with the swarm's rule, and
      // its own attack may have broken it) keeps attacking: it aggregates its last finite model (or
      // zeros) in place of the diverged half-step, with its momentum reset, instead of stopping on
      // the rule's non-finite input — a swarm's Byzantine members do not leave because of it
      if (firstNonFinite(halfStep) >= 0) {
        own = firstNonFinite(this.snap.params) < 0 ? this.snap.params : new Float32Array(halfStep.length)
        this.learner.setMomentum(new Float32Array(this.learner.dim))
        this.log.debug('Byzantine member: own half-step not finite; aggregating its last finite model instead', { round: t })
      }
    }

    // wait for n − r valid deliveries (own included), never more
    const waitStart = performance.now()
    let stalled = false
    let stallReportedAt = 0
    const lag = this.opts.catchUpLag ?? defaultEngineOptions.catchUpLag
    const pollMs = Math.min(defaultEngineOptions.pollMs, this.opts.roundTimeoutMs)
    const grace = Math.min(defaultEngineOptions.ownCertifyGraceMs, this.opts.roundTimeoutMs)
    // fetch only after fetchEveryMs without a new delivery (doubling while fetches bring none)
    const fetchAfter = Math.min(defaultEngineOptions.fetchAfterMs, this.opts.roundTimeoutMs / 2)
    let fetchEveryMs = fetchAfter
    let lastProgress = waitStart
    let lastCount = -1
    let fetching = false
    const waitAll = this.opts.waitAllMs ?? 0
    let quorumAt: number | undefined
    for (;;) {
      // An epoch for this round that arrived after the round began (the admin's announcement
      // reached this member late): switch now, as the others did at the round boundary — with
      // the old n − r it could wait for members no longer listed, forever.
      if (this.opts.membershipAt !== undefined && this.opts.membershipAt(t).epoch !== this.epoch) {
        if (!this.applyEpoch(t)) return undefined // removed: the run loop stops
        this.log.info('membership epoch switched during its activation round (received late)', { round: t, epoch: this.epoch })
      }
      // n − r certified deliveries, own included once it is delivered (a Byzantine member counts
      // its own model locally: it may never broadcast one); never more than n − r are awaited
      const own = this.heldFor(t).get(self)
      const ownHeld = own !== undefined && 'model' in own
      const count = this.validCount(t) + (!ownCertifiedNeeded && !ownHeld ? 1 : 0)
      if (count >= this.needed) {
        // n − r held: close now, or (waitAllMs) once all n are held or the extra wait is over
        quorumAt ??= performance.now()
        if (waitAll <= 0 || count >= this.n || performance.now() - quorumAt >= waitAll) break
      }
      const newest = this.port.newestCertifiedRound()
      // Behind (the swarm certified round t + lag) and short of n − r: catch up. For a short grace
      // the own model counts as about to be certified (then the round completes at once); after
      // it, only certified models count: a member the swarm has left behind may never get its own
      // certified (the others refuse a SEND below their floor), and waiting for it is forever.
      const ownPending = !ownHeld && performance.now() - waitStart < grace ? 1 : 0
      if (newest >= t + lag && this.validCount(t) + ownPending < this.needed && this.catchUpTarget(newest) > t) {
        if (stalled) this.recover(t, count, performance.now() - stallReportedAt)
        await this.catchUp(t, this.catchUpTarget(newest), signal)
        return undefined // the swarm is ahead and this round's deliveries are missing
      }
      const now = performance.now()
      const waited = now - waitStart
      if (count > lastCount) {
        if (lastCount >= 0) fetchEveryMs = fetchAfter
        lastCount = count
        lastProgress = now
      }
      if (!fetching && newest >= t && now - lastProgress >= fetchEveryMs) {
        fetching = true
        lastProgress = now
        fetchEveryMs = Math.min(2 * fetchEveryMs, Math.max(fetchAfter, this.opts.roundTimeoutMs / 2))
        this.port.fetchRound(t, { signal, want: this.needed, peers: this.r + 1 }).then(
          (ds) => {
            fetching = false
            if (this.current === t) for (const d of ds) if (d.round === t) this.accept(d)
          },
          (err: unknown) => {
            fetching = false
            this.log.debug('fetchRound failed', { round: t, error: String(err) })
          },
        )
      }
      if (!stalled && quorumAt === undefined && waited >= this.opts.roundTimeoutMs) {
        stalled = true
        stallReportedAt = performance.now()
        const ev: StallEvent = { round: t, delivered: count, needed: this.needed, waitedMs: Math.round(waited) }
        this.log.warn('round stalled: fewer than n − r deliveries by the round timeout; still waiting', { ...ev, r: this.r })
        this.opts.metrics?.setStalled(true)
        this.dispatchEvent(new CustomEvent('stall', { detail: ev }))
      }
      await this.idle(quorumAt === undefined ? pollMs : Math.max(1, Math.min(pollMs, quorumAt + waitAll - performance.now())), signal)
    }
    if (stalled) this.recover(t, this.validCount(t), performance.now() - stallReportedAt)

    // aggregate all valid deliveries held now
    const inputs: Float32Array[] = []
    const senders: string[] = []
    const entries = [...this.heldFor(t).entries()].sort((a, b) => this.memberIndex.get(a[0])! - this.memberIndex.get(b[0])!)
    let ownIdx = -1
    if (!entries.some(([s, v]) => s === self && 'model' in v)) {
      entries.push([self, { model: own }])
      entries.sort((a, b) => this.memberIndex.get(a[0])! - this.memberIndex.get(b[0])!)
    }
    for (const [sender, v] of entries) {
      if (!('model' in v)) continue
      if (sender === self) {
        ownIdx = inputs.length
        inputs.push(own)
      } else {
        inputs.push(v.model)
      }
      senders.push(sender)
    }
    const spread = this.opts.measureSpread === true ? spreadFrom(own, inputs) : undefined
    const aggStart = performance.now()
    const next = this.aggregator.aggregate(inputs, { own: ownIdx, reference: this.snap.params })
    const aggregateMs = performance.now() - aggStart
    this.opts.metrics?.aggregationSeconds(aggregateMs / 1000)
    this.learner.setParams(next)
    this.current = t + 1
    // keep the closed round for members fetching it — after the last round, the one before too:
    // catch-up never goes past the second-to-last round (`catchUpTarget`)
    this.port.setFloor(t === this.opts.rounds - 1 ? Math.max(0, t - 1) : t)
    this.gc()
    // the aggregate is θ now (the learner copied it): the snapshot keeps it rather than a third copy
    this.snap = this.snapshotNow(t + 1, next)
    this.dispatchEvent(new CustomEvent('aggregated', { detail: { round: t, bytesReceived: this.port.stats().bytesReceived, last: t === this.opts.rounds - 1 } }))
    const phases = { trainMs: waitStart - started, waitMs: aggStart - waitStart, aggregateMs }
    return await this.finishRound(t, { loss, delivered: inputs.length, senders, stalled, started, params: next, phases, ...(spread === undefined ? {} : { spread }) }, signal)
  }

  private recover(round: number, delivered: number, stalledMs: number): void {
    const ev: RecoverEvent = { round, delivered, needed: this.needed, stalledMs: Math.round(stalledMs) }
    this.log.info('round recovered from stall', { ...ev })
    this.opts.metrics?.setStalled(false)
    this.dispatchEvent(new CustomEvent('recover', { detail: ev }))
  }

  private async finishRound(
    t: number,
    r: { loss: number; delivered: number; senders: string[]; stalled: boolean; started: number; params: Float32Array; phases: Pick<RoundPhases, 'trainMs' | 'waitMs' | 'aggregateMs'>; spread?: number },
    signal?: AbortSignal,
  ): Promise<RoundReport> {
    const final = t === this.opts.rounds - 1
    const evalEvery = this.opts.evalEvery ?? defaultEngineOptions.evalEvery
    const stats = this.port.stats()
    const rejected = this.rejections(stats.rejected)
    const report: RoundReport = {
      member: this.self,
      ...(this.opts.name !== undefined ? { name: this.opts.name } : {}),
      round: t,
      loss: r.loss,
      delivered: r.delivered,
      needed: this.needed,
      ...(this.r !== this.f ? { r: this.r } : {}),
      rejected,
      roundMs: 0,
      bytesSent: stats.bytesSent,
      bytesReceived: stats.bytesReceived,
      ...(stats.signaturesVerified !== undefined ? { signaturesVerified: stats.signaturesVerified } : {}),
      ...(stats.coolOffs !== undefined ? { coolOffs: stats.coolOffs } : {}),
      ...(stats.sendsRepeated !== undefined ? { sendsRepeated: stats.sendsRepeated } : {}),
      ...(stats.payloadsServed !== undefined ? { payloadsServed: stats.payloadsServed } : {}),
      ...(stats.payloadsServedToFetch !== undefined ? { payloadsServedToFetch: stats.payloadsServedToFetch } : {}),
      stalled: r.stalled,
      senders: r.senders,
      ...(r.spread !== undefined ? { spread: r.spread } : {}),
      ...(this.opts.membershipAt !== undefined ? { epoch: this.epoch } : {}),
    }
    if (this.lateSince.size > 0) {
      report.lateSenders = [...this.lateSince].sort((a, b) => this.memberIndex.get(a)! - this.memberIndex.get(b)!)
      this.lateSince.clear()
    }
    if (this.pendingCaughtUpFrom !== undefined) {
      report.caughtUpFrom = this.pendingCaughtUpFrom
      this.pendingCaughtUpFrom = undefined
    }
    const evalStart = performance.now()
    if (this.opts.evaluate !== undefined && (final || (t + 1) % evalEvery === 0)) {
      const ev = await this.opts.evaluate({ final, round: t })
      report.accuracy = ev.accuracy
      report.testLoss = ev.loss
      if (ev.distance !== undefined) report.distance = ev.distance
      report.sketch = sketchOf(r.params, this.opts.swarmSeed)
      this.opts.metrics?.setAccuracy(ev.accuracy)
    }
    if (this.opts.privacy !== undefined) {
      report.epsilon = this.opts.privacy.accountant.spent(this.opts.privacy.delta).epsilon
      this.opts.metrics?.setEpsilon(report.epsilon)
    }
    if (final) report.final = true
    const checkpointStart = performance.now()
    const K = this.opts.checkpointEvery ?? 0
    if (this.opts.checkpoint !== undefined && ((K > 0 && (t + 1) % K === 0) || final)) {
      signal?.throwIfAborted()
      await this.opts.checkpoint(this.snapshot())
    }
    const end = performance.now()
    report.roundMs = Math.round(end - r.started)
    report.elapsedMs = Math.round(end - this.runStarted)
    const ms = (x: number): number => Math.round(x * 10) / 10
    report.phases = {
      trainMs: ms(r.phases.trainMs),
      waitMs: ms(r.phases.waitMs),
      aggregateMs: ms(r.phases.aggregateMs),
      evaluateMs: ms(checkpointStart - evalStart),
      checkpointMs: ms(end - checkpointStart),
    }
    this.opts.metrics?.setRound(t)
    this.opts.metrics?.setLoss(r.loss)
    this.opts.metrics?.roundSeconds(report.roundMs / 1000)
    this.dispatchEvent(new CustomEvent('round', { detail: report }))
    return report
  }

  /** Broadcasts in the background (the round does not wait on it: it waits on deliveries). */
  /** `handOver`: the payload is the engine's own and never written afterwards (see BroadcastPort.broadcast) */
  private sendModel(t: number, payload: Uint8Array, signal?: AbortSignal, handOver = false): void {
    const start = performance.now()
    this.port.broadcast(t, payload, { signal, handOver }).then(
      () => {
        this.opts.metrics?.echoLatencySeconds((performance.now() - start) / 1000)
        if (t >= this.current) for (const d of this.port.delivered(t)) if (d.sender === this.self) this.accept(d)
      },
      (err: unknown) => {
        if (!signal?.aborted) this.log.debug('own broadcast did not complete', { round: t, error: String(err) })
      },
    )
  }

  private byzantineContext(t: number, ownHalfStep: Float32Array, runSignal?: AbortSignal): ByzantineContext {
    const membership = this.membership
    const adv = this.opts.adversary
    const sendTo = adv !== undefined ? (peers: string[], round: number, payload: Uint8Array) => adv.sendTo(peers, round, payload) : this.port.sendTo?.bind(this.port)
    return {
      round: t,
      self: this.self,
      members: [...membership.members],
      f: this.f,
      r: this.r,
      swarmSeed: this.opts.swarmSeed,
      ownHalfStep,
      encoding: this.encoding,
      rng: this.rng,
      ...(this.opts.adversary !== undefined ? { adversary: this.opts.adversary } : {}),
      ...(runSignal !== undefined ? { signal: runSignal } : {}),
      broadcast: (payload) => this.sendModel(t, payload, runSignal),
      ...(sendTo !== undefined ? { sendTo: (peers: string[], payload: Uint8Array) => sendTo(peers, t, payload) } : {}),
      honest: async (o = {}) => {
        // rushing: of the n − r models an honest member aggregates, up to f are Byzantine
        const min = o.min ?? rushingHonestMin(this.n, this.r, this.f)
        const deadline = performance.now() + (o.timeoutMs ?? this.opts.roundTimeoutMs)
        const signal = o.signal ?? runSignal
        for (;;) {
          const got = this.seen.get(t)
          if ((got?.size ?? 0) >= min || performance.now() >= deadline) return [...(got?.values() ?? [])]
          await this.idle(Math.min(defaultEngineOptions.pollMs, Math.max(1, deadline - performance.now())), signal)
        }
      },
    }
  }

  /**
   * The round to catch up to: the newest certified round minus one (its deliveries are complete
   * at the members that moved on, which keep it until they close the newest round: a member keeps
   * only its last closed round), but never the last round, which this member runs itself so
   * that it ends with its own final report and evaluation (members keep the second-to-last round
   * after the last for this).
   */
  private catchUpTarget(newest: number): number {
    return Math.min(newest - 1, this.opts.rounds - 2)
  }

  /** Adopts the robust aggregate of the certified deliveries of round `target` and continues at target + 1. */
  private async catchUp(from: number, target: number, signal?: AbortSignal): Promise<void> {
    this.log.info('behind the swarm: catching up from certified deliveries', { from, target, held: this.validCount(from) })
    if (!this.applyEpoch(target)) return // removed meanwhile: the run loop stops
    this.current = target
    this.gc()
    this.port.setFloor(Math.max(0, target - 1))
    const pollMs = Math.max(defaultEngineOptions.pollMs, 500)
    const started = performance.now()
    const limit = this.opts.catchUpTimeoutMs ?? this.opts.roundTimeoutMs
    for (;;) {
      signal?.throwIfAborted()
      if (performance.now() - started > limit) {
        // bounded: report and hand back to the round loop (the evidence is re-read there)
        const ev: StallEvent = { catchUp: true, round: target, delivered: this.validCount(target), needed: this.needed, waitedMs: Math.round(performance.now() - started) }
        const rejected = Object.fromEntries(Object.entries(this.port.stats().rejected).filter(([, v]) => v > 0))
        this.log.warn('catch-up did not complete in time; reporting a stall and resuming', { ...ev, newestCertified: this.port.newestCertifiedRound(), rejected })
        this.dispatchEvent(new CustomEvent('stall', { detail: ev }))
        return
      }
      try {
        for (const d of await this.port.fetchRound(target, { signal, want: this.needed })) this.accept(d)
      } catch (err) {
        if (signal?.aborted) throw err
        this.log.debug('fetchRound failed', { round: target, error: String(err) })
      }
      for (const d of this.port.delivered(target)) this.accept(d)
      if (this.validCount(target) >= this.needed) break
      // the swarm moved further on while we fetched: aim at the newer round (at once: the members
      // that moved on drop the older one when they close the next)
      const newest = this.port.newestCertifiedRound()
      if (this.catchUpTarget(newest) > target) {
        this.log.debug('catch-up target moved', { from: target, to: this.catchUpTarget(newest) })
        target = this.catchUpTarget(newest)
        if (!this.applyEpoch(target)) return
        this.current = target
        this.gc()
        this.port.setFloor(Math.max(0, target - 1))
        continue
      }
      await this.idle(pollMs, signal)
    }
    const inputs: Float32Array[] = []
    for (const v of this.heldFor(target).values()) if ('model' in v) inputs.push(v.model)
    let next: Float32Array | undefined
    if (this.opts.catchUpWithRule === true) {
      try {
        next = this.aggregator.aggregate(inputs)
      } catch (err) {
        this.log.warn('the rule cannot aggregate the catch-up models; using the median-referenced mean', { error: String(err) })
      }
    }
    next ??= nearestToMedianMean(inputs, this.f)
    this.learner.setParams(next)
    // momentum restarts at zero: whatever this member had was computed at models the swarm left behind
    this.learner.setMomentum(new Float32Array(this.learner.dim))
    this.joined = true
    this.opts.metrics?.catchUp()
    for (let i = 0; i < inputs.length; i++) this.opts.metrics?.delivery('catch-up')
    this.current = target + 1
    this.gc()
    this.snap = this.snapshotNow(target + 1)
    this.pendingCaughtUpFrom ??= from // the round it fell behind at, over catch-ups in a row
    const ev: CatchUpEvent = { from, to: target, delivered: inputs.length }
    this.log.info('caught up', { ...ev })
    this.dispatchEvent(new CustomEvent('catch-up', { detail: ev }))
  }

  /**
   * A joining member: waits (without stepping or broadcasting) until the swarm has certified a
   * round it may catch up to — at least `joinFrom` — then catches up to it.
   */
  private async joinSwarm(signal?: AbortSignal): Promise<void> {
    const from = Math.max(this.current, this.opts.joinFrom ?? 0)
    if (from > this.opts.rounds - 2) {
      // catch-up never goes past the second-to-last round: the run ends before this member could join
      this.log.warn('the run ends before this member can join; nothing to do', { from, rounds: this.opts.rounds })
      this.current = this.opts.rounds
      return
    }
    let logged = false
    for (;;) {
      signal?.throwIfAborted()
      const target = this.catchUpTarget(this.port.newestCertifiedRound())
      if (target >= from) {
        await this.catchUp(this.current, target, signal)
        return
      }
      if (!logged) {
        logged = true
        this.log.info('joining: waiting for the swarm\'s certified rounds', { from })
      }
      await this.idle(Math.max(defaultEngineOptions.pollMs, 500), signal)
    }
  }

  /**
   * Switches to the epoch in force at `round` if it changed: n, f, r, n − r, aggregator, broadcast
   * membership, and drops held deliveries of members no longer listed. Returns whether this
   * member is still a member.
   */
  private applyEpoch(round: number): boolean {
    const view = this.opts.membershipAt?.(round)
    if (view === undefined || view.epoch === this.epoch) return this.memberIndex.has(this.self)
    const previous = this.epoch
    const m = view.membership
    this.epoch = view.epoch
    this.membership = m
    this.n = m.members.length
    this.f = m.f
    this.r = view.r ?? epochR(this.opts.r, this.n, this.f)
    this.needed = this.n - this.r
    this.memberIndex = new Map(m.members.map((id, i) => [id, i]))
    this.aggregator = view.aggregator
    for (const [r, h] of this.held) if (r >= round) for (const sender of [...h.keys()]) if (!this.memberIndex.has(sender)) h.delete(sender)
    const still = this.memberIndex.has(this.self)
    if (still) this.port.setMembership?.(m, view.from ?? round, view.epoch)
    const ev: EpochEvent = { epoch: view.epoch, previous, round, n: this.n, f: this.f, r: this.r, members: [...m.members] }
    this.log.info('membership epoch switched', { epoch: ev.epoch, previous, round, n: ev.n, f: ev.f, r: ev.r, member: still })
    this.opts.metrics?.setEpoch?.(view.epoch)
    this.opts.metrics?.setQuorum?.(this.needed, this.r)
    this.dispatchEvent(new CustomEvent('epoch', { detail: ev }))
    return still
  }

  private removed(round: number): void {
    this.log.warn('this member is not in the membership epoch in force: leaving the swarm', { epoch: this.epoch, round })
    this.dispatchEvent(new CustomEvent('removed', { detail: { epoch: this.epoch, round } }))
  }

  /** Detaches from the port and clears every timer. */
  dispose(): void {
    this.port.removeEventListener('deliver', this.onDeliver)
    this.port.removeEventListener('send', this.onSend)
    this.port.removeEventListener('reject', this.onReject)
    for (const t of this.timers) clearTimeout(t)
    this.timers.clear()
    this.wake()
  }
}
