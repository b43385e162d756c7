/**
 * `guardMuxer` (src/net/muxer-guard.ts): a muxer created on a connection that already closed is
 * aborted at once (libp2p's own would keep running, its keep-alive holding it forever); on an open
 * connection nothing changes; a member's node guards its muxers. The wire attack that finds the
 * leak with real nodes is test/integration/noise-tamper.test.ts.
 */
import assert from 'node:assert/strict'
import { after, test } from 'node:test'
import { yamux } from '@chainsafe/libp2p-yamux'
import { generateKeyPair } from '@libp2p/crypto/keys'
import type { StreamMuxer } from '@libp2p/interface'
import { multiaddrConnectionPair } from '@libp2p/utils'
import { createNetNode, type NetNode, peerIdOfKey } from '../../../src/net/index.ts'
import { guardMuxer, muxerGuardStats } from '../../../src/net/muxer-guard.ts'

const cleanup: StreamMuxer[] = []
const nodes: NetNode[] = []
after(async () => {
  for (const m of cleanup) {
    try {
      m.abort(new Error('test done'))
    } catch {
      // a GoAway refused by an ended connection; the keep-alive is stopped all the same
    }
  }
  await Promise.all(nodes.map((n) => n.stop()))
})

test('a muxer created on a connection that already ended is aborted at once; the library alone leaves it open', async () => {
  // aborted here, reset by the remote, closed by both
  for (const end of ['aborted', 'reset', 'closed'] as const) {
    const before = muxerGuardStats.abortedAtCreation
    const [a, b] = multiaddrConnectionPair()
    const [c, d] = multiaddrConnectionPair()
    if (end === 'aborted') {
      a.abort(new Error('broken on the wire'))
      c.abort(new Error('broken on the wire'))
    } else if (end === 'reset') {
      b.abort(new Error('the remote broke it'))
      d.abort(new Error('the remote broke it'))
    } else {
      await Promise.all([b.close(), d.close()])
    }
    assert.equal(a.status, end)
    assert.equal(c.status, end)
    // the library's muxer on the ended connection: open, its keep-alive running (the leak)
    const bare = yamux()().createStreamMuxer(a)
    cleanup.push(bare)
    const guarded = guardMuxer(yamux())({}).createStreamMuxer(c)
    cleanup.push(guarded)
    assert.equal(bare.status, 'open', `${end}: libp2p's muxer stays open on an ended connection (if this fails, the library fixed it and the guard is redundant)`)
    assert.equal(guarded.status, 'closed', `${end}: the guarded muxer`)
    assert.equal(muxerGuardStats.abortedAtCreation, before + 1)
  }
})

test('on an open connection a guarded muxer is the library\'s: it opens streams and closes when the connection does', async () => {
  const before = muxerGuardStats.abortedAtCreation
  const [a, b] = multiaddrConnectionPair()
  const factory = guardMuxer(yamux())({})
  assert.equal(factory.protocol, '/yamux/1.0.0')
  const client = factory.createStreamMuxer(a)
  const server = factory.createStreamMuxer(b)
  cleanup.push(client, server)
  assert.equal(client.status, 'open')
  const incoming = new Promise<void>((resolve) => server.addEventListener('stream', () => resolve(), { once: true }))
  const s = await client.createStream()
  s.send(new Uint8Array([1, 2, 3]))
  await incoming
  a.abort(new Error('gone'))
  assert.equal(client.status, 'closed', 'the muxer closed with its connection')
  assert.equal(muxerGuardStats.abortedAtCreation, before)
})

test("a member's node guards its muxers", async () => {
  const before = muxerGuardStats.factories
  const key = await generateKeyPair('Ed25519')
  const node = await createNetNode({ privateKey: key, listen: ['/ip4/127.0.0.1/tcp/0'], membership: { swarmId: 'muxer-guard-test', members: [peerIdOfKey(key)], f: 0 }, reachability: false, holePunch: false })
  nodes.push(node)
  assert.equal(muxerGuardStats.factories, before + 1)
})
