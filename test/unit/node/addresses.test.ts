/**
 * The address exchange's validator and dialler, against a stand-in node (no network): what an
 * announcement must look like, the per-member rate, replacement of what is dialled, the dial
 * back-off and the bound on dials in flight.
 */
import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { type Message, type TopicValidatorFn, TopicValidatorResult } from '@libp2p/gossipsub'
import type { Libp2p, PeerId } from '@libp2p/interface'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { type Multiaddr, multiaddr } from '@multiformats/multiaddr'
import { silentLogger } from '../../../src/logger.ts'
import { addressExchangeDefaults, encodeAnnouncement, parseAnnouncement, startAddressExchange } from '../../../src/node/addresses.ts'

const topic = '/monna/unit/addresses/1'
const enc = (v: unknown): Uint8Array => new TextEncoder().encode(typeof v === 'string' ? v : JSON.stringify(v))

interface Dial {
  addrs: string[]
  settle(ok: boolean): void
}

/**
 * A node whose dials wait until the test settles them; connected to the members in `connected`
 * only (none unless the test adds them); `published` holds the time (Date.now()) of each announcement.
 */
function standIn(): { node: Libp2p; dials: Dial[]; connected: Set<string>; published: number[]; validator(): TopicValidatorFn } {
  const validators = new Map<string, TopicValidatorFn>()
  const dials: Dial[] = []
  const connected = new Set<string>()
  const published: number[] = []
  const pubsub = {
    topicValidators: validators,
    subscribe() {},
    unsubscribe() {},
    publish: async () => {
      published.push(Date.now())
      return {}
    },
  }
  const node = Object.assign(new EventTarget(), {
    services: { pubsub },
    getMultiaddrs: () => [],
    getConnections: (peer?: PeerId) => (peer !== undefined && connected.has(peer.toString()) ? [{}] : []),
    dial: (addrs: Multiaddr[]) =>
      new Promise((resolve, reject) => {
        dials.push({ addrs: addrs.map(String), settle: (ok) => (ok ? resolve({}) : reject(new Error('refused'))) })
      }),
  })
  return {
    node: node as unknown as Libp2p,
    dials,
    connected,
    published,
    validator: () => {
      const v = validators.get(topic)
      assert.ok(v !== undefined, 'the exchange registers a validator for its topic')
      return v
    },
  }
}

async function peers(n: number): Promise<PeerId[]> {
  return Promise.all(Array.from({ length: n }, async () => peerIdFromPrivateKey(await generateKeyPair('Ed25519'))))
}

function signed(from: PeerId, data: Uint8Array): Message {
  return { type: 'signed', from, topic, data, sequenceNumber: 1n, signature: new Uint8Array(64), key: from.publicKey! }
}

const settleAll = async (): Promise<void> => {
  for (let i = 0; i < 5; i++) await new Promise((r) => setImmediate(r))
}

describe('address announcements', () => {
  it('are JSON { addrs } of at most 16 plain multiaddrs of at most 256 characters, in at most 4 KiB', () => {
    assert.deepEqual(
      (parseAnnouncement(enc({ addrs: ['/ip4/10.0.0.1/tcp/4001', '/ip6/::1/tcp/4001'] })) as { addrs: Multiaddr[] }).addrs.map(String),
      ['/ip4/10.0.0.1/tcp/4001', '/ip6/::1/tcp/4001'],
    )
    assert.equal(parseAnnouncement(enc({ addrs: [] })).ok, true)
    const refused: unknown[] = [
      '{"addrs":',
      [],
      { addrs: '/ip4/10.0.0.1/tcp/4001' },
      { addrs: ['/ip4/10.0.0.1/tcp/4001'], extra: 1 },
      { addrs: ['nonsense'] },
      { addrs: [`/dns4/${'a'.repeat(250)}/tcp/1`] },
      { addrs: ['/ip4/10.0.0.1/tcp/4001/p2p/12D3KooWD3eckifWpRn9wQpMG9R9hX3sD158z7EqHWmweQAJU5SA'] },
      { addrs: Array.from({ length: 17 }, (_, i) => `/ip4/10.0.0.1/tcp/${i + 1}`) },
      `${JSON.stringify({ addrs: [] })}${' '.repeat(addressExchangeDefaults.maxMessageBytes)}`,
    ]
    for (const r of refused) assert.equal(parseAnnouncement(enc(r)).ok, false, JSON.stringify(r).slice(0, 80))
  })

  it('a member announces what the others accept: no /p2p, at most 16, within the size bound', () => {
    const withId = parseAnnouncement(encodeAnnouncement([multiaddr('/ip4/10.0.0.1/tcp/4001/p2p/12D3KooWD3eckifWpRn9wQpMG9R9hX3sD158z7EqHWmweQAJU5SA')]))
    assert.ok(withId.ok)
    assert.deepEqual(withId.addrs.map(String), ['/ip4/10.0.0.1/tcp/4001'])
    // 255 characters each: 16 of them are more than 4 KiB, so one is left out
    const long = Array.from({ length: 20 }, (_, i) => multiaddr(`/dns4/${'h'.repeat(233)}${String(i).padStart(2, '0')}.example/tcp/1`))
    const bytes = encodeAnnouncement(long)
    const parsed = parseAnnouncement(bytes)
    assert.ok(parsed.ok)
    assert.ok(bytes.byteLength <= addressExchangeDefaults.maxMessageBytes)
    assert.equal(parsed.addrs.length, 15)
  })
})

