/**
 * Recovery of what a member missed, each on a new stream it opens:
 * - PULL: the payload of an instance it holds a certificate for, from the certificate's signers;
 * - QUERY: the certificate of an instance it echoed but saw no FINAL for after `finalQueryMs`
 *   (doubling), from the sender then two other members (`watchCertificate`);
 * - FETCH: the certified (FINAL, payload) pairs of a round, from members one by one (`fetchRound`).
 * What comes back goes through the FINAL intake (finals.ts), as any FINAL does.
 */
import type { Stream } from '@libp2p/interface'
import { AbortError } from '../errors.ts'
import { type BroadcastContext, instanceOf } from './context.ts'
import { bytesEqual } from './crypto.ts'
import { BroadcastRejectError } from './errors.ts'
import type { FinalFrame } from './finals.ts'
import type { InstanceState } from './instance-store.ts'
import type { Delivery, FetchOptions } from './types.ts'
import { encodeFrameParts } from './wire.ts'

/** Bytes of a fetch that count as progress even before its frame completes (a slow honest link). */
const FETCH_PROGRESS_BYTES = 64 * 1024

export type RecoveryContext = Pick<BroadcastContext, 'peerId' | 'swarmId' | 'timing' | 'log' | 'epochs' | 'store' | 'streams' | 'signal' | 'stopped' | 'track' | 'reject' | 'sleep'>

/** What recovery hands its answers to: the FINAL intake. */
export interface FinalSink {
  onFinal(peer: string, f: FinalFrame): void
  acceptPayload(inst: InstanceState, peer: string, payload: Uint8Array): void
}

export class Recovery {
  private readonly ctx: RecoveryContext
  private readonly finals: FinalSink
  /** where the next fetchRound with a `peers` bound starts in the round's member list */
  private fetchCursor = 0

  constructor(ctx: RecoveryContext, finals: FinalSink) {
    this.ctx = ctx
    this.finals = finals
  }

  /** Pulls the payload of a certified instance (once at a time). */
  startPull(inst: InstanceState): void {
    if (inst.pulling || this.ctx.stopped()) return
    inst.pulling = true
    this.ctx.track(
      this.pull(inst).finally(() => {
        inst.pulling = false
      }),
    )
  }

  private async pull(inst: InstanceState): Promise<void> {
    const { streams } = this.ctx
    const cert = inst.certificate!
    // the sender's push normally follows its certificate: give it time before fetching a second
    // copy — unless a SEND of it already came (and was not the certified one: an equivocating
    // sender never pushes the other version to us)
    if (this.ctx.timing.pullGraceMs > 0 && inst.sendHash === undefined && !inst.receivingSend && inst.delivered === undefined && this.ctx.streams.connected(cert.sender)) await this.ctx.sleep(this.ctx.timing.pullGraceMs)
    const candidates = streams.ordered([...new Set([cert.sender, ...cert.signatures.map((e) => e.signer)])].filter((p) => p !== this.ctx.peerId))
    for (const peer of candidates) {
      if (this.ctx.stopped() || inst.delivered !== undefined || inst.receivingSend) return
      let stream: Stream | undefined
      try {
        const signal = AbortSignal.any([this.ctx.signal, AbortSignal.timeout(this.ctx.timing.requestTimeoutMs)])
        stream = await streams.dial(peer, signal)
        const reader = streams.reader(stream, peer, { expect: ['PAYLOAD', 'END'] })
        await streams.write(stream, encodeFrameParts({ type: 'PULL', ...instanceOf(this.ctx, inst.round, inst.sender), hash: cert.hash }), signal)
        const res = await reader.next({ signal })
        if (res !== null && res.frame.type === 'PAYLOAD') {
          const f = res.frame
          if (f.swarmId !== this.ctx.swarmId || f.round !== inst.round || f.sender !== inst.sender || !bytesEqual(f.hash, cert.hash)) {
            throw new BroadcastRejectError('malformed', 'PAYLOAD does not answer the PULL')
          }
          if (inst.delivered === undefined) this.finals.acceptPayload(inst, peer, f.payload)
        }
        await stream.close({ signal })
      } catch (err) {
        if (err instanceof BroadcastRejectError) this.ctx.reject(peer, err)
        stream?.abort(err instanceof Error ? err : new Error(String(err)))
      } finally {
        if (stream !== undefined) streams.forget(stream)
      }
      if (inst.delivered !== undefined) return
    }
  }

  /**
   * Recovery for a lost FINAL: an instance we echoed but that is still not certified after
   * `finalQueryMs` is QUERYed (backing off) from its sender, then from two other members.
   */
  watchCertificate(inst: InstanceState): void {
    if (this.ctx.stopped()) return
    const finalQueryMs = this.ctx.timing.finalQueryMs
    this.ctx.track(
      (async () => {
        let delay = finalQueryMs
        while (!this.ctx.stopped()) {
          await this.ctx.sleep(delay)
          delay = Math.min(2 * delay, 16 * finalQueryMs)
          if (this.ctx.stopped() || inst.certificate !== undefined || this.ctx.store.get(inst.sender, inst.round) !== inst) return
          const others = this.ctx.streams.ordered(this.ctx.epochs.at(inst.round).membership.members.filter((p) => p !== this.ctx.peerId && p !== inst.sender))
          for (const peer of [inst.sender, ...others.slice(0, 2)]) {
            if (inst.certificate !== undefined) return
            await this.query(peer, inst).catch((err: unknown) => this.ctx.log.debug('QUERY failed', { peer, round: inst.round, error: String(err) }))
          }
        }
      })(),
    )
  }

