/**
 * Hole punching for members behind NAT (docs/nat.md): two members connected only through a
 * relay open a direct TCP connection to each other by *simultaneous open*.
 *
 * Why not libp2p's DCUtR: js-libp2p dials TCP from an ephemeral port (and its QUIC transport
 * from a socket apart from its listener), so the port a member announces is never the port its
 * packets leave from, and a NAT drops the other side's packets. Here each side instead picks a
 * fresh local port p, tells the other over the relayed connection "I am at <public ip>:p", and
 * both connect from p to the other's address at once: each outgoing SYN opens its own NAT's
 * mapping for the other's packets, the SYNs cross, and TCP's simultaneous open joins them into
 * one connection. This needs NATs that keep a connection's source port (Linux masquerade, most
 * home routers: "endpoint-independent mapping"); behind a NAT that picks a random port per
 * destination ("symmetric") it fails and the members keep the relayed connection.
 *
 * A member learns its public IP from a member it reaches directly (the `observe` protocol: the
 * answer is the address that member's connection came from). Roles are fixed — the member with
 * the smaller PeerId leads: it alone may initiate the exchange, and it upgrades the new socket
 * as the outbound side (Noise initiator), the other as inbound — so a simultaneous open never
 * has two initiators. The upgraded connection goes through libp2p's own upgrader: the connection
 * gater, Noise (the remote must prove the PeerId it was punched for) and yamux, like any
 * dialled connection. Once the direct connection is open the relayed one is closed.
 *
 * Everything the other side sends is hostile until checked (docs/nat.md, "Hostile peers"):
 * - who: an offer is answered only from a member (`allows`), over a relayed connection, and only
 *   from the leader of the pair (the smaller PeerId); observations are answered only over a
 *   direct connection;
 * - how much: one message per direction and stream, read by our own reader — a varint length
 *   prefix of at most 2 bytes and a body of at most 512 bytes, refused from the prefix alone,
 *   before the body is buffered; the whole message within `messageTimeoutMs`, or the stream is
 *   aborted (a trickling or half-open stream is not held);
 * - how often: one attempt per peer at a time and at most `maxConcurrent` at once (`busy`), at
 *   most `maxAttempts` accepted attempts per peer for the node's lifetime (`attempts-exhausted`);
 * - where to: an offered address must be a unicast IP that is not unspecified, multicast,
 *   broadcast, link-local or reserved (`node:net` BlockList), loopback only when our own observed
 *   address is loopback, with a port in 1024…65535; we connect to exactly that address, nothing
 *   else;
 * - how long: observing our address takes at most `observeTimeoutMs`, the Noise/yamux upgrade of
 *   the punched socket at most `upgradeTimeoutMs`.
 * Every refusal has a typed reason (`PunchRejection`), is counted in `stats.rejected` and
 * emitted as a `reject` event; the stream is aborted and the node carries on.
 */
import { BlockList, connect, createServer, isIP, type Socket } from 'node:net'
import type { ComponentLogger, Connection, Libp2pEvents, Logger, PeerId, Startable, Stream, StreamHandlerOptions, TypedEventTarget, Upgrader } from '@libp2p/interface'
import { AbstractMultiaddrConnection, type AbstractMultiaddrConnectionInit } from '@libp2p/utils'
import { multiaddr } from '@multiformats/multiaddr'
import type { Uint8ArrayList } from 'uint8arraylist'
import { AbortError, MonnaError } from '../errors.ts'
import { ipOf, isCircuit } from './addr.ts'

export const PUNCH_PROTOCOL = '/monna/punch/1.0.0'
export const OBSERVE_PROTOCOL = '/monna/observe/1.0.0'

/** Largest body of a punch or observe message. */
export const MAX_MESSAGE_BYTES = 512
/** Longest varint length prefix (2 bytes: up to 16 383, enough for 512). */
export const MAX_PREFIX_BYTES = 2

