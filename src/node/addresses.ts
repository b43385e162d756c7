/**
 * Member address exchange: each member periodically publishes its listen addresses on the
 * swarm's pubsub namespace (`/monna/<swarmId>/addresses/1`); every member stores the addresses
 * of the other members and dials the ones it is not connected to. So `--bootstrap` to any ONE
 * member is enough: gossipsub relays the announcements through it, and the echo broadcast,
 * which opens direct streams to every member, finds their addresses in the peer store.
 *
 * Announcements are gossipsub-signed messages; only members' own announcements are accepted
 * (`from` must be the member, the pubsub gate already drops non-members), bounded in size and
 * checked to be multiaddrs before use.
 */
import type { Libp2p } from '@libp2p/interface'
import { peerIdFromString } from '@libp2p/peer-id'
import { multiaddr } from '@multiformats/multiaddr'
import type { Logger } from '../logger.ts'

export const addressExchangeDefaults = {
  // Re-announce this often: gossipsub meshes form within a heartbeat or two (1 s each), and a
  // member that restarts must be found again within a few seconds.
  intervalMs: 3000,
  maxMessageBytes: 4096,
  maxAddresses: 16,
} as const

/** The fields of a gossipsub message we read. */
interface PubSubMessage {
  topic: string
  type: 'signed' | 'unsigned'
  from?: { toString(): string }
  data: Uint8Array
}

interface PubSubLike extends EventTarget {
  subscribe(topic: string): void
  unsubscribe(topic: string): void
  publish(topic: string, data: Uint8Array): Promise<unknown>
}

/** Starts announcing and learning member addresses; returns the function that stops it. */
export function startAddressExchange(opts: { node: Libp2p; topic: string; self: string; members: string[]; log: Logger; intervalMs?: number }): () => void {
  const { node, topic, self, log } = opts
  const pubsub = (node.services as { pubsub?: PubSubLike }).pubsub
  if (pubsub === undefined) return () => {}
  const members = new Set(opts.members)
  const onMessage = (evt: Event): void => {
    const msg = (evt as CustomEvent<PubSubMessage>).detail
    if (msg.topic !== topic || msg.type !== 'signed' || msg.from === undefined) return
    const from = msg.from.toString()
    if (from === self || !members.has(from) || msg.data.byteLength > addressExchangeDefaults.maxMessageBytes) return
    let addrs: string[]
    try {
      const parsed = JSON.parse(new TextDecoder().decode(msg.data)) as { addrs?: unknown }
      if (!Array.isArray(parsed.addrs)) return
      addrs = parsed.addrs.filter((a): a is string => typeof a === 'string' && a.length <= 256).slice(0, addressExchangeDefaults.maxAddresses)
    } catch {
      return
    }
    const mas = addrs.flatMap((a) => {
      try {
        const ma = multiaddr(a)
        return ma.getComponents().some((c) => c.name === 'p2p') ? [] : [ma]
      } catch {
        return []
      }
    })
    if (mas.length === 0) return
    const peer = peerIdFromString(from)
    node.peerStore
      .merge(peer, { multiaddrs: mas })
      .then(async () => {
        if (node.getConnections(peer).length > 0) return
        await node.dial(peer)
        log.debug('connected to a member announced through pubsub', { peer: from })
      })
      .catch((err: unknown) => log.debug('could not use announced member addresses', { peer: from, error: String(err) }))
  }
  const announce = (): void => {
    const addrs = node.getMultiaddrs().map((ma) => ma.decapsulateCode(421).toString())
    pubsub.publish(topic, new TextEncoder().encode(JSON.stringify({ addrs }))).catch((err: unknown) => {
      log.debug('address announcement not sent', { error: String(err) })
    })
  }
  pubsub.addEventListener('message', onMessage)
  pubsub.subscribe(topic)
  announce()
  const timer = setInterval(announce, opts.intervalMs ?? addressExchangeDefaults.intervalMs)
  return () => {
    clearInterval(timer)
    pubsub.removeEventListener('message', onMessage)
    try {
      pubsub.unsubscribe(topic)
    } catch {
      // already stopped
    }
  }
}
