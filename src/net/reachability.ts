/**
 * Reachability (docs/nat.md): a member learns by itself whether the others can dial it, with
 * libp2p's AutoNAT v2 (`@libp2p/autonat-v2`): it asks the members it is connected to to dial one of
 * its addresses back; a successful dial-back confirms the address (libp2p's address manager marks
 * it verified and from then on announces it), a failed one counts against it.
 *
 * Which addresses are tested: the member's public listen addresses (a member with a public IP),
 * the addresses UPnP mapped on its gateway (`--upnp`), and — for a member listening only on
 * private addresses — its public IP as another member's identify observed it, with its own listen
 * port (`<public ip>:<listen port>`: reachable when the NAT forwards that port). js-libp2p's
 * identify ignores observed TCP addresses (its TCP dials leave from ephemeral ports), so without
 * this last candidate a member behind NAT would have nothing to test and stay `unknown`.
 *
 * What a member reports (`status()`), per address and overall:
 * - `reachable`: a member dialled it back (libp2p: verified); the member is `public`;
 * - `unreachable`: a member tried and failed; with no reachable address the member is `private`;
 * - `unknown`: not tested yet (or every answer was a refusal to dial).
 * libp2p itself drops an address only after 8 failed dial-backs from 8 different /8 networks, and
 * needs 4 successes from distinct networks for an *observed* address (mapped and listen addresses
 * need 1): a swarm of a few members, or one in one /8, never gets there. So "unreachable" here
 * is our reading of libp2p's own per-address results (its client's `dialResults`, read-only):
 * at least one member answered that its dial-back failed and none succeeded.
 *
 * The AutoNAT *server* side — a member dialling back an address another member asks it to — is
 * bounded so it cannot be used to make us dial at will (docs/nat.md, "Hostile peers"):
 * - only members reach it at all (the connection gater refuses everyone else);
 * - a request is answered over a direct connection only, and we dial back only the IP address
 *   that very connection comes from (any port): an address on another IP is refused
 *   (`E_DIAL_REFUSED`, which the asking member does not count as a failure); libp2p's
 *   amplification guard (asking for 30–100 kB before dialling another IP) is then never needed;
 * - at most 2 requests at once per connection (`maxInboundStreams`), each message ≤ 4 KiB
 *   (`maxMessageSize`), each request answered within 30 s in all (`timeout`), its addresses
 *   dialled one after another; a dial-back reaching a non-member fails at the connection gater
 *   after the Noise handshake.
 */
import { AsyncLocalStorage } from 'node:async_hooks'
import { type AutoNATv2ServiceInit, autoNATv2 } from '@libp2p/autonat-v2'
import { type ComponentLogger, type Connection, type Libp2pEvents, type Logger, type PeerStore, type Startable, serviceCapabilities, serviceDependencies, start, stop, type Topology, type TypedEventTarget } from '@libp2p/interface'
import type { AddressManager, ConnectionManager, Registrar } from '@libp2p/interface-internal'
import { getNetConfig, isNetworkAddress, isPrivate, isPrivateIp } from '@libp2p/utils'
import { CODE_IP6, type Multiaddr } from '@multiformats/multiaddr'
import { ipOf, isCircuit } from './addr.ts'
import { isRelayed } from './punch.ts'

export type Reachability = 'public' | 'private' | 'unknown'
export type AddressReachability = 'reachable' | 'unreachable' | 'unknown'

export interface ReachabilityStatus {
  reachability: Reachability
  /** the member's public addresses AutoNAT tests (listen, UPnP-mapped, observed IP + listen port) */
  /**
   * `type`: libp2p's (transport: a listen address; ip-mapping: UPnP or observed IP + listen port);
   * `failures`: failed dial-backs counted so far while the address is not confirmed
   */
  addresses: { address: string; type: string; state: AddressReachability; failures: number }[]
}

export interface ReachabilityInit {
  /** called once each time the overall reachability changes (checked every `checkMs`) */
  onChange?: (s: ReachabilityStatus, before: Reachability) => void
  /** how often the status is checked for changes (default 1 s) */
  checkMs?: number
  /** AutoNAT v2 options (tests shorten `startupDelay`; the bounds above are set here) */
  autonat?: Pick<AutoNATv2ServiceInit, 'startupDelay' | 'refreshInterval'>
  /** most public IPs observed by members tried as `<ip>:<listen port>` (default 4) */
  maxObservedIps?: number
  /** asking the connected members again about addresses still untested (default 10 s) */
  retryMs?: number
  /** whether to try observed public IPs with our listen port at all (default true; off with UPnP) */
  observedCandidates?: boolean
}

export interface ReachabilityComponents {
  registrar: Registrar
  addressManager: AddressManager
  connectionManager: ConnectionManager
  logger: ComponentLogger
  peerStore: PeerStore
  events: TypedEventTarget<Libp2pEvents>
  [k: string]: unknown
}

const DIAL_REQUEST = '/libp2p/autonat/2/dial-request'

