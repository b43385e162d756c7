/**
 * Signed echo broadcast (Cachin, Guerraoui, Rodrigues; ALGORITHMS §2) over libp2p 3.
 *
 * Instance = (swarm, round, sender). The sender pushes SEND (hash, its signature, payload)
 * to every member on a stream of `/monna/<swarm>/echo-bcast/1.0.0`; each member answers the
 * *first* SEND of an instance with an ECHO (its signature over the instance and the hash) on
 * the same stream, so echoes go to the sender only. With Q = ⌊(n+f)/2⌋+1 distinct valid
 * echoes the sender writes FINAL (hash + certificate) on every stream and publishes it on
 * the gossipsub topic `/monna/<swarm>/final/1` (small; relayed by members). A member
 * delivers once, when it holds a valid FINAL and a payload of that hash; a FINAL without the
 * payload makes it PULL the payload from the certificate's signers. Certificates are
 * transferable: FETCH(round) returns (FINAL, payload) pairs any member verifies alone.
 * See README.md in this directory for the wire format and the design.
 */
import { type GossipSub, TopicValidatorResult } from '@libp2p/gossipsub'
import type { Libp2p, PeerId, PrivateKey, Stream } from '@libp2p/interface'
import { peerIdFromString } from '@libp2p/peer-id'
import type { Counter, Registry } from 'prom-client'
import { AbortError, InvalidConfigError } from '../errors.ts'
import { type Logger, silentLogger } from '../logger.ts'
import { type Membership, quorum, swarmProtocol, swarmTopic, validateMembership } from '../net/membership.ts'
import { banPeer, setNetMembership } from '../net/node.ts'
import { bytesEqual, hashPayload, sign, signingSeed, statement, toHex, verify } from './crypto.ts'
import {
  AlreadyBroadcastError,
  BroadcastRejectError,
  BroadcastStoppedError,
  penalises,
  type RejectReason,
  RoundOutOfWindowError,
  rejectReasons,
} from './errors.ts'
import { FrameReader, writeParts } from './frame-stream.ts'
import { decodeFrame, encodeFrame, encodeFrameParts, type Frame, type FrameHeader, MAX_ROUND, type SignatureEntry } from './wire.ts'

export interface Certificate {
  swarmId: string
  round: number
  sender: string
  hash: Uint8Array
  /** Q signatures of distinct members over the ECHO statement of (instance, hash). */
  signatures: SignatureEntry[]
}

export interface Delivery {
  swarmId: string
  round: number
  sender: string
  payload: Uint8Array
  hash: Uint8Array
  certificate: Certificate
}

export interface Rejection {
  reason: RejectReason
  peer?: string
  penalise: boolean
  detail: string
}

/** Two conflicting SENDs signed by one sender for one instance (transferable evidence). */
export interface EquivocationEvidence {
  swarmId: string
  round: number
  sender: string
  first: { hash: Uint8Array; signature: Uint8Array }
  second: { hash: Uint8Array; signature: Uint8Array }
}

export interface EchoBroadcastOptions {
  node: Libp2p
  privateKey: PrivateKey
  membership: Membership
  /** W: instances kept per sender, and rounds echoed behind/ahead of the newest certified round. */
  roundWindow?: number
  /** Largest payload accepted or sent. */
  maxPayloadBytes?: number
  /** Largest amount of undelivered payload bytes (held or being received) per peer. */
  maxPendingBytesPerPeer?: number
  /** Delay between attempts to reach a member we could not dial (ms). */
  retryIntervalMs?: number
  /** Time allowed for one PULL, QUERY or FETCH exchange with one peer (ms). */
  requestTimeoutMs?: number
  /** An echoed instance still without FINAL after this long is QUERYed from its sender (ms). */
  finalQueryMs?: number
  /**
   * fetchRound asks one peer at a time, and the next one as soon as the peers asked so far have
   * all gone this long without sending a byte (ms): a peer that takes the FETCH and stays silent
   * (crashed, overloaded, Byzantine) holds the catch-up up for this long, not `requestTimeoutMs`.
   */
  fetchIdleMs?: number
  /**
   * Peers whose frames earn `threshold` penalised rejections (bad signatures, malformed frames,
   * equivocation, …) within `windowMs` are banned for `banMs`: their connections are closed and
   * refused both ways, member or not (`banPeer` of src/net). `false` turns bans off.
   */
  penalties?: { threshold: number; windowMs: number; banMs: number } | false
  logger?: Logger
  registry?: Registry
}

export const defaultEchoBroadcastOptions = {
  /**
   * MoNNA waits for n − f deliveries, so honest members are at most a few rounds apart;
   * 8 rounds of slack keeps a lagging member echoing while bounding memory to 8 payloads per sender.
   */
  roundWindow: 8,
  /** ≥ 256 MiB (issue 4): models of 0.4–4 MB fit with a large margin. */
  maxPayloadBytes: 256 * 1024 * 1024,
  /** Two full payloads per peer: its current instance and the next one arriving early. */
  maxPendingBytesPerPeer: undefined as number | undefined,
  retryIntervalMs: 500,
  requestTimeoutMs: 30_000,
  fetchIdleMs: 2000,
  /**
   * A FINAL normally follows the echo within one round trip plus the slowest of Q echoes; 3 s
   * is well above that on loopback with 1.7 MB payloads (bench:broadcast) and costs one small
   * request per lost FINAL.
   */
  finalQueryMs: 3000,
  /**
   * An honest member earns no penalised rejection at all; 64 in a minute is far from an accident
   * (a fuzzing or forging peer reaches it in milliseconds) and leaves room for a peer on a buggy
   * but honest build. Five minutes, then it may reconnect and is judged afresh.
   */
  penalties: { threshold: 64, windowMs: 60_000, banMs: 300_000 } as { threshold: number; windowMs: number; banMs: number } | false,
}

/** A peer banned for its penalised rejections (event 'ban'). */
export interface BanEvent {
  peer: string
  /** penalised rejections within the window, by reason */
  reasons: Record<string, number>
  until: number
}

export interface BroadcastStats {
  bytesSent: number
  bytesReceived: number
  rejected: Record<string, number>
  delivered: number
  equivocations: number
}