export interface HolePunchInit {
  /** whether a peer may take part (the swarm's members) */
  allows: (peer: PeerId) => boolean
  /** how long both sides keep trying to connect (default 10 s) */
  attemptMs?: number
  /** pause between retries of one side's connect (default 200 ms) */
  retryMs?: number
  /** accepted attempts per peer (leading or answering) for the node's lifetime (default 3) */
  maxAttempts?: number
  /** attempts in progress at once, over all peers (default 4); one per peer in any case */
  maxConcurrent?: number
  /** time for one whole punch or observe message to arrive once its stream is read (default 10 s) */
  messageTimeoutMs?: number
  /** time to learn our own address from the members we reach directly (default 5 s) */
  observeTimeoutMs?: number
  /** time for the Noise + yamux upgrade of a punched socket (default 30 s) */
  upgradeTimeoutMs?: number
}

/** The parts of libp2p's components used here (libp2p passes its own to a service). */
export interface HolePunchComponents {
  peerId: PeerId
  upgrader: Upgrader
  registrar: {
    handle(protocol: string, handler: (stream: Stream, connection: Connection) => void | Promise<void>, options?: StreamHandlerOptions): Promise<void>
    unhandle(protocol: string): Promise<void>
  }
  connectionManager: { getConnections(peer?: PeerId): Connection[] }
  events: TypedEventTarget<Libp2pEvents>
  logger: ComponentLogger
}

/** Why a peer's punch or observe message was refused. */
export const PUNCH_REJECTION_REASONS = [
  /** the peer is not a member (`allows`) */
  'not-member',
  /** a punch offer over a direct connection (offers come over relayed ones) */
  'not-relayed',
  /** a punch offer from the pair's follower (only the smaller PeerId may initiate) */
  'wrong-role',
  /** an attempt with this peer is in progress, or `maxConcurrent` attempts are */
  'busy',
  /** `maxAttempts` attempts with this peer were accepted already */
  'attempts-exhausted',
  /** a length prefix longer than 2 bytes */
  'oversized-prefix',
  /** a length above 512 bytes */
  'oversized-body',
  /** not a JSON `{ ip, port }` with an IP and a port in 1024…65535, empty, or bytes after the message */
  'malformed',
  /** the stream ended before the message was whole */
  'truncated',
  /** the message did not arrive whole within `messageTimeoutMs` */
  'timeout',
  /** an address we never connect to (unspecified, multicast, broadcast, link-local, reserved, or loopback when we are not) */
  'forbidden-address',
  /** an observation asked over a relayed connection (it would name the relay, not the peer) */
  'relayed-observe',
] as const

export type PunchRejectionReason = (typeof PUNCH_REJECTION_REASONS)[number]

/** A refused message (the `reject` event). */
export interface PunchRejection {
  /** the peer that sent it */
  peer: string
  protocol: 'punch' | 'observe'
  reason: PunchRejectionReason
  message: string
}

/** An accepted attempt starts (the `attempt` event). */
export interface PunchAttempt {
  peer: string
  /** `lead`: we initiated it; `answer`: we answered the peer's offer */
  role: 'lead' | 'answer'
}

/** An accepted attempt ended (the `attempt:end` event). */
export interface PunchAttemptEnd extends PunchAttempt {
  ok: boolean
  error?: string
}

/** The events of `HolePunch` (an EventTarget) and their details. */
export interface HolePunchEvents {
  reject: CustomEvent<PunchRejection>
  attempt: CustomEvent<PunchAttempt>
  'attempt:end': CustomEvent<PunchAttemptEnd>
}

export interface HolePunchStats {
  /** direct connections opened by hole punching */
  succeeded: number
  /** accepted attempts that ended without a direct connection (the relayed connection stays) */
  failed: number
  /** accepted attempts, leading and answering */
  attempts: number
  /** refused messages by reason */
  rejected: Record<PunchRejectionReason, number>
}

/** A message refused with a typed reason. */
export class PunchRejectError extends MonnaError {
  override name = 'PunchRejectError'
  readonly reason: PunchRejectionReason
  constructor(reason: PunchRejectionReason, message: string) {
    super(message)
    this.reason = reason
  }
}

/** What one side tells the other: where it will connect from. */
interface Offer {
  ip: string
  port: number
}

