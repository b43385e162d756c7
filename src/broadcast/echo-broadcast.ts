/**
 * Signed echo broadcast (Cachin, Guerraoui, Rodrigues; ALGORITHMS §2) over libp2p 3.
 *
 * Instance = (swarm, epoch, round, sender). The sender pushes SEND (hash, its signature, payload)
 * to every member on a stream of `/monna/<swarm>/echo-bcast/2.0.0`; each member answers the
 * *first* SEND of an instance with an ECHO (its signature over the instance and the hash) on
 * the same stream, so echoes go to the sender only. With Q = ⌊(n+f)/2⌋+1 distinct valid
 * echoes the sender writes FINAL (hash + certificate) on every stream and publishes it on
 * the gossipsub topic `/monna/<swarm>/final/1` (small; relayed by members). A member
 * delivers once, when it holds a valid FINAL and a payload of that hash; a FINAL without the
 * payload makes it PULL the payload from the certificate's signers. Certificates are
 * transferable: FETCH(round) returns (FINAL, payload) pairs any member verifies alone.
 *
 * What holds against up to f Byzantine members (README.md in this directory states the bounds):
 * - an honest member echoes at most one hash per instance, ever: instance records are never
 *   evicted while a SEND of theirs can still be accepted (a sender at its cap is refused
 *   instead), and they survive restarts through the echo journal;
 * - the window and every "the swarm is ahead" decision follow the newest round certified by
 *   f + 1 distinct senders, which no f members can move;
 * - payload bytes are charged to the sending peer from the frame header on.
 */
import { type GossipSub, TopicValidatorResult } from '@libp2p/gossipsub'
import type { Libp2p, PeerId, Stream } from '@libp2p/interface'
import { peerIdFromString } from '@libp2p/peer-id'
import type { Counter, Registry } from 'prom-client'
import { AbortError, InvalidConfigError } from '../errors.ts'
import type { Logger } from '../logger.ts'
import { silentLogger } from '../logger.ts'
import { type Membership, quorum, swarmProtocol, swarmTopic, validateMembership } from '../net/membership.ts'
import { banPeer, isBanned, setNetMembership } from '../net/node.ts'
import { type Certificate, VerifiedCertificates, verifyCertificate } from './certificate.ts'
import { bytesEqual, checkedPayload, hashPayload, sign, signingSeed, statement, toHex, verify } from './crypto.ts'
import { PeerDiscipline, type Rejection } from './discipline.ts'
import {
  AlreadyBroadcastError,
  BroadcastRejectError,
  BroadcastStoppedError,
  type RejectReason,
  RoundOutOfWindowError,
} from './errors.ts'
import { FrameReader, writeParts } from './frame-stream.ts'
import { createMemoryJournal, type EchoJournal } from './journal.ts'
import { Budget, TokenBuckets } from './limits.ts'
import { defaultEchoBroadcastOptions, type EchoBroadcastOptions, validateEchoBroadcastOptions } from './options.ts'
import { ProgressEvidence } from './progress.ts'
import type { BroadcastStats, Delivery, EchoBroadcast, EquivocationEvidence } from './types.ts'
import { decodeFrame, encodeFrame, encodeFrameParts, type Frame, type FrameHeader, type Instance, MAX_ROUND, MAX_STRING_BYTES, SIG_BYTES } from './wire.ts'

export { type Certificate, verifyCertificate } from './certificate.ts'
export { COOL_OFF_MS, type CoolOffEvent, REFUSAL_BURST_PER_MEMBER, REFUSALS_PER_SECOND, type Rejection } from './discipline.ts'
export { defaultEchoBroadcastOptions, type EchoBroadcastOptions } from './options.ts'
export type { BanEvent } from './penalties.ts'
export type { BroadcastStats, Delivery, EchoBroadcast, EchoBroadcastEvents, EquivocationEvidence } from './types.ts'

interface InstanceState {
  epoch: number
  round: number
  sender: string
  /** The first valid SEND: the only hash we ever echo for this instance. */
  sendHash?: Uint8Array
  sendSignature?: Uint8Array
  echoSignature?: Uint8Array
  /** Payload whose hash is `payloadHash` (from the SEND, a PULL or a certified FINAL). */
  payload?: Uint8Array
  payloadHash?: Uint8Array
  /** release of the per-peer budget charge of an undelivered payload */
  release?: () => void
  certificate?: Certificate
  delivered?: Delivery
  receivingSend: boolean
  pulling: boolean
  equivocationSeen: boolean
  /** SENDs of this instance read again after it was echoed (the sender's retries) */
  sendRepeats: number
}

/**
 * An honest sender pushes its SEND to a member again only when the transfer failed before the
 * echo came back (it stops once it holds the echo or the certificate). Repeats beyond this many,
 * after the instance was echoed, are refused from the header (never read), as `rate-limited`:
 * a member re-sending valid SENDs over and over costs every member its bandwidth, and a flood of
 * such refusals ends in a ban.
 */
export const MAX_SEND_REPEATS = 4

interface OwnSend {
  epoch: number
  round: number
  hash: Uint8Array
  payload: Uint8Array
  sendSignature: Uint8Array
  echoes: Map<string, Uint8Array>
  certificate?: Certificate
  certified: Deferred<Certificate>
}

interface EpochEntry {
  epoch: number
  from: number
  membership: Membership
  members: Set<string>
  q: number
}

interface MetricSet {
  rejections: Counter<'reason'>
  deliveries: Counter
  coolOffs: Counter
  bytesSent: Counter
  bytesReceived: Counter
}

function getOrCreateCounter<L extends string>(registry: Registry, name: string, help: string, labelNames: L[], Ctor: typeof import('prom-client').Counter): Counter<L> {
  const existing = registry.getSingleMetric(name)
  if (existing !== undefined) return existing as Counter<L>
  return new Ctor({ name, help, labelNames, registers: [registry] })
}

interface Deferred<T> {
  promise: Promise<T>
  resolve: (v: T) => void
  reject: (e: unknown) => void
}

function deferred<T>(): Deferred<T> {
  let resolve!: (v: T) => void
  let reject!: (e: unknown) => void
  const promise = new Promise<T>((res, rej) => {
    resolve = res
    reject = rej
  })
  return { promise, resolve, reject }
}

function validateRound(round: number, path: string): void {
  if (!Number.isInteger(round) || round < 0 || round > MAX_ROUND) throw new InvalidConfigError(path, `round must be an integer in 0..${MAX_ROUND}, got ${round}`)
}

/** Stream protocol of a swarm's echo broadcast (wire version 2). */
export function echoProtocol(swarmId: string): string {
  return swarmProtocol(swarmId, 'echo-bcast', '2.0.0')
}

/** Gossipsub topic of a swarm's FINAL announcements (wire version 2). */
export function finalTopic(swarmId: string): string {
  return swarmTopic(swarmId, 'final', 2)
}

/** Frame types a member may open a stream with (the others only answer a request of ours). */
const REQUEST_TYPES = new Set(['SEND', 'FINAL', 'PULL', 'QUERY', 'FETCH'])
/** Bytes of a fetch that count as progress even before its frame completes (a slow honest link). */
const FETCH_PROGRESS_BYTES = 64 * 1024

class EchoBroadcastImpl extends EventTarget implements EchoBroadcast {
  readonly protocol: string
  readonly topic: string
  readonly peerId: string
  private readonly node: Libp2p
  private readonly seed: Uint8Array
  /** the newest epoch's membership, members and quorum */
  private membership: Membership
  private members: Set<string>
  /** epochs by first round, ascending; the first one also covers every earlier round */
  private epochs: EpochEntry[]
  private readonly W: number
  /** instances kept per sender: the window's width (so none is ever evicted while acceptable) */
  private readonly cap: number
  private readonly maxPayloadBytes: number
  private readonly retryIntervalMs: number
  private readonly requestTimeoutMs: number
  private readonly fetchIdleMs: number
  private readonly finalQueryMs: number
  private readonly minBytesPerSecond: number
  private readonly log: Logger
  private readonly metrics: MetricSet | undefined
  private readonly journal: EchoJournal