export interface EchoBroadcastEvents {
  deliver: CustomEvent<Delivery>
  reject: CustomEvent<Rejection>
  equivocation: CustomEvent<EquivocationEvidence>
  ban: CustomEvent<BanEvent>
}

export interface EchoBroadcast extends EventTarget {
  broadcast(round: number, payload: Uint8Array, opts?: { signal?: AbortSignal }): Promise<void>
  delivered(round: number): Delivery[]
  setFloor(round: number): void
  newestCertifiedRound(): number
  fetchRound(round: number, opts?: { signal?: AbortSignal }): Promise<Delivery[]>
  /**
   * A new membership epoch. With `fromRound`, instances of earlier rounds keep being checked
   * against the epochs they belong to (a late certificate of the last round before a switch is
   * still valid); without it, `m` replaces every epoch.
   */
  setMembership(m: Membership, fromRound?: number): void
  stats(): BroadcastStats
  /**
   * Byzantine behaviours: a SEND to `peers` only; if their echoes make a quorum, FINAL goes to
   * `opts.finalTo` only when given (no gossipsub publication), else to `peers` and gossipsub.
   */
  sendTo(peers: string[], round: number, payload: Uint8Array, opts?: { finalTo?: string[] }): Promise<void>
  stop(): Promise<void>
  /** Protocol id of the streams. */
  readonly protocol: string
  /** Gossipsub topic of FINAL announcements. */
  readonly topic: string
  readonly peerId: string
  /** Equivocation evidence collected so far (bounded). */
  evidence(): EquivocationEvidence[]
  /** Handles one encoded frame as if received on a stream from `peer` (tests, fuzzing). */
  ingest(peer: string, frame: Uint8Array): Promise<{ replies: Frame[]; rejection?: Rejection }>
}

interface InstanceState {
  round: number
  sender: string
  /** The first valid SEND: the only hash we ever echo for this instance. */
  sendHash?: Uint8Array
  sendSignature?: Uint8Array
  echoSignature?: Uint8Array
  /** Payload whose hash is `payloadHash` (from the SEND, a PULL or a certified FINAL). */
  payload?: Uint8Array
  payloadHash?: Uint8Array
  chargedPeer?: string
  chargedBytes: number
  certificate?: Certificate
  delivered?: Delivery
  receivingSend: boolean
  pulling: boolean
  equivocationSeen: boolean
}

interface OwnSend {
  round: number
  hash: Uint8Array
  payload: Uint8Array
  sendSignature: Uint8Array
  echoes: Map<string, Uint8Array>
  certificate?: Certificate
  certified: Deferred<Certificate>
}

interface MetricSet {
  rejections: Counter<'reason'>
  deliveries: Counter
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

function sameSignatures(a: SignatureEntry[], b: SignatureEntry[]): boolean {
  return a.length === b.length && a.every((e, i) => e.signer === b[i]!.signer && bytesEqual(e.signature, b[i]!.signature))
}

function validateRound(round: number, path: string): void {
  if (!Number.isInteger(round) || round < 0 || round > MAX_ROUND) throw new InvalidConfigError(path, `round must be an integer in 0..${MAX_ROUND}, got ${round}`)
}

/** Checks a certificate alone (transferability). Throws BroadcastRejectError with the reason. */
export function verifyCertificate(cert: Certificate, membership: Membership, opts: { trusted?: (e: SignatureEntry) => boolean } = {}): void {
  const members = new Set(membership.members)
  if (cert.swarmId !== membership.swarmId) throw new BroadcastRejectError('wrong-swarm', `certificate of swarm ${cert.swarmId}`)
  if (!members.has(cert.sender)) throw new BroadcastRejectError('non-member', `certificate for non-member sender ${cert.sender}`)
  const q = quorum(membership.members.length, membership.f)
  const seen = new Set<string>()
  for (const e of cert.signatures) {
    if (seen.has(e.signer)) throw new BroadcastRejectError('duplicate-signer', `${e.signer} signs the certificate twice`)
    seen.add(e.signer)
    if (!members.has(e.signer)) throw new BroadcastRejectError('non-member', `certificate signer ${e.signer} is not a member`)
  }
  // not blamed: under a membership epoch this member has not received yet (members removed) the
  // quorum is smaller, and an honest certificate looks short here
  if (seen.size < q) throw new BroadcastRejectError('malformed', `certificate has ${seen.size} signatures, quorum is ${q}`, false)
  const stmt = statement('ECHO', cert, cert.hash)
  for (const e of cert.signatures) {
    if (opts.trusted?.(e) === true) continue
    if (!verify(e.signer, stmt, e.signature)) throw new BroadcastRejectError('bad-signature', `invalid echo signature of ${e.signer} in certificate`)
  }
}

class EchoBroadcastImpl extends EventTarget implements EchoBroadcast {
  readonly protocol: string
  readonly topic: string
  readonly peerId: string
  private readonly node: Libp2p
  private readonly seed: Uint8Array
  /** the newest epoch's membership, members and quorum */
  private membership: Membership
  private members: Set<string>
  private q: number
  /** epochs by first round, ascending; the first one also covers every earlier round */
  private epochs: { from: number; membership: Membership; members: Set<string>; q: number }[]
  private readonly W: number
  private readonly maxPayloadBytes: number
  private readonly maxPendingBytesPerPeer: number
  private readonly retryIntervalMs: number
  private readonly requestTimeoutMs: number
  private readonly fetchIdleMs: number
  private readonly finalQueryMs: number
  private readonly log: Logger
  private readonly metrics: MetricSet | undefined

  private floor = 0
  private newestCertified = -1
  private newestOwn = -1
  private readonly instances = new Map<string, Map<number, InstanceState>>()
  private readonly deliveries = new Map<number, Map<string, Delivery>>()
  private readonly own = new Map<number, OwnSend>()
  /** Our SENDs not yet certified (rejected on stop so no task waits forever). */
  private readonly uncertified = new Set<OwnSend>()
  private readonly verifiedCerts = new Map<string, SignatureEntry[]>()
  private readonly pending = new Map<string, number>()
  private readonly evidenceLog: EquivocationEvidence[] = []
  private readonly counters = {
    bytesSent: 0,
    bytesReceived: 0,
    delivered: 0,
    equivocations: 0,
    rejected: Object.fromEntries(rejectReasons.map((r) => [r, 0])) as Record<string, number>,
  }
  private readonly controller = new AbortController()
  private readonly tasks = new Set<Promise<unknown>>()
  private readonly openStreams = new Set<Stream>()
  private stopped = false
  private readonly penalties: { threshold: number; windowMs: number; banMs: number } | false
  /** per peer: times and reasons of its penalised rejections within the window */
  private readonly penalised = new Map<string, { at: number; reason: string }[]>()

