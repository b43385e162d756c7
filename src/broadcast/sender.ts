/**
 * The sender side of the echo broadcast: our own SENDs. `broadcast` signs the SEND and our own
 * echo, journals the SEND, and pushes it to every member on a stream of its own (`pushTo`,
 * retried with back-off until certified); each member's ECHO is checked (`onEcho`) and with Q of
 * them the certificate is made (`maybeCertify`), written as FINAL on every stream and, for
 * members a stream did not carry it to, published on the FINAL topic (`maybeGossip`).
 */
import type { Stream } from '@libp2p/interface'
import { AbortError } from '../errors.ts'
import type { Certificate } from './certificate.ts'
import { type BroadcastContext, type Deferred, deferred, finalEncoding, finalFrame, instanceOf } from './context.ts'
import { bytesEqual, ownPayload, sign, statement, verify } from './crypto.ts'
import { AlreadyBroadcastError, BroadcastRejectError, BroadcastStoppedError, RoundOutOfWindowError } from './errors.ts'
import { encodeFrame, encodeFrameParts, type Frame } from './wire.ts'

interface OwnSend {
  epoch: number
  round: number
  hash: Uint8Array
  payload: Uint8Array
  sendSignature: Uint8Array
  echoes: Map<string, Uint8Array>
  certificate?: Certificate
  certified: Deferred<Certificate>
  /** a push ended without writing FINAL on its stream (the member could not be reached, refused, …) */
  unreached: boolean
  /** the FINAL went out on the gossip topic */
  gossiped: boolean
  /** SEND and FINAL frames, encoded once for every member's stream (the payload is shared, not copied) */
  sendParts?: Uint8Array[]
  finalParts?: Uint8Array[]
}

export type SenderContext = Pick<
  BroadcastContext,
  'peerId' | 'swarmId' | 'seed' | 'timing' | 'log' | 'epochs' | 'store' | 'certs' | 'counters' | 'streams' | 'signal' | 'stopped' | 'track' | 'reject' | 'sleep'
>

export interface SenderOptions {
  /** how to publish a FINAL on the gossip topic (resolving to its recipients); undefined without pubsub */
  publisher: () => ((data: Uint8Array) => Promise<number>) | undefined
  /** when our FINAL also goes on the gossip topic (EchoBroadcastOptions.finalGossip) */
  finalGossip: 'unreached' | 'always'
}

export class Sender {
  private readonly ctx: SenderContext
  private readonly o: SenderOptions
  private readonly own = new Map<number, OwnSend>()
  /** Our SENDs not yet certified (rejected on stop so no task waits forever). */
  private readonly uncertified = new Set<OwnSend>()

  constructor(ctx: SenderContext, o: SenderOptions) {
    this.ctx = ctx
    this.o = o
  }

  /** Broadcasts our payload of `round` (checked by the caller); resolves once certified and delivered here. */
  async broadcast(round: number, payload: Uint8Array, opts: { signal?: AbortSignal; handOver?: boolean }): Promise<void> {
    const { store, peerId } = this.ctx
    if (this.own.has(round) || store.get(peerId, round)?.sendHash !== undefined) throw new AlreadyBroadcastError(round)
    // our copy (or the caller's, handed over), hashed here: what every member's stream carries (see ownPayload)
    const owned = ownPayload(payload, { copy: opts.handOver !== true })
    const hash = owned.hash
    payload = owned.payload
    const before = store.rememberedHash(peerId, round)
    // sent before a restart with another model: a second SEND would be equivocation
    if (before !== undefined && !bytesEqual(before.hash, hash)) throw new AlreadyBroadcastError(round)
    const own = this.prepareSend(round, payload, hash)
    if (before === undefined) store.recordSend({ epoch: own.epoch, round, sender: peerId, hash })
    this.own.set(round, own)
    store.noteOwnRound(round)
    // our own instance state: first SEND = ours, echo it ourselves
    const inst = store.getOrCreate(peerId, round, own.epoch)
    inst.sendHash = own.hash
    inst.sendSignature = own.sendSignature
    inst.echoSignature = own.echoes.get(peerId)
    inst.payload = payload
    inst.payloadHash = own.hash
    this.maybeCertify(own)
    for (const peer of this.ctx.epochs.at(round).membership.members) {
      if (peer !== peerId) this.ctx.track(this.pushTo(peer, own))
    }
    // the caller's signal lives as long as its run: its listener goes once the race is settled
    // (left there, one per round kept every round's certificate alive and the run slowed down
    // as the heap grew: 3.0 → 4.5–5 s per round over 40 rounds of paper-mnist-none in one process)
    const signal = opts.signal
    let onAbort: (() => void) | undefined
    const aborted = new Promise<never>((_, reject) => {
      if (signal === undefined) return
      onAbort = (): void => reject(new AbortError())
      if (signal.aborted) onAbort()
      else signal.addEventListener('abort', onAbort, { once: true })
    })
    aborted.catch(() => {})
    try {
      const cert = await Promise.race([own.certified.promise, aborted])
      store.deliverIfReady(inst, cert)
    } finally {
      if (onAbort !== undefined) signal?.removeEventListener('abort', onAbort)
    }
  }