  private floor = 0
  /** newest round certified by f + 1 distinct senders (monotone) */
  private readonly progress = new ProgressEvidence()
  private newestOwn = -1
  private readonly instances = new Map<string, Map<number, InstanceState>>()
  private readonly deliveries = new Map<number, Map<string, Delivery>>()
  private readonly own = new Map<number, OwnSend>()
  /** hashes echoed or sent before a restart, by `${sender}/${round}` (the journal) */
  private readonly remembered = new Map<string, { epoch: number; round: number; hash: Uint8Array; kind: 'echo' | 'send' }>()
  /** Our SENDs not yet certified (rejected on stop so no task waits forever). */
  private readonly uncertified = new Set<OwnSend>()
  private readonly verifiedCerts: VerifiedCertificates
  private readonly budget: Budget
  private readonly serving: TokenBuckets
  /** what a refused frame costs its peer: counts, penalties, cool-offs, bans */
  private readonly discipline: PeerDiscipline
  private readonly evidenceLog: EquivocationEvidence[] = []
  private readonly counters = {
    bytesSent: 0,
    bytesReceived: 0,
    delivered: 0,
    equivocations: 0,
    signaturesVerified: 0,
  }
  private readonly controller = new AbortController()
  private readonly tasks = new Set<Promise<unknown>>()
  private readonly openStreams = new Set<Stream>()
  private stopped = false

  constructor(opts: EchoBroadcastOptions, metrics: MetricSet | undefined) {
    super()
    this.node = opts.node
    this.seed = signingSeed(opts.privateKey)
    this.peerId = opts.node.peerId.toString()
    this.membership = { ...opts.membership, members: [...opts.membership.members] }
    this.members = new Set(this.membership.members)
    this.epochs = [{ epoch: opts.epoch ?? 0, from: opts.epochFrom ?? 0, membership: this.membership, members: this.members, q: quorum(this.members.size, this.membership.f) }]
    this.W = opts.roundWindow ?? defaultEchoBroadcastOptions.roundWindow
    this.cap = 2 * this.W + 1
    this.maxPayloadBytes = opts.maxPayloadBytes ?? defaultEchoBroadcastOptions.maxPayloadBytes
    this.budget = new Budget(opts.maxPendingBytesPerPeer ?? 4 * this.maxPayloadBytes + 1024 * 1024)
    this.retryIntervalMs = opts.retryIntervalMs ?? defaultEchoBroadcastOptions.retryIntervalMs
    this.requestTimeoutMs = opts.requestTimeoutMs ?? defaultEchoBroadcastOptions.requestTimeoutMs
    this.fetchIdleMs = opts.fetchIdleMs ?? defaultEchoBroadcastOptions.fetchIdleMs
    this.finalQueryMs = opts.finalQueryMs ?? defaultEchoBroadcastOptions.finalQueryMs
    this.minBytesPerSecond = opts.minBytesPerSecond ?? defaultEchoBroadcastOptions.minBytesPerSecond
    const perSecond = opts.servePayloadsPerSecond ?? (this.members.size + 1) / 4
    this.serving = new TokenBuckets(opts.serveBurstPayloads ?? 2 * (this.members.size + 1), perSecond)
    this.log = (opts.logger ?? silentLogger).child('broadcast')
    this.metrics = metrics
    this.discipline = new PeerDiscipline({
      self: this.peerId,
      members: this.members.size,
      penalties: opts.penalties ?? defaultEchoBroadcastOptions.penalties,
      log: this.log,
      ban: (peer, ms) => banPeer(this.node, peer, ms),
      isBanned: (peer) => isBanned(this.node, peer),
      emit: (type, detail) => this.dispatchEvent(new CustomEvent(type, { detail })),
      track: (p) => this.track(p),
      ...(metrics !== undefined ? { metrics } : {}),
    })
    this.verifiedCerts = new VerifiedCertificates(64 * this.members.size * (this.W + 1))
    this.journal = opts.journal ?? createMemoryJournal()
    for (const e of this.journal.load()) this.remembered.set(`${e.sender}/${e.round}`, { epoch: e.epoch, round: e.round, hash: e.hash, kind: e.kind })
    this.protocol = echoProtocol(this.membership.swarmId)
    this.topic = finalTopic(this.membership.swarmId)
  }

  // ------------------------------------------------------------------ lifecycle

  async start(): Promise<void> {
    await this.node.handle(this.protocol, (stream, connection) => this.track(this.onInboundStream(stream, connection.remotePeer.toString())), {
      // per connection: a sender has ≤ 2W + 1 open instances, plus pulls and fetches; what they
      // may make us buffer is bounded by the per-peer budget, not by this count
      maxInboundStreams: 4 * this.W + 16,
      maxOutboundStreams: 4 * this.W + 16,
    })
    const pubsub = this.pubsub()
    if (pubsub !== undefined) {
      pubsub.topicValidators.set(this.topic, (peer, msg) => this.validateFinalMessage(peer.toString(), msg.data))
      pubsub.subscribe(this.topic)
    }
  }

  async stop(): Promise<void> {
    if (this.stopped) return
    this.stopped = true
    this.controller.abort()
    for (const own of this.uncertified) own.certified.reject(new BroadcastStoppedError())
    this.uncertified.clear()
    for (const s of this.openStreams) s.abort(new BroadcastStoppedError())
    const pubsub = this.pubsub()
    if (pubsub !== undefined) {
      try {
        pubsub.unsubscribe(this.topic)
      } catch {}
      pubsub.topicValidators.delete(this.topic)
    }
    await this.node.unhandle(this.protocol).catch(() => {})
    await Promise.allSettled([...this.tasks])
  }

  private pubsub(): GossipSub | undefined {
    const s = (this.node.services as Record<string, unknown>).pubsub
    return s !== undefined ? (s as GossipSub) : undefined
  }

  private track<T>(p: Promise<T>): Promise<T> {
    const t = p.catch((err: unknown) => {
      if (!this.stopped) this.log.debug('background task failed', { error: String(err) })
    }) as Promise<unknown>
    this.tasks.add(t)
    t.finally(() => this.tasks.delete(t))
    return p
  }

  // ------------------------------------------------------------------ public API

  async broadcast(round: number, payload: Uint8Array, opts: { signal?: AbortSignal } = {}): Promise<void> {
    if (this.stopped) throw new BroadcastStoppedError()
    validateRound(round, 'round')
    if (round < this.floor) throw new RoundOutOfWindowError(round, this.floor)
    if (payload.length > this.maxPayloadBytes) throw new InvalidConfigError('payload', `${payload.length} bytes > maxPayloadBytes ${this.maxPayloadBytes}`)
    if (this.own.has(round) || this.instance(this.peerId, round)?.sendHash !== undefined) throw new AlreadyBroadcastError(round)
    const hash = hashPayload(payload)
    const before = this.remembered.get(`${this.peerId}/${round}`)
    // sent before a restart with another model: a second SEND would be equivocation
    if (before !== undefined && !bytesEqual(before.hash, hash)) throw new AlreadyBroadcastError(round)
    const own = this.prepareSend(round, payload, hash)
    if (before === undefined) this.journal.record({ kind: 'send', epoch: own.epoch, round, sender: this.peerId, hash })
    this.own.set(round, own)
    if (round > this.newestOwn) {
      this.newestOwn = round
      this.gc()
    }
    // our own instance state: first SEND = ours, echo it ourselves
    const inst = this.instanceFor(this.peerId, round, own.epoch)
    inst.sendHash = own.hash
    inst.sendSignature = own.sendSignature
    inst.echoSignature = own.echoes.get(this.peerId)
    inst.payload = payload
    inst.payloadHash = own.hash
    this.maybeCertify(own)
    for (const peer of this.epochAt(round).membership.members) {
      if (peer !== this.peerId) this.track(this.pushTo(peer, own))
    }
    const signal = opts.signal
    const aborted = new Promise<never>((_, reject) => {
      if (signal === undefined) return
      const onAbort = (): void => reject(new AbortError())
      if (signal.aborted) onAbort()
      else signal.addEventListener('abort', onAbort, { once: true })
    })
    aborted.catch(() => {})
    const cert = await Promise.race([own.certified.promise, aborted])
    this.deliverIfReady(inst, cert)
  }

