/**
 * Membership-epoch gossip on the swarm's topic `/monna/<swarmId>/membership/1`: every member
 * publishes the newest signed epochs it knows (a JSON list, oldest first) every `intervalMs`
 * and at once when it learns a new one; receivers verify each epoch themselves (the admin's
 * signature, `src/membership`), so relays need no trust.
 *
 * What a member relays (the topic's gossipsub validator; REJECT = not relayed and counted
 * against the peer that relayed it, IGNORE = not relayed, no blame):
 * - REJECT a message above `maxMessageBytes` (256 KiB: one epoch of `epochLimits.maxMembers`
 *   = 1024 members at ≈ 250 bytes each — a PeerId, a name and a few addresses — or 4 epochs
 *   of 256), one that is not a JSON list of 1 to `maxEpochsPerMessage` (4) objects, and one
 *   holding an epoch that fails verification by itself (malformed, another swarm or admin, a
 *   bad signature, n < 3f + 1): an honest member publishes only epochs it verified.
 * - IGNORE a message whose epochs are all known already (identical number and signature; no
 *   signature is checked for them), or whose new epochs are refused for reasons that depend on
 *   what the receiver knows (a conflicting epoch of one number, activation order, staleness):
 *   every member republishes its own list, so duplicates need no relaying.
 * - Accept (and relay) a message that taught this member at least one new epoch.
 *
 * Verification is asynchronous: gossipsub awaits the validator before relaying.
 */
import type { TopicValidatorFn } from '@libp2p/gossipsub'
import { TopicValidatorResult } from '@libp2p/gossipsub'
import type { Logger } from '../logger.ts'
import { EpochRejectedError, type SignedEpoch } from '../membership/index.ts'

export const epochGossipDefaults = {
  intervalMs: 3000,
  maxEpochsPerMessage: 4,
  maxMessageBytes: 256 * 1024,
} as const

/** Refusals that hold whatever the receiver knows: the relayer is to blame. */
const intrinsic = new Set<EpochRejectedError['reason']>(['malformed', 'wrong-swarm', 'wrong-admin', 'bad-signature', 'fault-bound', 'no-admin'])

/** The part of gossipsub the epoch gossip uses. */
interface PubSubLike {
  topicValidators: Map<string, TopicValidatorFn>
  subscribe(topic: string): void
  unsubscribe(topic: string): void
  publish(topic: string, data: Uint8Array): Promise<unknown>
}

export interface EpochGossipOptions {
  pubsub: PubSubLike
  topic: string
  /** Verifies a received epoch and records it; `added` is false when it was known. Throws EpochRejectedError. */
  learn(raw: unknown, from: string): Promise<{ added: boolean }>
  /** The signed epochs this member knows, oldest first. */
  signed(): SignedEpoch[]
  log: Logger
  intervalMs?: number
}

export interface EpochGossip {
  /** Publishes the newest known epochs now (also done every `intervalMs`). */
  publish(): void
  stop(): void
}

/** The bytes a member publishes: its newest signed epochs, as many (≤ 4) as fit in the size bound; undefined when none does. */
export function encodeEpochList(signed: readonly SignedEpoch[]): Uint8Array | undefined {
  const enc = new TextEncoder()
  for (let k = Math.min(signed.length, epochGossipDefaults.maxEpochsPerMessage); k > 0; k--) {
    const bytes = enc.encode(JSON.stringify(signed.slice(-k)))
    if (bytes.byteLength <= epochGossipDefaults.maxMessageBytes) return bytes
  }
  return undefined
}

const keyOf = (e: { epoch?: unknown; signature?: unknown }): string => `${String(e.epoch)}:${String(e.signature)}`

/** Registers the topic's validator, subscribes and starts publishing. */
export function startEpochGossip(opts: EpochGossipOptions): EpochGossip {
  const { pubsub, topic, log } = opts
  const warned = new Set<string>()
  const validate: TopicValidatorFn = async (_peer, msg) => {
    const from = msg.type === 'signed' ? msg.from.toString() : 'unsigned'
    const refuse = (reason: string): TopicValidatorResult => {
      log.debug('membership gossip refused', { from, reason })
      return TopicValidatorResult.Reject
    }
    if (msg.data.byteLength > epochGossipDefaults.maxMessageBytes) return refuse(`${msg.data.byteLength} bytes, more than ${epochGossipDefaults.maxMessageBytes}`)
    let list: unknown
    try {
      list = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(msg.data))
    } catch {
      return refuse('not JSON')
    }
    if (!Array.isArray(list) || list.length === 0 || list.length > epochGossipDefaults.maxEpochsPerMessage) {
      return refuse(`not a list of 1..${epochGossipDefaults.maxEpochsPerMessage} epochs`)
    }
    if (!list.every((e) => typeof e === 'object' && e !== null && !Array.isArray(e))) return refuse('an entry is not an object')
    const known = new Set(opts.signed().map(keyOf))
    let added = false
    for (const raw of list as Array<{ epoch?: unknown; signature?: unknown }>) {
      if (known.has(keyOf(raw))) continue
      try {
        if ((await opts.learn(raw, from)).added) added = true
      } catch (err) {
        if (!(err instanceof EpochRejectedError)) {
          log.debug('membership epoch not recorded', { from, error: String(err) })
          continue
        }
        if (intrinsic.has(err.reason)) return refuse(`${err.reason}: ${err.message}`)
        const k = `${keyOf(raw)}:${err.reason}`
        if (!warned.has(k)) {
          if (warned.size >= 256) warned.clear()
          warned.add(k)
          log.warn('membership epoch refused', { reason: err.reason, error: err.message, from })
        }
      }
    }
    return added ? TopicValidatorResult.Accept : TopicValidatorResult.Ignore
  }
  let tooLarge = false
  const publish = (): void => {
    const signed = opts.signed()
    if (signed.length === 0) return
    const bytes = encodeEpochList(signed)
    if (bytes === undefined) {
      if (!tooLarge) log.warn('the newest membership epoch is too large to gossip; hand it to members with --epoch', { maxBytes: epochGossipDefaults.maxMessageBytes })
      tooLarge = true
      return
    }
    pubsub.publish(topic, bytes).catch((err: unknown) => log.debug('epoch relay not sent', { error: String(err) }))
  }
  pubsub.topicValidators.set(topic, validate)
  pubsub.subscribe(topic)
  const timer = setInterval(publish, opts.intervalMs ?? epochGossipDefaults.intervalMs)
  return {
    publish,
    stop() {
      clearInterval(timer)
      try {
        pubsub.unsubscribe(topic)
      } catch {}
      pubsub.topicValidators.delete(topic)
    },
  }
}
