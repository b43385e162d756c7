/**
 * The relayed → direct upgrade end to end (src/net/upgrade.ts, docs/nat.md "UPnP"), with real
 * libp2p nodes on 127.0.0.1: a relay R, a member V that A reaches only through R, and A, whose
 * upgrade (createNetNode's own, wired to its membership gate and identify) asks V its addresses
 * over the relayed connection. V first announces loopback addresses only (not public: A never
 * dials them), then gets a port mapping as UPnP would make one — its listen port mapped to a
 * public-looking IP, confirmed as AutoNAT would — and announces it. A dials it and closes the
 * relayed connection.
 *
 * No packet leaves the machine: A's upgrade dial is injected (`directUpgrade.dial`) and maps the
 * public-looking IP back to 127.0.0.1 — the test's stand-in for the NAT's port forward — and
 * every TCP connect of this process is intercepted (`syncBuiltinESMExports`): one to any
 * address but loopback is refused before a socket exists, and fails the test.
 * Hole punching and AutoNAT are off, so the only way to a direct connection is the upgrade.
 * The bounds themselves are tested in test/unit/net/upgrade.test.ts.
 */
import assert from 'node:assert/strict'
import { createRequire, syncBuiltinESMExports } from 'node:module'
import type * as NodeNet from 'node:net'
import { after, test } from 'node:test'
import type { Connection, IdentifyResult } from '@libp2p/interface'
import { type Multiaddr, multiaddr } from '@multiformats/multiaddr'
import { memoryLogger } from '../../src/logger.ts'
import { createNetNode, type Membership, type NetNode, peerIdOfKey } from '../../src/net/index.ts'
import { isLoopback, isRelayed } from '../../src/net/punch.ts'
import { waitEvent } from '../support/events.ts'
import { makeKeys } from '../unit/broadcast/harness.ts'

/** public-looking (outside every private range): only ever mapped to 127.0.0.1, never connected to */
const PUBLIC_IP = '1.2.3.4'

// every TCP connect of this process: loopback goes through, anything else is refused and recorded
const refused: string[] = []
const net = createRequire(import.meta.url)('node:net') as typeof NodeNet
const realConnect = net.connect
net.connect = function (this: unknown, ...args: unknown[]) {
  const o = args[0]
  if (typeof o === 'object' && o !== null && 'port' in o) {
    const host = (o as { host?: string }).host ?? 'localhost'
    if (host !== 'localhost' && !isLoopback(host)) {
      refused.push(`${host}:${(o as { port: number }).port}`)
      throw new Error(`test guard: no connection to ${host} (loopback only)`)
    }
  }
  return (realConnect as (...a: unknown[]) => NodeNet.Socket).apply(this, args)
} as typeof net.connect
syncBuiltinESMExports()

const stops: (() => Promise<void>)[] = []
after(async () => {
  for (const s of stops.reverse()) await s().catch(() => {})
  net.connect = realConnect
  syncBuiltinESMExports()
})

async function node(opts: Parameters<typeof createNetNode>[0]): Promise<NetNode> {
  const n = await createNetNode({ holePunch: false, reachability: false, ...opts })
  stops.push(async () => {
    await n.stop()
  })
  return n
}