  delivered(round: number): Delivery[] {
    return [...(this.deliveries.get(round)?.values() ?? [])]
  }

  setFloor(round: number): void {
    validateRound(round, 'floor')
    if (round <= this.floor) return
    this.floor = round
    this.pruneEpochs()
    this.gc()
  }

  newestCertifiedRound(): number {
    return this.progress.round
  }

  epochOf(round: number): number {
    return this.epochAt(round).epoch
  }

  async fetchRound(round: number, opts: { signal?: AbortSignal; want?: number } = {}): Promise<Delivery[]> {
    if (this.stopped) throw new BroadcastStoppedError()
    validateRound(round, 'round')
    const epoch = this.epochAt(round)
    const peers = this.orderedPeers(epoch.membership.members.filter((p) => p !== this.peerId))
    // One peer at a time (each answer shrinks what the next is asked for), but a peer that stays
    // silent or trickles does not hold up the others: a fetch that has gone fetchIdleMs without
    // progress (a complete frame, or FETCH_PROGRESS_BYTES of one) no longer counts as in flight,
    // so the next peer is asked. Fetches still running at the end are aborted.
    const done = new AbortController()
    const signal = opts.signal === undefined ? done.signal : AbortSignal.any([opts.signal, done.signal])
    const running = new Map<Promise<void>, { last: number; bytes: number }>()
    let next = 0
    // every other member's model: our own is either held already or (behind, catching up) never existed
    // — or as many as the caller wants (a catch-up needs n − f, not everyone's: asking the members
    // one by one for all of them took 6 round trips when one member never broadcasts, and under
    // load longer than the catch-up's bound while the swarm moved on)
    const complete = (): boolean => {
      const got = this.delivered(round)
      return got.filter((d) => d.sender !== this.peerId).length >= peers.length || (opts.want !== undefined && got.length >= opts.want)
    }
    const quietFor = (now: number): number => Math.min(...[...running.values()].map((r) => now - r.last))
    try {
      while (!this.stopped && !complete()) {
        opts.signal?.throwIfAborted()
        const now = performance.now()
        const active = running.size > 0 && quietFor(now) < this.fetchIdleMs
        if (!active && next < peers.length) {
          const peer = peers[next++]!
          const have = this.delivered(round).map((d) => d.sender)
          const progress = { last: now, bytes: 0 }
          const fetch: Promise<void> = this.fetchFrom(peer, round, have, signal, {
            onBytes: (n) => {
              progress.bytes += n
              if (progress.bytes >= FETCH_PROGRESS_BYTES) {
                progress.bytes = 0
                progress.last = performance.now()
              }
            },
            onFrame: () => {
              progress.bytes = 0
              progress.last = performance.now()
            },
          })
            .catch((err: unknown) => {
              if (!signal.aborted) this.log.debug('fetch failed', { peer, round, error: String(err) })
            })
            .finally(() => running.delete(fetch))
          running.set(fetch, progress)
          continue
        }
        if (!active) break // every peer asked; none of those still open is making progress
        // wake when a fetch ends or when the most recent progress gets fetchIdleMs old
        const wait = Math.max(1, this.fetchIdleMs - quietFor(now))
        await this.sleep(wait, signal, [...running.keys()])
      }
    } finally {
      done.abort()
    }
    if (opts.signal?.aborted === true) throw new AbortError()
    return this.delivered(round)
  }

  /**
   * An epoch signed for a later round, known before this member reaches it: frames of its rounds
   * are judged under it from now on (certificates of rounds ≥ `fromRound` verify against its
   * members and quorum), so a member still running or catching up to earlier rounds sees the
   * swarm's progress past the boundary. Nothing else changes until `setMembership` switches to
   * it at the boundary: the connection gate and the epoch this member runs stay as they are.
   */
  knowEpoch(m: Membership, fromRound: number, epochNumber: number): void {
    this.checkEpochArgs(m, fromRound, epochNumber)
    const last = this.epochs[this.epochs.length - 1]!
    if (fromRound <= last.from || epochNumber <= last.epoch) return // known already, or not later than what runs
    const membership = { ...m, members: [...m.members] }
    const members = new Set(m.members)
    this.epochs.push({ epoch: epochNumber, from: fromRound, membership, members, q: quorum(members.size, m.f) })
    this.verifiedCerts.clear()
  }

  /** What `knowEpoch` and `setMembership` take: a valid membership of this swarm, a round, an epoch number in 0..2³² − 1. */
  private checkEpochArgs(m: Membership, fromRound: number | undefined, epochNumber: number): void {
    validateMembership(m, this.log)
    if (m.swarmId !== this.membership.swarmId) throw new InvalidConfigError('membership.swarmId', 'a membership epoch cannot change the swarm id (create a new broadcast)')
    if (fromRound !== undefined) validateRound(fromRound, 'fromRound')
    if (!Number.isInteger(epochNumber) || epochNumber < 0 || epochNumber > 0xffff_ffff) throw new InvalidConfigError('epoch', `must be an integer in 0..${0xffff_ffff}, got ${epochNumber}`)
  }

  setMembership(m: Membership, fromRound?: number, epochNumber?: number): void {
    const last = this.epochs[this.epochs.length - 1]!
    const number = epochNumber ?? (fromRound === undefined ? last.epoch : last.epoch + 1)
    this.checkEpochArgs(m, fromRound, number)
    this.membership = { ...m, members: [...m.members] }
    this.members = new Set(m.members)
    const entry: EpochEntry = { epoch: number, from: fromRound ?? 0, membership: this.membership, members: this.members, q: quorum(this.members.size, m.f) }
    if (fromRound === undefined) this.epochs = [entry]
    else {
      this.epochs = this.epochs.filter((e) => e.from < fromRound)
      this.epochs.push(entry)
      this.pruneEpochs()
    }
    this.verifiedCerts.clear()
    this.track(setNetMembership(this.node, m))
  }

  /** The epoch that round `round` belongs to. */
  private epochAt(round: number): EpochEntry {
    for (let i = this.epochs.length - 1; i > 0; i--) if (this.epochs[i]!.from <= round) return this.epochs[i]!
    return this.epochs[0]!
  }

  /** Checks that a frame's epoch is the one its round belongs to here (not blamed: one side may lag). */
  private checkEpoch(f: { epoch: number; round: number }): EpochEntry {
    const e = this.epochAt(f.round)
    // a round before the first epoch this member knows (it joined with a later one): the frame's
    // own earlier epoch is taken, checked against the members it knows (founders sign there too)
    if (f.round < this.epochs[0]!.from && f.epoch <= this.epochs[0]!.epoch) return e
    if (f.epoch !== e.epoch) throw new BroadcastRejectError('wrong-epoch', `round ${f.round} belongs to epoch ${e.epoch} here, the frame names epoch ${f.epoch}`)
    return e
  }

  /** A member of any epoch still in use (rounds ≥ the floor). */
  private knownPeer(peer: string): boolean {
    return this.epochs.some((e) => e.members.has(peer))
  }

  private pruneEpochs(): void {
    while (this.epochs.length > 1 && this.epochs[1]!.from <= this.floor) this.epochs.shift()
  }

