/**
 * The receiver side of the echo broadcast: streams other members open to us. Each frame is
 * checked from its header and meta on (a SEND before its payload arrives), then handled
 * (`handleFrame`): a SEND is echoed if it is the first valid one of its instance (journalled
 * before the echo leaves), a different one is equivocation (evidence kept); a FINAL goes to the
 * FINAL intake (finals.ts); PULL, QUERY and FETCH of other members are served from the store, at
 * a bounded rate per peer.
 */
import type { Stream } from '@libp2p/interface'
import type { BroadcastContext } from './context.ts'
import { finalFrame, instanceOf } from './context.ts'
import { bytesEqual, checkedPayload, hashPayload, sign, statement, toHex, verify } from './crypto.ts'
import { BroadcastRejectError } from './errors.ts'
import type { FinalFrame } from './finals.ts'
import type { InstanceState } from './instance-store.ts'
import type { TokenBuckets } from './limits.ts'
import type { EquivocationEvidence } from './types.ts'
import { encodeFrameParts, type Frame } from './wire.ts'

/**
 * An honest sender pushes its SEND to a member again only when the transfer failed before the
 * echo came back (it stops once it holds the echo or the certificate). Repeats beyond this many,
 * after the instance was echoed, are refused from the header (never read), as `rate-limited`:
 * a member re-sending valid SENDs over and over costs every member its bandwidth, and a flood of
 * such refusals ends in a ban.
 */
export const MAX_SEND_REPEATS = 4

/** Frame types a member may open a stream with (the others only answer a request of ours). */
const REQUEST_TYPES = new Set(['SEND', 'FINAL', 'PULL', 'QUERY', 'FETCH'])

type SendFrame = Extract<Frame, { type: 'SEND' }>

export type ReceiverContext = Pick<
  BroadcastContext,
  'peerId' | 'swarmId' | 'seed' | 'timing' | 'epochs' | 'store' | 'counters' | 'streams' | 'signal' | 'stopped' | 'reject'
>

export interface ReceiverOptions {
  /** serving PULL and FETCH: payloads per peer */
  serving: TokenBuckets
  /** the FINAL intake */
  finals: { onFinal(peer: string, f: FinalFrame): void }
  /** recovery: a payload to pull, a certificate to watch for */
  recovery: { startPull(inst: InstanceState): void; watchCertificate(inst: InstanceState): void }
  /** reports equivocation evidence (event 'equivocation') */
  onEquivocation: (ev: EquivocationEvidence) => void
}

export class Receiver {
  private readonly ctx: ReceiverContext
  private readonly o: ReceiverOptions
  private readonly evidenceLog: EquivocationEvidence[] = []

  constructor(ctx: ReceiverContext, o: ReceiverOptions) {
    this.ctx = ctx
    this.o = o
  }

  /** Equivocation evidence collected so far (at most 1024). */
  evidence(): EquivocationEvidence[] {
    return [...this.evidenceLog]
  }

  async onInboundStream(stream: Stream, peer: string): Promise<void> {
    const { streams, store } = this.ctx
    streams.adopt(stream)
    let receiving: InstanceState | undefined
    const done = (): void => {
      if (receiving !== undefined) this.afterSend(receiving)
      receiving = undefined
    }
    try {
      if (!this.ctx.epochs.knownPeer(peer)) throw new BroadcastRejectError('non-member', `stream from non-member ${peer}`)
      const reader = streams.reader(stream, peer, {
        expect: [...REQUEST_TYPES],
        charge: true,
        idleMs: this.ctx.timing.requestTimeoutMs,
        // cheap checks on a SEND's meta, before its payload is buffered
        onMeta: (frame) => {
          if (frame.type !== 'SEND') return
          this.precheckSend(peer, frame)
          const inst = store.getOrCreate(frame.sender, frame.round, frame.epoch)
          if (inst.sendHash === undefined) {
            inst.receivingSend = true
            receiving = inst
          } else if (bytesEqual(inst.sendHash, frame.hash) && ++inst.sendRepeats > MAX_SEND_REPEATS) {
            throw new BroadcastRejectError('rate-limited', `SEND of ${frame.sender} round ${frame.round} read ${inst.sendRepeats} times after its echo`)
          }
        },
      })
      const signal = this.ctx.signal
      while (!this.ctx.stopped()) {
        const res = await reader.next({ signal })
        if (res === null) break
        let replies: Frame[]
        try {
          replies = this.handleFrame(peer, res.frame)
        } catch (err) {
          if (!(err instanceof BroadcastRejectError)) throw err
          // a whole frame was read and refused: say so (END) and close cleanly, so the sender
          // knows it was an answer and not a transport failure worth retrying
          this.ctx.reject(peer, err)
          await streams.write(stream, encodeFrameParts({ type: 'END' }), signal)
          break
        } finally {
          done()
        }
        for (const r of replies) {
          await streams.write(stream, encodeFrameParts(r), signal)
          if (r.type === 'PAYLOAD' || (r.type === 'FINAL' && r.payload !== undefined)) {
            this.ctx.counters.payloadsServed++
            if (r.type === 'FINAL') this.ctx.counters.payloadsServedToFetch++
          }
        }
      }
      await stream.close({ signal: AbortSignal.any([signal, AbortSignal.timeout(this.ctx.timing.requestTimeoutMs)]) })
    } catch (err) {
      done()
      if (err instanceof BroadcastRejectError) this.ctx.reject(peer, err)
      stream.abort(err instanceof Error ? err : new Error(String(err)))
    } finally {
      streams.forget(stream)
    }
  }