test('a member reached only through a relay is dialled at the public address it announces once it has one (never at its loopback ones), and the relayed connection is closed', { timeout: 120_000 }, async () => {
  const [ak, vk, rk] = await makeKeys(3)
  const membership: Membership = { swarmId: 'upgrade', members: [ak!, vk!, rk!].map(peerIdOfKey), f: 0 }
  const relay = await node({ privateKey: rk!, listen: ['/ip4/127.0.0.1/tcp/0'], membership, relay: { serve: true } })
  const victim = await node({ privateKey: vk!, listen: ['/ip4/127.0.0.1/tcp/0'], membership, relay: { through: [relay.getMultiaddrs()[0]!.toString()] } })
  const circuit = (): string | undefined => victim.getMultiaddrs().find((a) => a.toString().includes('/p2p-circuit'))?.toString()
  if (circuit() === undefined) await waitEvent(victim, 'self:peer:update', () => circuit() !== undefined, 60_000)
  const vPort = Number(victim.getMultiaddrs().find((a) => !isRelayed({ remoteAddr: a }))!.getComponents()[1]!.value)

  // A's upgrade dial: records the addresses, then dials them with the public IP mapped to 127.0.0.1
  const dials: string[][] = []
  const toLoopback = (a: Multiaddr): Multiaddr => multiaddr(a.toString().replace(`/ip4/${PUBLIC_IP}/`, '/ip4/127.0.0.1/'))
  const logs = memoryLogger()
  const a: NetNode = await node({
    privateKey: ak!,
    listen: ['/ip4/127.0.0.1/tcp/0'],
    membership,
    logger: logs,
    directUpgrade: {
      identifyEveryMs: 100,
      dial: (addrs, options) => {
        dials.push(addrs.map(String))
        return a.dial(addrs.map(toLoopback), options)
      },
    },
  })
  const vId = victim.peerId.toString()
  const relayed = await a.dial(multiaddr(circuit()!), { signal: AbortSignal.timeout(30_000) })
  assert.ok(isRelayed(relayed), `A reaches V through R (${relayed.remoteAddr})`)

  // V announces its loopback listen address and its relay address only: identified again and
  // again over the relayed connection (every 100 ms), it is never dialled
  const identified = (): Promise<IdentifyResult> => waitEvent<IdentifyResult>(a, 'peer:identify', (r) => r.peerId.toString() === vId, 30_000)
  for (let i = 0; i < 3; i++) {
    const r = await identified()
    assert.ok(r.listenAddrs.some((x) => x.toString().startsWith('/ip4/127.0.0.1/tcp/')), `V announces its loopback address (${r.listenAddrs.join(' ')})`)
  }
  assert.deepEqual(dials, [], 'no dial at a loopback or relay address')
  assert.ok(a.getConnections(victim.peerId).every(isRelayed), 'still relayed only')

  const closed = waitEvent<Connection>(a, 'connection:close', (c) => c.id === relayed.id, 60_000)
  // V's listen port mapped on a "gateway" to PUBLIC_IP and confirmed, as @libp2p/upnp-nat and AutoNAT do
  const addressManager = (victim as unknown as { components: { addressManager: { addPublicAddressMapping: (...a: unknown[]) => void; confirmObservedAddr: (a: Multiaddr, o?: unknown) => void } } }).components.addressManager
  addressManager.addPublicAddressMapping('127.0.0.1', vPort, PUBLIC_IP, vPort, 'tcp')
  addressManager.confirmObservedAddr(multiaddr(`/ip4/${PUBLIC_IP}/tcp/${vPort}`), { type: 'ip-mapping' })
  const mapped = `/ip4/${PUBLIC_IP}/tcp/${vPort}`
  assert.ok(victim.getMultiaddrs().some((x) => x.toString().startsWith(mapped)), `V announces ${mapped}: ${victim.getMultiaddrs().join(' ')}`)

  // A asks again, dials the mapped address and closes the relayed connection
  await closed
  assert.deepEqual(dials, [[`${mapped}/p2p/${vId}`]], 'one dial, at the public address only')
  const now = a.getConnections(victim.peerId)
  assert.ok(now.length >= 1 && now.every((c) => !isRelayed(c)), `A now reaches V directly only: ${now.map((c) => c.remoteAddr.toString()).join(' ')}`)
  assert.ok(now.some((c) => c.remoteAddr.toString() === `/ip4/127.0.0.1/tcp/${vPort}/p2p/${vId}`))
  assert.ok(
    logs.records.some((r) => r.msg === 'direct connection to a member reached through a relay until now' && r.fields?.peer === vId),
    'A logged the upgrade',
  )
  // the direct connection works: V answers a ping over it
  await a.services.ping.ping(victim.peerId, { signal: AbortSignal.timeout(30_000) })
  assert.deepEqual(refused, [], 'nothing in this process tried to connect beyond loopback')
})