  stats(): BroadcastStats {
    let deliveredBytes = 0
    for (const byRound of this.deliveries.values()) for (const d of byRound.values()) deliveredBytes += d.payload.byteLength
    return {
      bytesSent: this.counters.bytesSent,
      bytesReceived: this.counters.bytesReceived,
      rejected: { ...this.discipline.rejected },
      delivered: this.counters.delivered,
      equivocations: this.counters.equivocations,
      signaturesVerified: this.counters.signaturesVerified,
      coolOffs: this.discipline.coolOffCount,
      pendingBytes: this.budget.total(),
      deliveredBytes,
    }
  }

  evidence(): EquivocationEvidence[] {
    return [...this.evidenceLog]
  }

  // ------------------------------------------------------------------ sender side

  private inst(round: number, sender: string): Instance {
    return { swarmId: this.membership.swarmId, epoch: this.epochAt(round).epoch, round, sender }
  }

  private prepareSend(round: number, payload: Uint8Array, hash: Uint8Array): OwnSend {
    const inst = this.inst(round, this.peerId)
    const own: OwnSend = {
      epoch: inst.epoch,
      round,
      hash,
      payload,
      sendSignature: sign(this.seed, statement('SEND', inst, hash)),
      echoes: new Map([[this.peerId, sign(this.seed, statement('ECHO', inst, hash))]]),
      certified: deferred<Certificate>(),
    }
    own.certified.promise.catch(() => {})
    this.uncertified.add(own)
    return own
  }

  private maybeCertify(own: OwnSend): void {
    const q = this.epochAt(own.round).q
    if (own.certificate !== undefined || own.echoes.size < q) return
    const signatures = [...own.echoes].slice(0, q).map(([signer, signature]) => ({ signer, signature }))
    const cert: Certificate = { swarmId: this.membership.swarmId, epoch: own.epoch, round: own.round, sender: this.peerId, hash: own.hash, signatures }
    own.certificate = cert
    this.verifiedCerts.add(cert)
    this.noteCertified(this.peerId, own.round)
    const inst = this.instanceFor(this.peerId, own.round, own.epoch)
    inst.certificate = cert
    this.deliverIfReady(inst, cert)
    this.track(this.publishFinal(cert))
    this.uncertified.delete(own)
    own.certified.resolve(cert)
  }

  private finalFrame(cert: Certificate): Frame {
    return { type: 'FINAL', swarmId: cert.swarmId, epoch: cert.epoch, round: cert.round, sender: cert.sender, hash: cert.hash, certificate: cert.signatures }
  }

  /**
   * Pushes our SEND to one member over a fresh stream, takes its ECHO, then writes FINAL once
   * the certificate exists. A member we cannot reach is retried (backing off) until certified.
   */
  private async pushTo(peer: string, own: OwnSend): Promise<void> {
    const send = encodeFrameParts({
      type: 'SEND',
      swarmId: this.membership.swarmId,
      epoch: own.epoch,
      round: own.round,
      sender: this.peerId,
      hash: own.hash,
      signature: own.sendSignature,
      payload: own.payload,
    })
    const signal = this.controller.signal
    let delay = this.retryIntervalMs
    for (let attempt = 0; !this.stopped; attempt++) {
      if (attempt > 0) {
        // the member could not be reached or the transfer failed: retry (backing off) until certified
        if (own.certificate !== undefined || own.round < this.floor) return
        await this.sleep(delay)
        delay = Math.min(2 * delay, 16 * this.retryIntervalMs)
        if (this.stopped || own.certificate !== undefined) return
      }
      let stream: Stream
      try {
        stream = await this.node.dialProtocol(peerIdFromString(peer), this.protocol, { signal })
      } catch (err) {
        this.log.debug('could not open a stream to member', { peer, round: own.round, attempt, error: String(err) })
        continue
      }
      this.openStreams.add(stream)
      try {
        const reader = this.reader(stream, peer, { expect: ['ECHO', 'END'] })
        this.countSent(await writeParts(stream, send, { signal }))
        const reply = await Promise.race([reader.next({ signal }), own.certified.promise.then(() => undefined)])
        if (reply !== undefined && reply !== null) this.onEcho(peer, own, reply.frame)
        if (reply === null || (reply !== undefined && reply.frame.type === 'END')) {
          if (own.certificate === undefined) {
            // refused (e.g. not yet in its window) or closed: try again later
            stream.abort(new Error('closed without an echo'))
            continue
          }
        }
        const cert = await own.certified.promise
        await this.writeAndClose(stream, encodeFrameParts(this.finalFrame(cert)))
        return
      } catch (err) {
        stream.abort(err instanceof Error ? err : new Error(String(err)))
        if (err instanceof BroadcastRejectError) {
          // a wrong answer is the peer's fault: report it, never resend to it
          this.rejectFrom(peer, err)
          return
        }
        this.log.debug('SEND transfer failed', { peer, round: own.round, attempt, error: String(err) })
      } finally {
        this.openStreams.delete(stream)
      }
    }
  }

  private onEcho(peer: string, own: OwnSend, frame: Frame): void {
    if (frame.type === 'END') return
    if (frame.type !== 'ECHO') throw new BroadcastRejectError('malformed', `expected ECHO in reply to SEND, got ${frame.type}`)
    if (frame.swarmId !== this.membership.swarmId) throw new BroadcastRejectError('wrong-swarm', `ECHO for swarm ${frame.swarmId}`)
    if (frame.round !== own.round || frame.epoch !== own.epoch || frame.sender !== this.peerId || !bytesEqual(frame.hash, own.hash)) {
      throw new BroadcastRejectError('malformed', 'ECHO does not match the SEND it answers')
    }
    if (!this.epochAt(frame.round).members.has(frame.signer)) throw new BroadcastRejectError('non-member', `ECHO signed by non-member ${frame.signer}`)
    if (frame.signer !== peer) throw new BroadcastRejectError('malformed', `ECHO on ${peer}'s stream signed by ${frame.signer}`)
    const before = own.echoes.get(frame.signer)
    if (before !== undefined) {
      // the same echo again (we re-sent the SEND after a broken stream) is benign
      if (bytesEqual(before, frame.signature)) return
      throw new BroadcastRejectError('duplicate-signer', `second ECHO from ${frame.signer}`)
    }
    if (own.certificate !== undefined) return
    this.counters.signaturesVerified++
    if (!verify(frame.signer, statement('ECHO', frame, own.hash), frame.signature)) {
      throw new BroadcastRejectError('bad-signature', `invalid ECHO signature from ${frame.signer}`)
    }
    own.echoes.set(frame.signer, frame.signature)
    this.maybeCertify(own)
  }

  private async publishFinal(cert: Certificate): Promise<void> {
    const pubsub = this.pubsub()
    if (pubsub === undefined || this.stopped) return
    const data = encodeFrame(this.finalFrame(cert))
    try {
      const res = await pubsub.publish(this.topic, data)
      this.countSent(data.length * res.recipients.length)
    } catch (err) {
      this.log.debug('FINAL publish failed', { round: cert.round, error: String(err) })
    }
  }

  private async writeAndClose(stream: Stream, parts: Uint8Array[]): Promise<void> {
    const signal = AbortSignal.any([this.controller.signal, AbortSignal.timeout(this.requestTimeoutMs)])
    try {
      this.countSent(await writeParts(stream, parts, { signal }))
      await stream.close({ signal })
    } catch (err) {
      stream.abort(err instanceof Error ? err : new Error(String(err)))
    } finally {
      this.openStreams.delete(stream)
    }
  }

  // ------------------------------------------------------------------ receiver side

