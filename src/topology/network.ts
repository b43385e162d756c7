/**
 * Network-condition emulation for topologies.
 *
 * Conditions (latency, jitter, loss, bandwidth) are realised at the APPLICATION level, not in
 * the kernel: each member's broadcast port is wrapped (`NodeOptions.wrapBroadcast`) so that a
 * model sent by member A becomes visible to member B only after
 * `latencyMs + U(0, jitterMs) + bytes / bandwidthBytesPerSec`, or never, with probability
 * `loss`. The transport underneath (TCP on loopback, or the in-process hub) stays reliable
 * and fast, so a "lost" message is exactly what loss means on a reliable transport: that
 * broadcast instance never reaches that member. Protocol control traffic (echoes, FINAL
 * certificates) is not delayed; only the moment a round's model becomes usable is.
 *
 * Links are directed; resolution order (later wins): `default`, then `members` entries
 * (conditions on what those members send), then `links` entries.
 */
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