  constructor(opts: EchoBroadcastOptions, metrics: MetricSet | undefined) {
    super()
    this.node = opts.node
    this.seed = signingSeed(opts.privateKey)
    this.peerId = opts.node.peerId.toString()
    this.membership = { ...opts.membership, members: [...opts.membership.members] }
    this.members = new Set(this.membership.members)
    this.q = quorum(this.members.size, this.membership.f)
    this.epochs = [{ from: 0, membership: this.membership, members: this.members, q: this.q }]
    this.W = opts.roundWindow ?? defaultEchoBroadcastOptions.roundWindow
    this.maxPayloadBytes = opts.maxPayloadBytes ?? defaultEchoBroadcastOptions.maxPayloadBytes
    this.maxPendingBytesPerPeer = opts.maxPendingBytesPerPeer ?? 2 * this.maxPayloadBytes + 1024 * 1024
    this.retryIntervalMs = opts.retryIntervalMs ?? defaultEchoBroadcastOptions.retryIntervalMs
    this.requestTimeoutMs = opts.requestTimeoutMs ?? defaultEchoBroadcastOptions.requestTimeoutMs
    this.fetchIdleMs = opts.fetchIdleMs ?? defaultEchoBroadcastOptions.fetchIdleMs
    this.finalQueryMs = opts.finalQueryMs ?? defaultEchoBroadcastOptions.finalQueryMs
    this.penalties = opts.penalties ?? defaultEchoBroadcastOptions.penalties
    this.log = (opts.logger ?? silentLogger).child('broadcast')
    this.metrics = metrics
    this.protocol = swarmProtocol(this.membership.swarmId, 'echo-bcast')
    this.topic = swarmTopic(this.membership.swarmId, 'final')
  }

  // ------------------------------------------------------------------ lifecycle

