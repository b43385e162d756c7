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
 * the smaller PeerId initiates the exchange and upgrades the new socket as the outbound side
 * (Noise initiator), the other as inbound — so a simultaneous open never has two initiators.
 * The upgraded connection goes through libp2p's own upgrader: the connection gater, Noise (the
 * remote must prove the PeerId it was punched for) and yamux, like any dialled connection.
 * Once the direct connection is open the relayed one is closed.
 *
 * Everything the other side sends is bounded (one message of ≤ 512 bytes per stream) and
 * checked: an address that is not a unicast IP and a port in 1024…65535 ends the attempt.
 */
import { connect, createServer, isIP, type Socket } from 'node:net'
import type { ComponentLogger, Connection, Libp2pEvents, Logger, PeerId, Startable, Stream, StreamHandlerOptions, TypedEventTarget, Upgrader } from '@libp2p/interface'
import { AbstractMultiaddrConnection, type AbstractMultiaddrConnectionInit, lpStream } from '@libp2p/utils'
import { multiaddr } from '@multiformats/multiaddr'

export const PUNCH_PROTOCOL = '/monna/punch/1.0.0'
export const OBSERVE_PROTOCOL = '/monna/observe/1.0.0'

const MAX_MESSAGE_BYTES = 512

export interface HolePunchInit {
  /** whether a peer may take part (the swarm's members) */
  allows: (peer: PeerId) => boolean
  /** how long both sides keep trying to connect (default 10 s) */
  attemptMs?: number
  /** pause between retries of one side's connect (default 200 ms) */
  retryMs?: number
  /** attempts per pair of members before giving up until a new relayed connection (default 3) */
  maxAttempts?: number
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

export interface HolePunchStats {
  /** direct connections opened by hole punching */
  succeeded: number
  /** attempts that ended without a direct connection (the relayed connection stays) */
  failed: number
}

/** What one side tells the other: where it will connect from. */
interface Offer {
  ip: string
  port: number
}

function parseOffer(bytes: Uint8Array): Offer {
  let o: unknown
  try {
    o = JSON.parse(new TextDecoder().decode(bytes))
  } catch {
    throw new Error('the offer is not JSON')
  }
  const { ip, port } = (o ?? {}) as { ip?: unknown; port?: unknown }
  if (typeof ip !== 'string' || isIP(ip) === 0) throw new Error('the offer has no IP address')
  if (typeof port !== 'number' || !Number.isInteger(port) || port < 1024 || port > 65535) throw new Error('the offer has no port in 1024…65535')
  return { ip, port }
}

/** Whether a connection goes through a relay (a `/p2p-circuit` address). */
export function isRelayed(c: Pick<Connection, 'remoteAddr'>): boolean {
  return c.remoteAddr.getComponents().some((p) => p.name === 'p2p-circuit')
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

export class HolePunch implements Startable {
  readonly [Symbol.toStringTag] = 'monna-hole-punch'
  private readonly c: HolePunchComponents
  private readonly init: Required<HolePunchInit>
  private readonly log: Logger
  private readonly attempts = new Map<string, number>()
  private readonly running = new Set<string>()
  private readonly punched = new Set<string>()
  private readonly controller = new AbortController()
  readonly stats: HolePunchStats = { succeeded: 0, failed: 0 }

  constructor(components: HolePunchComponents, init: HolePunchInit) {
    this.c = components
    this.init = { attemptMs: 10_000, retryMs: 200, maxAttempts: 3, ...init }
    this.log = components.logger.forComponent('monna:punch')
    this.onOpen = this.onOpen.bind(this)
  }

  async start(): Promise<void> {
    await this.c.registrar.handle(OBSERVE_PROTOCOL, (stream, connection) => this.answerObserve(stream, connection), { runOnLimitedConnection: false })
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

  private onOpen(evt: CustomEvent<Connection>): void {
    const conn = evt.detail
    if (!isRelayed(conn) || !this.init.allows(conn.remotePeer)) return
    // one side leads: the smaller PeerId
    if (this.c.peerId.toString() >= conn.remotePeer.toString()) return
    void this.punch(conn.remotePeer)
  }

  private hasDirect(peer: PeerId): boolean {
    return this.c.connectionManager.getConnections(peer).some((c) => !isRelayed(c) && c.status === 'open')
  }

  private relayedTo(peer: PeerId): Connection | undefined {
    return this.c.connectionManager.getConnections(peer).find((c) => isRelayed(c) && c.status === 'open')
  }

  /** Asks members we reach directly which address our connection comes from. */
  async publicIp(): Promise<string> {
    const direct = this.c.connectionManager.getConnections().filter((c) => !isRelayed(c) && c.status === 'open' && this.init.allows(c.remotePeer))
    for (const conn of direct) {
      try {
        const stream = await conn.newStream(OBSERVE_PROTOCOL, { signal: AbortSignal.any([this.controller.signal, AbortSignal.timeout(5000)]) })
        const lp = lpStream(stream, { maxDataLength: MAX_MESSAGE_BYTES })
        const answer = parseOffer((await lp.read()).subarray())
        await stream.close().catch(() => {})
        return answer.ip
      } catch (err) {
        this.log('observe via %p failed: %s', conn.remotePeer, String(err))
      }
    }
    throw new Error('no member reachable directly told us our address')
  }

  private async answerObserve(stream: Stream, connection: Connection): Promise<void> {
    try {
      if (!this.init.allows(connection.remotePeer)) throw new Error('not a member')
      const parts = connection.remoteAddr.getComponents()
      const ip = parts.find((p) => p.name === 'ip4' || p.name === 'ip6')?.value
      const port = Number(parts.find((p) => p.name === 'tcp')?.value)
      if (ip === undefined) throw new Error('the connection has no IP address')
      await lpStream(stream, { maxDataLength: MAX_MESSAGE_BYTES }).write(new TextEncoder().encode(JSON.stringify({ ip, port })))
      await stream.close()
    } catch (err) {
      stream.abort(err instanceof Error ? err : new Error(String(err)))
    }
  }

  /** Leads one attempt with `peer` (we hold a relayed connection to it). */
  async punch(peer: PeerId): Promise<boolean> {
    const key = peer.toString()
    if (this.running.has(key) || this.hasDirect(peer)) return this.hasDirect(peer)
    const n = this.attempts.get(key) ?? 0
    if (n >= this.init.maxAttempts) return false
    this.attempts.set(key, n + 1)
    this.running.add(key)
    try {
      const relayed = this.relayedTo(peer)
      if (relayed === undefined) return false
      const ip = await this.publicIp()
      const port = await freePort('0.0.0.0')
      const stream = await relayed.newStream(PUNCH_PROTOCOL, { runOnLimitedConnection: true, signal: AbortSignal.any([this.controller.signal, AbortSignal.timeout(10_000)]) })
      const lp = lpStream(stream, { maxDataLength: MAX_MESSAGE_BYTES })
      await lp.write(new TextEncoder().encode(JSON.stringify({ ip, port })))
      const theirs = parseOffer((await lp.read({ signal: AbortSignal.timeout(10_000) })).subarray())
      void stream.close().catch(() => {})
      const ok = await this.connectAndUpgrade(peer, port, theirs, 'outbound')
      return ok
    } catch (err) {
      this.log('hole punch with %p failed: %s', peer, String(err))
      this.stats.failed++
      return false
    } finally {
      this.running.delete(key)
    }
  }

  private async respond(stream: Stream, connection: Connection): Promise<void> {
    const peer = connection.remotePeer
    try {
      if (!this.init.allows(peer)) throw new Error('not a member')
      if (!isRelayed(connection)) throw new Error('a punch request comes over a relayed connection')
      const lp = lpStream(stream, { maxDataLength: MAX_MESSAGE_BYTES })
      const theirs = parseOffer((await lp.read({ signal: AbortSignal.timeout(10_000) })).subarray())
      const ip = await this.publicIp()
      const port = await freePort('0.0.0.0')
      await lp.write(new TextEncoder().encode(JSON.stringify({ ip, port })))
      void stream.close().catch(() => {})
      await this.connectAndUpgrade(peer, port, theirs, 'inbound')
    } catch (err) {
      this.log('answering a hole punch from %p failed: %s', peer, String(err))
      this.stats.failed++
      stream.abort(err instanceof Error ? err : new Error(String(err)))
    }
  }

  /** Connects from `localPort` to the other side until the simultaneous open succeeds, then upgrades. */
  private async connectAndUpgrade(peer: PeerId, localPort: number, to: Offer, direction: 'outbound' | 'inbound'): Promise<boolean> {
    const deadline = Date.now() + this.init.attemptMs
    let socket: Socket | undefined
    while (socket === undefined && Date.now() < deadline && !this.controller.signal.aborted) {
      if (this.hasDirect(peer)) return true
      socket = await new Promise<Socket | undefined>((resolve) => {
        const s = connect({ host: to.ip, port: to.port, localPort, timeout: 2000 })
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
    const signal = AbortSignal.any([this.controller.signal, AbortSignal.timeout(30_000)])
    let conn: Connection | undefined
    if (direction === 'outbound') {
      conn = await this.c.upgrader.upgradeOutbound(maConn, { signal })
    } else {
      await this.c.upgrader.upgradeInbound(maConn, { signal })
      conn = this.c.connectionManager.getConnections(peer).find((c) => c.remoteAddr.decapsulateCode(421).equals(ipPort) && c.status === 'open')
      if (conn === undefined) throw new Error('the punched connection came from another peer')
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