function parseJson(bytes: Uint8Array): { ip?: unknown; port?: unknown } {
  let o: unknown
  try {
    o = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(bytes))
  } catch {
    throw new PunchRejectError('malformed', 'the message is not JSON')
  }
  if (typeof o !== 'object' || o === null || Array.isArray(o)) throw new PunchRejectError('malformed', 'the message is not a JSON object')
  return o as { ip?: unknown; port?: unknown }
}

function parseIp(ip: unknown): string {
  // no zone ids (fe80::1%eth0): only plain addresses
  if (typeof ip !== 'string' || ip.length > 45 || ip.includes('%') || isIP(ip) === 0) throw new PunchRejectError('malformed', 'the message has no IP address')
  return ip
}

/** An offer: `{ ip, port }` with a plain IP and a port in 1024…65535 (the address itself is checked by `checkAddress`). */
export function parseOffer(bytes: Uint8Array): Offer {
  const { ip, port } = parseJson(bytes)
  const address = parseIp(ip)
  if (typeof port !== 'number' || !Number.isInteger(port) || port < 1024 || port > 65535) throw new PunchRejectError('malformed', 'the offer has no port in 1024…65535')
  return { ip: address, port }
}

const family = (ip: string): 'ipv4' | 'ipv6' => (isIP(ip) === 4 ? 'ipv4' : 'ipv6')

/**
 * Addresses never connected to. IPv4-mapped IPv6 addresses (::ffff:a.b.c.d) are checked against
 * the IPv4 rules by BlockList itself. Private ranges (10/8, 172.16/12, 192.168/16) and shared
 * address space (100.64/10) are allowed: members on one LAN, or behind one carrier NAT, punch
 * there. A subnet's directed broadcast cannot be told from a host address without its netmask.
 */
const FORBIDDEN = new BlockList()
for (const [net, prefix] of [
  ['0.0.0.0', 8], // "this network", 0.0.0.0 (unspecified) included
  ['169.254.0.0', 16], // link-local
  ['192.0.0.0', 24], // IETF protocol assignments
  ['192.0.2.0', 24], // documentation (TEST-NET-1)
  ['198.18.0.0', 15], // benchmarking
  ['198.51.100.0', 24], // documentation (TEST-NET-2)
  ['203.0.113.0', 24], // documentation (TEST-NET-3)
  ['224.0.0.0', 4], // multicast
  ['240.0.0.0', 4], // reserved, 255.255.255.255 (limited broadcast) included
] as const)
  FORBIDDEN.addSubnet(net, prefix, 'ipv4')
FORBIDDEN.addAddress('::', 'ipv6') // unspecified
for (const [net, prefix] of [
  ['::', 96], // IPv4-compatible (deprecated); ::1 is loopback, checked first
  ['100::', 64], // discard-only
  ['2001:db8::', 32], // documentation
  ['fe80::', 10], // link-local
  ['fec0::', 10], // site-local (deprecated)
  ['ff00::', 8], // multicast
] as const)
  FORBIDDEN.addSubnet(net, prefix, 'ipv6')

const LOOPBACK = new BlockList()
LOOPBACK.addSubnet('127.0.0.0', 8, 'ipv4')
LOOPBACK.addAddress('::1', 'ipv6')

export function isLoopback(ip: string): boolean {
  return isIP(ip) !== 0 && LOOPBACK.check(ip, family(ip))
}

/**
 * Whether we may connect to `ip` offered by a peer, when our own observed address is `ownIp`
 * (undefined: not known yet, then loopback is judged later): a reason to refuse it, or undefined.
 */
export function forbiddenAddress(ip: string, ownIp?: string): string | undefined {
  if (isIP(ip) === 0 || ip.includes('%')) return `${ip} is not a plain IP address`
  if (isLoopback(ip)) return ownIp === undefined || isLoopback(ownIp) ? undefined : `${ip} is loopback and our own address ${ownIp} is not`
  if (FORBIDDEN.check(ip, family(ip))) return `${ip} is unspecified, multicast, broadcast, link-local or reserved`
  return undefined
}

function checkAddress(ip: string, ownIp?: string): void {
  const why = forbiddenAddress(ip, ownIp)
  if (why !== undefined) throw new PunchRejectError('forbidden-address', why)
}

