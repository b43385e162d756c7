import assert from 'node:assert/strict'
import { test } from 'node:test'
import { generateKeyPair } from '@libp2p/crypto/keys'
import type { Libp2p } from '@libp2p/interface'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { createNetNode, libp2pLogger, peerIdOfKey, SKIP_KNOWN_MERGES, sharedEd25519Stats, shareEd25519Checks, skipKnownProtocolMerges } from '../../../src/net/index.ts'

type PeerStore = Libp2p['peerStore']

/** A peer store whose merge only counts its calls. */
function countingStore(): { store: PeerStore; merges: Array<Record<string, unknown>> } {
  const merges: Array<Record<string, unknown>> = []
  const store = {
    merge: async (id: unknown, data: Record<string, unknown>) => {
      merges.push(data)
      return { id, protocols: (data.protocols as string[] | undefined) ?? [] }
    },
  } as unknown as PeerStore
  return { store, merges }
}

test('skipKnownProtocolMerges: a protocol of ours already merged for a peer is not merged again; anything else always is', async () => {
  const a = peerIdFromPrivateKey(await generateKeyPair('Ed25519'))
  const b = peerIdFromPrivateKey(await generateKeyPair('Ed25519'))
  const { store, merges } = countingStore()
  skipKnownProtocolMerges(store, /^\/monna\//)
  const ours = '/monna/s/echo-bcast/2.0.0'
  const first = await store.merge(a, { protocols: [ours] })
  await store.merge(a, { protocols: [ours] })
  const again = await store.merge(a, { protocols: [ours] })
  assert.equal(merges.length, 1, 'the second and third merges of the same protocol for the same peer are skipped')
  assert.equal(again, first, 'a skipped merge returns the record the first one returned')
  await store.merge(b, { protocols: [ours] }) // another peer
  await store.merge(a, { protocols: ['/monna/punch/1.0.0'] }) // another of our protocols
  await store.merge(a, { protocols: ['/meshsub/1.1.0'] }) // not ours: libp2p topologies watch those
  await store.merge(a, { protocols: ['/meshsub/1.1.0'] })
  await store.merge(a, { protocols: [ours], tags: {} }) // more than protocols
  await store.merge(a, { protocols: [ours, '/monna/x/1'] }) // more than one protocol
  assert.equal(merges.length, 7)
})

test('the merges a member skips: its own protocols and ping; never a protocol a libp2p topology watches', async () => {
  for (const p of ['/monna/s/echo-bcast/2.0.0', '/monna/punch/1.0.0', '/ipfs/ping/1.0.0']) assert.ok(SKIP_KNOWN_MERGES.test(p), p)
  // gossipsub, the relay's hop and stop, AutoNAT's dial request and identify: their merges always go through
  for (const p of ['/meshsub/1.2.0', '/meshsub/1.1.0', '/floodsub/1.0.0', '/libp2p/circuit/relay/0.2.0/hop', '/libp2p/circuit/relay/0.2.0/stop', '/libp2p/autonat/2/dial-request', '/ipfs/id/1.0.0', '/ipfs/id/push/1.0.0', '/ipfs/ping/2.0.0', '/xmonna/x']) {
    assert.ok(!SKIP_KNOWN_MERGES.test(p), p)
  }
  // the node's ping still works over a lean TCP connection, and the peer store records it once
  const keys = await Promise.all([0, 1].map(() => generateKeyPair('Ed25519')))
  const membership = { swarmId: 'lean-ping', members: keys.map(peerIdOfKey), f: 0 }
  const nodes = await Promise.all(keys.map((privateKey) => createNetNode({ privateKey, listen: ['/ip4/127.0.0.1/tcp/0'], membership })))
  try {
    await nodes[0]!.dial(nodes[1]!.getMultiaddrs()[0]!)
    for (let i = 0; i < 5; i++) assert.ok((await nodes[0]!.services.ping.ping(nodes[1]!.peerId, { signal: AbortSignal.timeout(30_000) })) >= 0)
    assert.ok((await nodes[1]!.peerStore.get(nodes[0]!.peerId)).protocols.includes('/ipfs/ping/1.0.0'))
  } finally {
    await Promise.all(nodes.map((n) => n.stop()))
  }
})

test('skipKnownProtocolMerges: the peers remembered are bounded', async () => {
  const { store, merges } = countingStore()
  skipKnownProtocolMerges(store, /^\/monna\//, 2)
  const ids = await Promise.all([0, 1, 2].map(async () => peerIdFromPrivateKey(await generateKeyPair('Ed25519'))))
  for (const id of ids) await store.merge(id, { protocols: ['/monna/p'] })
  await store.merge(ids[0]!, { protocols: ['/monna/p'] }) // forgotten when the third peer came: merged again
  assert.equal(merges.length, 4)
})

test('libp2pLogger: one silent logger for every component unless DEBUG asks for output', () => {
  assert.equal(libp2pLogger({ DEBUG: 'libp2p:*' }), undefined)
  const l = libp2pLogger({})
  assert.ok(l !== undefined)
  const log = l.forComponent('libp2p:x')
  assert.equal(log.enabled, false)
  assert.equal(log.newScope('y'), log)
  assert.equal(l.forComponent('libp2p:z'), log)
  log('nothing %s', 'happens')
  log.error('nor here')
  log.trace('nor here')
})

test('a lean node still records our protocol in its peer store once, and streams work', async () => {
  const keys = await Promise.all([0, 1].map(() => generateKeyPair('Ed25519')))
  const membership = { swarmId: 'lean', members: keys.map(peerIdOfKey), f: 0 }
  const nodes = await Promise.all(keys.map((privateKey, i) => createNetNode({ privateKey, listen: [`/memory/lean-test-${i}`], transport: 'memory', membership })))
  try {
    const protocol = '/monna/lean/1'
    let served = 0
    const all: { resolve: () => void; reject: (e: Error) => void; promise?: Promise<void> } = { resolve: () => {}, reject: () => {} }
    all.promise = new Promise<void>((resolve, reject) => Object.assign(all, { resolve, reject }))
    await nodes[1]!.handle(protocol, async (stream) => {
      for await (const _ of stream) if (++served === 5) all.resolve()
      await stream.close()
    })
    await nodes[0]!.dial(nodes[1]!.getMultiaddrs()[0]!)
    for (let i = 0; i < 5; i++) {
      const s = await nodes[0]!.dialProtocol(nodes[1]!.peerId, protocol)
      s.send(new Uint8Array([i]))
      await s.close()
    }
    const guard = setTimeout(() => all.reject(new Error(`${served} of 5 requests arrived within 60 s`)), 60_000)
    await all.promise
    clearTimeout(guard)
    const peer = await nodes[0]!.peerStore.get(nodes[1]!.peerId)
    assert.ok(peer.protocols.includes(protocol))
  } finally {
    await Promise.all(nodes.map((n) => n.stop()))
  }
})

test('shareEd25519Checks: libp2p Ed25519 keys remember each verification by its exact bytes, and still refuse what is wrong', async () => {
  const k = await generateKeyPair('Ed25519')
  shareEd25519Checks(k.publicKey)
  shareEd25519Checks(k.publicKey) // once per process
  const data = new TextEncoder().encode('libp2p-pubsub:a gossip message')
  const sig = await k.sign(data)
  const h0 = sharedEd25519Stats.hits
  const m0 = sharedEd25519Stats.misses
  assert.equal(await k.publicKey.verify(data, sig), true)
  // another key object for the same key (as gossipsub builds one per message): answered from memory
  const again = peerIdFromPrivateKey(k).publicKey!
  assert.equal(await again.verify(data.slice(), sig.slice()), true)
  assert.equal(sharedEd25519Stats.misses - m0, 1)
  assert.equal(sharedEd25519Stats.hits - h0, 1)
  const tampered = data.slice()
  tampered[0] ^= 1
  assert.equal(await k.publicKey.verify(tampered, sig), false)
  const badSig = sig.slice()
  badSig[5] ^= 1
  assert.equal(await k.publicKey.verify(data, badSig), false)
  const other = await generateKeyPair('Ed25519')
  assert.equal(await other.publicKey.verify(data, sig), false, 'another key never gets the first key\'s answer')
  assert.equal(await k.publicKey.verify(tampered, sig), false, 'a refusal is remembered as a refusal')
})