/** Bounds of the AutoNAT server side (see the header). */
export const autonatBounds = { maxInboundStreams: 2, maxMessageSize: 4096, timeout: 30_000 } as const


/** libp2p's per-address results inside its AutoNAT v2 client (read-only; version 2.0.x). */
interface DialResultsView {
  get(addr: string): { failure: number } | undefined
}

export class ReachabilityService implements Startable {
  readonly [Symbol.toStringTag] = 'monna/reachability'
  readonly [serviceCapabilities]: string[] = ['@libp2p/autonat']
  get [serviceDependencies](): string[] {
    return ['@libp2p/identify']
  }

  private readonly components: ReachabilityComponents
  private readonly inner: Startable
  private readonly log: Logger
  private readonly init: ReachabilityInit
  /** the AutoNAT client's topology (captured when it registers), run again when a new candidate appears */
  private topology: Topology | undefined
  /** the connection a dial request is being answered on (server side) */
  private readonly serving = new AsyncLocalStorage<Connection>()
  private readonly observedIps = new Set<string>()
  /** addresses the connected members were asked about (askForNew) */
  private readonly asked = new Set<string>()
  private lastAsked = 0
  private timer: ReturnType<typeof setInterval> | undefined
  private last: Reachability = 'unknown'
  /** dial-backs refused by the server-side bound (another IP than the asking connection's, or relayed) */
  refusedDialBacks = 0

  constructor(components: ReachabilityComponents, init: ReachabilityInit = {}) {
    this.components = components
    this.init = init
    this.log = components.logger.forComponent('monna:reachability')
    const self = this
    const cm = components.connectionManager
    const guardedCm = new Proxy(cm, {
      get(target, prop, receiver) {
        if (prop === 'isDialable') {
          return async (ma: Multiaddr | Multiaddr[], options?: Parameters<ConnectionManager['isDialable']>[1]) => {
            if (!self.dialBackAllowed(ma)) return false
            return target.isDialable(ma, options)
          }
        }
        if (prop === 'openConnection') {
          return async (peer: Parameters<ConnectionManager['openConnection']>[0], options?: Parameters<ConnectionManager['openConnection']>[1]) => {
            if (!self.dialBackAllowed(peer)) throw new Error('AutoNAT dial-back refused: not the asking member\'s own IP over a direct connection')
            return target.openConnection(peer, options)
          }
        }
        const v = Reflect.get(target, prop, receiver)
        return typeof v === 'function' ? v.bind(target) : v
      },
    })
    const registrar = components.registrar
    const guardedRegistrar = new Proxy(registrar, {
      get(target, prop, receiver) {
        if (prop === 'handle') {
          return (protocol: string, handler: Parameters<Registrar['handle']>[1], options?: Parameters<Registrar['handle']>[2]) =>
            target.handle(protocol, protocol === DIAL_REQUEST ? (stream, connection) => self.serving.run(connection, () => handler(stream, connection)) : handler, options)
        }
        if (prop === 'register') {
          return (protocol: string, topology: Topology) => {
            if (protocol === DIAL_REQUEST) self.topology = topology
            return target.register(protocol, topology)
          }
        }
        const v = Reflect.get(target, prop, receiver)
        return typeof v === 'function' ? v.bind(target) : v
      },
    })
    // AutoNAT sees no relay (/p2p-circuit) address: its reachability is the relay's, and a server
    // refusing to dial one (another IP than the asking connection's) answers E_DIAL_REFUSED, on which
    // libp2p's client stops reading the answers for the request's other addresses
    const am = components.addressManager
    const guardedAm = new Proxy(am, {
      get(target, prop, receiver) {
        if (prop === 'getAddressesWithMetadata') return () => target.getAddressesWithMetadata().filter((a) => !isCircuit(a.multiaddr))
        const v = Reflect.get(target, prop, receiver)
        return typeof v === 'function' ? v.bind(target) : v
      },
    })
    const wrapped = new Proxy(components, {
      get(target, prop, receiver) {
        if (prop === 'connectionManager') return guardedCm
        if (prop === 'registrar') return guardedRegistrar
        if (prop === 'addressManager') return guardedAm
        return Reflect.get(target, prop, receiver)
      },
    })
    this.inner = autoNATv2({ ...autonatBounds, ...init.autonat })(wrapped as never) as Startable
    this.onIdentify = this.onIdentify.bind(this)
  }

  /**
   * Server side: inside the handling of a dial request, only the asking connection's own IP, over
   * a direct connection. Outside one (the client's own dials of peers), anything.
   */
  private dialBackAllowed(target: unknown): boolean {
    const asking = this.serving.getStore()
    if (asking === undefined) return true
    const ok = ((): boolean => {
      if (isRelayed(asking)) return false
      if (typeof target !== 'object' || target === null || Array.isArray(target) || !('getComponents' in target)) return false
      const ip = ipOf(target as Multiaddr)
      return ip !== undefined && ip === ipOf(asking.remoteAddr)
    })()
    if (!ok) this.refusedDialBacks++
    return ok
  }

