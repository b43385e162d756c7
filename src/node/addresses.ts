/**
 * Member address exchange: each member periodically publishes its listen addresses on the
 * swarm's pubsub namespace (`/monna/<swarmId>/addresses/1`) — every `intervalMs` while members
 * connect or addresses change, backing off to 8 × that while nothing does (see
 * `startAddressExchange`); every member dials the members it is not connected to at the
 * addresses they announced. So `--bootstrap` to any ONE member is enough: gossipsub relays the
 * announcements through it, and once connected, identify puts the member's addresses in the peer
 * store, where the echo broadcast finds them.
 *
 * What a member relays (the topic's gossipsub validator; REJECT = not relayed and counted
 * against the peer that relayed it, IGNORE = not relayed, no blame):
 * - REJECT unless the message is signed (the PeerId dialled is always the signer, `from`: a
 *   member announces only its own addresses), at most `maxMessageBytes` (4 KiB), and JSON
 *   `{ "addrs": [...] }` with at most 16 strings of at most 256 characters, each a multiaddr
 *   with no `/p2p` or `/p2p-circuit` component (an address naming a peer is someone else's).
 * - IGNORE an announcement that arrives less than `intervalMs / 2` after the last one accepted
 *   from the same member (an honest member announces at least `intervalMs` apart).
 * The pubsub gate of `createNetNode` already REJECTs messages from or relayed by non-members.
 *
 * Dialling: nothing announced is written to the peer store; a member's last accepted
 * announcement replaces what we dial for it. A member we are not connected to is dialled at
 * most once per `intervalMs`, the gap doubling after each failed dial up to `maxBackoffMs`
 * (1 min), with at most `maxDialsInFlight` (4) dials in flight overall. So a member announcing
 * someone else's host:port makes a member not connected to it try at most 16 such addresses per
 * dial, at intervals of 3, 6, 12 … s and then once a minute while the dials keep failing,
 * however often it announces (measured in test/integration/gossip-topics.test.ts: 150
 * announcements in 6 s, 2 dials; 150 before).
 */
import type { TopicValidatorFn } from '@libp2p/gossipsub'
import { TopicValidatorResult } from '@libp2p/gossipsub'
import type { Libp2p, PeerId } from '@libp2p/interface'
import { peerIdFromString } from '@libp2p/peer-id'
import { type Multiaddr, multiaddr } from '@multiformats/multiaddr'
import { z } from 'zod'
import type { Logger } from '../logger.ts'

export const addressExchangeDefaults = {
  // Re-announce this often: gossipsub meshes form within a heartbeat or two (1 s each), and a
  // member that restarts must be found again within a few seconds.
  intervalMs: 3000,
  // ... while something changes; once nothing does (every member connected, own addresses
  // stable) the period doubles after each announcement, up to this many times `intervalMs`
  maxIntervalFactor: 8,
  maxMessageBytes: 4096,
  maxAddresses: 16,
  maxAddressChars: 256,
  // a member whose announced addresses keep failing is tried once a minute
  maxBackoffMs: 60_000,
  maxDialsInFlight: 4,
  dialTimeoutMs: 10_000,
} as const

/** The part of gossipsub the exchange uses. */
interface PubSubLike {
  topicValidators: Map<string, TopicValidatorFn>
  subscribe(topic: string): void
  unsubscribe(topic: string): void
  publish(topic: string, data: Uint8Array): Promise<unknown>
}

export interface AddressExchangeOptions {
  node: Libp2p
  topic: string
  /** this member's PeerId */
  self: string
  /** Members we dial when they announce (others' announcements are still checked and relayed). */
  members: string[]
  log: Logger
  intervalMs?: number
  /** longest period between announcements while nothing changes; default `maxIntervalFactor` × intervalMs */
  maxIntervalMs?: number
  maxBackoffMs?: number
  maxDialsInFlight?: number
  dialTimeoutMs?: number
}

const ownAddress = z
  .string()
  .max(addressExchangeDefaults.maxAddressChars)
  .transform((s, ctx) => {
    let ma: Multiaddr
    try {
      ma = multiaddr(s)
    } catch {
      ctx.addIssue({ code: 'custom', message: 'not a multiaddr' })
      return z.NEVER
    }
    if (ma.getComponents().some((c) => c.name === 'p2p' || c.name === 'p2p-circuit')) {
      ctx.addIssue({ code: 'custom', message: 'names a peer (/p2p): a member announces only its own addresses' })
      return z.NEVER
    }
    return ma
  })

const announcementSchema = z.strictObject({ addrs: z.array(ownAddress).max(addressExchangeDefaults.maxAddresses) })

