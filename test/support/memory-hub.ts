/**
 * A TEST DOUBLE of the broadcast: an in-process `BroadcastPort` for many members of one swarm
 * with the signed echo broadcast's semantics (ALGORITHMS §2), minus the cryptography, the window,
 * the budgets and the bans — for unit tests of the engine and the node around the broadcast.
 * No run of monna uses it: in-process swarms run the real protocol over libp2p's memory
 * transport (src/topology/runner.ts).
 *
 *
 * - SEND: the sender hands its payload to every attached member (or to chosen ones: `sendTo`).
 * - ECHO: a member echoes only the FIRST SEND it sees per instance (round, sender), to the
 *   sender only, whatever its own round is.
 * - FINAL: once a sender holds echoes from Q = ⌊(n+f)/2⌋+1 distinct members for one hash it
 *   sends (FINAL, payload) to everyone; a member delivers each instance at most once.
 *
 * So an equivocating sender is delivered only if one of its payloads gathers a quorum, and
 * then the same payload everywhere; with more than f members detached nothing is certified
 * (as on the wire). Every message hop is asynchronous (a macrotask), so interleavings are
 * realistic; a detached (stopped) member receives nothing, like a crashed process, and when a
 * member (re)attaches every sender re-sends it the SENDs not yet certified (as on reconnect).
 * Byzantine members here echo honestly (double echoing by colluders is not emulated).
 */
import { createHash } from 'node:crypto'
import { AbortError, InvalidConfigError, MonnaError } from '../../src/errors.ts'
import type { BroadcastPort, BroadcastStats, Delivery, Membership, SendSeen } from '../../src/node/port.ts'

/** The port was used after `stop()`. */
// SHA-256 through OpenSSL (≈ 1.2 ms per 1.7 MB model vs 18 ms in JS), and each payload object's
// digest remembered: a FINAL carrying the very bytes hashed at its SEND is not rehashed by each
// of the n receivers (payloads are private copies, never mutated). At n = 26 with the LeNet this
// was 12 of the 17 CPU-seconds of an in-process round (profiled 2026-11-27).
const digests = new WeakMap<Uint8Array, string>()
function hashOf(payload: Uint8Array): string {
  let h = digests.get(payload)
  if (h === undefined) {
    h = createHash('sha256').update(payload).digest('hex')
    digests.set(payload, h)
  }
  return h
}

export class PortStoppedError extends MonnaError {
  override name = 'PortStoppedError'
  readonly member: string
  constructor(member: string) {
    super(`the broadcast port of ${member} is stopped; attach a new one with hub.port(member)`)
    this.member = member
  }
}

export interface MemoryHubOptions {
  membership: Membership
}

export interface MemoryPortOptions {
  /** W: rounds above the floor whose deliveries are kept (default 8, like `timing.roundWindow`). */
  roundWindow?: number
}

export interface MemoryHub {
  readonly membership: Membership
  /** Q = ⌊(n + f)/2⌋ + 1. */
  readonly quorum: number
  /** Attaches `member` (a fresh port, i.e. a restarted process) and returns its broadcast port. */
  port(member: string, opts?: MemoryPortOptions): BroadcastPort
  /** Whether `member` currently has a running port. */
  attached(member: string): boolean
  /** Messages handed between ports so far. */
  readonly messages: number
}

type Message =
  | { kind: 'send'; round: number; sender: string; payload: Uint8Array; hash: string }
  | { kind: 'echo'; round: number; sender: string; from: string; hash: string }
  | { kind: 'final'; round: number; sender: string; hash: string; payload: Uint8Array; signers: string[] }

const hexToBytes = (hex: string): Uint8Array => Uint8Array.from(hex.match(/../g)!.map((b) => Number.parseInt(b, 16)))