  /**
   * A frame reader charging every payload to `peer`'s budget from its header on, refusing frame
   * types not expected on this stream from the header (so an unsolicited payload is never read),
   * and cutting frames that arrive slower than `minBytesPerSecond`.
   */
  private reader(
    stream: Stream,
    peer: string,
    o: { expect: readonly string[]; charge?: boolean; finalPayload?: boolean; onMeta?: (frame: Frame) => void; onBytes?: (n: number) => void; onFrame?: () => void; idleMs?: number },
  ): FrameReader {
    const expect = new Set(o.expect)
    return new FrameReader(stream, {
      maxPayloadBytes: this.maxPayloadBytes,
      minBytesPerSecond: this.minBytesPerSecond,
      ...(o.idleMs !== undefined ? { idleMs: o.idleMs } : {}),
      onBytes: (n) => {
        this.countReceived(n)
        o.onBytes?.(n)
      },
      ...(o.onFrame !== undefined ? { onFrame: o.onFrame } : {}),
      onHeader: (h: FrameHeader) => {
        if (!expect.has(h.type)) throw new BroadcastRejectError('malformed', `unexpected ${h.type} frame on this stream`)
        if (h.type === 'FINAL' && h.payloadLength > 0 && o.finalPayload !== true) throw new BroadcastRejectError('malformed', 'a FINAL with a payload answers a FETCH only')
        // unsolicited payloads (SENDs) are charged to the peer's budget; answers to our own
        // PULL/FETCH are bounded by our requests (one frame buffered per reply stream)
        return h.payloadLength > 0 && o.charge === true ? this.budget.reserve(peer, h.payloadLength) : undefined
      },
      ...(o.onMeta !== undefined ? { onMeta: o.onMeta } : {}),
    })
  }

  private async onInboundStream(stream: Stream, peer: string): Promise<void> {
    this.openStreams.add(stream)
    let receiving: InstanceState | undefined
    const done = (): void => {
      if (receiving !== undefined) this.afterSend(receiving)
      receiving = undefined
    }
    try {
      if (!this.knownPeer(peer)) throw new BroadcastRejectError('non-member', `stream from non-member ${peer}`)
      const reader = this.reader(stream, peer, {
        expect: [...REQUEST_TYPES],
        charge: true,
        idleMs: this.requestTimeoutMs,
        // cheap checks on a SEND's meta, before its payload is buffered
        onMeta: (frame) => {
          if (frame.type !== 'SEND') return
          this.precheckSend(peer, frame)
          const inst = this.instanceFor(frame.sender, frame.round, frame.epoch)
          if (inst.sendHash === undefined) {
            inst.receivingSend = true
            receiving = inst
          } else if (bytesEqual(inst.sendHash, frame.hash) && ++inst.sendRepeats > MAX_SEND_REPEATS) {
            throw new BroadcastRejectError('rate-limited', `SEND of ${frame.sender} round ${frame.round} read ${inst.sendRepeats} times after its echo`)
          }
        },
      })
      const signal = this.controller.signal
      while (!this.stopped) {
        const res = await reader.next({ signal })
        if (res === null) break
        let replies: Frame[]
        try {
          replies = this.handleFrame(peer, res.frame)
        } catch (err) {
          if (!(err instanceof BroadcastRejectError)) throw err
          // a whole frame was read and refused: say so (END) and close cleanly, so the sender
          // knows it was an answer and not a transport failure worth retrying
          this.rejectFrom(peer, err)
          this.countSent(await writeParts(stream, encodeFrameParts({ type: 'END' }), { signal }))
          break
        } finally {
          done()
        }
        for (const r of replies) this.countSent(await writeParts(stream, encodeFrameParts(r), { signal }))
      }
      await stream.close({ signal: AbortSignal.any([signal, AbortSignal.timeout(this.requestTimeoutMs)]) })
    } catch (err) {
      done()
      if (err instanceof BroadcastRejectError) this.rejectFrom(peer, err)
      stream.abort(err instanceof Error ? err : new Error(String(err)))
    } finally {
      this.openStreams.delete(stream)
    }
  }

  /** Core state machine, transport-free: returns the frames to write back. */
  private handleFrame(peer: string, frame: Frame): Frame[] {
    if (frame.type === 'END' || frame.type === 'ECHO' || frame.type === 'PAYLOAD') {
      throw new BroadcastRejectError('malformed', `unsolicited ${frame.type} frame`)
    }
    if (frame.swarmId !== this.membership.swarmId) throw new BroadcastRejectError('wrong-swarm', `frame for swarm ${frame.swarmId}, this is ${this.membership.swarmId}`)
    switch (frame.type) {
      case 'SEND':
        return this.onSend(peer, frame)
      case 'FINAL':
        if (frame.payload !== undefined) throw new BroadcastRejectError('malformed', 'a FINAL with a payload answers a FETCH only')
        this.onFinal(peer, frame)
        return []
      case 'PULL': {
        const inst = this.instance(frame.sender, frame.round)
        if (inst?.payload !== undefined && inst.payloadHash !== undefined && bytesEqual(inst.payloadHash, frame.hash) && inst.epoch === frame.epoch) {
          if (this.serving.available(peer) < 1) {
            this.rejectFrom(peer, new BroadcastRejectError('rate-limited', `PULL above the serving rate of ${peer}`))
            return [{ type: 'END' }]
          }
          this.serving.take(peer, 1)
          return [{ type: 'PAYLOAD', ...this.inst(inst.round, inst.sender), hash: inst.payloadHash, payload: inst.payload }]
        }
        return [{ type: 'END' }]
      }
      case 'QUERY': {
        const cert = this.instance(frame.sender, frame.round)?.certificate
        return cert !== undefined ? [this.finalFrame(cert)] : [{ type: 'END' }]
      }
      case 'FETCH': {
        // served at a bounded rate per peer (payloads per second): a ~100-byte request cannot
        // make us send n payloads at any rate
        const tokens = Math.floor(this.serving.available(peer))
        const have = new Set(frame.have)
        const missing = this.delivered(frame.round).filter((d) => !have.has(d.sender))
        const served = missing.slice(0, Math.max(0, tokens))
        if (served.length < missing.length) this.rejectFrom(peer, new BroadcastRejectError('rate-limited', `FETCH(${frame.round}) of ${peer}: ${served.length} of ${missing.length} payloads served`))
        this.serving.take(peer, served.length + 0.25)
        const out: Frame[] = served.map((d) => ({ ...this.finalFrame(d.certificate), payload: d.payload }))
        out.push({ type: 'END' })
        return out
      }
    }
  }

  /** The reference round of the window: never moved by f members alone. */
  private windowRef(): number {
    return Math.max(this.floor, this.progress.round, this.newestOwn, 0)
  }

  private inWindow(round: number): boolean {
    const ref = this.windowRef()
    return round >= this.floor && round >= ref - this.W && round <= ref + this.W
  }

  /** Checks of a SEND that need no payload (also run on the meta, before the payload arrives). */
  private precheckSend(peer: string, f: Extract<Frame, { type: 'SEND' }>): void {
    if (f.swarmId !== this.membership.swarmId) throw new BroadcastRejectError('wrong-swarm', `frame for swarm ${f.swarmId}, this is ${this.membership.swarmId}`)
    if (f.sender !== peer) throw new BroadcastRejectError('malformed', `SEND of ${f.sender} relayed by ${peer}; senders push their own SENDs`)
    if (f.sender === this.peerId) throw new BroadcastRejectError('malformed', 'SEND claiming to be ours')
    if (!this.inWindow(f.round)) throw new BroadcastRejectError('out-of-window', `round ${f.round} outside the window around ${this.windowRef()} (W=${this.W}, floor ${this.floor})`)
    if (!this.epochAt(f.round).members.has(f.sender)) throw new BroadcastRejectError('non-member', `SEND for non-member sender ${f.sender}`)
    this.checkEpoch(f)
  }