/** A message as sent: varint length (≤ 2 bytes) and body. */
export function encodeMessage(body: Uint8Array): Uint8Array {
  if (body.byteLength > MAX_MESSAGE_BYTES) throw new RangeError(`a punch message has at most ${MAX_MESSAGE_BYTES} bytes`)
  const n = body.byteLength
  const prefix = n < 0x80 ? [n] : [(n & 0x7f) | 0x80, n >> 7]
  const out = new Uint8Array(prefix.length + n)
  out.set(prefix)
  out.set(body, prefix.length)
  return out
}

async function writeMessage(stream: Stream, body: Uint8Array, signal: AbortSignal): Promise<void> {
  if (!stream.send(encodeMessage(body))) await stream.onDrain({ signal })
}

/**
 * Reads the one message of a stream: a varint length prefix of at most 2 bytes and a body of at
 * most 512 bytes, both refused as soon as their first bytes show them too long (the body is
 * allocated only once its length is known to fit), whole within `timeoutMs` of the call. Any byte
 * after the message is refused (`malformed`); on refusal the stream is aborted. Bytes arriving
 * once the message is read are dropped, never buffered.
 */
export function readMessage(stream: Stream, timeoutMs: number, signal?: AbortSignal): Promise<Uint8Array> {
  return new Promise<Uint8Array>((resolve, reject) => {
    let prefixBytes = 0
    let value = 0 // the length, as its prefix bytes arrive (at most 2 bytes: 14 bits)
    let length = -1
    let body: Uint8Array | undefined
    let got = 0
    let done = false
    const finish = (err: Error | undefined): void => {
      if (done) return
      done = true
      clearTimeout(timer)
      signal?.removeEventListener('abort', onAbort)
      stream.removeEventListener('remoteCloseWrite', onEnd)
      stream.removeEventListener('close', onEnd)
      if (err === undefined) {
        resolve(body!)
        return
      }
      if (err instanceof PunchRejectError) stream.abort(err)
      reject(err)
    }
    const onAbort = (): void => {
      finish(new AbortError('the hole punching service stopped'))
    }
    const timer = setTimeout(() => finish(new PunchRejectError('timeout', `the message did not arrive whole within ${timeoutMs} ms (${prefixBytes + got} bytes in)`)), timeoutMs)
    const onData = (data: Uint8Array): void => {
      let i = 0
      while (length < 0 && i < data.byteLength) {
        const b = data[i++]!
        value |= (b & 0x7f) << (7 * prefixBytes)
        prefixBytes++
        if ((b & 0x80) !== 0) {
          if (prefixBytes >= MAX_PREFIX_BYTES) {
            finish(new PunchRejectError('oversized-prefix', `the length prefix is longer than ${MAX_PREFIX_BYTES} bytes`))
            return
          }
          continue
        }
        if (value > MAX_MESSAGE_BYTES) {
          finish(new PunchRejectError('oversized-body', `a message of ${value} bytes (at most ${MAX_MESSAGE_BYTES})`))
          return
        }
        if (value === 0) {
          finish(new PunchRejectError('malformed', 'an empty message'))
          return
        }
        length = value
        body = new Uint8Array(length)
      }
      if (length < 0 || body === undefined) return
      const take = Math.min(length - got, data.byteLength - i)
      body.set(data.subarray(i, i + take), got)
      got += take
      i += take
      if (i < data.byteLength) {
        finish(new PunchRejectError('malformed', `${data.byteLength - i} bytes after the message`))
        return
      }
      if (got === length) finish(undefined)
    }
    const onMessage = (evt: { data: Uint8Array | Uint8ArrayList }): void => {
      if (done) return // dropped: one message per direction
      const d = evt.data
      if (d instanceof Uint8Array) onData(d)
      else for (const chunk of d) if (!done) onData(chunk)
    }
    // the stream may have ended before we read it: its queued bytes are delivered first
    const onEnd = (): void => {
      setImmediate(() => finish(new PunchRejectError('truncated', `the stream ended after ${prefixBytes + got} bytes of the message`)))
    }
    if (signal?.aborted === true) {
      onAbort()
      return
    }
    signal?.addEventListener('abort', onAbort, { once: true })
    stream.addEventListener('message', onMessage)
    stream.addEventListener('remoteCloseWrite', onEnd)
    stream.addEventListener('close', onEnd)
    if (stream.remoteWriteStatus !== 'writable' || stream.status !== 'open') onEnd()
  })
}

