/**
 * What the parts of the echo broadcast (sender.ts, receiver.ts, finals.ts, recovery.ts) share,
 * passed to each explicitly: `BroadcastContext`, and the stream plumbing (`Streams`: dialling,
 * frame readers charging the per-peer budget, writing and byte counts). Each part takes a `Pick`
 * of the context naming what it uses; none holds the façade (echo-broadcast.ts).
 */
import type { Libp2p, PeerId, Stream } from '@libp2p/interface'
import { peerIdFromString } from '@libp2p/peer-id'
import type { Counter } from 'prom-client'
import { onAbort } from '../abort.ts'
import type { Logger } from '../logger.ts'
import { isBanned } from '../net/node.ts'
import type { Certificate, VerifiedCertificates } from './certificate.ts'
import type { Rejection } from './discipline.ts'
import type { EpochTable } from './epoch-table.ts'
import { BroadcastRejectError } from './errors.ts'
import { FrameReader, writeParts } from './frame-stream.ts'
import type { InstanceStore } from './instance-store.ts'
import type { Budget } from './limits.ts'
import type { EncodeOptions, Frame, FrameHeader, Instance } from './wire.ts'

export interface Counters {
  bytesSent: number
  bytesReceived: number
  delivered: number
  equivocations: number
  signaturesVerified: number
  /** SENDs written whole again to a member after an earlier attempt wrote them whole (a broken or refused transfer) */
  sendsRepeated: number
  /** payloads written in replies to other members' PULL and FETCH requests */
  payloadsServed: number
  /** of those, payloads written in replies to FETCH (the rest answered PULLs) */
  payloadsServedToFetch: number
}

export interface Timing {
  retryIntervalMs: number
  requestTimeoutMs: number
  fetchIdleMs: number
  finalQueryMs: number
  pullGraceMs: number
}

export interface BroadcastContext {
  readonly peerId: string
  readonly swarmId: string
  /** our Ed25519 signing seed */
  readonly seed: Uint8Array
  readonly timing: Timing
  readonly log: Logger
  readonly epochs: EpochTable
  readonly store: InstanceStore
  /** certificates verified already (or our own) */
  readonly certs: VerifiedCertificates
  readonly counters: Counters
  readonly streams: Streams
  /** aborted on stop */
  readonly signal: AbortSignal
  stopped(): boolean
  /** runs a background task that stop() waits for */
  track<T>(p: Promise<T>): Promise<T>
  /** counts and reports a refused frame of `peer`, and applies its consequences (PeerDiscipline) */
  reject(peer: string | undefined, err: unknown, o?: { conclusive?: boolean; relayed?: boolean }): Rejection
  /** resolves after `ms`, on abort (default: stop), or when one of `wakers` settles (never rejects) */
  sleep(ms: number, signal?: AbortSignal, wakers?: Promise<unknown>[]): Promise<void>
}

/** Resolves after `ms`, on abort, or when one of `wakers` settles (never rejects). */
export function sleep(ms: number, signal: AbortSignal, wakers: Promise<unknown>[] = []): Promise<void> {
  return new Promise((resolve) => {
    const done = (): void => {
      clearTimeout(t)
      forget()
      resolve()
    }
    const t = setTimeout(done, ms)
    const forget = onAbort(signal, done)
    for (const w of wakers) void w.then(done, done)
  })
}

export interface Deferred<T> {
  promise: Promise<T>
  resolve: (v: T) => void
  reject: (e: unknown) => void
}

export function deferred<T>(): Deferred<T> {
  let resolve!: (v: T) => void
  let reject!: (e: unknown) => void
  const promise = new Promise<T>((res, rej) => {
    resolve = res
    reject = rej
  })
  return { promise, resolve, reject }
}

/** The instance (swarm, epoch of its round, round, sender). */
export function instanceOf(ctx: Pick<BroadcastContext, 'swarmId' | 'epochs'>, round: number, sender: string): Instance {
  return { swarmId: ctx.swarmId, epoch: ctx.epochs.at(round).epoch, round, sender }
}

export function finalFrame(cert: Certificate): Frame {
  return { type: 'FINAL', swarmId: cert.swarmId, epoch: cert.epoch, round: cert.round, sender: cert.sender, hash: cert.hash, certificate: cert.signatures }
}

/**
 * How a FINAL this member sends on a push stream or the gossip topic is encoded: with signer
 * indices into the member list of its epoch when that epoch is the one its round belongs to here
 * (its receivers, members of that epoch, resolve them against the same list), else with PeerIds.
 * FETCH and QUERY replies keep PeerIds: a member that joined with a later epoch may ask for rounds
 * of an earlier epoch, whose member list it does not hold.
 */