  /** The store dropped rounds below `low`: forget our SENDs there, stop pushing those below the floor. */
  collect(low: number, floor: number): void {
    for (const round of this.own.keys()) if (round < low) this.own.delete(round)
    for (const own of this.uncertified) {
      if (own.round < floor) {
        // the engine moved on: stop pushing a SEND nobody will need
        this.uncertified.delete(own)
        own.certified.reject(new RoundOutOfWindowError(own.round, floor))
      }
    }
  }

  /** Stop: no broadcast waits for a certificate any more. */
  stop(): void {
    for (const own of this.uncertified) own.certified.reject(new BroadcastStoppedError())
    this.uncertified.clear()
  }

  private prepareSend(round: number, payload: Uint8Array, hash: Uint8Array): OwnSend {
    const inst = instanceOf(this.ctx, round, this.ctx.peerId)
    const own: OwnSend = {
      epoch: inst.epoch,
      round,
      hash,
      payload,
      sendSignature: sign(this.ctx.seed, statement('SEND', inst, hash)),
      echoes: new Map([[this.ctx.peerId, sign(this.ctx.seed, statement('ECHO', inst, hash))]]),
      certified: deferred<Certificate>(),
      unreached: false,
      gossiped: false,
    }
    own.certified.promise.catch(() => {})
    this.uncertified.add(own)
    return own
  }

  private maybeCertify(own: OwnSend): void {
    const { store, peerId } = this.ctx
    const q = this.ctx.epochs.at(own.round).q
    if (own.certificate !== undefined || own.echoes.size < q) return
    const signatures = [...own.echoes].slice(0, q).map(([signer, signature]) => ({ signer, signature }))
    const cert: Certificate = { swarmId: this.ctx.swarmId, epoch: own.epoch, round: own.round, sender: peerId, hash: own.hash, signatures }
    own.certificate = cert
    this.ctx.certs.add(cert)
    store.noteCertified(peerId, own.round)
    const inst = store.getOrCreate(peerId, own.round, own.epoch)
    inst.certificate = cert
    store.deliverIfReady(inst, cert)
    this.maybeGossip(own)
    this.uncertified.delete(own)
    own.certified.resolve(cert)
  }

  /**
   * Our FINAL goes on the gossip topic only for members our streams did not carry it to: gossip
   * relays it to members we cannot reach directly. Published to everyone as well, it cost 62 % of
   * a round at n = 50 in one process (bench:scale, 4.66 → 1.77 s per round without it) and made
   * members that heard the FINAL before the SEND pull payloads twice. `finalGossip: 'always'`
   * publishes every FINAL (the behaviour before).
   */
  private maybeGossip(own: OwnSend): void {
    if (own.certificate === undefined || own.gossiped || (this.o.finalGossip !== 'always' && !own.unreached)) return
    own.gossiped = true
    this.ctx.track(this.publishFinal(own.certificate))
  }

  /**
   * Pushes our SEND to one member over a fresh stream, takes its ECHO, then writes FINAL once
   * the certificate exists. A member we cannot reach is retried (backing off) until certified.
   * A push that ends without writing FINAL marks the instance unreached (see `maybeGossip`).
   */
  private async pushTo(peer: string, own: OwnSend): Promise<void> {
    if (await this.pushOnce(peer, own)) return
    own.unreached = true
    this.maybeGossip(own)
  }

