/**
 * The instance store of the echo broadcast: per-sender instance records, the deliveries, the
 * hashes remembered across restarts (the echo journal), and the window they live in — its floor,
 * its reference round and the progress evidence that moves it. Independent of libp2p.
 *
 * The rules that make an honest member echo at most one hash per instance, ever:
 * - a sender has at most `2W + 1` records (the window's width); a new instance beyond that is
 *   refused (`over-capacity`), never made room for by evicting one that may still be echoed;
 * - records are dropped only below `max(floor, ref − W)` (gc), a bound that only rises, so a round
 *   dropped here is refused for good;
 * - an instance delivers once; its payload's budget charge is released on delivery or drop, and
 *   deliveries below the floor are freed.
 */
import type { Certificate } from './certificate.ts'
import { bytesEqual } from './crypto.ts'
import { BroadcastRejectError } from './errors.ts'
import type { EchoJournal, JournalEntry } from './journal.ts'
import type { Budget } from './limits.ts'
import { ProgressEvidence } from './progress.ts'
import type { Delivery } from './types.ts'

export interface InstanceState {
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

/** What the store needs of the epochs: who counts as a sender of progress. */
export interface EpochView {
  knownPeer(peer: string): boolean
  newest(): { members: ReadonlySet<string>; membership: { f: number } }
}

export interface InstanceStoreOptions {
  swarmId: string
  /** W: SENDs are echoed for rounds in [ref − W, ref + W] */
  roundWindow: number
  /** per-peer payload budget: undelivered payloads stay charged to the peer that sent them */
  budget: Budget
  journal: EchoJournal
  epochs: EpochView
  /** an instance delivered (once), at a round ≥ the floor */
  onDeliver: (d: Delivery) => void
  /** gc ran: everything below `low` was dropped (`floor` ≤ `low`) */
  onCollect?: (low: number, floor: number) => void
}

type Remembered = Pick<JournalEntry, 'epoch' | 'round' | 'hash' | 'kind'>

export class InstanceStore {
  readonly W: number
  /** instances kept per sender: the window's width (so none is ever evicted while acceptable) */
  readonly cap: number
  private readonly o: InstanceStoreOptions
  private floorRound = 0
  /** newest round certified by f + 1 distinct senders (monotone) */
  private readonly progress = new ProgressEvidence()
  private newestOwn = -1
  private readonly instances = new Map<string, Map<number, InstanceState>>()
  private readonly deliveries = new Map<number, Map<string, Delivery>>()
  /** hashes echoed or sent before a restart, by `${sender}/${round}` (the journal) */
  private readonly remembered = new Map<string, Remembered>()

  constructor(o: InstanceStoreOptions) {
    this.o = o
    this.W = o.roundWindow
    this.cap = 2 * this.W + 1
    for (const e of o.journal.load()) this.remembered.set(`${e.sender}/${e.round}`, { epoch: e.epoch, round: e.round, hash: e.hash, kind: e.kind })
  }

  get floor(): number {
    return this.floorRound
  }

  /** The newest round certified by f + 1 distinct senders (−1 before that). */
  get certifiedRound(): number {
    return this.progress.round
  }

  /** Raises the floor (never lowers it) and drops what falls below; false if it did not rise. */
  setFloor(round: number): boolean {
    if (round <= this.floorRound) return false
    this.floorRound = round
    this.gc()
    return true
  }

  /** We broadcast `round`: our own progress moves the window's reference. */
  noteOwnRound(round: number): void {
    if (round <= this.newestOwn) return
    this.newestOwn = round
    this.gc()
  }

  /** The reference round of the window: never moved by f members alone. */
  windowRef(): number {
    return Math.max(this.floorRound, this.progress.round, this.newestOwn, 0)
  }

  inWindow(round: number): boolean {
    const ref = this.windowRef()
    return round >= this.floorRound && round >= ref - this.W && round <= ref + this.W
  }

  get(sender: string, round: number): InstanceState | undefined {
    return this.instances.get(sender)?.get(round)
  }

  /**
   * Gets or creates an instance. At most 2W + 1 per sender — the width of the window, so an
   * instance that can still be echoed is never evicted; a sender at its cap is refused.
   */
  getOrCreate(sender: string, round: number, epoch: number): InstanceState {
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
      // gc deletes a sender's map once it holds nothing: store the new record in the live one
      if (this.instances.get(sender) !== bySender) this.instances.set(sender, bySender)
    }
    inst = { epoch, round, sender, receivingSend: false, pulling: false, equivocationSeen: false, sendRepeats: 0 }
    bySender.set(round, inst)
    return inst
  }