export function finalEncoding(epochs: EpochTable, cert: Certificate): EncodeOptions {
  const e = epochs.at(cert.round)
  return e.epoch === cert.epoch ? { memberIndex: e.index } : {}
}

export interface ReaderOptions {
  expect: readonly string[]
  charge?: boolean
  finalPayload?: boolean
  onMeta?: (frame: Frame) => void
  onBytes?: (n: number) => void
  onFrame?: () => void
  idleMs?: number
}

export interface StreamsOptions {
  node: Libp2p
  protocol: string
  budget: Budget
  counters: Counters
  metrics?: { bytesSent: Counter; bytesReceived: Counter }
  maxPayloadBytes: number
  minBytesPerSecond: number
  requestTimeoutMs: number
  /** aborted on stop */
  signal: AbortSignal
}

/**
 * PeerIds of member id strings, parsed once (a member dials every other member each round;
 * parsing the base58 id again was ≈ 1 % of an in-process round's CPU)
 */
const peerIds = new Map<string, PeerId>()
function peerIdOf(peer: string): PeerId {
  let id = peerIds.get(peer)
  if (id === undefined) {
    id = peerIdFromString(peer)
    if (peerIds.size >= 4096) peerIds.clear()
    peerIds.set(peer, id)
  }
  return id
}

/** The streams of the broadcast: dialled, read, written and counted here; aborted on stop. */
export class Streams {
  private readonly o: StreamsOptions
  private readonly open = new Set<Stream>()

  constructor(o: StreamsOptions) {
    this.o = o
  }

  /** Opens a stream of the protocol to `peer`, aborted on stop until `forget`. */
  async dial(peer: string, signal: AbortSignal): Promise<Stream> {
    // a peer banned or cut off here is refused both ways: no dial (it would queue in libp2p's
    // dialer before the gater refused it — a sender's retries to a cut-off member, every round)
    if (isBanned(this.o.node, peer)) throw new Error(`peer ${peer} is banned or cut off here`)
    const stream = await this.o.node.dialProtocol(peerIdOf(peer), this.o.protocol, { signal })
    this.open.add(stream)
    return stream
  }

  /** An inbound stream: aborted on stop until `forget`. */
  adopt(stream: Stream): void {
    this.open.add(stream)
  }

  forget(stream: Stream): void {
    this.open.delete(stream)
  }

  abortAll(err: Error): void {
    for (const s of this.open) s.abort(err)
  }

  /** Whether we hold an open connection to `peer`. */
  connected(peer: string): boolean {
    return this.o.node.getConnections().some((c) => c.remotePeer.toString() === peer)
  }

  /** Connected peers first, then the others (dialled on demand). */
  ordered(peers: string[]): string[] {
    const connected = new Set(this.o.node.getConnections().map((c) => c.remotePeer.toString()))
    return [...peers.filter((p) => connected.has(p)), ...peers.filter((p) => !connected.has(p))]
  }

  /**
   * A frame reader charging every payload to `peer`'s budget from its header on, refusing frame
   * types not expected on this stream from the header (so an unsolicited payload is never read),
   * and cutting frames that arrive slower than `minBytesPerSecond`.
   */
  reader(stream: Stream, peer: string, o: ReaderOptions): FrameReader {
    const expect = new Set(o.expect)
    return new FrameReader(stream, {
      maxPayloadBytes: this.o.maxPayloadBytes,
      minBytesPerSecond: this.o.minBytesPerSecond,
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
        return h.payloadLength > 0 && o.charge === true ? this.o.budget.reserve(peer, h.payloadLength) : undefined
      },
      ...(o.onMeta !== undefined ? { onMeta: o.onMeta } : {}),
    })
  }

  /** Writes a frame's parts and counts them. */
  async write(stream: Stream, parts: Uint8Array[], signal: AbortSignal): Promise<void> {
    this.countSent(await writeParts(stream, parts, { signal }))
  }

  /** Writes a last frame and closes the stream (within requestTimeoutMs); aborts it on failure. True once written and closed. */
  async writeAndClose(stream: Stream, parts: Uint8Array[]): Promise<boolean> {
    const signal = AbortSignal.any([this.o.signal, AbortSignal.timeout(this.o.requestTimeoutMs)])
    try {
      this.countSent(await writeParts(stream, parts, { signal }))
      await stream.close({ signal })
      return true
    } catch (err) {
      stream.abort(err instanceof Error ? err : new Error(String(err)))
      return false
    } finally {
      this.open.delete(stream)
    }
  }

  countSent(n: number): void {
    this.o.counters.bytesSent += n
    this.o.metrics?.bytesSent.inc(n)
  }

  countReceived(n: number): void {
    this.o.counters.bytesReceived += n
    this.o.metrics?.bytesReceived.inc(n)
  }
}