  /** `pushTo`'s work; true once FINAL was written on the member's stream. */
  private async pushOnce(peer: string, own: OwnSend): Promise<boolean> {
    const { streams, store } = this.ctx
    own.sendParts ??= encodeFrameParts({
      type: 'SEND',
      swarmId: this.ctx.swarmId,
      epoch: own.epoch,
      round: own.round,
      sender: this.ctx.peerId,
      hash: own.hash,
      signature: own.sendSignature,
      payload: own.payload,
    })
    const signal = this.ctx.signal
    const retryIntervalMs = this.ctx.timing.retryIntervalMs
    let delay = retryIntervalMs
    let written = false
    for (let attempt = 0; !this.ctx.stopped(); attempt++) {
      if (attempt > 0) {
        // the member could not be reached or the transfer failed: retry (backing off) until certified
        if (own.certificate !== undefined || own.round < store.floor) return false
        await this.ctx.sleep(delay)
        delay = Math.min(2 * delay, 16 * retryIntervalMs)
        if (this.ctx.stopped() || own.certificate !== undefined) return false
      }
      let stream: Stream
      try {
        stream = await streams.dial(peer, signal)
      } catch (err) {
        this.ctx.log.debug('could not open a stream to member', { peer, round: own.round, attempt, error: String(err) })
        continue
      }
      try {
        const reader = streams.reader(stream, peer, { expect: ['ECHO', 'END'] })
        await streams.write(stream, own.sendParts, signal)
        // written again: an earlier attempt wrote it whole (a failed dial writes nothing)
        if (written) this.ctx.counters.sendsRepeated++
        written = true
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
        own.finalParts ??= encodeFrameParts(finalFrame(cert), finalEncoding(this.ctx.epochs, cert))
        // a FINAL that could not be written leaves the member to the gossip fallback
        return await streams.writeAndClose(stream, own.finalParts)
      } catch (err) {
        stream.abort(err instanceof Error ? err : new Error(String(err)))
        if (err instanceof BroadcastRejectError) {
          // a wrong answer is the peer's fault: report it, never resend to it
          this.ctx.reject(peer, err)
          return false
        }
        this.ctx.log.debug('SEND transfer failed', { peer, round: own.round, attempt, error: String(err) })
      } finally {
        streams.forget(stream)
      }
    }
    return false
  }

  private onEcho(peer: string, own: OwnSend, frame: Frame): void {
    if (frame.type === 'END') return
    if (frame.type !== 'ECHO') throw new BroadcastRejectError('malformed', `expected ECHO in reply to SEND, got ${frame.type}`)
    if (frame.swarmId !== this.ctx.swarmId) throw new BroadcastRejectError('wrong-swarm', `ECHO for swarm ${frame.swarmId}`)
    if (frame.round !== own.round || frame.epoch !== own.epoch || frame.sender !== this.ctx.peerId || !bytesEqual(frame.hash, own.hash)) {
      throw new BroadcastRejectError('malformed', 'ECHO does not match the SEND it answers')
    }
    if (!this.ctx.epochs.at(frame.round).members.has(frame.signer)) throw new BroadcastRejectError('non-member', `ECHO signed by non-member ${frame.signer}`)
    if (frame.signer !== peer) throw new BroadcastRejectError('malformed', `ECHO on ${peer}'s stream signed by ${frame.signer}`)
    const before = own.echoes.get(frame.signer)
    if (before !== undefined) {
      // the same echo again (we re-sent the SEND after a broken stream) is benign
      if (bytesEqual(before, frame.signature)) return
      throw new BroadcastRejectError('duplicate-signer', `second ECHO from ${frame.signer}`)
    }
    if (own.certificate !== undefined) return
    this.ctx.counters.signaturesVerified++
    if (!verify(frame.signer, statement('ECHO', frame, own.hash), frame.signature)) {
      throw new BroadcastRejectError('bad-signature', `invalid ECHO signature from ${frame.signer}`)
    }
    own.echoes.set(frame.signer, frame.signature)
    this.maybeCertify(own)
  }

  private async publishFinal(cert: Certificate): Promise<void> {
    const publish = this.o.publisher()
    if (publish === undefined || this.ctx.stopped()) return
    const data = encodeFrame(finalFrame(cert), finalEncoding(this.ctx.epochs, cert))
    try {
      const recipients = await publish(data)
      this.ctx.streams.countSent(data.length * recipients)
    } catch (err) {
      this.ctx.log.debug('FINAL publish failed', { round: cert.round, error: String(err) })
    }
  }
}