/** A received announcement: its addresses, or why it is refused (the sender is to be penalised). */
export type ParsedAnnouncement = { ok: true; addrs: Multiaddr[] } | { ok: false; reason: string }

/** Checks an announcement's bytes: size, then JSON, then schema. */
export function parseAnnouncement(data: Uint8Array): ParsedAnnouncement {
  if (data.byteLength > addressExchangeDefaults.maxMessageBytes) return { ok: false, reason: `${data.byteLength} bytes, more than ${addressExchangeDefaults.maxMessageBytes}` }
  let json: unknown
  try {
    json = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(data))
  } catch {
    return { ok: false, reason: 'not JSON' }
  }
  const r = announcementSchema.safeParse(json)
  if (!r.success) return { ok: false, reason: r.error.issues.map((i) => `${i.path.join('.') || '(root)'}: ${i.message}`).join('; ') }
  return { ok: true, addrs: r.data.addrs }
}

/** The bytes a member announces: its addresses without /p2p, those peers would refuse left out, within the size bound. */
export function encodeAnnouncement(addrs: Multiaddr[]): Uint8Array {
  const own = addrs
    .map((ma) => ma.decapsulateCode(421).toString())
    .filter((a) => ownAddress.safeParse(a).success)
    .slice(0, addressExchangeDefaults.maxAddresses)
  const enc = new TextEncoder()
  let bytes = enc.encode(JSON.stringify({ addrs: own }))
  while (bytes.byteLength > addressExchangeDefaults.maxMessageBytes) {
    own.pop()
    bytes = enc.encode(JSON.stringify({ addrs: own }))
  }
  return bytes
}

interface Target {
  addrs: Multiaddr[]
  /** no dial before this time (ms since the epoch) */
  nextAt: number
  failures: number
  dialling: boolean
  queued: boolean
}

/** Dials announced members, at most once per interval each (backing off) and K at a time overall. */
class AnnouncedDialer {
  private readonly targets = new Map<string, Target>()
  private readonly waiting: string[] = []
  private inFlight = 0
  private readonly controller = new AbortController()
  private readonly node: Libp2p
  private readonly log: Logger
  private readonly intervalMs: number
  private readonly maxBackoffMs: number
  private readonly maxInFlight: number
  private readonly dialTimeoutMs: number

  constructor(opts: { node: Libp2p; log: Logger; intervalMs: number; maxBackoffMs: number; maxInFlight: number; dialTimeoutMs: number }) {
    this.node = opts.node
    this.log = opts.log
    this.intervalMs = opts.intervalMs
    this.maxBackoffMs = opts.maxBackoffMs
    this.maxInFlight = opts.maxInFlight
    this.dialTimeoutMs = opts.dialTimeoutMs
  }

  /** A member's accepted announcement: replaces the addresses we dial for it. */
  announce(member: string, addrs: Multiaddr[]): void {
    let t = this.targets.get(member)
    if (t === undefined) {
      t = { addrs, nextAt: 0, failures: 0, dialling: false, queued: false }
      this.targets.set(member, t)
    }
    t.addrs = addrs
    this.consider(member, t)
  }

  stop(): void {
    this.controller.abort()
    this.waiting.length = 0
  }

  private consider(member: string, t: Target): void {
    if (this.controller.signal.aborted || t.dialling || t.queued || t.addrs.length === 0) return
    if (this.node.getConnections(peerIdFromString(member)).length > 0) {
      t.failures = 0
      return
    }
    if (Date.now() < t.nextAt) return
    if (this.inFlight >= this.maxInFlight) {
      t.queued = true
      this.waiting.push(member)
      return
    }
    this.dial(member, t)
  }

  private dial(member: string, t: Target): void {
    t.dialling = true
    this.inFlight++
    t.nextAt = Date.now() + Math.min(this.intervalMs * 2 ** t.failures, this.maxBackoffMs)
    const addrs = t.addrs.map((a) => a.encapsulate(`/p2p/${member}`))
    this.node
      .dial(addrs, { signal: AbortSignal.any([this.controller.signal, AbortSignal.timeout(this.dialTimeoutMs)]) })
      .then(
        () => {
          t.failures = 0
          this.log.debug('connected to a member at its announced addresses', { peer: member })
        },
        (err: unknown) => {
          t.failures++
          this.log.debug('could not reach a member at its announced addresses', { peer: member, failures: t.failures, error: String(err) })
        },
      )
      .finally(() => {
        t.dialling = false
        this.inFlight--
        while (this.inFlight < this.maxInFlight && this.waiting.length > 0) {
          const next = this.waiting.shift()!
          const nt = this.targets.get(next)
          if (nt === undefined) continue
          nt.queued = false
          this.consider(next, nt)
        }
      })
  }
}

