/**
 * Network-condition emulation for topologies.
 *
 * Conditions (latency, jitter, loss, bandwidth) are realised at the APPLICATION level, not in
 * the kernel: each member's broadcast port is wrapped (`NodeOptions.wrapBroadcast`) so that a
 * model sent by member A becomes visible to member B only after
 * `latencyMs + U(0, jitterMs) + bytes / bandwidthBytesPerSec`, or never, with probability
 * `loss`. The transport underneath (TCP on loopback, or libp2p's memory transport in one process) stays reliable
 * and fast, so a "lost" message is exactly what loss means on a reliable transport: that
 * broadcast instance never reaches that member. Protocol control traffic (echoes, FINAL
 * certificates) is not delayed; only the moment a round's model becomes usable is.
 *
 * Links are directed; resolution order (later wins): `default`, then `members` entries
 * (conditions on what those members send), then `links` entries.
 */
import type { BroadcastPort, BroadcastStats, Delivery, FetchOptions, Rejection, SendSeen } from '../node/port.ts'
import type { Rng } from '../rng.ts'
import type { LinkConditions, NetworkConfig } from './schema.ts'

const none: LinkConditions = { latencyMs: 0, jitterMs: 0, loss: 0 }

/** The conditions of the directed link `from → to` (member indices). */
export function linkConditions(net: NetworkConfig, from: number, to: number): LinkConditions {
  const out: LinkConditions = { ...none, ...definedOnly(net.default) }
  for (const m of net.members) if (m.members.includes(from)) Object.assign(out, definedOnly(strip(m, ['members'])))
  for (const l of net.links) if (l.from.includes(from) && l.to.includes(to)) Object.assign(out, definedOnly(strip(l, ['from', 'to'])))
  return out
}

/** True when no link has any condition (the wrapper can be skipped). */
export function isIdealNetwork(net: NetworkConfig, n: number): boolean {
  for (let a = 0; a < n; a++) {
    for (let b = 0; b < n; b++) {
      if (a === b) continue
      const c = linkConditions(net, a, b)
      if (c.latencyMs > 0 || c.jitterMs > 0 || c.loss > 0 || c.bandwidthBytesPerSec !== undefined) return false
    }
  }
  return true
}

/**
 * Fate of one message of `bytes` bytes on a link: the delay in ms before it becomes visible,
 * or `null` when it is lost. Draws from `rng` (seeded per member, so runs are reproducible).
 */
export function messageFate(link: LinkConditions, bytes: number, rng: Rng): number | null {
  if (link.loss > 0 && rng.next() < link.loss) return null
  let ms = link.latencyMs
  if (link.jitterMs > 0) ms += rng.next() * link.jitterMs
  if (link.bandwidthBytesPerSec !== undefined) ms += (bytes / link.bandwidthBytesPerSec) * 1000
  return ms
}

function definedOnly<T extends object>(o: T): Partial<T> {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as Partial<T>
}

function strip<T extends object>(o: T, keys: string[]): Partial<LinkConditions> {
  return Object.fromEntries(Object.entries(o).filter(([k]) => !keys.includes(k))) as Partial<LinkConditions>
}

/**
 * Wraps member `self`'s broadcast port so that what other members send reaches it under the
 * scenario's link conditions: each broadcast instance (round, sender) gets one fate when this
 * member first sees it — delayed (its `send` and `deliver` events are re-dispatched, and it
 * appears in `delivered()`, only after the delay) or lost (never visible here, not even
 * through `fetchRound`). Our own instances are never delayed. Pending timers are cleared by
 * `stop()`.
 */
export function conditionedPort(
  inner: BroadcastPort,
  opts: { self: number; members: readonly string[]; network: NetworkConfig; rng: Rng },
): BroadcastPort {
  return new ConditionedPort(inner, opts)
}

interface Fate {
  /** epoch ms at which the instance becomes visible, or null when lost */
  releaseAt: number | null
}