  /** Core state machine, transport-free: returns the frames to write back. */
  handleFrame(peer: string, frame: Frame): Frame[] {
    const { store, swarmId } = this.ctx
    if (frame.type === 'END' || frame.type === 'ECHO' || frame.type === 'PAYLOAD') {
      throw new BroadcastRejectError('malformed', `unsolicited ${frame.type} frame`)
    }
    if (frame.swarmId !== swarmId) throw new BroadcastRejectError('wrong-swarm', `frame for swarm ${frame.swarmId}, this is ${swarmId}`)
    switch (frame.type) {
      case 'SEND':
        return this.onSend(peer, frame)
      case 'FINAL':
        if (frame.payload !== undefined) throw new BroadcastRejectError('malformed', 'a FINAL with a payload answers a FETCH only')
        this.o.finals.onFinal(peer, frame)
        return []
      case 'PULL': {
        const inst = store.get(frame.sender, frame.round)
        if (inst?.payload !== undefined && inst.payloadHash !== undefined && bytesEqual(inst.payloadHash, frame.hash) && inst.epoch === frame.epoch) {
          if (this.o.serving.available(peer) < 1) {
            this.ctx.reject(peer, new BroadcastRejectError('rate-limited', `PULL above the serving rate of ${peer}`))
            return [{ type: 'END' }]
          }
          this.o.serving.take(peer, 1)
          return [{ type: 'PAYLOAD', ...instanceOf(this.ctx, inst.round, inst.sender), hash: inst.payloadHash, payload: inst.payload }]
        }
        return [{ type: 'END' }]
      }
      case 'QUERY': {
        const cert = store.get(frame.sender, frame.round)?.certificate
        return cert !== undefined ? [finalFrame(cert)] : [{ type: 'END' }]
      }
      case 'FETCH': {
        // served at a bounded rate per peer (payloads per second): a ~100-byte request cannot
        // make us send n payloads at any rate
        const tokens = Math.floor(this.o.serving.available(peer))
        const have = new Set(frame.have)
        const missing = store.delivered(frame.round).filter((d) => !have.has(d.sender))
        const served = missing.slice(0, Math.max(0, tokens))
        if (served.length < missing.length) this.ctx.reject(peer, new BroadcastRejectError('rate-limited', `FETCH(${frame.round}) of ${peer}: ${served.length} of ${missing.length} payloads served`))
        this.o.serving.take(peer, served.length + 0.25)
        const out: Frame[] = served.map((d) => ({ ...finalFrame(d.certificate), payload: d.payload }))
        out.push({ type: 'END' })
        return out
      }
    }
  }

  /** Checks of a SEND that need no payload (also run on the meta, before the payload arrives). */
  private precheckSend(peer: string, f: SendFrame): void {
    const { store, swarmId } = this.ctx
    if (f.swarmId !== swarmId) throw new BroadcastRejectError('wrong-swarm', `frame for swarm ${f.swarmId}, this is ${swarmId}`)
    if (f.sender !== peer) throw new BroadcastRejectError('malformed', `SEND of ${f.sender} relayed by ${peer}; senders push their own SENDs`)
    if (f.sender === this.ctx.peerId) throw new BroadcastRejectError('malformed', 'SEND claiming to be ours')
    if (!store.inWindow(f.round)) throw new BroadcastRejectError('out-of-window', `round ${f.round} outside the window around ${store.windowRef()} (W=${store.W}, floor ${store.floor})`)
    if (!this.ctx.epochs.at(f.round).members.has(f.sender)) throw new BroadcastRejectError('non-member', `SEND for non-member sender ${f.sender}`)
    this.ctx.epochs.check(f)
  }