  /** Instance records held per sender (each at most `cap`). */
  openCounts(): Map<string, number> {
    return new Map([...this.instances].map(([sender, bySender]) => [sender, bySender.size]))
  }

  /** The hash echoed or sent for (sender, round) before a restart, or since. */
  rememberedHash(sender: string, round: number): Remembered | undefined {
    return this.remembered.get(`${sender}/${round}`)
  }

  /** Journals our echo of a SEND (before it leaves) and remembers it. */
  recordEcho(e: Omit<JournalEntry, 'kind'>): void {
    this.o.journal.record({ kind: 'echo', ...e })
    this.remembered.set(`${e.sender}/${e.round}`, { epoch: e.epoch, round: e.round, hash: e.hash, kind: 'echo' })
  }

  /** Journals our own SEND (before it leaves). */
  recordSend(e: Omit<JournalEntry, 'kind'>): void {
    this.o.journal.record({ kind: 'send', ...e })
  }

  /** Keeps an undelivered payload, charged to the peer that sent it until delivery. */
  holdPayload(inst: InstanceState, peer: string, payload: Uint8Array, hash: Uint8Array): void {
    inst.release?.()
    inst.release = undefined
    inst.payload = payload
    inst.payloadHash = hash
    if (inst.delivered === undefined && payload.byteLength > 0) {
      try {
        inst.release = this.o.budget.reserve(peer, payload.byteLength)
      } catch {
        // charged from its header already (this frame's own reservation was just released)
        inst.release = undefined
      }
    }
  }

  /** Delivers `inst` once it holds a payload of the certificate's hash; at most once. */
  deliverIfReady(inst: InstanceState, cert: Certificate): void {
    if (inst.delivered !== undefined || inst.payload === undefined || inst.payloadHash === undefined) return
    if (!bytesEqual(inst.payloadHash, cert.hash)) return
    const d: Delivery = { swarmId: this.o.swarmId, epoch: inst.epoch, round: inst.round, sender: inst.sender, payload: inst.payload, hash: cert.hash, certificate: cert }
    inst.delivered = d
    inst.release?.()
    inst.release = undefined
    if (inst.round < this.floorRound) return
    let byRound = this.deliveries.get(inst.round)
    if (byRound === undefined) {
      byRound = new Map()
      this.deliveries.set(inst.round, byRound)
    }
    byRound.set(inst.sender, d)
    this.o.onDeliver(d)
  }

  /**
   * Senders of `round` whose payload is on its way here and not delivered yet: a SEND being read
   * or a PULL running. A FETCH asks for the others only (the copies still coming are not fetched
   * twice); should one of them fail, the next fetch asks for it.
   */
  inFlight(round: number): string[] {
    const out: string[] = []
    for (const [sender, byRound] of this.instances) {
      const inst = byRound.get(round)
      if (inst !== undefined && inst.delivered === undefined && (inst.receivingSend || inst.pulling)) out.push(sender)
    }
    return out
  }

  delivered(round: number): Delivery[] {
    return [...(this.deliveries.get(round)?.values() ?? [])]
  }

  /** Payload bytes of the deliveries held. */
  deliveredBytes(): number {
    let n = 0
    for (const byRound of this.deliveries.values()) for (const d of byRound.values()) n += d.payload.byteLength
    return n
  }

  /** Progress evidence: `sender` broadcast `round` with a certificate. */
  noteCertified(sender: string, round: number): void {
    if (!this.o.epochs.knownPeer(sender)) return
    const newest = this.o.epochs.newest()
    if (this.progress.note(sender, round, newest.members, newest.membership.f)) this.gc()
  }

  /**
   * Drops instances and deliveries below the floor or more than W rounds behind the reference.
   * The bound only rises, so a round dropped here is refused for good (no second echo for it).
   */
  gc(): void {
    const low = Math.max(this.floorRound, this.windowRef() - this.W)
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
    let pruned = false
    for (const [k, r] of this.remembered) {
      if (r.round < low) {
        this.remembered.delete(k)
        pruned = true
      }
    }
    if (pruned) this.o.journal.prune(low)
    this.o.onCollect?.(low, this.floorRound)
  }
}