class ConditionedPort extends EventTarget implements BroadcastPort {
  private readonly inner: BroadcastPort
  private readonly selfId: string
  private readonly fates = new Map<string, Fate>()
  private readonly visible = new Set<string>()
  private readonly timers = new Set<ReturnType<typeof setTimeout>>()
  private readonly links: Map<string, LinkConditions>
  private readonly rng: Rng
  private stopped = false

  constructor(inner: BroadcastPort, opts: { self: number; members: readonly string[]; network: NetworkConfig; rng: Rng }) {
    super()
    this.inner = inner
    this.selfId = opts.members[opts.self]!
    this.rng = opts.rng
    this.links = new Map(opts.members.map((m, i) => [m, linkConditions(opts.network, i, opts.self)]))
    inner.addEventListener('deliver', (e) => {
      const d = (e as CustomEvent<Delivery>).detail
      this.later(d.round, d.sender, d.payload.byteLength, () => {
        this.visible.add(key(d.round, d.sender))
        this.dispatchEvent(new CustomEvent('deliver', { detail: d }))
      })
    })
    inner.addEventListener('send', (e) => {
      const s = (e as CustomEvent<SendSeen>).detail
      this.later(s.round, s.sender, s.payload.byteLength, () => this.dispatchEvent(new CustomEvent('send', { detail: s })))
    })
    inner.addEventListener('reject', (e) => this.dispatchEvent(new CustomEvent('reject', { detail: (e as CustomEvent<Rejection>).detail })))
  }

  private fate(round: number, sender: string, bytes: number): Fate {
    const k = key(round, sender)
    let f = this.fates.get(k)
    if (f === undefined) {
      const link = this.links.get(sender)
      const delay = sender === this.selfId || link === undefined ? 0 : messageFate(link, bytes, this.rng)
      f = { releaseAt: delay === null ? null : Date.now() + delay }
      this.fates.set(k, f)
    }
    return f
  }

  private later(round: number, sender: string, bytes: number, fn: () => void): void {
    if (this.stopped) return
    const f = this.fate(round, sender, bytes)
    if (f.releaseAt === null) return
    const wait = f.releaseAt - Date.now()
    if (wait <= 0) {
      fn()
      return
    }
    const t = setTimeout(() => {
      this.timers.delete(t)
      if (!this.stopped) fn()
    }, wait)
    this.timers.add(t)
  }

  private isVisible(d: Delivery): boolean {
    return d.sender === this.selfId || this.visible.has(key(d.round, d.sender))
  }

  broadcast(round: number, payload: Uint8Array, o?: { signal?: AbortSignal; handOver?: boolean }): Promise<void> {
    return this.inner.broadcast(round, payload, o)
  }

  delivered(round: number): Delivery[] {
    return this.inner.delivered(round).filter((d) => this.isVisible(d))
  }

  setFloor(round: number): void {
    this.inner.setFloor(round)
    for (const k of this.fates.keys()) if (Number(k.slice(0, k.indexOf(':'))) < round) this.fates.delete(k)
    for (const k of this.visible) if (Number(k.slice(0, k.indexOf(':'))) < round) this.visible.delete(k)
  }

  newestCertifiedRound(): number {
    return this.inner.newestCertifiedRound()
  }

  async fetchRound(round: number, o?: FetchOptions): Promise<Delivery[]> {
    const got = await this.inner.fetchRound(round, o)
    // A lost instance never reaches this member; a delayed one only once its delay is over.
    return got.filter((d) => {
      if (d.sender === this.selfId) return true
      const f = this.fate(d.round, d.sender, d.payload.byteLength)
      return f.releaseAt !== null && f.releaseAt <= Date.now()
    })
  }

  stats(): BroadcastStats {
    return this.inner.stats()
  }

  sendTo(peers: string[], round: number, payload: Uint8Array): Promise<void> {
    if (this.inner.sendTo === undefined) return Promise.reject(new Error('the wrapped port cannot send to chosen members'))
    return this.inner.sendTo(peers, round, payload)
  }

  async stop(): Promise<void> {
    this.stopped = true
    for (const t of this.timers) clearTimeout(t)
    this.timers.clear()
    await this.inner.stop()
  }
}

function key(round: number, sender: string): string {
  return `${round}:${sender}`
}
