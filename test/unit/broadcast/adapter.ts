/**
 * Test adapter (not a test): hands frames to a member's echo broadcast exactly as the network
 * does — from a real libp2p node holding a given key, on a stream of the broadcast's protocol —
 * and reports the member's answer and the rejection it raised, if any. Replaces the former
 * in-process `ingest` hook: nothing reaches the broadcast except through its stream handler.
 */
import type { PrivateKey } from '@libp2p/interface'
import { type Adversary, createAdversary } from '../../../src/adversary/index.ts'
import type { EchoBroadcast, Frame, Rejection } from '../../../src/broadcast/index.ts'
import { encodeFrame } from '../../../src/broadcast/index.ts'
import { createNetNode, type Membership, type NetNode, peerIdOfKey } from '../../../src/net/index.ts'

export interface Ingest {
  (from: PrivateKey, frame: Uint8Array | Frame): Promise<{ replies: Frame[]; rejection?: Rejection; ended: string }>
  stop(): Promise<void>
}

/** `target` is the member's libp2p node and broadcast; frames come from nodes holding the keys given. */
export function ingestInto(target: { node: NetNode; b: EchoBroadcast; membership: Membership }): Ingest {
  const senders = new Map<string, { node: NetNode; adv: Adversary }>()
  const addr = target.node.getMultiaddrs()[0]!
  const sender = async (key: PrivateKey): Promise<Adversary> => {
    const id = peerIdOfKey(key)
    let s = senders.get(id)
    if (s === undefined) {
      // no membership gate on the sending side: it may be anyone
      const node = await createNetNode({ privateKey: key, listen: ['/ip4/127.0.0.1/tcp/0'] })
      s = { node, adv: createAdversary({ node, privateKey: key, membership: target.membership }) }
      senders.set(id, s)
    }
    if (s.node.getConnections(target.node.peerId).length === 0) await s.node.dial(addr, { signal: AbortSignal.timeout(20_000) })
    return s.adv
  }
  const ingest = (async (from, frame) => {
    const adv = await sender(from)
    let rejection: Rejection | undefined
    const on = (e: Event): void => {
      rejection ??= (e as CustomEvent<Rejection>).detail
    }
    target.b.addEventListener('reject', on)
    try {
      const bytes = frame instanceof Uint8Array ? frame : encodeFrame(frame)
      const res = await adv.exchange(target.node.peerId.toString(), [bytes], { signal: AbortSignal.timeout(60_000) })
      return { replies: res.replies, ended: res.ended, ...(rejection !== undefined ? { rejection } : {}) }
    } finally {
      target.b.removeEventListener('reject', on)
    }
  }) as Ingest
  ingest.stop = async () => {
    await Promise.allSettled([...senders.values()].map((s) => s.node.stop()))
  }
  return ingest
}