/** Whether a connection goes through a relay (a `/p2p-circuit` address). */
export function isRelayed(c: Pick<Connection, 'remoteAddr'>): boolean {
  return isCircuit(c.remoteAddr)
}

/** The IP of a direct connection's remote address. */
function remoteIp(c: Pick<Connection, 'remoteAddr'>): string | undefined {
  return ipOf(c.remoteAddr)
}

/** A TCP socket as a libp2p MultiaddrConnection, for the upgrader. */
class PunchedSocket extends AbstractMultiaddrConnection {
  private readonly socket: Socket
  constructor(socket: Socket, init: AbstractMultiaddrConnectionInit) {
    super(init)
    this.socket = socket
    socket.on('data', (buf) => this.onData(buf))
    socket.on('error', (err) => this.abort(err))
    socket.once('end', () => this.onTransportClosed())
    socket.once('close', (hadError) => (hadError ? this.abort(new Error('TCP transmission error')) : this.onTransportClosed()))
    socket.on('drain', () => this.safeDispatchEvent('drain'))
  }
  sendData(data: { [Symbol.iterator](): Iterator<Uint8Array> }): { sentBytes: number; canSendMore: boolean } {
    let sentBytes = 0
    let canSendMore = true
    for (const buf of data) {
      sentBytes += buf.byteLength
      canSendMore = this.socket.write(buf)
      if (!canSendMore) break
    }
    return { sentBytes, canSendMore }
  }
  async sendClose(): Promise<void> {
    if (this.socket.destroyed) return
    const closed = new Promise<void>((resolve) => this.socket.once('close', () => resolve()))
    this.socket.destroySoon()
    await closed
  }
  sendReset(): void {
    this.socket.destroy()
  }
  sendPause(): void {
    this.socket.pause()
  }
  sendResume(): void {
    this.socket.resume()
  }
}

/** A port nobody listens on now (the OS's pick), for one attempt. */
async function freePort(host: string): Promise<number> {
  return await new Promise((resolve, reject) => {
    const s = createServer()
    s.once('error', reject)
    s.listen(0, host, () => {
      const addr = s.address()
      s.close(() => (typeof addr === 'object' && addr !== null ? resolve(addr.port) : reject(new Error('no port'))))
    })
  })
}

const toError = (err: unknown): Error => (err instanceof Error ? err : new Error(String(err)))

/** Emits `reject` (`PunchRejection`), `attempt` (`PunchAttempt`) and `attempt:end` (`PunchAttemptEnd`): see `HolePunchEvents`. */
export class HolePunch extends EventTarget implements Startable {
  readonly [Symbol.toStringTag] = 'monna-hole-punch'
  private readonly c: HolePunchComponents
  private readonly init: Required<HolePunchInit>
  private readonly log: Logger
  /** accepted attempts per peer, for the node's lifetime */
  private readonly attempts = new Map<string, number>()
  /** peers with an attempt in progress (or an offer being accepted) */
  private readonly running = new Set<string>()
  private readonly punched = new Set<string>()
  private readonly controller = new AbortController()
  readonly stats: HolePunchStats = {
    succeeded: 0,
    failed: 0,
    attempts: 0,
    rejected: Object.fromEntries(PUNCH_REJECTION_REASONS.map((r) => [r, 0])) as Record<PunchRejectionReason, number>,
  }

  constructor(components: HolePunchComponents, init: HolePunchInit) {
    super()
    this.c = components
    this.init = { attemptMs: 10_000, retryMs: 200, maxAttempts: 3, maxConcurrent: 4, messageTimeoutMs: 10_000, observeTimeoutMs: 5_000, upgradeTimeoutMs: 30_000, ...init }
    this.log = components.logger.forComponent('monna:punch')
    this.onOpen = this.onOpen.bind(this)
  }