export function createMemoryHub(opts: MemoryHubOptions): MemoryHub {
  const { membership } = opts
  const n = membership.members.length
  if (n < 3 * membership.f + 1) {
    throw new InvalidConfigError('membership.f', `n = ${n} members tolerate at most f = ${Math.floor((n - 1) / 3)}; lower f or add members`)
  }
  const q = Math.floor((n + membership.f) / 2) + 1
  const memberSet = new Set(membership.members)
  const ports = new Map<string, MemoryPort>()
  let messages = 0

  const post = (to: string, msg: Message, bytes: number): void => {
    const target = ports.get(to)
    if (target === undefined) return
    messages++
    setImmediate(() => {
      // a port replaced or stopped meanwhile receives nothing (the old process is gone)
      if (ports.get(to) === target && !target.stopped) target.receive(msg, bytes)
    })
  }

  class MemoryPort extends EventTarget implements BroadcastPort {
    readonly self: string
    stopped = false
    private readonly window: number
    private floor = 0
    private newest = -1
    private readonly certifiedBy = new Map<string, number>()
    private readonly echoed = new Map<string, string>() // instance key → hash echoed
    private readonly own = new Map<
      number,
      { payloads: Map<string, Uint8Array>; targets: Map<string, Set<string>>; echoes: Map<string, Set<string>>; finalised: boolean }
    >()
    private readonly deliveries = new Map<number, Map<string, Delivery>>()
    private readonly waiters = new Map<number, { resolve: () => void; reject: (e: unknown) => void }[]>()
    private readonly counters: BroadcastStats = { bytesSent: 0, bytesReceived: 0, rejected: {} }

    constructor(self: string, window: number) {
      super()
      this.self = self
      this.window = window
    }

    private send(to: string, msg: Message, bytes: number): void {
      this.counters.bytesSent += bytes
      post(to, msg, bytes)
    }

    private disseminate(round: number, payload: Uint8Array, targets: string[]): string {
      const hash = hashOf(payload)
      let state = this.own.get(round)
      if (state === undefined) {
        state = { payloads: new Map(), targets: new Map(), echoes: new Map(), finalised: false }
        this.own.set(round, state)
      }
      state.payloads.set(hash, payload)
      const set = state.targets.get(hash) ?? new Set<string>()
      for (const to of targets) set.add(to)
      state.targets.set(hash, set)
      for (const to of targets) this.send(to, { kind: 'send', round, sender: this.self, payload, hash }, payload.byteLength)
      return hash
    }

    async broadcast(round: number, payload: Uint8Array, o?: { signal?: AbortSignal }): Promise<void> {
      if (this.stopped) throw new PortStoppedError(this.self)
      o?.signal?.throwIfAborted()
      const copy = payload.slice()
      const done = new Promise<void>((resolve, reject) => {
        const list = this.waiters.get(round) ?? []
        list.push({ resolve, reject })
        this.waiters.set(round, list)
      })
      this.disseminate(round, copy, membership.members)
      if (o?.signal === undefined) return done
      const signal = o.signal
      return await new Promise<void>((resolve, reject) => {
        const onAbort = (): void => reject(new AbortError('broadcast aborted'))
        signal.addEventListener('abort', onAbort, { once: true })
        done.then(resolve, reject).finally(() => signal.removeEventListener('abort', onAbort))
      })
    }

    async sendTo(peers: string[], round: number, payload: Uint8Array): Promise<void> {
      if (this.stopped) throw new PortStoppedError(this.self)
      this.disseminate(
        round,
        payload.slice(),
        peers.filter((p) => memberSet.has(p)),
      )
    }

    delivered(round: number): Delivery[] {
      return [...(this.deliveries.get(round)?.values() ?? [])]
    }

    setFloor(round: number): void {
      if (round <= this.floor) return
      this.floor = round
      for (const r of this.deliveries.keys()) if (r < round) this.deliveries.delete(r)
      for (const r of this.own.keys()) if (r < round - this.window) this.own.delete(r)
      for (const key of this.echoed.keys()) {
        if (Number(key.slice(0, key.indexOf('/'))) < round - this.window) this.echoed.delete(key)
      }
    }

    newestCertifiedRound(): number {
      return this.newest
    }

    /** Same evidence rule as the echo broadcast: the newest round certified by f + 1 distinct senders. */
    private noteCertified(sender: string, round: number): void {
      if ((this.certifiedBy.get(sender) ?? -1) >= round) return
      this.certifiedBy.set(sender, round)
      const rounds = [...this.certifiedBy.values()].sort((a, b) => b - a)
      const p = rounds.length > membership.f ? rounds[membership.f]! : -1
      if (p > this.newest) this.newest = p
    }

    async fetchRound(round: number, o?: { signal?: AbortSignal }): Promise<Delivery[]> {
      if (this.stopped) throw new PortStoppedError(this.self)
      o?.signal?.throwIfAborted()
      await new Promise((r) => setImmediate(r))
      const found = new Map<string, Delivery>()
      for (const [id, p] of ports) {
        if (id === this.self || p.stopped) continue
        for (const d of p.delivered(round)) if (!found.has(d.sender)) found.set(d.sender, d)
      }
      for (const d of found.values()) this.deliver(d, true)
      return this.delivered(round).length > 0 ? this.delivered(round) : [...found.values()]
    }

    stats(): BroadcastStats {
      return { ...this.counters, rejected: { ...this.counters.rejected } }
    }

    async stop(): Promise<void> {
      if (this.stopped) return
      this.stopped = true
      if (ports.get(this.self) === this) ports.delete(this.self)
      for (const list of this.waiters.values()) for (const w of list) w.reject(new PortStoppedError(this.self))
      this.waiters.clear()
    }

    /** A member (re)attached: re-send it our instances that are not certified yet (as a reconnect would). */
    peerJoined(member: string): void {
      for (const [round, state] of this.own) {
        if (state.finalised) continue
        for (const [hash, targets] of state.targets) {
          const payload = state.payloads.get(hash)
          if (payload !== undefined && targets.has(member)) {
            this.send(member, { kind: 'send', round, sender: this.self, payload, hash }, payload.byteLength)
          }
        }
      }
    }

    private reject(reason: string, peer: string, detail: string): void {
      this.counters.rejected[reason] = (this.counters.rejected[reason] ?? 0) + 1
      this.dispatchEvent(new CustomEvent('reject', { detail: { reason, peer, penalise: true, detail } }))
    }

    private deliver(d: Delivery, force = false): void {
      let held = this.deliveries.get(d.round)
      if (held?.has(d.sender)) return
      if (!force && (d.round < this.floor || d.round > this.floor + this.window)) return // out of window: dropped
      if (held === undefined) {
        held = new Map()
        this.deliveries.set(d.round, held)
      }
      held.set(d.sender, d)
      this.dispatchEvent(new CustomEvent('deliver', { detail: d }))
      if (d.sender === this.self) {
        for (const w of this.waiters.get(d.round) ?? []) w.resolve()
        this.waiters.delete(d.round)
      }
    }

    receive(msg: Message, bytes: number): void {
      this.counters.bytesReceived += bytes
      if (!memberSet.has(msg.sender)) {
        this.reject('non-member', msg.sender, 'instance of a non-member')
        return
      }
      switch (msg.kind) {
        case 'send': {
          const key = `${msg.round}/${msg.sender}`
          const first = this.echoed.get(key)
          if (first === undefined) {
            this.echoed.set(key, msg.hash)
            const seen: SendSeen = { round: msg.round, sender: msg.sender, payload: msg.payload }
            this.dispatchEvent(new CustomEvent('send', { detail: seen }))
            this.send(msg.sender, { kind: 'echo', round: msg.round, sender: msg.sender, from: this.self, hash: msg.hash }, 96)
          } else if (first !== msg.hash) {
            this.reject('equivocation', msg.sender, `two different SENDs for round ${msg.round}`)
          }
          return
        }
        case 'echo': {
          if (msg.sender !== this.self || !memberSet.has(msg.from)) return
          const state = this.own.get(msg.round)
          if (state === undefined || state.finalised) return
          const set = state.echoes.get(msg.hash) ?? new Set<string>()
          set.add(msg.from)
          state.echoes.set(msg.hash, set)
          const payload = state.payloads.get(msg.hash)
          if (set.size >= q && payload !== undefined) {
            state.finalised = true
            const signers = [...set]
            for (const to of membership.members) {
              this.send(to, { kind: 'final', round: msg.round, sender: this.self, hash: msg.hash, payload, signers }, payload.byteLength + 64 * q)
            }
          }
          return
        }
        case 'final': {
          const distinct = new Set(msg.signers.filter((s) => memberSet.has(s)))
          if (distinct.size < q) {
            this.reject('bad-signature', msg.sender, 'certificate below quorum')
            return
          }
          if (hashOf(msg.payload) !== msg.hash) {
            this.reject('hash-mismatch', msg.sender, 'payload does not match the certified hash')
            return
          }
          this.noteCertified(msg.sender, msg.round)
          this.deliver({
            swarmId: membership.swarmId,
            round: msg.round,
            sender: msg.sender,
            payload: msg.payload,
            hash: hexToBytes(msg.hash),
            certificate: { signers: [...distinct] },
          })
          return
        }
      }
    }
  }

  return {
    membership,
    quorum: q,
    get messages() {
      return messages
    },
    attached(member) {
      return ports.has(member)
    },
    port(member, o) {
      if (!memberSet.has(member)) throw new InvalidConfigError('member', `${member} is not a member of swarm ${membership.swarmId}`)
      const old = ports.get(member)
      if (old !== undefined) void old.stop()
      const p = new MemoryPort(member, o?.roundWindow ?? 8)
      ports.set(member, p)
      setImmediate(() => {
        for (const other of ports.values()) if (other !== p && !other.stopped) other.peerJoined(member)
      })
      return p
    },
  }
}
