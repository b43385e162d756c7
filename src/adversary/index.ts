/**
 * The adversary toolkit: a member on real libp2p, holding a valid key, that crafts and sends
 * arbitrary frames of the signed echo broadcast — well-formed or not, signed or not, for any
 * round, instance or epoch, to any subset of members, at any rate — and may open streams and
 * stall them. Tests use it to attack honest members; the topology runner's equivocating role
 * uses `sendTo`. It registers no handler: it only dials.
 *
 * Everything here is built from the public wire format (src/broadcast/wire.ts) and the member's
 * own key; nothing reaches into an honest member's state.
 */
import type { Libp2p, PrivateKey, Stream } from '@libp2p/interface'
import { peerIdFromString } from '@libp2p/peer-id'
import { bytesEqual, hashPayload, sign, signingSeed, statement, verify } from '../broadcast/crypto.ts'
import { echoProtocol, finalTopic } from '../broadcast/echo-broadcast.ts'
import { FrameReader, writeParts } from '../broadcast/frame-stream.ts'
import { encodeFrame, encodeFrameParts, type Frame, type Instance, type SignatureEntry } from '../broadcast/wire.ts'
import type { Membership } from '../net/membership.ts'
import { quorum } from '../net/membership.ts'

export interface AdversaryOptions {
  node: Libp2p
  privateKey: PrivateKey
  membership: Membership
  /** epoch number signed in statements (default 0) */
  epoch?: number
}

export interface ExchangeOptions {
  /** write the bytes in chunks of this size, waiting `intervalMs` between chunks (trickle) */
  chunkBytes?: number
  intervalMs?: number
  /** frames to read back, then close (default: close our side at once, read until END or the stream closes) */
  replies?: number
  /** keep the stream open (no close) after writing; the caller aborts it */
  holdOpen?: boolean
  signal?: AbortSignal
}

export interface ExchangeResult {
  replies: Frame[]
  /** how the exchange ended: the remote answered END, closed, reset the stream, or we stopped */
  ended: 'end' | 'closed' | 'reset' | 'held'
  stream: Stream
  error?: string
}

export interface Adversary {
  readonly id: string
  readonly node: Libp2p
  readonly protocol: string
  readonly topic: string
  /** The instance fields for `round` (epoch as given or the default). */
  instance(round: number, epoch?: number): Instance
  /** A validly signed SEND of `payload` for `round`. */
  sendFrame(round: number, payload: Uint8Array, opts?: { epoch?: number; hash?: Uint8Array }): Extract<Frame, { type: 'SEND' }>
  /** This member's echo signature over (round, sender, hash). */
  echoSignature(round: number, sender: string, hash: Uint8Array, epoch?: number): SignatureEntry
  /** Opens a stream to `peer`, writes the frames (or raw bytes), reads the replies. */
  exchange(peer: string, frames: Array<Frame | Uint8Array>, opts?: ExchangeOptions): Promise<ExchangeResult>
  /**
   * SENDs `payload` for `round` to `peers` only and collects their echoes; with a quorum (its own
   * echo included, plus `extraEchoes` of colluders), returns the certificate's FINAL frame.
   */
  collect(peers: string[], round: number, payload: Uint8Array, opts?: { extraEchoes?: SignatureEntry[]; epoch?: number; signal?: AbortSignal }): Promise<{ echoes: SignatureEntry[]; final?: Extract<Frame, { type: 'FINAL' }> }>
  /** Publishes raw bytes on the swarm's FINAL topic (or another topic). */
  publish(data: Uint8Array, topic?: string): Promise<void>
  /**
   * Byzantine equivocation: SEND to `peers` only; if their echoes form a quorum, FINAL goes to
   * `finalTo` when given (withholding), else to `peers` and gossipsub.
   */
  sendTo(peers: string[], round: number, payload: Uint8Array, opts?: { finalTo?: string[] }): Promise<void>
}