  async start(): Promise<void> {
    // registered for limited connections too, so a relayed connection always gets an answer (a
    // refusal over relayed ones)
    await this.c.registrar.handle(OBSERVE_PROTOCOL, (stream, connection) => this.answerObserve(stream, connection), { runOnLimitedConnection: true })
    await this.c.registrar.handle(PUNCH_PROTOCOL, (stream, connection) => this.respond(stream, connection), { runOnLimitedConnection: true })
    this.c.events.addEventListener('connection:open', this.onOpen)
  }

  async stop(): Promise<void> {
    this.controller.abort()
    this.c.events.removeEventListener('connection:open', this.onOpen)
    await this.c.registrar.unhandle(OBSERVE_PROTOCOL)
    await this.c.registrar.unhandle(PUNCH_PROTOCOL)
  }

  /** Whether the direct connection to `peer` was opened by hole punching. */
  isPunched(c: Connection): boolean {
    return this.punched.has(c.id)
  }

  /** Whether we lead the pair with `peer` (the smaller PeerId): only the leader initiates. */
  leads(peer: PeerId | string): boolean {
    return this.c.peerId.toString() < peer.toString()
  }

  private onOpen(evt: CustomEvent<Connection>): void {
    const conn = evt.detail
    if (!isRelayed(conn) || !this.init.allows(conn.remotePeer) || !this.leads(conn.remotePeer)) return
    void this.punch(conn.remotePeer)
  }

  private hasDirect(peer: PeerId): boolean {
    return this.c.connectionManager.getConnections(peer).some((c) => !isRelayed(c) && c.status === 'open')
  }

  private relayedTo(peer: PeerId): Connection | undefined {
    return this.c.connectionManager.getConnections(peer).find((c) => isRelayed(c) && c.status === 'open')
  }

  private reject(peer: PeerId | string, protocol: PunchRejection['protocol'], err: PunchRejectError): void {
    this.stats.rejected[err.reason]++
    const detail: PunchRejection = { peer: peer.toString(), protocol, reason: err.reason, message: err.message }
    this.log('refused a %s message from %s: %s (%s)', protocol, detail.peer, err.reason, err.message)
    this.dispatchEvent(new CustomEvent('reject', { detail }))
  }

  /** Why a new attempt with `peer` cannot start now: `busy` or `attempts-exhausted`. */
  private admission(key: string): PunchRejectError | undefined {
    if (this.running.has(key)) return new PunchRejectError('busy', 'an attempt with this peer is in progress')
    if (this.running.size >= this.init.maxConcurrent) return new PunchRejectError('busy', `${this.running.size} attempts are in progress`)
    if ((this.attempts.get(key) ?? 0) >= this.init.maxAttempts) return new PunchRejectError('attempts-exhausted', `${this.init.maxAttempts} attempts with this peer were made already`)
    return undefined
  }

  /** Starts an accepted attempt: counted against the cap, `running` until `end`. */
  private begin(peer: PeerId, role: PunchAttempt['role']): (ok: boolean, err?: unknown) => void {
    const key = peer.toString()
    this.attempts.set(key, (this.attempts.get(key) ?? 0) + 1)
    this.running.add(key)
    this.stats.attempts++
    this.dispatchEvent(new CustomEvent('attempt', { detail: { peer: key, role } satisfies PunchAttempt }))
    return (ok, err) => {
      this.running.delete(key)
      if (!ok) this.stats.failed++
      const detail: PunchAttemptEnd = { peer: key, role, ok, ...(err !== undefined ? { error: String(err) } : {}) }
      this.dispatchEvent(new CustomEvent('attempt:end', { detail }))
    }
  }