describe('the address exchange', () => {
  it('rejects junk, ignores a member announcing again within interval/2, and dials what the last announcement named', async (t) => {
    t.mock.timers.enable({ apis: ['Date', 'setInterval'] })
    const [self, m] = await peers(2)
    const s = standIn()
    const stop = startAddressExchange({ node: s.node, topic, self: self!.toString(), members: [self!.toString(), m!.toString()], log: silentLogger, intervalMs: 1000 })
    try {
      const validate = s.validator()
      const v = async (data: Uint8Array): Promise<TopicValidatorResult> => validate(self!, signed(m!, data))
      assert.equal(await v(enc({ addrs: ['nonsense'] })), TopicValidatorResult.Reject)
      assert.equal(await v(enc({ addrs: ['/ip4/10.0.0.1/tcp/1'] })), TopicValidatorResult.Accept)
      assert.equal(s.dials.length, 1)
      assert.deepEqual(s.dials[0]!.addrs, [`/ip4/10.0.0.1/tcp/1/p2p/${m}`])
      t.mock.timers.tick(499)
      assert.equal(await v(enc({ addrs: ['/ip4/10.0.0.2/tcp/2'] })), TopicValidatorResult.Ignore, 'too soon after the last one')
      s.dials[0]!.settle(false)
      await settleAll()
      t.mock.timers.tick(1)
      // accepted (interval/2 passed), replaces the addresses, but the member was dialled < 1 interval ago
      assert.equal(await v(enc({ addrs: ['/ip4/10.0.0.3/tcp/3'] })), TopicValidatorResult.Accept)
      assert.equal(s.dials.length, 1)
      t.mock.timers.tick(500)
      assert.equal(await v(enc({ addrs: ['/ip4/10.0.0.4/tcp/4'] })), TopicValidatorResult.Accept)
      assert.equal(s.dials.length, 2, 'one interval after the first dial')
      assert.deepEqual(s.dials[1]!.addrs, [`/ip4/10.0.0.4/tcp/4/p2p/${m}`], 'only the last announcement is dialled')
      s.dials[1]!.settle(false)
      await settleAll()
      // two failures: the next dial waits 2 intervals after the last one
      for (let i = 0; i < 3; i++) {
        t.mock.timers.tick(500)
        await v(enc({ addrs: ['/ip4/10.0.0.4/tcp/4'] }))
      }
      assert.equal(s.dials.length, 2, 'backing off after the second failure')
      t.mock.timers.tick(500)
      await v(enc({ addrs: ['/ip4/10.0.0.4/tcp/4'] }))
      assert.equal(s.dials.length, 3)
      s.dials[2]!.settle(true)
      await settleAll()
    } finally {
      stop()
    }
  })

  it('keeps at most 4 dials in flight however many members announce', async () => {
    const [self, ...others] = await peers(11)
    const s = standIn()
    const stop = startAddressExchange({ node: s.node, topic, self: self!.toString(), members: [self!, ...others].map(String), log: silentLogger })
    try {
      const validate = s.validator()
      for (const [i, m] of others.entries()) {
        assert.equal(await validate(self!, signed(m, enc({ addrs: [`/ip4/10.0.0.${i + 1}/tcp/1`] }))), TopicValidatorResult.Accept)
      }
      assert.equal(s.dials.length, addressExchangeDefaults.maxDialsInFlight)
      for (let done = 0; done < others.length; done++) {
        s.dials[done]!.settle(false)
        await settleAll()
        assert.equal(s.dials.length - (done + 1), Math.min(addressExchangeDefaults.maxDialsInFlight, others.length - (done + 1)))
      }
      assert.equal(new Set(s.dials.map((d) => d.addrs[0])).size, others.length, 'every member dialled once')
    } finally {
      stop()
    }
  })
})