  private onSend(peer: string, f: Extract<Frame, { type: 'SEND' }>): Frame[] {
    this.precheckSend(peer, f)
    const existing = this.instance(f.sender, f.round)
    const before = this.remembered.get(`${f.sender}/${f.round}`)
    const firstHash = existing?.sendHash ?? before?.hash
    if (firstHash !== undefined) {
      if (bytesEqual(firstHash, f.hash)) {
        // the same SEND again (the sender retried, or we restarted): the same echo, never a
        // different one — but only for the very same SEND (cheap byte comparisons first)
        if (existing?.sendSignature === undefined || !bytesEqual(f.signature, existing.sendSignature)) this.verifySend(f)
        const inst = existing ?? this.instanceFor(f.sender, f.round, f.epoch)
        const held = inst.payload !== undefined && inst.payloadHash !== undefined && bytesEqual(inst.payloadHash, f.hash)
        const payload = held ? (bytesEqual(inst.payload!, f.payload) ? inst.payload : undefined) : checkedPayload(f.payload, f.hash)
        if (payload === undefined) {
          throw new BroadcastRejectError('hash-mismatch', `repeated SEND of ${f.sender} round ${f.round} carries another payload`)
        }
        if (inst.sendHash === undefined) {
          inst.sendHash = f.hash
          inst.sendSignature = f.signature
          inst.echoSignature = sign(this.seed, statement('ECHO', f, f.hash))
        }
        if (!held) this.holdPayload(inst, peer, payload, f.hash)
        return [this.echoFrame(inst)]
      }
      this.verifySend(f)
      this.recordEquivocation(existing, f, firstHash)
      throw new BroadcastRejectError('equivocation', `${f.sender} sent two different SENDs for round ${f.round}`)
    }
    this.verifySend(f)
    const payload = checkedPayload(f.payload, f.hash)
    if (payload === undefined) throw new BroadcastRejectError('hash-mismatch', `SEND payload hashes to ${toHex(hashPayload(f.payload)).slice(0, 16)}…, declared ${toHex(f.hash).slice(0, 16)}…`)
    const inst = this.instanceFor(f.sender, f.round, f.epoch)
    // remembered before the echo leaves: after a restart we never echo another hash here
    this.journal.record({ kind: 'echo', epoch: f.epoch, round: f.round, sender: f.sender, hash: f.hash })
    this.remembered.set(`${f.sender}/${f.round}`, { epoch: f.epoch, round: f.round, hash: f.hash, kind: 'echo' })
    inst.sendHash = f.hash
    inst.sendSignature = f.signature
    inst.echoSignature = sign(this.seed, statement('ECHO', f, f.hash))
    if (inst.payload === undefined && (inst.certificate === undefined || bytesEqual(inst.certificate.hash, f.hash))) this.holdPayload(inst, peer, payload, f.hash)
    if (inst.certificate !== undefined) this.deliverIfReady(inst, inst.certificate)
    else this.watchCertificate(inst)
    return [this.echoFrame(inst)]
  }

  private verifySend(f: Extract<Frame, { type: 'SEND' }>): void {
    this.counters.signaturesVerified++
    if (!verify(f.sender, statement('SEND', f, f.hash), f.signature)) throw new BroadcastRejectError('bad-signature', `invalid SEND signature of ${f.sender}`)
  }

  /** Keeps an undelivered payload, charged to the peer that sent it until delivery. */
  private holdPayload(inst: InstanceState, peer: string, payload: Uint8Array, hash: Uint8Array): void {
    inst.release?.()
    inst.release = undefined
    inst.payload = payload
    inst.payloadHash = hash
    if (inst.delivered === undefined && payload.byteLength > 0) {
      try {
        inst.release = this.budget.reserve(peer, payload.byteLength)
      } catch {
        // charged from its header already (this frame's own reservation was just released)
        inst.release = undefined
      }
    }
  }

  private echoFrame(inst: InstanceState): Frame {
    return { type: 'ECHO', ...this.inst(inst.round, inst.sender), hash: inst.sendHash!, signer: this.peerId, signature: inst.echoSignature! }
  }

  private afterSend(inst: InstanceState): void {
    inst.receivingSend = false
    if (inst.certificate !== undefined && inst.delivered === undefined) this.startPull(inst)
  }

  private recordEquivocation(inst: InstanceState | undefined, f: Extract<Frame, { type: 'SEND' }>, firstHash: Uint8Array): void {
    this.counters.equivocations++
    if (inst?.equivocationSeen === true) return
    if (inst !== undefined) inst.equivocationSeen = true
    const ev: EquivocationEvidence = {
      swarmId: this.membership.swarmId,
      epoch: f.epoch,
      round: f.round,
      sender: f.sender,
      first: { hash: firstHash, ...(inst?.sendSignature !== undefined ? { signature: inst.sendSignature } : {}) },
      second: { hash: f.hash, signature: f.signature },
    }
    if (this.evidenceLog.length < 1024) this.evidenceLog.push(ev)
    this.dispatchEvent(new CustomEvent('equivocation', { detail: ev }))
  }

  private onFinal(peer: string, f: Extract<Frame, { type: 'FINAL' }>): void {
    if (!this.epochAt(f.round).members.has(f.sender)) throw new BroadcastRejectError('non-member', `FINAL for non-member sender ${f.sender}`)
    const ref = this.windowRef()
    if (f.round < this.floor || f.round < ref - this.W) throw new BroadcastRejectError('out-of-window', `FINAL of round ${f.round} is older than the window (${ref}, W=${this.W}, floor ${this.floor})`)
    this.checkEpoch(f)
    const cert: Certificate = { swarmId: f.swarmId, epoch: f.epoch, round: f.round, sender: f.sender, hash: f.hash, signatures: f.certificate }
    const existing = this.instance(f.sender, f.round)
    if (existing?.certificate !== undefined && bytesEqual(existing.certificate.hash, f.hash)) {
      // a FINAL we already hold (e.g. by stream and by gossipsub): identical bytes cost nothing,
      // anything else is checked like a new one
      this.checkCertificate(cert)
      if (f.payload !== undefined) {
        if (existing.delivered !== undefined) {
          if (!bytesEqual(existing.delivered.payload, f.payload)) throw new BroadcastRejectError('hash-mismatch', `payload for ${f.sender} round ${f.round} differs from the delivered one`)
        } else this.acceptPayload(existing, peer, f.payload)
      }
      return
    }
    this.checkCertificate(cert)
    if (existing?.certificate !== undefined) {
      // two certified hashes for one instance cannot exist while at most f members are Byzantine
      this.log.error('conflicting certificates: the fault bound is violated', { sender: f.sender, round: f.round })
      throw new BroadcastRejectError('equivocation', `a second certified hash for ${f.sender} round ${f.round}`)
    }
    this.noteCertified(f.sender, f.round)
    // beyond the window: evidence of progress only (kept per sender), nothing stored
    if (!this.inWindow(f.round)) return
    const inst = this.instanceFor(f.sender, f.round, f.epoch)
    inst.certificate = cert
    if (f.payload !== undefined) this.acceptPayload(inst, peer, f.payload)
    else if (inst.payload !== undefined && inst.payloadHash !== undefined && bytesEqual(inst.payloadHash, f.hash)) this.deliverIfReady(inst, cert)
    else if (!inst.receivingSend) this.startPull(inst)
  }

  private acceptPayload(inst: InstanceState, peer: string, payload: Uint8Array): void {
    const cert = inst.certificate!
    const checked = checkedPayload(payload, cert.hash)
    if (checked === undefined) throw new BroadcastRejectError('hash-mismatch', `payload for ${inst.sender} round ${inst.round} does not match the certified hash`)
    this.holdPayload(inst, peer, checked, cert.hash)
    this.deliverIfReady(inst, cert)
  }

