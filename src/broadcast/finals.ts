/**
 * Certified FINALs, whichever way they arrive — on a stream, on the FINAL gossip topic, in
 * answer to a QUERY or a FETCH: the certificate checks (against the epoch of its round, cached
 * once verified), progress evidence, and the delivery (or a PULL) they lead to. Also the gossip
 * validator of the FINAL topic.
 */
import { TopicValidatorResult } from '@libp2p/gossipsub'
import { type Certificate, verifyCertificate } from './certificate.ts'
import type { BroadcastContext } from './context.ts'
import { bytesEqual, checkedPayload } from './crypto.ts'
import { BroadcastRejectError, type RejectReason } from './errors.ts'
import type { InstanceState } from './instance-store.ts'
import { decodeFrame, type Frame, MAX_STRING_BYTES, resolveSigners, SIG_BYTES } from './wire.ts'

export type FinalFrame = Extract<Frame, { type: 'FINAL' }>

export type FinalsContext = Pick<BroadcastContext, 'peerId' | 'swarmId' | 'log' | 'epochs' | 'store' | 'certs' | 'counters' | 'streams' | 'reject'>

/** What the FINAL intake needs of recovery: fetching the payload of a certified instance. */
export interface PullStarter {
  startPull(inst: InstanceState): void
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
function decodeFinal(data: Uint8Array): FinalFrame {
  const frame = decodeFrame(data, { maxPayloadBytes: 0 })
  if (frame.type !== 'FINAL') throw new BroadcastRejectError('malformed', `${frame.type} frame on the FINAL topic`)
  return frame
}

export class Finals {
  private readonly ctx: FinalsContext
  private readonly recovery: PullStarter

  constructor(ctx: FinalsContext, recovery: PullStarter) {
    this.ctx = ctx
    this.recovery = recovery
  }

  /** A FINAL from `peer` (with a payload only in a FETCH reply); throws BroadcastRejectError. */
  onFinal(peer: string, frame: FinalFrame): void {
    const { store, epochs } = this.ctx
    let f = frame
    if (f.signerIndices !== undefined) {
      // signers named by index into the member list of the epoch the FINAL names: resolved only
      // against that very list (another epoch here: not judged, as for any FINAL below)
      const e = epochs.at(f.round)
      if (f.epoch !== e.epoch) throw new BroadcastRejectError('wrong-epoch', `round ${f.round} belongs to epoch ${e.epoch} here, the FINAL (signers by index) names epoch ${f.epoch}`)
      f = resolveSigners(f, e.membership.members)
    }
    if (!epochs.at(f.round).members.has(f.sender)) throw new BroadcastRejectError('non-member', `FINAL for non-member sender ${f.sender}`)
    const ref = store.windowRef()
    if (f.round < store.floor || f.round < ref - store.W) throw new BroadcastRejectError('out-of-window', `FINAL of round ${f.round} is older than the window (${ref}, W=${store.W}, floor ${store.floor})`)
    epochs.check(f)
    const cert: Certificate = { swarmId: f.swarmId, epoch: f.epoch, round: f.round, sender: f.sender, hash: f.hash, signatures: f.certificate }
    const existing = store.get(f.sender, f.round)
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
    const kept = this.checkCertificate(cert)
    if (existing?.certificate !== undefined) {
      // two certified hashes for one instance cannot exist while at most f members are Byzantine
      this.ctx.log.error('conflicting certificates: the fault bound is violated', { sender: f.sender, round: f.round })
      throw new BroadcastRejectError('equivocation', `a second certified hash for ${f.sender} round ${f.round}`)
    }
    store.noteCertified(f.sender, f.round)
    // beyond the window: evidence of progress only (kept per sender), nothing stored
    if (!store.inWindow(f.round)) return
    const inst = store.getOrCreate(f.sender, f.round, f.epoch)
    inst.certificate = kept
    if (f.payload !== undefined) this.acceptPayload(inst, peer, f.payload)
    else if (inst.payload !== undefined && inst.payloadHash !== undefined && bytesEqual(inst.payloadHash, f.hash)) store.deliverIfReady(inst, kept)
    else if (!inst.receivingSend) this.recovery.startPull(inst)
  }

  /** A payload for a certified instance (PULL or FETCH reply): checked against the certified hash, delivered. */
  acceptPayload(inst: InstanceState, peer: string, payload: Uint8Array): void {
    const cert = inst.certificate!
    const checked = checkedPayload(payload, cert.hash)
    if (checked === undefined) throw new BroadcastRejectError('hash-mismatch', `payload for ${inst.sender} round ${inst.round} does not match the certified hash`)
    this.ctx.store.holdPayload(inst, peer, checked, cert.hash)
    this.ctx.store.deliverIfReady(inst, cert)
  }

  /**
   * Checks `cert` (once per member: `certs`); returns the certificate to keep — `cert` with the
   * process's own copy of its entries (see `verifyCertificate`) instead of the ones decoded here.
   */
  private checkCertificate(cert: Certificate): Certificate {
    if (this.ctx.certs.has(cert)) return cert
    const inst = this.ctx.store.get(cert.sender, cert.round)
    let checked = 0
    const e = this.ctx.epochs.at(cert.round)
    const signatures = verifyCertificate(cert, e.membership, {
      // the certificate names the epoch whose quorum we know: a short one is forged
      blameShort: cert.epoch === e.epoch,
      // our own echo signature is deterministic: equal bytes are valid without a verification
      trusted: (e) => {
        const mine = e.signer === this.ctx.peerId && inst?.echoSignature !== undefined && inst.sendHash !== undefined && bytesEqual(inst.sendHash, cert.hash) && bytesEqual(inst.echoSignature, e.signature)
        if (!mine) checked++
        return mine
      },
    })
    this.ctx.counters.signaturesVerified += checked
    const kept = { ...cert, signatures }
    this.ctx.certs.add(kept)
    return kept
  }

  /**
   * gossipsub's validator of the FINAL topic. `peer` is the member that forwarded the message:
   * honest members forward only what they accepted, and the topic names the swarm and the wire
   * version, so a message too large for a FINAL, one that does not decode, or one of another
   * version or swarm is junk from `peer` itself — REJECTed and penalised (gossipsub scores it,
   * and enough of them ban it). A FINAL this member cannot judge yet (another epoch, outside the
   * window, a sender it does not know) is IGNOREd.
   */
  validateFinalMessage(peer: string, data: Uint8Array): TopicValidatorResult {
    this.ctx.streams.countReceived(data.length)
    try {
      const bound = finalGossipBytes(this.ctx.epochs.largest())
      if (data.length > bound) throw new BroadcastRejectError('oversized', `${data.length} bytes on the FINAL topic, a FINAL takes at most ${bound}`)
      let frame: FinalFrame
      try {
        frame = decodeFinal(data)
        if (frame.swarmId !== this.ctx.swarmId) throw new BroadcastRejectError('wrong-swarm', `FINAL for swarm ${frame.swarmId}`)
      } catch (err) {
        if (err instanceof BroadcastRejectError) throw new BroadcastRejectError(err.reason, `${err.message.slice(err.reason.length + 2)} (on the FINAL topic of this swarm and version)`, true)
        throw err
      }
      this.onFinal(peer, frame)
      return TopicValidatorResult.Accept
    } catch (err) {
      const r = this.ctx.reject(peer, err, { conclusive: CONCLUSIVE_ON_GOSSIP.has(err instanceof BroadcastRejectError ? err.reason : 'malformed'), relayed: true })
      return r.penalise ? TopicValidatorResult.Reject : TopicValidatorResult.Ignore
    }
  }
}