  private async query(peer: string, inst: InstanceState): Promise<void> {
    const { streams } = this.ctx
    const signal = AbortSignal.any([this.ctx.signal, AbortSignal.timeout(this.ctx.timing.requestTimeoutMs)])
    const stream = await streams.dial(peer, signal)
    try {
      const reader = streams.reader(stream, peer, { expect: ['FINAL', 'END'] })
      await streams.write(stream, encodeFrameParts({ type: 'QUERY', ...instanceOf(this.ctx, inst.round, inst.sender) }), signal)
      const res = await reader.next({ signal })
      if (res !== null && res.frame.type === 'FINAL') {
        const f = res.frame
        if (f.swarmId !== this.ctx.swarmId || f.round !== inst.round || f.sender !== inst.sender) throw new BroadcastRejectError('malformed', 'FINAL does not answer the QUERY')
        this.finals.onFinal(peer, f)
      }
      await stream.close({ signal })
    } catch (err) {
      if (err instanceof BroadcastRejectError) this.ctx.reject(peer, err)
      stream.abort(err instanceof Error ? err : new Error(String(err)))
    } finally {
      streams.forget(stream)
    }
  }

  /** `fetchRound` of the public API (the caller checked the round). */
  async fetchRound(round: number, opts: FetchOptions): Promise<Delivery[]> {
    const { store } = this.ctx
    const epoch = this.ctx.epochs.at(round)
    const others = epoch.membership.members.filter((p) => p !== this.ctx.peerId)
    // with a bound, the members after the last one asked come first (successive calls go round
    // all of them, and the first members are not asked by every fetching member every time)
    let peers = others
    if (opts.peers !== undefined && opts.peers < others.length) {
      const start = this.fetchCursor % others.length
      peers = [...others.slice(start), ...others.slice(0, start)].slice(0, opts.peers)
      this.fetchCursor = start + opts.peers
    }
    peers = this.ctx.streams.ordered(peers)
    const fetchIdleMs = this.ctx.timing.fetchIdleMs
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
    // (models on their way here are not asked for — see `have` below — but they are not counted
    // as held either: a Byzantine sender can keep its own SEND "on its way" for as long as it
    // likes, and it must not stand in for a model that only a fetch would bring)
    const complete = (): boolean => {
      const got = store.delivered(round)
      return got.filter((d) => d.sender !== this.ctx.peerId).length >= others.length || (opts.want !== undefined && got.length >= opts.want)
    }
    const quietFor = (now: number): number => Math.min(...[...running.values()].map((r) => now - r.last))
    try {
      while (!this.ctx.stopped() && !complete()) {
        opts.signal?.throwIfAborted()
        const now = performance.now()
        const active = running.size > 0 && quietFor(now) < fetchIdleMs
        if (!active && next < peers.length) {
          const peer = peers[next++]!
          // held, or on its way (a SEND being read, a PULL running): not asked for again — under a
          // saturated CPU (26 member processes on 2 cores) fetches sent most payloads twice
          const have = [...store.delivered(round).map((d) => d.sender), ...store.inFlight(round)]
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
              if (!signal.aborted) this.ctx.log.debug('fetch failed', { peer, round, error: String(err) })
            })
            .finally(() => running.delete(fetch))
          running.set(fetch, progress)
          continue
        }
        if (!active) break // every peer asked; none of those still open is making progress
        // wake when a fetch ends or when the most recent progress gets fetchIdleMs old
        const wait = Math.max(1, fetchIdleMs - quietFor(now))
        await this.ctx.sleep(wait, signal, [...running.keys()])
      }
    } finally {
      done.abort()
    }
    if (opts.signal?.aborted === true) throw new AbortError()
    return store.delivered(round)
  }

  private async fetchFrom(peer: string, round: number, have: string[], outer: AbortSignal, progress: { onBytes: (n: number) => void; onFrame: () => void }): Promise<void> {
    const { streams } = this.ctx
    const signal = AbortSignal.any([this.ctx.signal, AbortSignal.timeout(this.ctx.timing.requestTimeoutMs), outer])
    const stream = await streams.dial(peer, signal)
    try {
      const reader = streams.reader(stream, peer, { expect: ['FINAL', 'END'], finalPayload: true, ...progress })
      await streams.write(stream, encodeFrameParts({ type: 'FETCH', swarmId: this.ctx.swarmId, epoch: this.ctx.epochs.at(round).epoch, round, have }), signal)
      for (let k = 0; k <= this.ctx.epochs.at(round).members.size; k++) {
        const res = await reader.next({ signal })
        if (res === null || res.frame.type === 'END') break
        const f = res.frame
        try {
          if (f.type !== 'FINAL' || f.payload === undefined) throw new BroadcastRejectError('malformed', `expected certified FINAL in FETCH reply, got ${f.type}`)
          if (f.swarmId !== this.ctx.swarmId) throw new BroadcastRejectError('wrong-swarm', `FINAL for swarm ${f.swarmId}`)
          if (f.round !== round) throw new BroadcastRejectError('malformed', `FETCH(${round}) answered with round ${f.round}`)
          this.finals.onFinal(peer, f)
        } catch (err) {
          this.ctx.reject(peer, err)
        }
      }
      await stream.close({ signal })
    } catch (err) {
      if (err instanceof BroadcastRejectError) this.ctx.reject(peer, err)
      stream.abort(err instanceof Error ? err : new Error(String(err)))
      throw err
    } finally {
      streams.forget(stream)
    }
  }
}