  private checkCertificate(cert: Certificate): void {
    if (this.verifiedCerts.has(cert)) return
    const inst = this.instance(cert.sender, cert.round)
    let checked = 0
    const e = this.epochAt(cert.round)
    verifyCertificate(cert, e.membership, {
      // the certificate names the epoch whose quorum we know: a short one is forged
      blameShort: cert.epoch === e.epoch,
      // our own echo signature is deterministic: equal bytes are valid without a verification
      trusted: (e) => {
        const mine = e.signer === this.peerId && inst?.echoSignature !== undefined && inst.sendHash !== undefined && bytesEqual(inst.sendHash, cert.hash) && bytesEqual(inst.echoSignature, e.signature)
        if (!mine) checked++
        return mine
      },
    })
    this.counters.signaturesVerified += checked
    this.verifiedCerts.add(cert)
  }

  /**
   * gossipsub's validator of the FINAL topic. `peer` is the member that forwarded the message:
   * honest members forward only what they accepted, and the topic names the swarm and the wire
   * version, so a message too large for a FINAL, one that does not decode, or one of another
   * version or swarm is junk from `peer` itself — REJECTed and penalised (gossipsub scores it,
   * and enough of them ban it). A FINAL this member cannot judge yet (another epoch, outside the
   * window, a sender it does not know) is IGNOREd.
   */
  private validateFinalMessage(peer: string, data: Uint8Array): TopicValidatorResult {
    this.countReceived(data.length)
    try {
      const bound = finalGossipBytes(Math.max(...this.epochs.map((e) => e.members.size)))
      if (data.length > bound) throw new BroadcastRejectError('oversized', `${data.length} bytes on the FINAL topic, a FINAL takes at most ${bound}`)
      let frame: Extract<Frame, { type: 'FINAL' }>
      try {
        frame = decodeFinal(data)
        if (frame.swarmId !== this.membership.swarmId) throw new BroadcastRejectError('wrong-swarm', `FINAL for swarm ${frame.swarmId}`)
      } catch (err) {
        if (err instanceof BroadcastRejectError) throw new BroadcastRejectError(err.reason, `${err.message.slice(err.reason.length + 2)} (on the FINAL topic of this swarm and version)`, true)
        throw err
      }
      this.onFinal(peer, frame)
      return TopicValidatorResult.Accept
    } catch (err) {
      const r = this.rejectFrom(peer, err, { conclusive: CONCLUSIVE_ON_GOSSIP.has(err instanceof BroadcastRejectError ? err.reason : 'malformed'), relayed: true })
      return r.penalise ? TopicValidatorResult.Reject : TopicValidatorResult.Ignore
    }
  }

  // ------------------------------------------------------------------ pull / query / fetch

  private startPull(inst: InstanceState): void {
    if (inst.pulling || this.stopped) return
    inst.pulling = true
    this.track(
      this.pull(inst).finally(() => {
        inst.pulling = false
      }),
    )
  }

  private async pull(inst: InstanceState): Promise<void> {
    const cert = inst.certificate!
    const candidates = this.orderedPeers([...new Set([cert.sender, ...cert.signatures.map((e) => e.signer)])].filter((p) => p !== this.peerId))
    for (const peer of candidates) {
      if (this.stopped || inst.delivered !== undefined || inst.receivingSend) return
      let stream: Stream | undefined
      try {
        const signal = AbortSignal.any([this.controller.signal, AbortSignal.timeout(this.requestTimeoutMs)])
        stream = await this.node.dialProtocol(peerIdFromString(peer), this.protocol, { signal })
        this.openStreams.add(stream)
        const reader = this.reader(stream, peer, { expect: ['PAYLOAD', 'END'] })
        this.countSent(await writeParts(stream, encodeFrameParts({ type: 'PULL', ...this.inst(inst.round, inst.sender), hash: cert.hash }), { signal }))
        const res = await reader.next({ signal })
        if (res !== null && res.frame.type === 'PAYLOAD') {
          const f = res.frame
          if (f.swarmId !== this.membership.swarmId || f.round !== inst.round || f.sender !== inst.sender || !bytesEqual(f.hash, cert.hash)) {
            throw new BroadcastRejectError('malformed', 'PAYLOAD does not answer the PULL')
          }
          if (inst.delivered === undefined) this.acceptPayload(inst, peer, f.payload)
        }
        await stream.close({ signal })
      } catch (err) {
        if (err instanceof BroadcastRejectError) this.rejectFrom(peer, err)
        stream?.abort(err instanceof Error ? err : new Error(String(err)))
      } finally {
        if (stream !== undefined) this.openStreams.delete(stream)
      }
      if (inst.delivered !== undefined) return
    }
  }

  /**
   * Recovery for a lost FINAL: an instance we echoed but that is still not certified after
   * `finalQueryMs` is QUERYed (backing off) from its sender, then from two other members.
   */
  private watchCertificate(inst: InstanceState): void {
    if (this.stopped) return
    this.track(
      (async () => {
        let delay = this.finalQueryMs
        while (!this.stopped) {
          await this.sleep(delay)
          delay = Math.min(2 * delay, 16 * this.finalQueryMs)
          if (this.stopped || inst.certificate !== undefined || this.instance(inst.sender, inst.round) !== inst) return
          const others = this.orderedPeers(this.epochAt(inst.round).membership.members.filter((p) => p !== this.peerId && p !== inst.sender))
          for (const peer of [inst.sender, ...others.slice(0, 2)]) {
            if (inst.certificate !== undefined) return
            await this.query(peer, inst).catch((err: unknown) => this.log.debug('QUERY failed', { peer, round: inst.round, error: String(err) }))
          }
        }
      })(),
    )
  }

  private async query(peer: string, inst: InstanceState): Promise<void> {
    const signal = AbortSignal.any([this.controller.signal, AbortSignal.timeout(this.requestTimeoutMs)])
    const stream = await this.node.dialProtocol(peerIdFromString(peer), this.protocol, { signal })
    this.openStreams.add(stream)
    try {
      const reader = this.reader(stream, peer, { expect: ['FINAL', 'END'] })
      this.countSent(await writeParts(stream, encodeFrameParts({ type: 'QUERY', ...this.inst(inst.round, inst.sender) }), { signal }))
      const res = await reader.next({ signal })
      if (res !== null && res.frame.type === 'FINAL') {
        const f = res.frame
        if (f.swarmId !== this.membership.swarmId || f.round !== inst.round || f.sender !== inst.sender) throw new BroadcastRejectError('malformed', 'FINAL does not answer the QUERY')
        this.onFinal(peer, f)
      }
      await stream.close({ signal })
    } catch (err) {
      if (err instanceof BroadcastRejectError) this.rejectFrom(peer, err)
      stream.abort(err instanceof Error ? err : new Error(String(err)))
    } finally {
      this.openStreams.delete(stream)
    }
  }

  private async fetchFrom(peer: string, round: number, have: string[], outer: AbortSignal, progress: { onBytes: (n: number) => void; onFrame: () => void }): Promise<void> {
    const signal = AbortSignal.any([this.controller.signal, AbortSignal.timeout(this.requestTimeoutMs), outer])
    const stream = await this.node.dialProtocol(peerIdFromString(peer), this.protocol, { signal })
    this.openStreams.add(stream)
    try {
      const reader = this.reader(stream, peer, { expect: ['FINAL', 'END'], finalPayload: true, ...progress })
      this.countSent(await writeParts(stream, encodeFrameParts({ type: 'FETCH', swarmId: this.membership.swarmId, epoch: this.epochAt(round).epoch, round, have }), { signal }))
      for (let k = 0; k <= this.epochAt(round).members.size; k++) {
        const res = await reader.next({ signal })
        if (res === null || res.frame.type === 'END') break
        const f = res.frame
        try {
          if (f.type !== 'FINAL' || f.payload === undefined) throw new BroadcastRejectError('malformed', `expected certified FINAL in FETCH reply, got ${f.type}`)
          if (f.swarmId !== this.membership.swarmId) throw new BroadcastRejectError('wrong-swarm', `FINAL for swarm ${f.swarmId}`)
          if (f.round !== round) throw new BroadcastRejectError('malformed', `FETCH(${round}) answered with round ${f.round}`)
          this.onFinal(peer, f)
        } catch (err) {
          this.rejectFrom(peer, err)
        }
      }
      await stream.close({ signal })
    } catch (err) {
      if (err instanceof BroadcastRejectError) this.rejectFrom(peer, err)
      stream.abort(err instanceof Error ? err : new Error(String(err)))
      throw err
    } finally {
      this.openStreams.delete(stream)
    }
  }