  private onSend(peer: string, f: SendFrame): Frame[] {
    const { store, seed } = this.ctx
    this.precheckSend(peer, f)
    const existing = store.get(f.sender, f.round)
    const before = store.rememberedHash(f.sender, f.round)
    const firstHash = existing?.sendHash ?? before?.hash
    if (firstHash !== undefined) {
      if (bytesEqual(firstHash, f.hash)) {
        // the same SEND again (the sender retried, or we restarted): the same echo, never a
        // different one — but only for the very same SEND (cheap byte comparisons first)
        if (existing?.sendSignature === undefined || !bytesEqual(f.signature, existing.sendSignature)) this.verifySend(f)
        const inst = existing ?? store.getOrCreate(f.sender, f.round, f.epoch)
        const held = inst.payload !== undefined && inst.payloadHash !== undefined && bytesEqual(inst.payloadHash, f.hash)
        const payload = held ? (bytesEqual(inst.payload!, f.payload) ? inst.payload : undefined) : checkedPayload(f.payload, f.hash)
        if (payload === undefined) {
          throw new BroadcastRejectError('hash-mismatch', `repeated SEND of ${f.sender} round ${f.round} carries another payload`)
        }
        if (inst.sendHash === undefined) {
          inst.sendHash = f.hash
          inst.sendSignature = f.signature
          inst.echoSignature = sign(seed, statement('ECHO', f, f.hash))
        }
        if (!held) store.holdPayload(inst, peer, payload, f.hash)
        return [this.echoFrame(inst)]
      }
      this.verifySend(f)
      this.recordEquivocation(existing, f, firstHash)
      throw new BroadcastRejectError('equivocation', `${f.sender} sent two different SENDs for round ${f.round}`)
    }
    this.verifySend(f)
    const payload = checkedPayload(f.payload, f.hash)
    if (payload === undefined) throw new BroadcastRejectError('hash-mismatch', `SEND payload hashes to ${toHex(hashPayload(f.payload)).slice(0, 16)}…, declared ${toHex(f.hash).slice(0, 16)}…`)
    const inst = store.getOrCreate(f.sender, f.round, f.epoch)
    // remembered before the echo leaves: after a restart we never echo another hash here
    store.recordEcho({ epoch: f.epoch, round: f.round, sender: f.sender, hash: f.hash })
    inst.sendHash = f.hash
    inst.sendSignature = f.signature
    inst.echoSignature = sign(seed, statement('ECHO', f, f.hash))
    if (inst.payload === undefined && (inst.certificate === undefined || bytesEqual(inst.certificate.hash, f.hash))) store.holdPayload(inst, peer, payload, f.hash)
    if (inst.certificate !== undefined) store.deliverIfReady(inst, inst.certificate)
    else this.o.recovery.watchCertificate(inst)
    return [this.echoFrame(inst)]
  }

  private verifySend(f: SendFrame): void {
    this.ctx.counters.signaturesVerified++
    if (!verify(f.sender, statement('SEND', f, f.hash), f.signature)) throw new BroadcastRejectError('bad-signature', `invalid SEND signature of ${f.sender}`)
  }

  private echoFrame(inst: InstanceState): Frame {
    return { type: 'ECHO', ...instanceOf(this.ctx, inst.round, inst.sender), hash: inst.sendHash!, signer: this.ctx.peerId, signature: inst.echoSignature! }
  }

  private afterSend(inst: InstanceState): void {
    inst.receivingSend = false
    if (inst.certificate !== undefined && inst.delivered === undefined) this.o.recovery.startPull(inst)
  }

  private recordEquivocation(inst: InstanceState | undefined, f: SendFrame, firstHash: Uint8Array): void {
    this.ctx.counters.equivocations++
    if (inst?.equivocationSeen === true) return
    if (inst !== undefined) inst.equivocationSeen = true
    const ev: EquivocationEvidence = {
      swarmId: this.ctx.swarmId,
      epoch: f.epoch,
      round: f.round,
      sender: f.sender,
      first: { hash: firstHash, ...(inst?.sendSignature !== undefined ? { signature: inst.sendSignature } : {}) },
      second: { hash: f.hash, signature: f.signature },
    }
    if (this.evidenceLog.length < 1024) this.evidenceLog.push(ev)
    this.o.onEquivocation(ev)
  }
}