/** Starts announcing and learning member addresses; returns the function that stops it. */
export function startAddressExchange(opts: AddressExchangeOptions): () => void {
  const { node, topic, self, log } = opts
  const pubsub = (node.services as { pubsub?: PubSubLike }).pubsub
  if (pubsub === undefined) return () => {}
  const intervalMs = opts.intervalMs ?? addressExchangeDefaults.intervalMs
  const minGapMs = intervalMs / 2
  const members = new Set(opts.members)
  const dialer = new AnnouncedDialer({
    node,
    log,
    intervalMs,
    maxBackoffMs: opts.maxBackoffMs ?? addressExchangeDefaults.maxBackoffMs,
    maxInFlight: opts.maxDialsInFlight ?? addressExchangeDefaults.maxDialsInFlight,
    dialTimeoutMs: opts.dialTimeoutMs ?? addressExchangeDefaults.dialTimeoutMs,
  })
  /** when each member's last announcement was accepted (ms since the epoch) */
  const lastAccepted = new Map<string, number>()
  const validate: TopicValidatorFn = (_peer, msg) => {
    if (msg.type !== 'signed') return TopicValidatorResult.Reject
    const from = msg.from.toString()
    const parsed = parseAnnouncement(msg.data)
    if (!parsed.ok) {
      log.debug('address announcement refused', { from, reason: parsed.reason })
      return TopicValidatorResult.Reject
    }
    // an earlier incarnation of ourselves (a restart): nothing to learn, nothing to relay
    if (from === self) return TopicValidatorResult.Ignore
    const now = Date.now()
    const last = lastAccepted.get(from)
    if (last !== undefined && now - last < minGapMs) return TopicValidatorResult.Ignore
    if (lastAccepted.size >= 4096) for (const [m, at] of lastAccepted) if (now - at >= minGapMs) lastAccepted.delete(m)
    lastAccepted.set(from, now)
    if (members.has(from)) {
      // a member we are not connected to may need our addresses to reach us (it may be unreachable itself)
      if (node.getConnections(msg.from).length === 0) changed()
      dialer.announce(from, parsed.addrs)
    }
    return TopicValidatorResult.Accept
  }
  // The period: `intervalMs` while something changes, doubling after each announcement made
  // while nothing did, up to `maxIntervalMs`. What counts as a change (each brings the next
  // announcement back to at most `intervalMs` after the last): a member connecting (a new or
  // restarted member, or one that lost its connection), an announcement from a member we are not
  // connected to, our own addresses changing (a relay reservation, UPnP, AutoNAT). So a swarm
  // whose members are all connected gossips 8× less, and one that is still forming or changing
  // as before. A Byzantine member can keep us at `intervalMs` (by connecting again and again, or
  // announcing while refusing connections), which is where every member was before, no faster.
  const maxIntervalMs = opts.maxIntervalMs ?? intervalMs * addressExchangeDefaults.maxIntervalFactor
  let period = intervalMs
  let dirty = true
  let lastAt = 0
  let timer: ReturnType<typeof setTimeout> | undefined
  let stopped = false
  const schedule = (delayMs: number): void => {
    clearTimeout(timer)
    if (!stopped) timer = setTimeout(tick, delayMs)
  }
  const tick = (): void => {
    pubsub.publish(topic, encodeAnnouncement(node.getMultiaddrs())).catch((err: unknown) => {
      log.debug('address announcement not sent', { error: String(err) })
    })
    lastAt = Date.now()
    period = dirty ? intervalMs : Math.min(period * 2, maxIntervalMs)
    dirty = false
    schedule(period)
  }
  function changed(): void {
    dirty = true
    if (period > intervalMs) {
      period = intervalMs
      schedule(Math.max(0, lastAt + intervalMs - Date.now()))
    }
  }
  const onConnect = (evt: CustomEvent<PeerId>): void => {
    if (members.has(evt.detail.toString())) changed()
  }
  const onSelfUpdate = (): void => changed()
  node.addEventListener('peer:connect', onConnect)
  node.addEventListener('self:peer:update', onSelfUpdate)
  pubsub.topicValidators.set(topic, validate)
  pubsub.subscribe(topic)
  tick()
  return () => {
    stopped = true
    clearTimeout(timer)
    node.removeEventListener('peer:connect', onConnect)
    node.removeEventListener('self:peer:update', onSelfUpdate)
    dialer.stop()
    try {
      pubsub.unsubscribe(topic)
    } catch {
      // already stopped
    }
    pubsub.topicValidators.delete(topic)
  }
}
