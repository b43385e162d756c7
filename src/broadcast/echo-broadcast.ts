/**
 * Signed echo broadcast (Cachin, Guerraoui, Rodrigues; ALGORITHMS §2) over libp2p 3.
 *
 * Instance = (swarm, epoch, round, sender). The sender pushes SEND (hash, its signature, payload)
 * to every member on a stream of `/monna/<swarm>/echo-bcast/2.0.0`; each member answers the
 * *first* SEND of an instance with an ECHO (its signature over the instance and the hash) on
 * the same stream, so echoes go to the sender only. With Q = ⌊(n+f)/2⌋+1 distinct valid
 * echoes the sender writes FINAL (hash + certificate) on every stream, and publishes it on
 * the gossipsub topic `/monna/<swarm>/final/2` (small; relayed by members) once a stream did
 * not carry it. A member delivers once, when it holds a valid FINAL and a payload of that
 * hash; a FINAL without the payload makes it PULL the payload from the certificate's signers. Certificates are
 * transferable: FETCH(round) returns (FINAL, payload) pairs any member verifies alone.
 *
 * What holds against up to f Byzantine members (README.md in this directory states the bounds):
 * - an honest member echoes at most one hash per instance, ever: instance records are never
 *   evicted while a SEND of theirs can still be accepted (a sender at its cap is refused
 *   instead), and they survive restarts through the echo journal;
 * - the window and every "the swarm is ahead" decision follow the newest round certified by
 *   f + 1 distinct senders, which no f members can move;
 * - payload bytes are charged to the sending peer from the frame header on.
 *
 * This file is the façade: it checks the public API's arguments and wires the parts, each given
 * the narrow context it uses (context.ts): the epochs (epoch-table.ts), the instance store
 * (instance-store.ts), our own SENDs (sender.ts), streams opened to us (receiver.ts), certified
 * FINALs (finals.ts), PULL / QUERY / FETCH (recovery.ts), and what refusals cost (discipline.ts).
 */
import type { GossipSub } from '@libp2p/gossipsub'
import type { Libp2p, PeerId } from '@libp2p/interface'
import type { Counter, Registry } from 'prom-client'
import { InvalidConfigError } from '../errors.ts'
import type { Logger } from '../logger.ts'
import { silentLogger } from '../logger.ts'
import { type Membership, swarmProtocol, swarmTopic } from '../net/membership.ts'
import { banPeer, isBanned, setNetMembership } from '../net/node.ts'
import { VerifiedCertificates } from './certificate.ts'
import { type BroadcastContext, type Counters, Streams, sleep } from './context.ts'
import { signingSeed } from './crypto.ts'
import { PeerDiscipline } from './discipline.ts'
import { EpochTable, validateRound } from './epoch-table.ts'
import { BroadcastStoppedError, RoundOutOfWindowError } from './errors.ts'
import { Finals } from './finals.ts'
import { InstanceStore } from './instance-store.ts'
import { createMemoryJournal } from './journal.ts'
import { Budget, TokenBuckets } from './limits.ts'
import { defaultEchoBroadcastOptions, type EchoBroadcastOptions, validateEchoBroadcastOptions } from './options.ts'
import { Receiver } from './receiver.ts'
import { Recovery } from './recovery.ts'
import { Sender } from './sender.ts'
import type { BroadcastStats, Delivery, EchoBroadcast, EquivocationEvidence, FetchOptions } from './types.ts'

export { type Certificate, verifyCertificate } from './certificate.ts'
export { COOL_OFF_MS, type CoolOffEvent, REFUSAL_BURST_PER_MEMBER, REFUSALS_PER_SECOND, type Rejection } from './discipline.ts'
export { finalGossipBytes } from './finals.ts'
export { defaultEchoBroadcastOptions, type EchoBroadcastOptions } from './options.ts'
export type { BanEvent } from './penalties.ts'
export { MAX_SEND_REPEATS } from './receiver.ts'
export type { BroadcastStats, Delivery, EchoBroadcast, EchoBroadcastEvents, EquivocationEvidence, FetchOptions } from './types.ts'

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

/** Stream protocol of a swarm's echo broadcast (wire version 2). */
export function echoProtocol(swarmId: string): string {
  return swarmProtocol(swarmId, 'echo-bcast', '2.0.0')
}

/** Gossipsub topic of a swarm's FINAL announcements (wire version 2). */
export function finalTopic(swarmId: string): string {
  return swarmTopic(swarmId, 'final', 2)
}

