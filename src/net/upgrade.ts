/**
 * From relayed to direct (docs/nat.md): a member we reach only through a relay may become
 * dialable — its UPnP mapping confirmed by AutoNAT, or a port forwarded by hand — and then
 * announces a public address (libp2p's identify). We ask it again over the relayed connection
 * every `identifyEveryMs` (libp2p's identify push would tell every peer at once, but running it
 * made gossipsub keep a peer whose stream it had just dropped for an oversized RPC:
 * test/integration/gossip-topics.test.ts), dial it at a public address it announces and, once
 * the direct connection is open, close the relayed ones.
 *
 * Bounds: only for members (`allows`; the connection gater checks again), only when every
 * connection to the peer is relayed, only public IP addresses the peer announced for itself
 * (`publicAddresses`: no DNS name, no private, shared, loopback, link-local, unique-local,
 * multicast, reserved or NAT64 range, no relay address), at most 8 of them, one dial in flight
 * per peer and at most one attempt per peer every `minGapMs` (default 30 s) — however often it
 * announces. The peers whose last attempt is remembered are at most `MAX_TRACKED` (4096): when
 * that many attempts were made within `minGapMs`, further peers wait until the oldest is
 * `minGapMs` old (test/unit/net/upgrade.test.ts tests each bound).
 */
import { BlockList, isIP } from 'node:net'
import type { Connection, IdentifyResult, Libp2p, PeerId } from '@libp2p/interface'
import { isPrivate } from '@libp2p/utils'
import type { Multiaddr } from '@multiformats/multiaddr'
import { forbiddenAddress, isLoopback, isRelayed } from './punch.ts'

export interface DirectUpgradeInit {
  allows: (peer: PeerId) => boolean
  minGapMs?: number
  /** how often members reached only through a relay are asked their addresses again (default 15 s) */
  identifyEveryMs?: number
  /** libp2p's identify of one connection */
  identify?: (c: Connection, signal: AbortSignal) => Promise<IdentifyResult>
  dialTimeoutMs?: number
  /**
   * Opens the direct connection (default: `node.dial`). A seam for tests: they count the dials
   * and answer them (or map an address to 127.0.0.1) without any packet leaving the machine.
   */
  dial?: (addrs: Multiaddr[], options: { force: true; signal: AbortSignal }) => Promise<Connection>
  onUpgrade?: (peer: string, address: string) => void
  onFailure?: (peer: string, error: string) => void
}

/** The most peers whose last attempt is remembered — so also the most attempts within `minGapMs`. */
export const MAX_TRACKED = 4096
/** The most addresses dialled per attempt. */
export const MAX_ADDRESSES = 8

/** Stops the upgrade; `tracked()` is how many peers' last attempts it remembers (≤ MAX_TRACKED). */
export interface DirectUpgrade {
  (): void
  tracked: () => number
}

// NAT64 prefixes (RFC 6052 well-known, RFC 8215 local-use): the IPv4 address inside may be any
const NAT64 = new BlockList()
NAT64.addSubnet('64:ff9b::', 96, 'ipv6')
NAT64.addSubnet('64:ff9b:1::', 48, 'ipv6')

/**
 * Whether `ip` is a public unicast address: not in libp2p's private ranges (`isPrivate`: 10/8,
 * 172.16/12, 192.168/16, 100.64/10, 127/8, ::1, fc00::/7, fe80::/10, documentation, 6to4,
 * Teredo, …), nor unspecified, multicast, broadcast, link-local, reserved, IPv4-compatible or
 * site-local (punch.ts's `forbiddenAddress`), nor loopback, nor NAT64. IPv4-mapped IPv6
 * addresses are judged by the IPv4 rules.
 */
function isPublicIp(a: Multiaddr, ip: string): boolean {
  const family = isIP(ip)
  if (family === 0 || isPrivate(a) || isLoopback(ip) || forbiddenAddress(ip) !== undefined) return false
  return family === 4 || !NAT64.check(ip, 'ipv6')
}

/**
 * The public addresses among those `peer` announced for itself, without its /p2p suffix: at
 * most 8, distinct, in the order announced. An address counts only when it starts with a public
 * IP (`/ip4` or `/ip6`, no zone) and names no relay (`/p2p-circuit`) and no peer but `peer` (its
 * own `/p2p/<peer>` suffix is stripped). DNS names (`/dns`, `/dns4`, `/dns6`, `/dnsaddr`) never
 * count: the peer chooses what they resolve to, so a name could make us dial a private or
 * loopback address.
 */
