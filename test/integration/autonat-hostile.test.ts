/**
 * The AutoNAT v2 server side is bounded (src/net/reachability.ts; docs/nat.md, "Reachability"):
 * a member asking us to dial an address on another IP than its own connection's is refused before
 * any dial, and a non-member cannot ask at all. Real libp2p nodes on 127.0.0.1; the hostile member
 * speaks the protocol by hand (its protobuf written here from the spec's .proto).
 * Also the wiring of `upnp`: refused with one line where it cannot work, and `--upnp` reaches the
 * node config.
 */
import assert from 'node:assert/strict'
import { createServer } from 'node:net'
import { after, test } from 'node:test'
import { lpStream } from '@libp2p/utils'
import { multiaddr } from '@multiformats/multiaddr'
import { resolveNodeConfig } from '../../node/commands/start.ts'
import { InvalidConfigError } from '../../src/errors.ts'
import { createNetNode, type Membership, type NetNode, peerIdOfKey } from '../../src/net/index.ts'
import { parseNodeConfig } from '../../src/node/config.ts'
import { makeKeys } from '../unit/broadcast/harness.ts'

const stops: (() => Promise<void>)[] = []
after(async () => {
  for (const s of stops.reverse()) await s().catch(() => {})
})

const DIAL_REQUEST = '/libp2p/autonat/2/dial-request'

const varint = (n: number): number[] => {
  const out: number[] = []
  while (n > 0x7f) {
    out.push((n & 0x7f) | 0x80)
    n >>>= 7
  }
  out.push(n)
  return out
}

/** Message { dialRequest = 1: DialRequest { addrs = 1 (bytes), nonce = 2 (fixed64) } } */
function dialRequest(addr: Uint8Array, nonce: bigint): Uint8Array {
  const n = Buffer.alloc(8)
  n.writeBigUInt64LE(nonce)
  const inner = [0x0a, ...varint(addr.byteLength), ...addr, 0x11, ...n]
  return Uint8Array.from([0x0a, ...varint(inner.length), ...inner])
}

test('an AutoNAT request to dial another IP than the asking member\'s own is refused (E_DIAL_REFUSED) and nothing is dialled', { timeout: 60_000 }, async () => {
  const keys = await makeKeys(3)
  const membership: Membership = { swarmId: 'autonat-hostile', members: keys.slice(0, 2).map(peerIdOfKey), f: 0 }
  const start = async (k: (typeof keys)[number], m: Membership): Promise<NetNode> => {
    const n = await createNetNode({ privateKey: k, listen: ['/ip4/127.0.0.1/tcp/0'], membership: m, holePunch: false })
    stops.push(async () => {
      await n.stop()
    })
    return n
  }
  const server = await start(keys[0]!, membership)
  const hostile = await start(keys[1]!, membership)
  // where the hostile member wants us to connect: another loopback IP, with a listener that counts
  let reached = 0
  const target = createServer((s) => {
    reached++
    s.destroy()
  })
  await new Promise<void>((r) => target.listen(0, '127.0.0.2', r))
  stops.push(() => new Promise((r) => target.close(() => r())))
  const port = (target.address() as { port: number }).port

  const stream = await hostile.dialProtocol(server.getMultiaddrs()[0]!, DIAL_REQUEST)
  const lp = lpStream(stream)
  await lp.write(dialRequest(multiaddr(`/ip4/127.0.0.2/tcp/${port}`).bytes, 42n))
  const answer = (await lp.read()).subarray()
  // Message { dialResponse = 2: { status = 1: E_DIAL_REFUSED (101) } }
  assert.deepEqual([...answer], [0x12, 0x02, 0x08, 101], `answer ${Buffer.from(answer).toString('hex')}`)
  assert.equal(server.services.reachability!.refusedDialBacks, 1)
  assert.equal(reached, 0, 'nothing connected to the address named')
  await stream.close().catch(() => {})

  // a non-member cannot even connect to ask
  const outsider = await start(keys[2]!, { ...membership, members: [...membership.members, peerIdOfKey(keys[2]!)] })
  await assert.rejects(outsider.dialProtocol(server.getMultiaddrs()[0]!, DIAL_REQUEST))
  assert.equal(server.services.reachability!.refusedDialBacks, 1)
})

test('upnp: refused in one line where it cannot work; --upnp and `upnp: true` reach the node', async () => {
  const [k] = await makeKeys(1)
  await assert.rejects(createNetNode({ privateKey: k!, listen: ['/memory/x'], transport: 'memory', upnp: true }), (e: unknown) => e instanceof InvalidConfigError && /TCP only/.test(e.message) && !e.message.includes('\n'))
  await assert.rejects(createNetNode({ privateKey: k!, listen: ['/ip4/127.0.0.1/tcp/0'], upnp: true, reachability: false }), (e: unknown) => e instanceof InvalidConfigError && /reachability/.test(e.message) && !e.message.includes('\n'))
  assert.equal((await resolveNodeConfig({ swarm: 's.yaml', key: 'k.key', upnp: true })).upnp, true)
  assert.equal((await resolveNodeConfig({ swarm: 's.yaml', key: 'k.key' })).upnp, false)
  assert.throws(() => parseNodeConfig({ swarm: 's.yaml', key: 'k.key', upnp: 'yes' }), (e: unknown) => e instanceof Error && /upnp/.test(e.message) && !e.message.trim().includes('\n'))
  // a TCP node with upnp on runs libp2p's UPnP service (no gateway on this host: it finds none and carries on)
  const n = await createNetNode({ privateKey: k!, listen: ['/ip4/127.0.0.1/tcp/0'], upnp: { initialGatewaySearchTimeout: 100 } })
  stops.push(async () => {
    await n.stop()
  })
  assert.ok(n.services.upnp !== undefined && n.services.reachability !== undefined)
})
