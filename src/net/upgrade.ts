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
 * connection to the peer is relayed, only public IP addresses (no private, loopback or
 * link-local range, no relay address) the peer announced for itself, at most 8 of them, one dial
 * in flight per peer and at most one attempt per peer every `minGapMs` (default 30 s) — however
 * often it announces.
 */
import type { Connection, IdentifyResult, Libp2p, PeerId } from '@libp2p/interface'
import { isNetworkAddress, isPrivate } from '@libp2p/utils'
import type { Multiaddr } from '@multiformats/multiaddr'
import { isRelayed } from './punch.ts'

export interface DirectUpgradeInit {
  allows: (peer: PeerId) => boolean
  minGapMs?: number
  /** how often members reached only through a relay are asked their addresses again (default 15 s) */
  identifyEveryMs?: number
  /** libp2p's identify of one connection */
  identify?: (c: Connection, signal: AbortSignal) => Promise<IdentifyResult>
  dialTimeoutMs?: number
  onUpgrade?: (peer: string, address: string) => void
  onFailure?: (peer: string, error: string) => void
}

/** The public addresses (at most 8) among those `peer` announced for itself, without its /p2p suffix. */
export function publicAddresses(addrs: Multiaddr[], peer: string): Multiaddr[] {
  return addrs
    .map((a) => (a.getComponents().at(-1)?.name === 'p2p' && a.getComponents().at(-1)?.value === peer ? a.decapsulateCode(421) : a))
    .filter((a) => isNetworkAddress(a) && !isPrivate(a) && !a.getComponents().some((c) => c.name === 'p2p-circuit' || c.name === 'p2p'))
    .slice(0, 8)
}

/** Starts watching identify results; returns the function that stops it. */
export function startDirectUpgrade(node: Libp2p, init: DirectUpgradeInit): () => void {
  const minGapMs = init.minGapMs ?? 30_000
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
    if (now - (last.get(id) ?? -Infinity) < minGapMs) return
    if (last.size >= 4096) for (const [p, at] of last) if (now - at >= minGapMs) last.delete(p)
    last.set(id, now)
    inFlight.add(id)
    node
      .dial(
        addrs.map((a) => a.encapsulate(`/p2p/${id}`)),
        { force: true, signal: AbortSignal.any([controller.signal, AbortSignal.timeout(init.dialTimeoutMs ?? 20_000)]) },
      )
      .then(
        async (direct) => {
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
  return () => {
    controller.abort()
    clearInterval(timer)
    node.removeEventListener('peer:identify', onIdentify)
  }
}