class EchoBroadcastImpl extends EventTarget implements EchoBroadcast {
  readonly protocol: string
  readonly topic: string
  readonly peerId: string
  private readonly node: Libp2p
  private readonly W: number
  private readonly maxPayloadBytes: number
  private readonly log: Logger
  private readonly epochs: EpochTable
  private readonly store: InstanceStore
  private readonly verifiedCerts: VerifiedCertificates
  private readonly budget: Budget
  /** what a refused frame costs its peer: counts, penalties, cool-offs, bans */
  private readonly discipline: PeerDiscipline
  private readonly streams: Streams
  private readonly sender: Sender
  private readonly receiver: Receiver
  private readonly finals: Finals
  private readonly recovery: Recovery
  private readonly counters: Counters = {
    bytesSent: 0,
    bytesReceived: 0,
    delivered: 0,
    equivocations: 0,
    signaturesVerified: 0,
    sendsRepeated: 0,
    payloadsServed: 0,
    payloadsServedToFetch: 0,
  }
  private readonly controller = new AbortController()
  private readonly tasks = new Set<Promise<unknown>>()
  private stopped = false

  constructor(opts: EchoBroadcastOptions, metrics: MetricSet | undefined) {
    super()
    this.node = opts.node
    this.peerId = opts.node.peerId.toString()
    this.log = (opts.logger ?? silentLogger).child('broadcast')
    this.epochs = new EpochTable(opts.membership, opts.epoch ?? 0, opts.epochFrom ?? 0, this.log)
    const members = this.epochs.newest().members.size
    this.W = opts.roundWindow ?? defaultEchoBroadcastOptions.roundWindow
    this.maxPayloadBytes = opts.maxPayloadBytes ?? defaultEchoBroadcastOptions.maxPayloadBytes
    this.budget = new Budget(opts.maxPendingBytesPerPeer ?? 4 * this.maxPayloadBytes + 1024 * 1024)
    const timing = {
      retryIntervalMs: opts.retryIntervalMs ?? defaultEchoBroadcastOptions.retryIntervalMs,
      requestTimeoutMs: opts.requestTimeoutMs ?? defaultEchoBroadcastOptions.requestTimeoutMs,
      fetchIdleMs: opts.fetchIdleMs ?? defaultEchoBroadcastOptions.fetchIdleMs,
      finalQueryMs: opts.finalQueryMs ?? defaultEchoBroadcastOptions.finalQueryMs,
      pullGraceMs: opts.pullGraceMs ?? defaultEchoBroadcastOptions.pullGraceMs,
    }
    const perSecond = opts.servePayloadsPerSecond ?? (members + 1) / 4
    const serving = new TokenBuckets(opts.serveBurstPayloads ?? 2 * (members + 1), perSecond)
    this.discipline = new PeerDiscipline({
      self: this.peerId,
      members,
      penalties: opts.penalties ?? defaultEchoBroadcastOptions.penalties,
      log: this.log,
      ban: (peer, ms) => banPeer(this.node, peer, ms),
      isBanned: (peer) => isBanned(this.node, peer),
      emit: (type, detail) => this.dispatchEvent(new CustomEvent(type, { detail })),
      track: (p) => this.track(p),
      ...(metrics !== undefined ? { metrics } : {}),
    })
    this.verifiedCerts = new VerifiedCertificates(64 * members * (this.W + 1))
    const swarmId = opts.membership.swarmId
    this.protocol = echoProtocol(swarmId)
    this.topic = finalTopic(swarmId)
    this.store = new InstanceStore({
      swarmId,
      roundWindow: this.W,
      budget: this.budget,
      journal: opts.journal ?? createMemoryJournal(),
      epochs: this.epochs,
      onDeliver: (d) => {
        this.counters.delivered++
        metrics?.deliveries.inc()
        this.dispatchEvent(new CustomEvent('deliver', { detail: d }))
      },
      onCollect: (low, floor) => {
        this.sender.collect(low, floor)
        this.verifiedCerts.collect(low)
      },
    })
    this.streams = new Streams({
      node: this.node,
      protocol: this.protocol,
      budget: this.budget,
      counters: this.counters,
      ...(metrics !== undefined ? { metrics } : {}),
      maxPayloadBytes: this.maxPayloadBytes,
      minBytesPerSecond: opts.minBytesPerSecond ?? defaultEchoBroadcastOptions.minBytesPerSecond,
      requestTimeoutMs: timing.requestTimeoutMs,
      signal: this.controller.signal,
    })
    const ctx: BroadcastContext = {
      peerId: this.peerId,
      swarmId,
      seed: signingSeed(opts.privateKey),
      timing,
      log: this.log,
      epochs: this.epochs,
      store: this.store,
      certs: this.verifiedCerts,
      counters: this.counters,
      streams: this.streams,
      signal: this.controller.signal,
      stopped: () => this.stopped,
      track: (p) => this.track(p),
      reject: (peer, err, o) => this.discipline.reject(peer, err, o),
      sleep: (ms, signal = this.controller.signal, wakers = []) => sleep(ms, signal, wakers),
    }
    this.sender = new Sender(ctx, {
      publisher: () => {
        const pubsub = this.pubsub()
        return pubsub === undefined ? undefined : async (data) => (await pubsub.publish(this.topic, data)).recipients.length
      },
      finalGossip: opts.finalGossip ?? defaultEchoBroadcastOptions.finalGossip,
    })
    this.finals = new Finals(ctx, { startPull: (inst) => this.recovery.startPull(inst) })
    this.recovery = new Recovery(ctx, this.finals)
    this.receiver = new Receiver(ctx, {
      serving,
      finals: this.finals,
      recovery: this.recovery,
      onEquivocation: (ev) => this.dispatchEvent(new CustomEvent('equivocation', { detail: ev })),
    })
  }