  /**
   * Asks members we reach directly which address our connection comes from, within
   * `observeTimeoutMs` in all. An answer is checked like an offer, and must be loopback exactly
   * when the connection it was asked over is (an observer cannot make us accept loopback offers).
   */
  async publicIp(): Promise<string> {
    const deadline = Date.now() + this.init.observeTimeoutMs
    const direct = this.c.connectionManager.getConnections().filter((c) => !isRelayed(c) && c.status === 'open' && this.init.allows(c.remotePeer))
    for (const conn of direct) {
      const left = deadline - Date.now()
      if (left <= 0) break
      let stream: Stream | undefined
      try {
        const signal = AbortSignal.any([this.controller.signal, AbortSignal.timeout(left)])
        stream = await conn.newStream(OBSERVE_PROTOCOL, { signal })
        const { ip } = parseJson(await readMessage(stream, Math.max(1, deadline - Date.now()), this.controller.signal))
        const answer = parseIp(ip)
        const via = remoteIp(conn)
        if (via !== undefined && isLoopback(via) !== isLoopback(answer)) throw new PunchRejectError('forbidden-address', `observed as ${answer} over a connection to ${via}`)
        checkAddress(answer, answer)
        void stream.close().catch(() => {})
        return answer
      } catch (err) {
        if (err instanceof PunchRejectError) {
          this.reject(conn.remotePeer, 'observe', err)
          stream?.abort(err)
        } else stream?.abort(toError(err))
        this.log('observe via %p failed: %s', conn.remotePeer, String(err))
      }
    }
    throw new Error(`no member reachable directly told us our address within ${this.init.observeTimeoutMs} ms`)
  }

  private async answerObserve(stream: Stream, connection: Connection): Promise<void> {
    try {
      if (!this.init.allows(connection.remotePeer)) throw new PunchRejectError('not-member', 'not a member')
      if (isRelayed(connection)) throw new PunchRejectError('relayed-observe', 'observations are answered over direct connections only')
      const parts = connection.remoteAddr.getComponents()
      const ip = parts.find((p) => p.name === 'ip4' || p.name === 'ip6')?.value
      const port = Number(parts.find((p) => p.name === 'tcp')?.value)
      if (ip === undefined) throw new Error('the connection has no IP address')
      await writeMessage(stream, new TextEncoder().encode(JSON.stringify({ ip, port })), AbortSignal.any([this.controller.signal, AbortSignal.timeout(this.init.messageTimeoutMs)]))
      await stream.close({ signal: AbortSignal.timeout(this.init.messageTimeoutMs) })
    } catch (err) {
      if (err instanceof PunchRejectError) this.reject(connection.remotePeer, 'observe', err)
      stream.abort(toError(err))
    }
  }

  /** Leads one attempt with `peer` (we hold a relayed connection to it and lead the pair). */
  async punch(peer: PeerId): Promise<boolean> {
    if (this.hasDirect(peer)) return true
    if (!this.leads(peer) || this.admission(peer.toString()) !== undefined) return false
    const relayed = this.relayedTo(peer)
    if (relayed === undefined) return false
    const end = this.begin(peer, 'lead')
    let stream: Stream | undefined
    try {
      const ownIp = await this.publicIp()
      const port = await freePort('0.0.0.0')
      const signal = AbortSignal.any([this.controller.signal, AbortSignal.timeout(this.init.messageTimeoutMs)])
      stream = await relayed.newStream(PUNCH_PROTOCOL, { runOnLimitedConnection: true, signal })
      const answer = readMessage(stream, this.init.messageTimeoutMs, this.controller.signal)
      answer.catch(() => {})
      await writeMessage(stream, new TextEncoder().encode(JSON.stringify({ ip: ownIp, port })), signal)
      const theirs = parseOffer(await answer)
      checkAddress(theirs.ip, ownIp)
      void stream.close().catch(() => {})
      const ok = await this.connectAndUpgrade(peer, port, theirs, 'outbound')
      end(ok)
      return ok
    } catch (err) {
      if (err instanceof PunchRejectError) {
        this.reject(peer, 'punch', err)
        stream?.abort(err)
      } else stream?.abort(toError(err))
      this.log('hole punch with %p failed: %s', peer, String(err))
      end(false, err)
      return false
    }
  }

