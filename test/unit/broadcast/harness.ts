/**
 * Test harness (not a test): n real libp2p nodes on 127.0.0.1, fully connected, each with a
 * signed echo broadcast. Used by test/integration/broadcast*.test.ts and the benchmark.
 */
import { generateKeyPair } from '@libp2p/crypto/keys'
import type { PrivateKey } from '@libp2p/interface'
import { createEchoBroadcast, type Delivery, type EchoBroadcast, type EchoBroadcastOptions } from '../../../src/broadcast/index.ts'
import { createNetNode, type Membership, type NetNode, peerIdOfKey } from '../../../src/net/index.ts'

export interface Swarm {
  membership: Membership
  keys: PrivateKey[]
  nodes: NetNode[]
  /** Broadcast of member i; undefined for members started without one. */
  bcasts: Array<EchoBroadcast | undefined>
  stop(): Promise<void>
}

export interface SwarmOptions {
  n: number
  f: number
  swarmId?: string
  /** Members (indices) whose broadcast is not started (silent/crashed or started later). */
  withoutBroadcast?: number[]
  /** Members (indices) whose libp2p node is not started at all. */
  offline?: number[]
  broadcast?: Partial<Omit<EchoBroadcastOptions, 'node' | 'privateKey' | 'membership'>>
  /** libp2p transport: TCP on 127.0.0.1 (default) or libp2p's in-memory transport (one process) */
  transport?: 'tcp' | 'memory'
}

export async function makeKeys(n: number): Promise<PrivateKey[]> {
  return Promise.all(Array.from({ length: n }, () => generateKeyPair('Ed25519')))
}

export async function connectAll(nodes: NetNode[]): Promise<void> {
  // a dial whose handshake times out on a loaded machine (a CI rehearsal beside 26 member
  // processes: EncryptionFailedError, "aborted due to timeout", for one of 45 dials) is tried
  // again, as a member's redial would: the tests are about what happens once connected
  const deadline = Date.now() + 90_000
  const dial = async (from: NetNode, to: NetNode): Promise<void> => {
    for (;;) {
      try {
        await from.dial(to.getMultiaddrs()[0]!)
        return
      } catch (err) {
        if (from.getConnections(to.peerId).length > 0) return
        if (Date.now() > deadline) throw err
        await new Promise((r) => setTimeout(r, 250))
      }
    }
  }
  const dials: Promise<unknown>[] = []
  for (let i = 0; i < nodes.length; i++) for (let j = i + 1; j < nodes.length; j++) dials.push(dial(nodes[i]!, nodes[j]!))
  await Promise.all(dials)
  // the dialling side finishes its upgrade first: wait until every node sees all the others
  await Promise.all(
    nodes.map(
      (n) =>
        new Promise<void>((resolve, reject) => {
          const timer = setTimeout(() => reject(new Error('connections did not all open within 90 s')), 90_000)
          const check = (): void => {
            const peers = new Set(n.getConnections().map((c) => c.remotePeer.toString()))
            if (peers.size >= nodes.length - 1) {
              clearTimeout(timer)
              n.removeEventListener('connection:open', check)
              resolve()
            }
          }
          n.addEventListener('connection:open', check)
          check()
        }),
    ),
  )
}

export async function startSwarm(opts: SwarmOptions): Promise<Swarm> {
  const keys = await makeKeys(opts.n)
  const membership: Membership = { swarmId: opts.swarmId ?? 'test', members: keys.map(peerIdOfKey), f: opts.f }
  const offline = new Set(opts.offline ?? [])
  const nodes: NetNode[] = []
  const bcasts: Array<EchoBroadcast | undefined> = []
  const swarm: Swarm = {
    membership,
    keys,
    nodes,
    bcasts,
    async stop() {
      await Promise.allSettled(bcasts.map((b) => b?.stop()))
      await Promise.allSettled(nodes.map((n) => n.stop()))
    },
  }
  try {
    for (let i = 0; i < opts.n; i++) {
      if (offline.has(i)) continue
      const memory = opts.transport === 'memory'
      nodes.push(
        await createNetNode({ privateKey: keys[i]!, listen: [memory ? `/memory/${membership.members[i]}` : '/ip4/127.0.0.1/tcp/0'], membership, ...(memory ? { transport: 'memory' as const } : {}) }),
      )
    }
    await connectAll(nodes)
    const without = new Set(opts.withoutBroadcast ?? [])
    let k = 0
    for (let i = 0; i < opts.n; i++) {
      if (offline.has(i)) {
        bcasts.push(undefined)
        continue
      }
      const node = nodes[k++]!
      bcasts.push(without.has(i) ? undefined : await createEchoBroadcast({ node, privateKey: keys[i]!, membership, ...opts.broadcast }))
    }
  } catch (err) {
    await swarm.stop()
    throw err
  }
  return swarm
}

/** Resolves when `b` has delivered `count` instances of `round` (event-driven, no polling). */
export function waitDeliveries(b: EchoBroadcast, round: number, count: number, signal?: AbortSignal): Promise<Delivery[]> {
  return new Promise((resolve, reject) => {
    const check = (): boolean => {
      const d = b.delivered(round)
      if (d.length >= count) {
        b.removeEventListener('deliver', check)
        signal?.removeEventListener('abort', onAbort)
        resolve(d)
        return true
      }
      return false
    }
    const onAbort = (): void => {
      b.removeEventListener('deliver', check)
      reject(new Error(`timed out waiting for ${count} deliveries of round ${round} (have ${b.delivered(round).length})`))
    }
    if (check()) return
    b.addEventListener('deliver', check)
    signal?.addEventListener('abort', onAbort, { once: true })
  })
}

/** Resolves with the first 'reject' event of `b` whose reason is `reason`. */
export function waitReject(b: EchoBroadcast, reason: string, signal?: AbortSignal): Promise<import('../../../src/broadcast/index.ts').Rejection> {
  return new Promise((resolve, reject) => {
    const on = (evt: Event): void => {
      const r = (evt as CustomEvent).detail
      if (r.reason !== reason) return
      b.removeEventListener('reject', on)
      resolve(r)
    }
    b.addEventListener('reject', on)
    signal?.addEventListener('abort', () => reject(new Error(`timed out waiting for a '${reason}' rejection`)), { once: true })
  })
}

export function payloadOf(seed: number, size: number): Uint8Array {
  const p = new Uint8Array(size)
  let x = seed * 2654435761 + 1
  for (let i = 0; i < size; i++) {
    x = (x * 1103515245 + 12345) >>> 0
    p[i] = x >>> 24
  }
  return p
}

/**
 * Asserts that `to` refuses a connection from `from`: either the dial fails, or (when the
 * refusal comes after the handshake) the connection is closed and carries no stream.
 */
export async function assertRefused(from: NetNode, to: import('@multiformats/multiaddr').Multiaddr): Promise<void> {
  let conn: import('@libp2p/interface').Connection
  try {
    conn = await from.dial(to, { signal: AbortSignal.timeout(10_000) })
  } catch {
    return
  }
  let failed = false
  try {
    await from.services.ping.ping(conn.remotePeer, { signal: AbortSignal.timeout(10_000) })
  } catch {
    failed = true
  }
  if (!failed) throw new Error(`${to.toString()} accepted a connection and a ping from ${from.peerId.toString()}`)
}