  // ------------------------------------------------------------------ lifecycle

  async start(): Promise<void> {
    await this.node.handle(this.protocol, (stream, connection) => this.track(this.receiver.onInboundStream(stream, connection.remotePeer.toString())), {
      // per connection: a sender has ≤ 2W + 1 open instances, plus pulls and fetches; what they
      // may make us buffer is bounded by the per-peer budget, not by this count
      maxInboundStreams: 4 * this.W + 16,
      maxOutboundStreams: 4 * this.W + 16,
    })
    const pubsub = this.pubsub()
    if (pubsub !== undefined) {
      pubsub.topicValidators.set(this.topic, (peer, msg) => this.finals.validateFinalMessage(peer.toString(), msg.data))
      pubsub.subscribe(this.topic)
    }
  }

  async stop(): Promise<void> {
    if (this.stopped) return
    this.stopped = true
    this.controller.abort()
    this.sender.stop()
    this.streams.abortAll(new BroadcastStoppedError())
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

  async broadcast(round: number, payload: Uint8Array, opts: { signal?: AbortSignal; handOver?: boolean } = {}): Promise<void> {
    if (this.stopped) throw new BroadcastStoppedError()
    validateRound(round, 'round')
    if (round < this.store.floor) throw new RoundOutOfWindowError(round, this.store.floor)
    if (payload.length > this.maxPayloadBytes) throw new InvalidConfigError('payload', `${payload.length} bytes > maxPayloadBytes ${this.maxPayloadBytes}`)
    await this.sender.broadcast(round, payload, opts)
  }

  delivered(round: number): Delivery[] {
    return this.store.delivered(round)
  }

  setFloor(round: number): void {
    validateRound(round, 'floor')
    if (round <= this.store.floor) return
    this.epochs.prune(round)
    this.store.setFloor(round)
  }

  newestCertifiedRound(): number {
    return this.store.certifiedRound
  }

  epochOf(round: number): number {
    return this.epochs.at(round).epoch
  }

  async fetchRound(round: number, opts: FetchOptions = {}): Promise<Delivery[]> {
    if (this.stopped) throw new BroadcastStoppedError()
    validateRound(round, 'round')
    if (opts.peers !== undefined && (!Number.isInteger(opts.peers) || opts.peers < 1)) throw new TypeError(`fetchRound: peers must be a positive integer, got ${opts.peers}`)
    return this.recovery.fetchRound(round, opts)
  }

  /**
   * An epoch signed for a later round, known before this member reaches it: frames of its rounds
   * are judged under it from now on (certificates of rounds ≥ `fromRound` verify against its
   * members and quorum), so a member still running or catching up to earlier rounds sees the
   * swarm's progress past the boundary. Nothing else changes until `setMembership` switches to
   * it at the boundary: the connection gate and the epoch this member runs stay as they are.
   */
  knowEpoch(m: Membership, fromRound: number, epochNumber: number): void {
    if (this.epochs.know(m, fromRound, epochNumber)) this.verifiedCerts.clear()
  }

  setMembership(m: Membership, fromRound?: number, epochNumber?: number): void {
    this.epochs.set(m, fromRound, epochNumber, this.store.floor)
    // the refusal tolerance, 2(n + 1), follows the epoch this member runs
    this.discipline.setMembers(this.epochs.newest().members.size)
    this.verifiedCerts.clear()
    this.track(setNetMembership(this.node, m))
  }

  stats(): Required<BroadcastStats> {
    return {
      bytesSent: this.counters.bytesSent,
      bytesReceived: this.counters.bytesReceived,
      rejected: { ...this.discipline.rejected },
      delivered: this.counters.delivered,
      equivocations: this.counters.equivocations,
      signaturesVerified: this.counters.signaturesVerified,
      sendsRepeated: this.counters.sendsRepeated,
      payloadsServed: this.counters.payloadsServed,
      payloadsServedToFetch: this.counters.payloadsServedToFetch,
      coolOffs: this.discipline.coolOffCount,
      pendingBytes: this.budget.total(),
      deliveredBytes: this.store.deliveredBytes(),
    }
  }

  evidence(): EquivocationEvidence[] {
    return this.receiver.evidence()
  }
}

/** Creates and starts the signed echo broadcast of one member. */
export async function createEchoBroadcast(opts: EchoBroadcastOptions): Promise<EchoBroadcast> {
  validateEchoBroadcastOptions(opts)
  let metrics: MetricSet | undefined
  if (opts.registry !== undefined) {
    // prom-client is CommonJS: Node's import gives its exports by name and as `default`; in the
    // members' bundle (src/topology/member-program.ts) a dynamic import gives `default` only
    const { Counter } = (await import('prom-client')).default
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