  async start(): Promise<void> {
    await start(this.inner)
    this.components.events.addEventListener('peer:identify', this.onIdentify)
    this.timer = setInterval(() => this.check(), this.init.checkMs ?? 1000)
    this.timer.unref()
  }

  async stop(): Promise<void> {
    this.components.events.removeEventListener('peer:identify', this.onIdentify)
    if (this.timer !== undefined) clearInterval(this.timer)
    await stop(this.inner)
  }

  /**
   * A member observed our address: when we listen on private addresses only, try its IP with our
   * listen port (port forwarding or a UPnP mapping makes it reachable). Only over direct
   * connections (a relayed one would name the relay), only public IPs, at most `maxObservedIps`.
   */
  private onIdentify(evt: CustomEvent<{ observedAddr?: Multiaddr; connection: Connection }>): void {
    if (this.init.observedCandidates === false) return
    const { observedAddr, connection } = evt.detail
    if (observedAddr === undefined || isRelayed(connection) || !isNetworkAddress(observedAddr)) return
    const ip = ipOf(observedAddr)
    if (ip === undefined || isPrivateIp(ip) === true || this.observedIps.has(ip)) return
    if (this.observedIps.size >= (this.init.maxObservedIps ?? 4)) return
    const family = observedAddr.getComponents()[0]?.code === CODE_IP6 ? 'ip6' : 'ip4'
    const am = this.components.addressManager
    const transport = am.getAddressesWithMetadata().filter((a) => a.type === 'transport' && isNetworkAddress(a.multiaddr))
    // a member with a public listen address is tested on that address itself
    if (transport.some((a) => !isPrivate(a.multiaddr))) return
    let added = false
    for (const a of transport) {
      const c = getNetConfig(a.multiaddr)
      if (c.type !== family || c.protocol !== 'tcp' || c.port === undefined) continue
      if (/^(127\.|::1$)/.test(c.host)) continue
      am.addPublicAddressMapping(c.host, c.port, ip, c.port, 'tcp')
      added = true
    }
    if (!added) return
    this.observedIps.add(ip)
    this.log('trying %s with our listen port, observed by %p', ip, connection.remotePeer)
  }

  /**
   * libp2p's AutoNAT client asks the members it connects to; an address that appears later (an
   * observed-IP candidate, a UPnP mapping) would wait for the next connection. Each new untested
   * address makes the members connected already directly be asked now, and while an address
   * stays untested (an answer lost with its stream), they are asked again every `retryMs`.
   */
  private askForNew(s: ReachabilityStatus): void {
    const untested = s.addresses.filter((a) => a.state === 'unknown')
    if (untested.length === 0 || this.topology?.onConnect === undefined) return
    const fresh = untested.some((a) => !this.asked.has(a.address))
    if (!fresh && Date.now() - this.lastAsked < (this.init.retryMs ?? 10_000)) return
    if (this.asked.size >= 64) this.asked.clear()
    for (const a of untested) this.asked.add(a.address)
    this.lastAsked = Date.now()
    for (const c of this.components.connectionManager.getConnections()) {
      if (c.status !== 'open' || isRelayed(c)) continue
      Promise.resolve(this.topology.onConnect(c.remotePeer, c)).catch(() => {})
    }
  }

  private dialResults(): DialResultsView | undefined {
    const client = (this.inner as unknown as { client?: { dialResults?: unknown } }).client
    const r = client?.dialResults
    return r instanceof Map ? (r as DialResultsView) : undefined
  }

  status(): ReachabilityStatus {
    const seen = new Set<string>()
    const results = this.dialResults()
    const addresses: ReachabilityStatus['addresses'] = []
    for (const a of this.components.addressManager.getAddressesWithMetadata()) {
      const key = a.multiaddr.toString()
      if (seen.has(key) || !isNetworkAddress(a.multiaddr) || isPrivate(a.multiaddr) || isCircuit(a.multiaddr)) continue
      seen.add(key)
      const r = results?.get(key)
      const state: AddressReachability = a.verified ? 'reachable' : (r?.failure ?? 0) > 0 ? 'unreachable' : 'unknown'
      addresses.push({ address: key, type: a.type, state, failures: a.verified ? 0 : (r?.failure ?? 0) })
    }
    const reachability: Reachability = addresses.some((a) => a.state === 'reachable') ? 'public' : addresses.some((a) => a.state === 'unreachable') ? 'private' : 'unknown'
    return { reachability, addresses }
  }

  private check(): void {
    const s = this.status()
    this.askForNew(s)
    if (s.reachability === this.last) return
    const before = this.last
    this.last = s.reachability
    this.init.onChange?.(s, before)
  }
}

/** The reachability service (AutoNAT v2, bounded as above) for `services`. */
export function reachability(init: ReachabilityInit = {}): (components: ReachabilityComponents) => ReachabilityService {
  return (components) => new ReachabilityService(components, init)
}