  /** Answers the leader's offer: checks who, reads and checks the offer, then punches from our side. */
  private async respond(stream: Stream, connection: Connection): Promise<void> {
    const peer = connection.remotePeer
    let end: ((ok: boolean, err?: unknown) => void) | undefined
    try {
      if (!this.init.allows(peer)) throw new PunchRejectError('not-member', 'not a member')
      if (!isRelayed(connection)) throw new PunchRejectError('not-relayed', 'punch offers come over relayed connections only')
      if (this.leads(peer)) throw new PunchRejectError('wrong-role', 'the peer with the smaller PeerId initiates: we do')
      const refused = this.admission(peer.toString())
      if (refused !== undefined) throw refused
      const theirs = parseOffer(await readMessage(stream, this.init.messageTimeoutMs, this.controller.signal))
      checkAddress(theirs.ip)
      // another offer may have been accepted while this one arrived
      const late = this.admission(peer.toString())
      if (late !== undefined) throw late
      end = this.begin(peer, 'answer')
      const ownIp = await this.publicIp()
      checkAddress(theirs.ip, ownIp)
      const port = await freePort('0.0.0.0')
      await writeMessage(stream, new TextEncoder().encode(JSON.stringify({ ip: ownIp, port })), AbortSignal.any([this.controller.signal, AbortSignal.timeout(this.init.messageTimeoutMs)]))
      void stream.close().catch(() => {})
      const ok = await this.connectAndUpgrade(peer, port, theirs, 'inbound')
      end(ok)
    } catch (err) {
      if (err instanceof PunchRejectError) this.reject(peer, 'punch', err)
      this.log('answering a hole punch from %p failed: %s', peer, String(err))
      stream.abort(toError(err))
      end?.(false, err)
    }
  }

  /** Connects from `localPort` to exactly the (checked) address `to` until the simultaneous open succeeds, then upgrades. */
  private async connectAndUpgrade(peer: PeerId, localPort: number, to: Offer, direction: 'outbound' | 'inbound'): Promise<boolean> {
    const deadline = Date.now() + this.init.attemptMs
    let socket: Socket | undefined
    while (socket === undefined && Date.now() < deadline && !this.controller.signal.aborted) {
      if (this.hasDirect(peer)) return true
      socket = await new Promise<Socket | undefined>((resolve) => {
        const s = connect({ host: to.ip, port: to.port, localPort, timeout: Math.min(2000, Math.max(1, deadline - Date.now())) })
        s.once('connect', () => {
          s.setTimeout(0)
          resolve(s)
        })
        s.once('timeout', () => {
          s.destroy()
          resolve(undefined)
        })
        s.once('error', () => resolve(undefined))
      })
      if (socket === undefined) await new Promise((r) => setTimeout(r, this.init.retryMs * (0.5 + Math.random())))
    }
    if (socket === undefined) throw new Error(`no simultaneous open with ${to.ip}:${to.port} within ${this.init.attemptMs} ms`)
    const ipPort = multiaddr(`/ip${isIP(to.ip)}/${to.ip}/tcp/${to.port}`)
    // the outbound upgrade checks (Noise) that the remote holds the key of the /p2p/ id
    const remoteAddr = direction === 'outbound' ? ipPort.encapsulate(`/p2p/${peer.toString()}`) : ipPort
    const maConn = new PunchedSocket(socket, { remoteAddr, direction, log: this.log.newScope('socket') })
    const signal = AbortSignal.any([this.controller.signal, AbortSignal.timeout(this.init.upgradeTimeoutMs)])
    let conn: Connection | undefined
    try {
      if (direction === 'outbound') {
        conn = await this.c.upgrader.upgradeOutbound(maConn, { signal })
      } else {
        await this.c.upgrader.upgradeInbound(maConn, { signal })
        conn = this.c.connectionManager.getConnections(peer).find((c) => c.remoteAddr.decapsulateCode(421).equals(ipPort) && c.status === 'open')
        if (conn === undefined) throw new Error('the punched connection came from another peer')
      }
    } catch (err) {
      socket.destroy()
      throw err
    }
    this.punched.add(conn.id)
    this.stats.succeeded++
    this.log('direct connection to %p by hole punching (%s)', peer, direction)
    // everything moves to the direct connection
    for (const c of this.c.connectionManager.getConnections(peer)) if (isRelayed(c)) await c.close().catch(() => {})
    return true
  }
}

export function holePunch(init: HolePunchInit): (components: HolePunchComponents) => HolePunch {
  return (components) => new HolePunch(components, init)
}