  /** Connected peers first, then the others (dialled on demand). */
  private orderedPeers(peers: string[]): string[] {
    const connected = new Set(this.node.getConnections().map((c) => c.remotePeer.toString()))
    return [...peers.filter((p) => connected.has(p)), ...peers.filter((p) => !connected.has(p))]
  }

  // ------------------------------------------------------------------ state

  private instance(sender: string, round: number): InstanceState | undefined {
    return this.instances.get(sender)?.get(round)
  }

  /**
   * Gets or creates an instance. At most 2W + 1 per sender — the width of the window, so an
   * instance that can still be echoed is never evicted; a sender at its cap is refused.
   */
  private instanceFor(sender: string, round: number, epoch: number): InstanceState {
    let bySender = this.instances.get(sender)
    if (bySender === undefined) {
      bySender = new Map()
      this.instances.set(sender, bySender)
    }
    let inst = bySender.get(round)
    if (inst !== undefined) return inst
    if (bySender.size >= this.cap) {
      this.gc()
      if (bySender.size >= this.cap) throw new BroadcastRejectError('over-capacity', `${sender} already has ${bySender.size} open instances here (cap ${this.cap})`)
    }
    inst = { epoch, round, sender, receivingSend: false, pulling: false, equivocationSeen: false, sendRepeats: 0 }
    bySender.set(round, inst)
    return inst
  }

  private deliverIfReady(inst: InstanceState, cert: Certificate): void {
    if (inst.delivered !== undefined || inst.payload === undefined || inst.payloadHash === undefined) return
    if (!bytesEqual(inst.payloadHash, cert.hash)) return
    const d: Delivery = { swarmId: this.membership.swarmId, epoch: inst.epoch, round: inst.round, sender: inst.sender, payload: inst.payload, hash: cert.hash, certificate: cert }
    inst.delivered = d
    inst.release?.()
    inst.release = undefined
    if (inst.round < this.floor) return
    let byRound = this.deliveries.get(inst.round)
    if (byRound === undefined) {
      byRound = new Map()
      this.deliveries.set(inst.round, byRound)
    }
    byRound.set(inst.sender, d)
    this.counters.delivered++
    this.metrics?.deliveries.inc()
    this.dispatchEvent(new CustomEvent('deliver', { detail: d }))
  }

  /** Progress evidence: `sender` broadcast `round` with a certificate. */
  private noteCertified(sender: string, round: number): void {
    if (!this.knownPeer(sender)) return
    const newest = this.epochs[this.epochs.length - 1]!
    if (this.progress.note(sender, round, newest.members, newest.membership.f)) this.gc()
  }

  /**
   * Drops instances and deliveries below the floor or more than W rounds behind the reference.
   * The bound only rises, so a round dropped here is refused for good (no second echo for it).
   */
  private gc(): void {
    const low = Math.max(this.floor, this.windowRef() - this.W)
    for (const [sender, bySender] of this.instances) {
      for (const [round, inst] of bySender) {
        if (round < low) {
          inst.release?.()
          inst.release = undefined
          bySender.delete(round)
        }
      }
      if (bySender.size === 0) this.instances.delete(sender)
    }
    for (const round of this.deliveries.keys()) if (round < low) this.deliveries.delete(round)
    for (const round of this.own.keys()) if (round < low) this.own.delete(round)
    let pruned = false
    for (const [k, r] of this.remembered) {
      if (r.round < low) {
        this.remembered.delete(k)
        pruned = true
      }
    }
    if (pruned) this.journal.prune(low)
    for (const own of this.uncertified) {
      if (own.round < this.floor) {
        // the engine moved on: stop pushing a SEND nobody will need
        this.uncertified.delete(own)
        own.certified.reject(new RoundOutOfWindowError(own.round, this.floor))
      }
    }
  }

  // ------------------------------------------------------------------ accounting

  private countSent(n: number): void {
    this.counters.bytesSent += n
    this.metrics?.bytesSent.inc(n)
  }

  private countReceived(n: number): void {
    this.counters.bytesReceived += n
    this.metrics?.bytesReceived.inc(n)
  }

  private rejectFrom(peer: string | undefined, err: unknown, o: { conclusive?: boolean; relayed?: boolean } = {}): Rejection {
    return this.discipline.reject(peer, err, o)
  }

  /** Resolves after `ms`, on abort, or when one of `wakers` settles (never rejects). */
  private sleep(ms: number, signal: AbortSignal = this.controller.signal, wakers: Promise<unknown>[] = []): Promise<void> {
    return new Promise((resolve) => {
      const done = (): void => {
        clearTimeout(t)
        signal.removeEventListener('abort', done)
        resolve()
      }
      const t = setTimeout(done, ms)
      signal.addEventListener('abort', done, { once: true })
      for (const w of wakers) void w.then(done, done)
    })
  }
}

/**
 * Penalised reasons that, on the FINAL topic, prove the forwarding peer faulty by themselves:
 * every honest member runs the same deterministic checks (size, decoding, version and swarm of
 * this topic, signatures, distinct signers; a short certificate is blamed only under the epoch it
 * names) before it forwards a message, so it never forwards one that fails them. Banned at once.
 * (`equivocation` is not among them: two certificates for one instance mean that more than f
 * members are faulty, and honest members may forward either.)
 */
const CONCLUSIVE_ON_GOSSIP: ReadonlySet<RejectReason> = new Set<RejectReason>(['oversized', 'malformed', 'unknown-version', 'wrong-swarm', 'bad-signature', 'duplicate-signer'])

/**
 * Largest FINAL announcement (no payload) with a certificate of `members` entries: the fixed
 * fields (swarm id, sender, round, epoch, hash) and per entry a signer id and a signature.
 */
export function finalGossipBytes(members: number): number {
  return 1024 + members * (1 + MAX_STRING_BYTES + SIG_BYTES)
}

/** Decodes a FINAL announcement (no payload) from the gossip topic. */
function decodeFinal(data: Uint8Array): Extract<Frame, { type: 'FINAL' }> {
  const frame = decodeFrame(data, { maxPayloadBytes: 0 })
  if (frame.type !== 'FINAL') throw new BroadcastRejectError('malformed', `${frame.type} frame on the FINAL topic`)
  return frame
}


/** Creates and starts the signed echo broadcast of one member. */
export async function createEchoBroadcast(opts: EchoBroadcastOptions): Promise<EchoBroadcast> {
  validateEchoBroadcastOptions(opts)
  let metrics: MetricSet | undefined
  if (opts.registry !== undefined) {
    const { Counter } = await import('prom-client')
    metrics = {
      rejections: getOrCreateCounter(opts.registry, 'monna_broadcast_rejections_total', 'Messages refused by the echo broadcast, by reason', ['reason'], Counter),
      deliveries: getOrCreateCounter(opts.registry, 'monna_broadcast_deliveries_total', 'Certified instances delivered', [], Counter),
      coolOffs: getOrCreateCounter(opts.registry, 'monna_broadcast_cool_offs_total', 'Peers cut off for a while for a flood of refused frames', [], Counter),
      bytesSent: getOrCreateCounter(opts.registry, 'monna_broadcast_sent_bytes_total', 'Bytes sent by the echo broadcast (frames and FINAL publications)', [], Counter),
      bytesReceived: getOrCreateCounter(opts.registry, 'monna_broadcast_received_bytes_total', 'Bytes received by the echo broadcast', [], Counter),
    }
  }
  const b = new EchoBroadcastImpl(opts, metrics)
  await b.start()
  return b
}

export type { PeerId }
