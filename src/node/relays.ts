/**
 * Members behind NAT (docs/nat.md): which member relays, who reserves a slot on which relay,
 * how members without addresses are reached, and what kind each open connection is.
 *
 * - A member marked `relay: true` in the swarm file serves as a relay for the swarm's members
 *   (`createNetNode({ relay: { serve: true } })`; members only, both ends).
 * - A member whose swarm entry lists no addresses holds a reservation on every relay (it listens
 *   on `<relay address>/p2p/<relay>/p2p-circuit`) and the others dial it there.
 * - Two members connected through a relay try to open a direct connection by hole punching
 *   (src/net/punch.ts); once it is open the relayed connection is closed.
 */
import type { Connection, Libp2p } from '@libp2p/interface'
import { Gauge, type Registry } from 'prom-client'
import type { SwarmConfig } from '../config/schema.ts'
import { type HolePunch, isRelayed } from '../net/punch.ts'
import type { ReachabilityService } from '../net/reachability.ts'

export type ConnectionKind = 'direct' | 'relayed' | 'hole-punched'

export interface PeerConnection {
  peer: string
  kind: ConnectionKind
  /** the connection's remote address (a relayed one names the relay) */
  address: string
  /** `outbound`: this member opened it (dialled, or led the hole punch) */
  direction: 'inbound' | 'outbound'
}

const withId = (addr: string, id: string): string => (addr.includes('/p2p/') ? addr : `${addr}/p2p/${id}`)

/** The swarm's relays other than `self`, as dialable multiaddrs ending in /p2p/<relay>. */
export function relayAddresses(swarm: SwarmConfig, self: string): string[] {
  return swarm.members.filter((m) => m.relay === true && m.id !== self).flatMap((m) => m.addresses.map((a) => withId(a, m.id)))
}

/** What `self`'s libp2p node does about relays: serve as one, and/or reserve on the others. */
export function relayPlan(swarm: SwarmConfig, self: string): { serve: boolean; through: string[] } {
  const me = swarm.members.find((m) => m.id === self)
  const behindNat = me !== undefined && me.addresses.length === 0
  return { serve: me?.relay === true, through: behindNat ? relayAddresses(swarm, self) : [] }
}

/** Addresses through the relays of every other member that lists no address of its own. */
export function relayedAddresses(swarm: SwarmConfig, self: string): string[] {
  const relays = relayAddresses(swarm, self)
  return swarm.members.filter((m) => m.id !== self && m.addresses.length === 0).flatMap((m) => relays.map((r) => `${r}/p2p-circuit/p2p/${m.id}`))
}

function kindOf(c: Connection, punch: HolePunch | undefined): ConnectionKind {
  if (isRelayed(c)) return 'relayed'
  return punch?.isPunched(c) === true ? 'hole-punched' : 'direct'
}

/** Each open connection of `node` with its kind. */
export function connectionKindsOf(node: Libp2p<{ punch?: HolePunch }>): PeerConnection[] {
  const punch = node.services.punch
  return node
    .getConnections()
    .filter((c) => c.status === 'open')
    .map((c) => ({ peer: c.remotePeer.toString(), kind: kindOf(c, punch), address: c.remoteAddr.toString(), direction: c.direction }))
}

/**
 * `monna_connections{member, kind}`: open connections by kind, read when scraped;
 * `monna_hole_punches{member, outcome}`: accepted attempts that opened a direct connection or not;
 * `monna_hole_punch_rejections{member, reason}`: punch and observe messages refused, by reason;
 * `monna_reachability{member, reachability}`: 1 for the member's reachability (public, private or
 * unknown: AutoNAT v2, docs/nat.md), 0 for the two others.
 */
export function registerConnectionMetrics(registry: Registry, member: string, node: Libp2p<{ punch?: HolePunch; reachability?: ReachabilityService }>): () => void {
  const registers = [registry]
  const connections =
    (registry.getSingleMetric('monna_connections') as Gauge | undefined) ??
    new Gauge({ name: 'monna_connections', help: 'Open connections by kind (direct, relayed, hole-punched)', labelNames: ['member', 'kind'], registers })
  const punches =
    (registry.getSingleMetric('monna_hole_punches') as Gauge | undefined) ??
    new Gauge({ name: 'monna_hole_punches', help: 'Hole-punching attempts so far by outcome (succeeded: a direct connection opened; failed: the relayed one stays)', labelNames: ['member', 'outcome'], registers })
  const rejections =
    (registry.getSingleMetric('monna_hole_punch_rejections') as Gauge | undefined) ??
    new Gauge({ name: 'monna_hole_punch_rejections', help: 'Hole-punching and observe messages refused so far, by reason (docs/nat.md, "Hostile peers")', labelNames: ['member', 'reason'], registers })
  const reach =
    (registry.getSingleMetric('monna_reachability') as Gauge | undefined) ??
    new Gauge({ name: 'monna_reachability', help: "The member's own reachability by AutoNAT v2: 1 for public, private or unknown (docs/nat.md)", labelNames: ['member', 'reachability'], registers })
  const update = (): void => {
    const r = node.services.reachability?.status().reachability ?? 'unknown'
    for (const k of ['public', 'private', 'unknown'] as const) reach.set({ member, reachability: k }, k === r ? 1 : 0)
    const counts: Record<ConnectionKind, number> = { direct: 0, relayed: 0, 'hole-punched': 0 }
    for (const c of connectionKindsOf(node)) counts[c.kind]++
    for (const [kind, v] of Object.entries(counts)) connections.set({ member, kind }, v)
    const stats = node.services.punch?.stats
    punches.set({ member, outcome: 'succeeded' }, stats?.succeeded ?? 0)
    punches.set({ member, outcome: 'failed' }, stats?.failed ?? 0)
    for (const [reason, n] of Object.entries(stats?.rejected ?? {})) rejections.set({ member, reason }, n)
  }
  update()
  const timer = setInterval(update, 1000)
  timer.unref()
  return () => clearInterval(timer)
}