export function createAdversary(opts: AdversaryOptions): Adversary {
  const { node, membership } = opts
  const seed = signingSeed(opts.privateKey)
  const id = node.peerId.toString()
  const protocol = echoProtocol(membership.swarmId)
  const topic = finalTopic(membership.swarmId)
  const q = quorum(membership.members.length, membership.f)
  const instance = (round: number, epoch = opts.epoch ?? 0): Instance => ({ swarmId: membership.swarmId, epoch, round, sender: id })

  const exchange = async (peer: string, frames: Array<Frame | Uint8Array>, o: ExchangeOptions = {}): Promise<ExchangeResult> => {
    const signal = o.signal ?? AbortSignal.timeout(60_000)
    const stream = await node.dialProtocol(peerIdFromString(peer), protocol, { signal })
    const reader = new FrameReader(stream, { maxPayloadBytes: 0xffff_ffff, frameBaseMs: 600_000 })
    const replies: Frame[] = []
    try {
      for (const f of frames) {
        const parts = f instanceof Uint8Array ? [f] : encodeFrameParts(f)
        for (const p of parts) {
          if (o.chunkBytes === undefined) await writeParts(stream, [p], { signal })
          else {
            for (let k = 0; k < p.byteLength; k += o.chunkBytes) {
              await writeParts(stream, [p.subarray(k, k + o.chunkBytes)], { signal })
              if (o.intervalMs !== undefined) await sleep(o.intervalMs, signal)
            }
          }
        }
      }
      if (o.holdOpen === true) return { replies, ended: 'held', stream }
      // half-close: the member reads the end of our frames, answers, and closes its side
      if (o.replies === undefined) await stream.close({ signal })
      for (;;) {
        if (o.replies !== undefined && replies.length >= o.replies) break
        const r = await reader.next({ signal })
        if (r === null) return { replies, ended: 'closed', stream }
        replies.push(r.frame)
        if (r.frame.type === 'END') return { replies, ended: 'end', stream }
      }
      await stream.close({ signal }).catch(() => {})
      return { replies, ended: 'closed', stream }
    } catch (err) {
      stream.abort(err instanceof Error ? err : new Error(String(err)))
      return { replies, ended: 'reset', stream, error: String(err) }
    }
  }

  const sendFrame = (round: number, payload: Uint8Array, o: { epoch?: number; hash?: Uint8Array } = {}): Extract<Frame, { type: 'SEND' }> => {
    const inst = instance(round, o.epoch)
    const hash = o.hash ?? hashPayload(payload)
    return { type: 'SEND', ...inst, hash, signature: sign(seed, statement('SEND', inst, hash)), payload }
  }

  const echoSignature = (round: number, sender: string, hash: Uint8Array, epoch = opts.epoch ?? 0): SignatureEntry => ({
    signer: id,
    signature: sign(seed, statement('ECHO', { swarmId: membership.swarmId, epoch, round, sender }, hash)),
  })

  const collect: Adversary['collect'] = async (peers, round, payload, o = {}) => {
    const send = sendFrame(round, payload, o.epoch !== undefined ? { epoch: o.epoch } : {})
    const results = await Promise.allSettled(peers.filter((p) => p !== id).map((p) => exchange(p, [send], { replies: 1, ...(o.signal !== undefined ? { signal: o.signal } : {}) })))
    const echoes: SignatureEntry[] = [echoSignature(round, id, send.hash, send.epoch), ...(o.extraEchoes ?? [])]
    for (const r of results) {
      if (r.status !== 'fulfilled') continue
      r.value.stream.abort(new Error('done'))
      const e = r.value.replies[0]
      if (e?.type !== 'ECHO' || !bytesEqual(e.hash, send.hash)) continue
      if (!verify(e.signer, statement('ECHO', send, send.hash), e.signature)) continue
      if (!echoes.some((x) => x.signer === e.signer)) echoes.push({ signer: e.signer, signature: e.signature })
    }
    if (echoes.length < q) return { echoes }
    return { echoes, final: { type: 'FINAL', ...instance(round, send.epoch), hash: send.hash, certificate: echoes.slice(0, q) } }
  }

  const publish = async (data: Uint8Array, t = topic): Promise<void> => {
    const pubsub = (node.services as { pubsub?: { publish(t: string, d: Uint8Array): Promise<unknown> } }).pubsub
    await pubsub?.publish(t, data)
  }

  return {
    id,
    node,
    protocol,
    topic,
    instance,
    sendFrame,
    echoSignature,
    exchange,
    collect,
    publish,
    async sendTo(peers, round, payload, o = {}) {
      const { final } = await collect(peers, round, payload)
      if (final === undefined) return
      const to = o.finalTo ?? peers
      await Promise.allSettled(to.filter((p) => p !== id).map((p) => exchange(p, [final], { replies: 0 })))
      if (o.finalTo === undefined) await publish(encodeFrame(final)).catch(() => {})
    },
  }
}

function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    const t = setTimeout(resolve, ms)
    signal?.addEventListener(
      'abort',
      () => {
        clearTimeout(t)
        reject(signal.reason)
      },
      { once: true },
    )
  })
}