describe('the announcement period', () => {
  const I = 1000
  const gaps = (ts: number[]): number[] => ts.slice(1).map((x, i) => x - ts[i]!)
  // mock timers run a tick's due timers with the clock already at its end: advance in steps that
  // divide every time the test expects
  const advance = (t: { mock: { timers: { tick(ms: number): void } } }, ms: number): void => {
    for (let left = ms; left > 0; left -= 50) t.mock.timers.tick(Math.min(50, left))
  }

  it('doubles while nothing changes, up to 8 × the interval; a member connecting, an unconnected member announcing or our own addresses changing bring it back', async (t) => {
    t.mock.timers.enable({ apis: ['setTimeout', 'Date'], now: 0 })
    const s = standIn()
    const [self, a, b, outsider] = await peers(4)
    const stop = startAddressExchange({ node: s.node, topic, self: self!.toString(), members: [self!, a!, b!].map(String), log: silentLogger, intervalMs: I })
    t.after(stop)
    s.connected.add(a!.toString())
    advance(t, 24_000)
    // at start, then after 1, 2, 4, 8, 8 intervals
    assert.deepEqual(s.published, [0, 1000, 3000, 7000, 15_000, 23_000])

    // a member connects (a new member, a restart): the next announcement comes at most an interval after the last
    s.published.length = 0
    advance(t, 1000) // t = 25 000
    s.node.dispatchEvent(new CustomEvent('peer:connect', { detail: b! }))
    t.mock.timers.tick(0)
    advance(t, 7000) // t = 32 000
    assert.deepEqual(s.published, [25_000, 26_000, 28_000, 32_000])

    // a non-member connecting, or a connected member announcing, changes nothing
    s.published.length = 0
    s.node.dispatchEvent(new CustomEvent('peer:connect', { detail: outsider! }))
    advance(t, 8000) // t = 40 000
    assert.equal(s.validator()(a!, signed(a!, enc({ addrs: ['/ip4/127.0.0.1/tcp/1'] }))), TopicValidatorResult.Accept)
    advance(t, 8000) // t = 48 000
    assert.deepEqual(s.published, [40_000, 48_000])

    // a member we are not connected to announces (it may be unable to reach us itself)
    s.published.length = 0
    advance(t, 2000) // t = 50 000
    assert.equal(s.validator()(b!, signed(b!, enc({ addrs: ['/ip4/127.0.0.1/tcp/2'] }))), TopicValidatorResult.Accept)
    t.mock.timers.tick(0)
    advance(t, 3000) // t = 53 000
    assert.deepEqual(s.published, [50_000, 51_000, 53_000])

    // our own addresses change (a relay reservation, UPnP, AutoNAT)
    s.published.length = 0
    advance(t, 10_000) // t = 63 000: announced at 57 000 (after 4 intervals), the next due at 65 000
    s.node.dispatchEvent(new CustomEvent('self:peer:update'))
    t.mock.timers.tick(0)
    advance(t, 1000) // t = 64 000
    assert.deepEqual(s.published, [57_000, 63_000, 64_000])
  })

  it('a member that connects again and again (or announces while refusing connections) keeps it at the interval, never faster', async (t) => {
    t.mock.timers.enable({ apis: ['setTimeout', 'Date'], now: 0 })
    const s = standIn()
    const [self, a, b] = await peers(3)
    const stop = startAddressExchange({ node: s.node, topic, self: self!.toString(), members: [self!, a!, b!].map(String), log: silentLogger, intervalMs: I })
    t.after(stop)
    advance(t, 20_000)
    const before = s.published.length
    for (let i = 0; i < 200; i++) {
      if (i % 2 === 0) s.node.dispatchEvent(new CustomEvent('peer:connect', { detail: a! }))
      else s.validator()(b!, signed(b!, enc({ addrs: ['/ip4/127.0.0.1/tcp/3'] })))
      advance(t, 50)
    }
    const storm = s.published.slice(before)
    assert.ok(storm.length >= 9 && storm.length <= 11, `${storm.length} announcements in 10 s`)
    assert.ok(gaps(storm).every((g) => g >= I), `gaps ${gaps(storm)}`)
  })
})