export function publicAddresses(addrs: Multiaddr[], peer: string): Multiaddr[] {
  const out: Multiaddr[] = []
  const seen = new Set<string>()
  for (const announced of addrs) {
    if (out.length >= MAX_ADDRESSES) break
    let parts = announced.getComponents()
    const tail = parts.at(-1)
    if (tail?.name === 'p2p' && tail.value === peer) parts = parts.slice(0, -1)
    const head = parts[0]
    if ((head?.name !== 'ip4' && head?.name !== 'ip6') || head.value === undefined) continue
    if (parts.some((c) => c.name === 'p2p-circuit' || c.name === 'p2p')) continue
    const a = parts.length === announced.getComponents().length ? announced : announced.decapsulateCode(421)
    if (!isPublicIp(a, head.value)) continue
    const key = a.toString()
    if (seen.has(key)) continue
    seen.add(key)
    out.push(a)
  }
  return out
}

/** Starts watching identify results; returns the function that stops it. */
export function startDirectUpgrade(node: Pick<Libp2p, 'getConnections' | 'dial' | 'addEventListener' | 'removeEventListener'>, init: DirectUpgradeInit): DirectUpgrade {
  const minGapMs = init.minGapMs ?? 30_000
  const dial = init.dial ?? ((addrs, options) => node.dial(addrs, options))
  // peer → time of its last attempt; insertion order is time order (re-set on every attempt)
  const last = new Map<string, number>()
  const inFlight = new Set<string>()
  const controller = new AbortController()
  const consider = (peer: PeerId, announced: Multiaddr[]): void => {
    const id = peer.toString()
    if (controller.signal.aborted || inFlight.has(id) || !init.allows(peer)) return
    const conns = node.getConnections(peer)
    if (conns.length === 0 || !conns.every(isRelayed)) return
    const addrs = publicAddresses(announced, id)
    if (addrs.length === 0) return
    const now = Date.now()
    const at = last.get(id)
    if (at !== undefined && now - at < minGapMs) return
    // forget attempts at least minGapMs old (oldest first); when MAX_TRACKED younger ones
    // remain, this peer waits: at most MAX_TRACKED attempts within minGapMs, however many peers
    for (const [p, t] of last) {
      if (now - t < minGapMs) break
      last.delete(p)
    }
    if (last.size >= MAX_TRACKED) return
    last.delete(id)
    last.set(id, now)
    inFlight.add(id)
    dial(
      addrs.map((a) => a.encapsulate(`/p2p/${id}`)),
      { force: true, signal: AbortSignal.any([controller.signal, AbortSignal.timeout(init.dialTimeoutMs ?? 20_000)]) },
    )
      .then(
        async (direct) => {
          if (isRelayed(direct)) return
          init.onUpgrade?.(id, direct.remoteAddr.toString())
          for (const c of node.getConnections(peer)) if (isRelayed(c)) await c.close().catch(() => {})
        },
        (err: unknown) => init.onFailure?.(id, String(err)),
      )
      .finally(() => inFlight.delete(id))
  }
  const onIdentify = (evt: CustomEvent<IdentifyResult>): void => consider(evt.detail.peerId, evt.detail.listenAddrs)
  node.addEventListener('peer:identify', onIdentify)
  // the members we reach only through a relay, asked their addresses again
  const timer = setInterval(() => {
    if (init.identify === undefined) return
    const relayed = new Map<string, Connection>()
    for (const c of node.getConnections()) if (isRelayed(c) && c.status === 'open') relayed.set(c.remotePeer.toString(), c)
    for (const c of relayed.values()) {
      if (!init.allows(c.remotePeer) || node.getConnections(c.remotePeer).some((x) => !isRelayed(x))) continue
      init.identify(c, AbortSignal.any([controller.signal, AbortSignal.timeout(10_000)])).catch(() => {})
    }
  }, init.identifyEveryMs ?? 15_000)
  timer.unref()
  const stop = (): void => {
    controller.abort()
    clearInterval(timer)
    node.removeEventListener('peer:identify', onIdentify)
  }
  return Object.assign(stop, { tracked: () => last.size })
}