  async start(): Promise<void> {
    await this.node.handle(this.protocol, (stream, connection) => this.track(this.onInboundStream(stream, connection.remotePeer.toString())), {
      // per connection: a sender has ≤ W open instances, plus pulls and fetches
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
    const own = this.prepareSend(round, payload)
    this.own.set(round, own)
    this.newestOwn = Math.max(this.newestOwn, round)
    // our own instance state: first SEND = ours, echo it ourselves
    const inst = this.instanceFor(this.peerId, round)
    inst.sendHash = own.hash
    inst.sendSignature = own.sendSignature
    inst.echoSignature = own.echoes.get(this.peerId)
    inst.payload = payload
    inst.payloadHash = own.hash
    this.maybeCertify(own)
    for (const peer of this.epochAt(round).membership.members) {
      if (peer !== this.peerId) this.track(this.pushTo(peer, own, { attempts: Number.POSITIVE_INFINITY }))
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

  async sendTo(peers: string[], round: number, payload: Uint8Array, opts: { finalTo?: string[] } = {}): Promise<void> {
    if (this.stopped) throw new BroadcastStoppedError()
    validateRound(round, 'round')
    const own = this.prepareSend(round, payload)
    this.maybeCertify(own)
    // the Byzantine path: SEND to selected members only, wait for their answers, then FINAL if a quorum formed
    const targets = peers.filter((p) => p !== this.peerId)
    const streams: Array<Stream | undefined> = await Promise.all(targets.map((p) => this.pushTo(p, own, { attempts: 3, holdOpen: true })))
    const cert = own.certificate
    if (cert !== undefined) {
      const final = encodeFrameParts({ type: 'FINAL', ...this.instanceOf(cert), hash: cert.hash, certificate: cert.signatures })
      const finalTo = opts.finalTo === undefined ? undefined : new Set(opts.finalTo)
      await Promise.allSettled(
        streams.map(async (s, k) => {
          if (s === undefined) return
          if (finalTo === undefined || finalTo.has(targets[k]!)) await this.writeAndClose(s, final)
          else await s.close({ signal: AbortSignal.timeout(this.requestTimeoutMs) }).catch(() => s.abort(new Error('closed')))
        }),
      )
      if (finalTo === undefined) await this.publishFinal(cert)
    } else {
      this.uncertified.delete(own)
      await Promise.allSettled(streams.map(async (s) => s?.close({ signal: AbortSignal.timeout(this.requestTimeoutMs) })))
    }
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
    return this.newestCertified
  }

  async fetchRound(round: number, opts: { signal?: AbortSignal } = {}): Promise<Delivery[]> {
    if (this.stopped) throw new BroadcastStoppedError()
    validateRound(round, 'round')
    const epoch = this.epochAt(round)
    const peers = this.orderedPeers(epoch.membership.members.filter((p) => p !== this.peerId))
    // One peer at a time (each answer shrinks what the next is asked for), but a peer that stays
    // silent does not hold up the others: a fetch that has gone fetchIdleMs without a byte no
    // longer counts as in flight, so the next peer is asked. Fetches still running at the end
    // (every peer asked, none of them sending) are aborted.
    const done = new AbortController()
    const signal = opts.signal === undefined ? done.signal : AbortSignal.any([opts.signal, done.signal])
    const running = new Map<Promise<void>, { lastByte: number }>()
    let next = 0
    const complete = (): boolean => this.delivered(round).length >= epoch.members.size
    const quietFor = (now: number): number => Math.min(...[...running.values()].map((r) => now - r.lastByte))
    try {
      while (!this.stopped && !complete()) {
        opts.signal?.throwIfAborted()
        const now = performance.now()
        const active = running.size > 0 && quietFor(now) < this.fetchIdleMs
        if (!active && next < peers.length) {
          const peer = peers[next++]!
          const have = this.delivered(round).map((d) => d.sender)
          const progress = { lastByte: now }
          const fetch: Promise<void> = this.fetchFrom(peer, round, have, signal, () => {
            progress.lastByte = performance.now()
          })
            .catch((err: unknown) => {
              if (!signal.aborted) this.log.debug('fetch failed', { peer, round, error: String(err) })
            })
            .finally(() => running.delete(fetch))
          running.set(fetch, progress)
          continue
        }
        if (!active) break // every peer asked; none of those still open is sending
        // wake when a fetch ends or when the most recent byte gets fetchIdleMs old
        const wait = Math.max(1, this.fetchIdleMs - quietFor(now))
        await this.sleep(wait, signal, [...running.keys()])
      }
    } finally {
      done.abort()
    }
    if (opts.signal?.aborted === true) throw new AbortError()
    return this.delivered(round)
  }

  setMembership(m: Membership, fromRound?: number): void {
    validateMembership(m, this.log)
    if (m.swarmId !== this.membership.swarmId) throw new InvalidConfigError('membership.swarmId', 'a membership epoch cannot change the swarm id (create a new broadcast)')
    if (fromRound !== undefined) validateRound(fromRound, 'fromRound')
    this.membership = { ...m, members: [...m.members] }
    this.members = new Set(m.members)
    this.q = quorum(this.members.size, m.f)
    const epoch = { from: fromRound ?? 0, membership: this.membership, members: this.members, q: this.q }
    if (fromRound === undefined) this.epochs = [epoch]
    else {
      this.epochs = this.epochs.filter((e) => e.from < fromRound)
      this.epochs.push(epoch)
      this.pruneEpochs()
    }
    this.verifiedCerts.clear()
    this.track(setNetMembership(this.node, m))
  }

  /** The epoch that round `round` belongs to. */
  private epochAt(round: number): { membership: Membership; members: Set<string>; q: number } {
    for (let i = this.epochs.length - 1; i > 0; i--) if (this.epochs[i]!.from <= round) return this.epochs[i]!
    return this.epochs[0]!
  }

  /** A member of any epoch still in use (rounds ≥ the floor). */
  private knownPeer(peer: string): boolean {
    return this.epochs.some((e) => e.members.has(peer))
  }

  private pruneEpochs(): void {
    while (this.epochs.length > 1 && this.epochs[1]!.from <= this.floor) this.epochs.shift()
  }

  stats(): BroadcastStats {
    return {
      bytesSent: this.counters.bytesSent,
      bytesReceived: this.counters.bytesReceived,
      rejected: { ...this.counters.rejected },
      delivered: this.counters.delivered,
      equivocations: this.counters.equivocations,
    }
  }

  evidence(): EquivocationEvidence[] {
    return [...this.evidenceLog]
  }

  async ingest(peer: string, bytes: Uint8Array): Promise<{ replies: Frame[]; rejection?: Rejection }> {
    this.countReceived(bytes.length)
    try {
      if (!this.knownPeer(peer)) throw new BroadcastRejectError('non-member', `frame from non-member ${peer}`)
      const frame = decodeFrame(bytes, { maxPayloadBytes: this.maxPayloadBytes })
      return { replies: await this.handleFrame(peer, frame) }
    } catch (err) {
      return { replies: [], rejection: this.rejectFrom(peer, err) }
    }
  }

  // ------------------------------------------------------------------ sender side

  private prepareSend(round: number, payload: Uint8Array): OwnSend {
    const hash = hashPayload(payload)
    const inst = { swarmId: this.membership.swarmId, round, sender: this.peerId }
    const own: OwnSend = {
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
    const cert: Certificate = { swarmId: this.membership.swarmId, round: own.round, sender: this.peerId, hash: own.hash, signatures }
    own.certificate = cert
    this.verifiedCerts.set(this.certKey(this.peerId, own.round, own.hash), signatures)
    this.noteCertifiedRound(own.round)
    if (this.own.get(own.round) === own) {
      const inst = this.instanceFor(this.peerId, own.round)
      inst.certificate = cert
      this.deliverIfReady(inst, cert)
      this.track(this.publishFinal(cert))
    }
    this.uncertified.delete(own)
    own.certified.resolve(cert)
  }

  /**
   * Pushes our SEND to one member over a fresh stream, takes its ECHO, then writes FINAL once
   * the certificate exists. A member we cannot reach is retried (up to `attempts`) until certified.
   * With `holdOpen`, returns the stream (open) after the echo instead of waiting for the FINAL.
   */
  private async pushTo(peer: string, own: OwnSend, opts: { attempts: number; holdOpen?: boolean }): Promise<Stream | undefined> {
    const send = encodeFrameParts({
      type: 'SEND',
      swarmId: this.membership.swarmId,
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
        if (attempt >= opts.attempts || own.certificate !== undefined || own.round < this.floor) return undefined
        await this.sleep(delay)
        delay = Math.min(2 * delay, 16 * this.retryIntervalMs)
        if (this.stopped || own.certificate !== undefined) return undefined
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
        const reader = this.reader(stream, peer)
        this.countSent(await writeParts(stream, send, { signal }))
        const replySignal = opts.holdOpen === true ? AbortSignal.any([signal, AbortSignal.timeout(this.requestTimeoutMs)]) : signal
        const reply = await Promise.race([reader.next({ signal: replySignal }), own.certified.promise.then(() => undefined)])
        if (reply !== undefined && reply !== null) this.onEcho(peer, own, reply.frame)
        if (opts.holdOpen === true) return stream
        if (reply === null && own.certificate === undefined) {
          // closed without an answer (it refused the SEND, e.g. not yet in its window): try again later
          stream.abort(new Error('closed without an echo'))
          continue
        }
        const cert = await own.certified.promise
        await this.writeAndClose(stream, encodeFrameParts({ type: 'FINAL', ...this.instanceOf(cert), hash: cert.hash, certificate: cert.signatures }))
        return undefined
      } catch (err) {
        stream.abort(err instanceof Error ? err : new Error(String(err)))
        if (err instanceof BroadcastRejectError) {
          // a wrong answer is the peer's fault: report it, never resend to it
          this.rejectFrom(peer, err)
          return undefined
        }
        this.log.debug('SEND transfer failed', { peer, round: own.round, attempt, error: String(err) })
      } finally {
        if (opts.holdOpen !== true) this.openStreams.delete(stream)
      }
    }
    return undefined
  }

  private onEcho(peer: string, own: OwnSend, frame: Frame): void {
    if (frame.type === 'END') return
    if (frame.type !== 'ECHO') throw new BroadcastRejectError('malformed', `expected ECHO in reply to SEND, got ${frame.type}`)
    if (frame.swarmId !== this.membership.swarmId) throw new BroadcastRejectError('wrong-swarm', `ECHO for swarm ${frame.swarmId}`)
    if (frame.round !== own.round || frame.sender !== this.peerId || !bytesEqual(frame.hash, own.hash)) {
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
    if (!verify(frame.signer, statement('ECHO', frame, own.hash), frame.signature)) {
      throw new BroadcastRejectError('bad-signature', `invalid ECHO signature from ${frame.signer}`)
    }
    own.echoes.set(frame.signer, frame.signature)
    this.maybeCertify(own)
  }

  private async publishFinal(cert: Certificate): Promise<void> {
    const pubsub = this.pubsub()
    if (pubsub === undefined || this.stopped) return
    const data = encodeFrame({ type: 'FINAL', ...this.instanceOf(cert), hash: cert.hash, certificate: cert.signatures })
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

  private reader(stream: Stream, peer: string, onMeta?: (frame: Frame) => void, onBytes?: () => void): FrameReader {
    return new FrameReader(stream, {
      maxPayloadBytes: this.maxPayloadBytes,
      onBytes: (n) => {
        this.countReceived(n)
        onBytes?.()
      },
      onHeader: (h) => this.checkBudget(peer, h),
      onMeta,
    })
  }

  private checkBudget(peer: string, h: FrameHeader): void {
    const held = this.pending.get(peer) ?? 0
    if (held + h.payloadLength > this.maxPendingBytesPerPeer) {
      throw new BroadcastRejectError(
        'oversized',
        `${peer} already has ${held} undelivered bytes here; ${h.payloadLength} more exceeds maxPendingBytesPerPeer ${this.maxPendingBytesPerPeer}`,
        false,
      )
    }
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
      // cheap checks on a SEND's meta, before its payload is buffered
      const reader = this.reader(stream, peer, (frame) => {
        if (frame.type !== 'SEND') return
        this.precheckSend(peer, frame)
        const inst = this.instanceFor(frame.sender, frame.round)
        if (inst.sendHash === undefined) {
          inst.receivingSend = true
          receiving = inst
        }
      })
      const signal = this.controller.signal
      while (!this.stopped) {
        const res = await reader.next({ signal })
        if (res === null) break
        let replies: Frame[]
        try {
          replies = await this.handleFrame(peer, res.frame)
        } catch (err) {
          if (!(err instanceof BroadcastRejectError)) throw err
          // a whole frame was read and refused: say so (END) and close cleanly, so the sender
          // knows it was an answer and not a transport failure worth retrying
          this.rejectFrom(peer, err)
          replies = [{ type: 'END' }]
          this.countSent(await writeParts(stream, encodeFrameParts(replies[0]!), { signal }))
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
  private async handleFrame(peer: string, frame: Frame): Promise<Frame[]> {
    if (frame.type === 'END' || frame.type === 'ECHO' || frame.type === 'PAYLOAD') {
      throw new BroadcastRejectError('malformed', `unsolicited ${frame.type} frame`)
    }
    if (frame.swarmId !== this.membership.swarmId) throw new BroadcastRejectError('wrong-swarm', `frame for swarm ${frame.swarmId}, this is ${this.membership.swarmId}`)
    switch (frame.type) {
      case 'SEND':
        return this.onSend(peer, frame)
      case 'FINAL':
        this.onFinal(peer, frame)
        return []
      case 'PULL': {
        const inst = this.instance(frame.sender, frame.round)
        if (inst?.payload !== undefined && inst.payloadHash !== undefined && bytesEqual(inst.payloadHash, frame.hash)) {
          return [{ type: 'PAYLOAD', ...this.instanceOf(inst), hash: inst.payloadHash, payload: inst.payload }]
        }
        return [{ type: 'END' }]
      }
      case 'QUERY': {
        const cert = this.instance(frame.sender, frame.round)?.certificate
        return cert !== undefined ? [{ type: 'FINAL', ...this.instanceOf(cert), hash: cert.hash, certificate: cert.signatures }] : [{ type: 'END' }]
      }
      case 'FETCH': {
        const have = new Set(frame.have)
        const out: Frame[] = this.delivered(frame.round)
          .filter((d) => !have.has(d.sender))
          .map((d) => ({ type: 'FINAL', ...this.instanceOf(d), hash: d.hash, certificate: d.certificate.signatures, payload: d.payload }))
        out.push({ type: 'END' })
        return out
      }
    }
  }

  private inWindow(round: number): boolean {
    const ref = Math.max(this.floor, this.newestCertified, this.newestOwn, 0)
    return round >= this.floor && round >= ref - this.W && round <= ref + this.W
  }

  /** Checks of a SEND that need no payload (also run on the meta, before the payload arrives). */
  private precheckSend(peer: string, f: Extract<Frame, { type: 'SEND' }>): void {
    if (f.swarmId !== this.membership.swarmId) throw new BroadcastRejectError('wrong-swarm', `frame for swarm ${f.swarmId}, this is ${this.membership.swarmId}`)
    if (!this.epochAt(f.round).members.has(f.sender)) throw new BroadcastRejectError('non-member', `SEND for non-member sender ${f.sender}`)
    if (f.sender !== peer) throw new BroadcastRejectError('malformed', `SEND of ${f.sender} relayed by ${peer}; senders push their own SENDs`)
    if (f.sender === this.peerId) throw new BroadcastRejectError('malformed', 'SEND claiming to be ours')
    if (!this.inWindow(f.round)) throw new BroadcastRejectError('out-of-window', `round ${f.round} outside the window around ${this.windowRef()} (W=${this.W}, floor ${this.floor})`)
  }

  private onSend(peer: string, f: Extract<Frame, { type: 'SEND' }>): Frame[] {
    this.precheckSend(peer, f)
    const existing = this.instance(f.sender, f.round)
    if (existing?.sendHash !== undefined) {
      if (bytesEqual(existing.sendHash, f.hash)) {
        // the same SEND again (the sender retried): the same echo, never a different one — but
        // only for the very same SEND (cheap byte comparisons first)
        if (!bytesEqual(f.signature, existing.sendSignature!) && !verify(f.sender, statement('SEND', f, f.hash), f.signature)) {
          throw new BroadcastRejectError('bad-signature', `invalid SEND signature of ${f.sender}`)
        }
        const held = existing.payload !== undefined && existing.payloadHash !== undefined && bytesEqual(existing.payloadHash, f.hash)
        if (held ? !bytesEqual(existing.payload!, f.payload) : !bytesEqual(hashPayload(f.payload), f.hash)) {
          throw new BroadcastRejectError('hash-mismatch', `repeated SEND of ${f.sender} round ${f.round} carries another payload`)
        }
        return [this.echoFrame(existing)]
      }
      if (!verify(f.sender, statement('SEND', f, f.hash), f.signature)) throw new BroadcastRejectError('bad-signature', `invalid SEND signature of ${f.sender}`)
      this.recordEquivocation(existing, f.hash, f.signature)
      throw new BroadcastRejectError('equivocation', `${f.sender} sent two different SENDs for round ${f.round}`)
    }
    if (!verify(f.sender, statement('SEND', f, f.hash), f.signature)) throw new BroadcastRejectError('bad-signature', `invalid SEND signature of ${f.sender}`)
    const h = hashPayload(f.payload)
    if (!bytesEqual(h, f.hash)) throw new BroadcastRejectError('hash-mismatch', `SEND payload hashes to ${toHex(h).slice(0, 16)}…, declared ${toHex(f.hash).slice(0, 16)}…`)
    const inst = this.instanceFor(f.sender, f.round)
    inst.sendHash = f.hash
    inst.sendSignature = f.signature
    inst.echoSignature = sign(this.seed, statement('ECHO', f, f.hash))
    if (inst.payload === undefined && (inst.certificate === undefined || bytesEqual(inst.certificate.hash, f.hash))) {
      inst.payload = f.payload
      inst.payloadHash = f.hash
      this.charge(inst, peer, f.payload.length)
    }
    if (inst.certificate !== undefined) this.deliverIfReady(inst, inst.certificate)
    else this.watchCertificate(inst)
    return [this.echoFrame(inst)]
  }

  private echoFrame(inst: InstanceState): Frame {
    return { type: 'ECHO', ...this.instanceOf(inst), hash: inst.sendHash!, signer: this.peerId, signature: inst.echoSignature! }
  }

  private afterSend(inst: InstanceState): void {
    inst.receivingSend = false
    if (inst.certificate !== undefined && inst.delivered === undefined) this.startPull(inst)
  }

  private recordEquivocation(inst: InstanceState, hash: Uint8Array, signature: Uint8Array): void {
    this.counters.equivocations++
    if (inst.equivocationSeen) return
    inst.equivocationSeen = true
    const ev: EquivocationEvidence = {
      swarmId: this.membership.swarmId,
      round: inst.round,
      sender: inst.sender,
      first: { hash: inst.sendHash!, signature: inst.sendSignature! },
      second: { hash, signature },
    }
    if (this.evidenceLog.length < 1024) this.evidenceLog.push(ev)
    this.dispatchEvent(new CustomEvent('equivocation', { detail: ev }))
  }

  private onFinal(peer: string, f: Extract<Frame, { type: 'FINAL' }>): void {
    if (!this.epochAt(f.round).members.has(f.sender)) throw new BroadcastRejectError('non-member', `FINAL for non-member sender ${f.sender}`)
    const ref = this.windowRef()
    if (f.round < this.floor || f.round < ref - this.W) throw new BroadcastRejectError('out-of-window', `FINAL of round ${f.round} is older than the window (${ref}, W=${this.W}, floor ${this.floor})`)
    const existing = this.instance(f.sender, f.round)
    if (existing?.certificate !== undefined && bytesEqual(existing.certificate.hash, f.hash)) {
      // a FINAL we already hold (e.g. by stream and by gossipsub): identical bytes cost nothing,
      // anything else is checked like a new one
      if (!sameSignatures(existing.certificate.signatures, f.certificate)) this.checkCertificate({ ...this.instanceOf(f), hash: f.hash, signatures: f.certificate }, true)
      if (f.payload !== undefined) {
        if (existing.delivered !== undefined) {
          if (!bytesEqual(existing.delivered.payload, f.payload)) throw new BroadcastRejectError('hash-mismatch', `payload for ${f.sender} round ${f.round} differs from the delivered one`)
        } else this.acceptPayload(existing, peer, f.payload)
      }
      return
    }
    const cert: Certificate = { ...this.instanceOf(f), hash: f.hash, signatures: f.certificate }
    this.checkCertificate(cert)
    if (existing?.certificate !== undefined) {
      // two certified hashes for one instance cannot exist while n ≥ 3f+1 holds
      this.log.error('conflicting certificates: the fault bound is violated', { sender: f.sender, round: f.round })
      throw new BroadcastRejectError('equivocation', `a second certified hash for ${f.sender} round ${f.round}`)
    }
    this.noteCertifiedRound(f.round)
    if (!this.inWindow(f.round)) return
    const inst = this.instanceFor(f.sender, f.round)
    inst.certificate = cert
    if (f.payload !== undefined) this.acceptPayload(inst, peer, f.payload)
    else if (inst.payload !== undefined && inst.payloadHash !== undefined && bytesEqual(inst.payloadHash, f.hash)) this.deliverIfReady(inst, cert)
    else if (!inst.receivingSend) this.startPull(inst)
  }

  private acceptPayload(inst: InstanceState, peer: string, payload: Uint8Array): void {
    const cert = inst.certificate!
    const h = hashPayload(payload)
    if (!bytesEqual(h, cert.hash)) throw new BroadcastRejectError('hash-mismatch', `payload for ${inst.sender} round ${inst.round} does not match the certified hash`)
    this.release(inst)
    inst.payload = payload
    inst.payloadHash = h
    this.charge(inst, peer, payload.length)
    this.deliverIfReady(inst, cert)
  }

  private checkCertificate(cert: Certificate, always = false): void {
    const key = this.certKey(cert.sender, cert.round, cert.hash)
    const known = this.verifiedCerts.get(key)
    if (!always && known !== undefined && sameSignatures(known, cert.signatures)) return
    const inst = this.instance(cert.sender, cert.round)
    verifyCertificate(cert, this.epochAt(cert.round).membership, {
      // our own echo signature is deterministic: equal bytes are valid without a verification
      trusted: (e) =>
        e.signer === this.peerId &&
        inst?.echoSignature !== undefined &&
        inst.sendHash !== undefined &&
        bytesEqual(inst.sendHash, cert.hash) &&
        bytesEqual(inst.echoSignature, e.signature),
    })
    if (this.verifiedCerts.size > 64 * this.members.size * (this.W + 1)) this.verifiedCerts.clear()
    this.verifiedCerts.set(key, cert.signatures)
  }

  private validateFinalMessage(peer: string, data: Uint8Array): TopicValidatorResult {
    this.countReceived(data.length)
    try {
      const frame = decodeFrame(data, { maxPayloadBytes: 0 })
      if (frame.type !== 'FINAL') throw new BroadcastRejectError('malformed', `${frame.type} frame on the FINAL topic`)
      if (frame.swarmId !== this.membership.swarmId) throw new BroadcastRejectError('wrong-swarm', `FINAL for swarm ${frame.swarmId}`)
      this.onFinal(peer, frame)
      return TopicValidatorResult.Accept
    } catch (err) {
      const r = this.rejectFrom(peer, err)
      return r.penalise ? TopicValidatorResult.Reject : TopicValidatorResult.Ignore
    }
  }

  // ------------------------------------------------------------------ pull / fetch

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
        const reader = this.reader(stream, peer)
        this.countSent(await writeParts(stream, encodeFrameParts({ type: 'PULL', ...this.instanceOf(inst), hash: cert.hash }), { signal }))
        const res = await reader.next({ signal })
        if (res !== null && res.frame.type === 'PAYLOAD') {
          const f = res.frame
          if (f.swarmId !== this.membership.swarmId || f.round !== inst.round || f.sender !== inst.sender || !bytesEqual(f.hash, cert.hash)) {
            throw new BroadcastRejectError('malformed', 'PAYLOAD does not answer the PULL')
          }
          if (inst.delivered === undefined) this.acceptPayload(inst, peer, f.payload)
        } else if (res !== null && res.frame.type !== 'END') {
          throw new BroadcastRejectError('malformed', `expected PAYLOAD or END, got ${res.frame.type}`)
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
      const reader = this.reader(stream, peer)
      this.countSent(await writeParts(stream, encodeFrameParts({ type: 'QUERY', ...this.instanceOf(inst) }), { signal }))
      const res = await reader.next({ signal })
      if (res !== null && res.frame.type === 'FINAL') {
        const f = res.frame
        if (f.swarmId !== this.membership.swarmId || f.round !== inst.round || f.sender !== inst.sender || f.payload !== undefined) {
          throw new BroadcastRejectError('malformed', 'FINAL does not answer the QUERY')
        }
        this.onFinal(peer, f)
      } else if (res !== null && res.frame.type !== 'END') {
        throw new BroadcastRejectError('malformed', `expected FINAL or END, got ${res.frame.type}`)
      }
      await stream.close({ signal })
    } catch (err) {
      if (err instanceof BroadcastRejectError) this.rejectFrom(peer, err)
      stream.abort(err instanceof Error ? err : new Error(String(err)))
    } finally {
      this.openStreams.delete(stream)
    }
  }

  private async fetchFrom(peer: string, round: number, have: string[], outer?: AbortSignal, onBytes?: () => void): Promise<void> {
    const signals = [this.controller.signal, AbortSignal.timeout(this.requestTimeoutMs)]
    if (outer !== undefined) signals.push(outer)
    const signal = AbortSignal.any(signals)
    const stream = await this.node.dialProtocol(peerIdFromString(peer), this.protocol, { signal })
    this.openStreams.add(stream)
    try {
      const reader = this.reader(stream, peer, undefined, onBytes)
      this.countSent(await writeParts(stream, encodeFrameParts({ type: 'FETCH', swarmId: this.membership.swarmId, round, have }), { signal }))
      for (let k = 0; k <= this.members.size; k++) {
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

  private certKey(sender: string, round: number, hash: Uint8Array): string {
    return `${sender}/${round}/${toHex(hash)}`
  }

  private instanceOf(i: { round: number; sender: string }): { swarmId: string; round: number; sender: string } {
    return { swarmId: this.membership.swarmId, round: i.round, sender: i.sender }
  }

  private windowRef(): number {
    return Math.max(this.floor, this.newestCertified, this.newestOwn, 0)
  }

  private instance(sender: string, round: number): InstanceState | undefined {
    return this.instances.get(sender)?.get(round)
  }

  /** Gets or creates an instance; at most W per sender (the oldest is dropped). */
  private instanceFor(sender: string, round: number): InstanceState {
    let bySender = this.instances.get(sender)
    if (bySender === undefined) {
      bySender = new Map()
      this.instances.set(sender, bySender)
    }
    let inst = bySender.get(round)
    if (inst !== undefined) return inst
    inst = { round, sender, chargedBytes: 0, receivingSend: false, pulling: false, equivocationSeen: false }
    bySender.set(round, inst)
    while (bySender.size > this.W) {
      const oldest = Math.min(...bySender.keys())
      this.release(bySender.get(oldest)!)
      bySender.delete(oldest)
    }
    return inst
  }

  private charge(inst: InstanceState, peer: string, bytes: number): void {
    if (inst.delivered !== undefined) return
    inst.chargedPeer = peer
    inst.chargedBytes = bytes
    this.pending.set(peer, (this.pending.get(peer) ?? 0) + bytes)
  }

  private release(inst: InstanceState): void {
    if (inst.chargedPeer === undefined) return
    const left = (this.pending.get(inst.chargedPeer) ?? 0) - inst.chargedBytes
    if (left > 0) this.pending.set(inst.chargedPeer, left)
    else this.pending.delete(inst.chargedPeer)
    inst.chargedPeer = undefined
    inst.chargedBytes = 0
  }

  private deliverIfReady(inst: InstanceState, cert: Certificate): void {
    if (inst.delivered !== undefined || inst.payload === undefined || inst.payloadHash === undefined) return
    if (!bytesEqual(inst.payloadHash, cert.hash)) return
    const d: Delivery = { swarmId: this.membership.swarmId, round: inst.round, sender: inst.sender, payload: inst.payload, hash: cert.hash, certificate: cert }
    inst.delivered = d
    this.release(inst)
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

  private noteCertifiedRound(round: number): void {
    if (round <= this.newestCertified) return
    this.newestCertified = round
    this.gc()
  }

  /** Drops instances and deliveries below the floor or more than W rounds behind the reference. */
  private gc(): void {
    const low = Math.max(this.floor, this.windowRef() - this.W)
    for (const [sender, bySender] of this.instances) {
      for (const [round, inst] of bySender) {
        if (round < low) {
          this.release(inst)
          bySender.delete(round)
        }
      }
      if (bySender.size === 0) this.instances.delete(sender)
    }
    for (const round of this.deliveries.keys()) if (round < low) this.deliveries.delete(round)
    for (const round of this.own.keys()) if (round < low) this.own.delete(round)
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

  private rejectFrom(peer: string | undefined, err: unknown): Rejection {
    let r: Rejection
    if (err instanceof BroadcastRejectError) r = { reason: err.reason, peer, penalise: err.penalise, detail: err.message }
    else r = { reason: 'malformed', peer, penalise: penalises('malformed'), detail: err instanceof Error ? err.message : String(err) }
    this.counters.rejected[r.reason] = (this.counters.rejected[r.reason] ?? 0) + 1
    this.metrics?.rejections.inc({ reason: r.reason })
    this.log.debug('rejected', { ...r })
    this.dispatchEvent(new CustomEvent('reject', { detail: r }))
    if (r.penalise && peer !== undefined && peer !== this.peerId) this.penalise(peer, r.reason)
    return r
  }

  /** Counts a penalised rejection against `peer`; bans it at the threshold (see `penalties`). */
  private penalise(peer: string, reason: string): void {
    const p = this.penalties
    if (p === false) return
    const now = Date.now()
    if (!this.penalised.has(peer) && this.penalised.size >= 4096) this.penalised.clear()
    const list = (this.penalised.get(peer) ?? []).filter((e) => now - e.at < p.windowMs)
    list.push({ at: now, reason })
    this.penalised.set(peer, list)
    if (list.length < p.threshold) return
    this.penalised.delete(peer)
    const reasons: Record<string, number> = {}
    for (const e of list) reasons[e.reason] = (reasons[e.reason] ?? 0) + 1
    const ev: BanEvent = { peer, reasons, until: now + p.banMs }
    this.log.warn('peer banned for its rejected frames', { peer, banMs: p.banMs, ...reasons })
    this.dispatchEvent(new CustomEvent('ban', { detail: ev }))
    this.track(banPeer(this.node, peer, p.banMs))
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

/** Creates and starts the signed echo broadcast of one member. */
export async function createEchoBroadcast(opts: EchoBroadcastOptions): Promise<EchoBroadcast> {
  validateMembership(opts.membership, opts.logger)
  const W = opts.roundWindow ?? defaultEchoBroadcastOptions.roundWindow
  if (!Number.isInteger(W) || W < 1 || W > 1024) throw new InvalidConfigError('roundWindow', `must be an integer in 1..1024, got ${W}`)
  const maxPayload = opts.maxPayloadBytes ?? defaultEchoBroadcastOptions.maxPayloadBytes
  if (!Number.isInteger(maxPayload) || maxPayload < 0 || maxPayload > 0xffff_ffff) {
    throw new InvalidConfigError('maxPayloadBytes', `must be an integer in 0..${0xffff_ffff}, got ${maxPayload}`)
  }
  if (opts.maxPendingBytesPerPeer !== undefined && (!Number.isInteger(opts.maxPendingBytesPerPeer) || opts.maxPendingBytesPerPeer < maxPayload)) {
    throw new InvalidConfigError('maxPendingBytesPerPeer', 'must be an integer ≥ maxPayloadBytes (a peer must be able to send one payload)')
  }
  for (const k of ['retryIntervalMs', 'requestTimeoutMs', 'finalQueryMs'] as const) {
    const v = opts[k]
    if (v !== undefined && (!Number.isFinite(v) || v <= 0)) throw new InvalidConfigError(k, `must be a positive number of milliseconds, got ${v}`)
  }
  const pen = opts.penalties
  if (pen !== undefined && pen !== false) {
    if (typeof pen !== 'object' || pen === null) throw new InvalidConfigError('penalties', 'must be { threshold, windowMs, banMs } or false')
    if (!Number.isInteger(pen.threshold) || pen.threshold < 1) throw new InvalidConfigError('penalties.threshold', `must be a positive integer, got ${pen.threshold}`)
    for (const k of ['windowMs', 'banMs'] as const) {
      if (!Number.isFinite(pen[k]) || pen[k] <= 0) throw new InvalidConfigError(`penalties.${k}`, `must be a positive number of milliseconds, got ${pen[k]}`)
    }
  }
  const me = opts.node.peerId.toString()
  if (me !== peerIdFromString(me).toString() || !opts.membership.members.includes(me)) {
    throw new InvalidConfigError('membership.members', `this node (${me}) is not a member of swarm ${opts.membership.swarmId}`)
  }
  let metrics: MetricSet | undefined
  if (opts.registry !== undefined) {
    const { Counter } = await import('prom-client')
    metrics = {
      rejections: getOrCreateCounter(opts.registry, 'monna_broadcast_rejections_total', 'Messages refused by the echo broadcast, by reason', ['reason'], Counter),
      deliveries: getOrCreateCounter(opts.registry, 'monna_broadcast_deliveries_total', 'Certified instances delivered', [], Counter),
      bytesSent: getOrCreateCounter(opts.registry, 'monna_broadcast_sent_bytes_total', 'Bytes sent by the echo broadcast (frames and FINAL publications)', [], Counter),
      bytesReceived: getOrCreateCounter(opts.registry, 'monna_broadcast_received_bytes_total', 'Bytes received by the echo broadcast', [], Counter),
    }
  }
  const b = new EchoBroadcastImpl(opts, metrics)
  await b.start()
  return b
}

export type { PeerId }
