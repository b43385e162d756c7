/**
 * The relayed → direct upgrade (src/net/upgrade.ts, docs/nat.md "UPnP") against a hostile
 * announcing peer: each bound its docstring states, tested so that it fails without the bound.
 *
 * - `publicAddresses`: named adversarial cases, and seeded random lists of addresses from every
 *   range (UPGRADE_SEED=<n> replays another seed) checked against labels the generator gives
 *   each address — not against the code's own predicate.
 * - `startDirectUpgrade`: its `node` is a stub (the four members the function uses) and the
 *   dial is injected, so the announced public-looking addresses are never dialled and no packet
 *   leaves the machine; identify results are dispatched as `peer:identify` events, and Date is
 *   mocked (node:test mock timers) so "1,000 announcements within a second" is exact, not timed.
 *   The end-to-end upgrade with real libp2p nodes is test/integration/upgrade.test.ts.
 */
import assert from 'node:assert/strict'
import { BlockList, isIP } from 'node:net'
import { afterEach, mock, test } from 'node:test'
import { publicKeyFromRaw } from '@libp2p/crypto/keys'
import type { Connection, IdentifyResult, PeerId } from '@libp2p/interface'
import { peerIdFromPublicKey } from '@libp2p/peer-id'
import { type Multiaddr, multiaddr } from '@multiformats/multiaddr'
import { type DirectUpgrade, type DirectUpgradeInit, MAX_ADDRESSES, MAX_TRACKED, publicAddresses, startDirectUpgrade } from '../../../src/net/upgrade.ts'
import { Rng } from '../../../src/rng.ts'

/** n distinct PeerIds (Ed25519 public keys made of a counter: no private key behind them) */
function peerIds(n: number, from = 0): PeerId[] {
  return Array.from({ length: n }, (_, i) => {
    const raw = new Uint8Array(32)
    new DataView(raw.buffer).setUint32(0, from + i)
    raw[31] = 0x5a
    return peerIdFromPublicKey(publicKeyFromRaw(raw))
  })
}

const [SELF, OTHER, RELAY] = peerIds(3, 1_000_000).map(String) as [string, string, string]
const keep = (input: string[], peer = SELF): string[] => publicAddresses(input.map((s) => multiaddr(s)), peer).map(String)

// ---------------------------------------------------------------------------------------------
// publicAddresses

test('publicAddresses drops every private, shared, loopback, link-local, unique-local, multicast, reserved and NAT64 address, in any spelling', () => {
  const notPublic = [
    '/ip4/10.0.0.1/tcp/4001',
    '/ip4/10.255.255.254/tcp/4001',
    '/ip4/172.16.0.1/tcp/4001',
    '/ip4/172.31.255.1/tcp/4001',
    '/ip4/192.168.1.10/tcp/4001',
    '/ip4/100.64.0.1/tcp/4001', // shared (carrier NAT)
    '/ip4/127.0.0.1/tcp/4001',
    '/ip4/127.45.6.7/tcp/4001',
    '/ip4/169.254.10.20/tcp/4001',
    '/ip4/0.0.0.0/tcp/4001',
    '/ip4/224.0.0.251/udp/5353',
    '/ip4/239.1.2.3/tcp/4001',
    '/ip4/240.0.0.1/tcp/4001',
    '/ip4/255.255.255.255/tcp/4001',
    '/ip4/192.0.2.7/tcp/4001', // documentation
    '/ip6/::1/tcp/4001',
    '/ip6/0:0:0:0:0:0:0:1/tcp/4001',
    '/ip6/::/tcp/4001',
    '/ip6/fe80::1/tcp/4001',
    '/ip6/FE80::abcd/tcp/4001',
    '/ip6/febf:ffff::1/tcp/4001',
    '/ip6/fc00::1/tcp/4001',
    '/ip6/fd12:3456:789a::1/tcp/4001',
    '/ip6/FDFF::1/tcp/4001',
    '/ip6/fec0::1/tcp/4001', // site-local (deprecated)
    '/ip6/ff02::1/tcp/4001',
    '/ip6/::ffff:10.0.0.1/tcp/4001', // IPv4-mapped: judged as IPv4
    '/ip6/::ffff:127.0.0.1/tcp/4001',
    '/ip6/::ffff:192.168.0.1/tcp/4001',
    '/ip6/::ffff:169.254.0.1/tcp/4001',
    '/ip6/::127.0.0.1/tcp/4001', // IPv4-compatible (deprecated)
    '/ip6/64:ff9b::10.0.0.1/tcp/4001', // NAT64: the IPv4 address inside may be private
    '/ip6/64:ff9b::8.8.8.8/tcp/4001',
    '/ip6/64:ff9b:1::1/tcp/4001',
    '/ip6/2001:db8::1/tcp/4001', // documentation
    '/ip6zone/eth0/ip6/fe80::1/tcp/4001',
    '/ip6zone/eth0/ip6/2a01:4f8::1/tcp/4001', // a zone is link-scoped whatever the address
    '/unix/%2Ftmp%2Fmonna.sock',
  ]
  for (const a of notPublic) assert.deepEqual(keep([a]), [], a)
  // and in one list with public ones, only the public ones remain, in order
  assert.deepEqual(keep(['/ip4/10.0.0.1/tcp/1', '/ip4/8.8.8.8/tcp/4001', ...notPublic, '/ip6/2a01:4f8::1/tcp/4001']), ['/ip4/8.8.8.8/tcp/4001', '/ip6/2a01:4f8::1/tcp/4001'])
})

test('publicAddresses keeps public IPv4 and IPv6 addresses with any transport, and IPv4-mapped public addresses', () => {
  for (const a of ['/ip4/8.8.8.8/tcp/4001', '/ip4/1.2.3.4', '/ip4/93.184.216.34/udp/4001/quic-v1', '/ip4/172.32.0.1/tcp/4001', '/ip4/100.128.0.1/tcp/4001', '/ip6/2a01:4f8::1/tcp/4001', '/ip6/2606:4700:4700::1111/tcp/443/ws']) {
    assert.deepEqual(keep([a]), [a], a)
  }
  assert.deepEqual(keep(['/ip6/::ffff:8.8.8.8/tcp/4001']), ['/ip6/::ffff:808:808/tcp/4001'])
})

test('publicAddresses: DNS addresses never count — the announcing peer chooses what a name resolves to (a name for 127.0.0.1 or 10.0.0.1 would make us dial it)', () => {
  for (const a of ['/dns4/localhost/tcp/4001', '/dns4/LOCALHOST/tcp/4001', '/dns/localhost./tcp/4001', '/dns6/ip6-localhost/tcp/4001', '/dns4/foo.localhost/tcp/4001', '/dns4/example.com/tcp/4001', '/dns/example.com/tcp/443/wss', '/dnsaddr/example.com']) {
    assert.deepEqual(keep([a]), [], a)
    assert.deepEqual(keep([`${a}/p2p/${SELF}`]), [], `${a} with the peer's own suffix`)
  }
})

test('publicAddresses drops relay addresses and addresses carrying another peer\'s /p2p suffix; the peer\'s own suffix is stripped', () => {
  assert.deepEqual(keep([`/ip4/8.8.8.8/tcp/4001/p2p/${SELF}`]), ['/ip4/8.8.8.8/tcp/4001'])
  assert.deepEqual(keep([`/ip6/2a01:4f8::1/tcp/4001/p2p/${SELF}`]), ['/ip6/2a01:4f8::1/tcp/4001'])
  assert.deepEqual(keep([`/ip4/10.0.0.1/tcp/4001/p2p/${SELF}`]), [], 'a private address stays private with the suffix')
  for (const a of [
    `/ip4/8.8.8.8/tcp/4001/p2p/${OTHER}`,
    `/ip4/8.8.8.8/tcp/4001/p2p/${RELAY}/p2p-circuit`,
    `/ip4/8.8.8.8/tcp/4001/p2p/${RELAY}/p2p-circuit/p2p/${SELF}`,
    `/ip4/8.8.8.8/tcp/4001/p2p/${RELAY}/p2p-circuit/p2p/${OTHER}`,
    `/ip4/8.8.8.8/tcp/4001/p2p-circuit/p2p/${SELF}`,
    `/ip4/8.8.8.8/tcp/4001/p2p/${SELF}/p2p/${SELF}`, // stripped once, the other one remains
    `/ip4/8.8.8.8/tcp/4001/p2p/${OTHER}/p2p/${SELF}`,
    `/p2p/${SELF}`,
    `/p2p-circuit/p2p/${SELF}`,
  ]) {
    assert.deepEqual(keep([a]), [], a)
  }
  // the suffix is compared with the announcing peer: for OTHER, its own suffix is the kept one
  assert.deepEqual(keep([`/ip4/8.8.8.8/tcp/4001/p2p/${OTHER}`], OTHER), ['/ip4/8.8.8.8/tcp/4001'])
})

test('publicAddresses keeps at most 8 distinct public addresses, the first announced', () => {
  const many = Array.from({ length: 50 }, (_, i) => `/ip4/8.8.${i}.1/tcp/4001`)
  assert.equal(MAX_ADDRESSES, 8)
  assert.deepEqual(keep(many), many.slice(0, 8))
  // non-public ones do not use up the 8
  assert.deepEqual(keep([...Array.from({ length: 20 }, (_, i) => `/ip4/10.0.0.${i}/tcp/4001`), ...many]), many.slice(0, 8))
  // the same address announced 100 times (with and without the suffix) is one address
  assert.deepEqual(keep([...Array.from({ length: 100 }, (_, i) => (i % 2 === 0 ? '/ip4/8.8.8.8/tcp/4001' : `/ip4/8.8.8.8/tcp/4001/p2p/${SELF}`)), many[1]!]), ['/ip4/8.8.8.8/tcp/4001', many[1]!])
})

/** What an address the generator made must become: kept as `expect`, or dropped. */
interface Labelled {
  ma: string
  expect?: string
}

/**
 * Random addresses from every category, each labelled by its category alone. `public` IPv4 ones
 * come from 1/8…9/8 and 11/8…99/8 (all public unicast), `public` IPv6 ones from 2a00::/12.
 */
function generator(rng: Rng): () => Labelled {
  const int = (n: number): number => rng.int(n)
  const pick = <T>(xs: readonly T[]): T => xs[int(xs.length)]!
  const hex = (bits: number): string => int(2 ** bits).toString(16)
  const v4 = (a: number, b = int(256)): string => `${a}.${b}.${int(256)}.${int(256)}`
  const publicV4 = (): string => v4(pick([1 + int(9), 11 + int(89)]))
  const publicV6 = (): string => `2a0${hex(4)}:${hex(16)}:${hex(16)}::${hex(16)}`
  const privateV4 = (): string =>
    pick([
      () => v4(10),
      () => v4(172, 16 + int(16)),
      () => v4(192, 168),
      () => v4(100, 64 + int(64)),
      () => v4(127),
      () => v4(169, 254),
      () => v4(0),
      () => v4(224 + int(16)),
      () => v4(240 + int(16)),
    ])()
  const privateV6 = (): string =>
    pick([
      () => '::1',
      () => '0:0:0:0:0:0:0:1',
      () => '::',
      () => `fe${pick(['8', '9', 'a', 'b', 'A', 'B'])}${hex(4)}::${hex(16)}`,
      () => `f${pick(['c', 'd', 'C', 'D'])}${hex(4)}${hex(4)}:${hex(16)}::${hex(16)}`,
      () => `ff${hex(4)}${hex(4)}::${hex(16)}`,
      () => `fe${pick(['c', 'd', 'e', 'f'])}${hex(4)}::${hex(16)}`,
      () => `::ffff:${privateV4()}`,
      () => `64:ff9b::${pick([privateV4, publicV4])()}`,
    ])()
  const transport = (): string => pick(['/tcp/4001', `/tcp/${1 + int(65535)}`, `/udp/${1 + int(65535)}/quic-v1`, `/tcp/${1 + int(65535)}/ws`, ''])
  const normal = (s: string): string => multiaddr(s).toString()
  return () => {
    const t = transport()
    switch (int(12)) {
      case 0:
      case 1: {
        const a = `/ip4/${publicV4()}${t}`
        return { ma: a, expect: normal(a) }
      }
      case 2: {
        const a = `/ip6/${publicV6()}${t}`
        return { ma: a, expect: normal(a) }
      }
      case 3: {
        // the peer's own suffix: kept, stripped
        const a = `/ip${pick(['4', '6'])}/`
        const ip = a === '/ip4/' ? publicV4() : publicV6()
        return { ma: `${a}${ip}${t}/p2p/${SELF}`, expect: normal(`${a}${ip}${t}`) }
      }
      case 4:
        return { ma: `/ip4/${privateV4()}${t}${pick(['', `/p2p/${SELF}`])}` }
      case 5:
        return { ma: `/ip6/${privateV6()}${t}${pick(['', `/p2p/${SELF}`])}` }
      case 6:
        return { ma: `/${pick(['dns', 'dns4', 'dns6'])}/${pick(['localhost', 'LocalHost', 'localhost.', 'a.localhost', 'example.com', `h${int(1e6)}.example.net`])}${t}${pick(['', `/p2p/${SELF}`])}` }
      case 7:
        return { ma: `/ip4/${publicV4()}/tcp/4001/p2p/${RELAY}/p2p-circuit${pick(['', `/p2p/${SELF}`, `/p2p/${OTHER}`])}` }
      case 8: {
        // another peer's suffix
        const v6 = int(2) === 0
        return { ma: `/ip${v6 ? '6' : '4'}/${v6 ? publicV6() : publicV4()}${t}/p2p/${OTHER}` }
      }
      case 9:
        return { ma: `/ip6zone/${pick(['eth0', 'en1', '1'])}/ip6/${pick([publicV6, privateV6])()}${t}` }
      case 10:
        return { ma: pick([`/dnsaddr/example.com`, '/unix/%2Ftmp%2Fs.sock', `/p2p/${SELF}`, `/p2p-circuit/p2p/${SELF}`]) }
      default: {
        // IPv4-mapped IPv6: judged as IPv4
        const pub = int(2) === 0
        const a = `/ip6/::ffff:${pub ? publicV4() : privateV4()}${t}`
        return pub ? { ma: a, expect: normal(a) } : { ma: a }
      }
    }
  }
}

/** Non-public space written independently of the code under test (node:net BlockList; IPv4-mapped addresses by the IPv4 rules). */
const NOT_PUBLIC = new BlockList()
for (const [net, prefix] of [
  ['0.0.0.0', 8],
  ['10.0.0.0', 8],
  ['100.64.0.0', 10],
  ['127.0.0.0', 8],
  ['169.254.0.0', 16],
  ['172.16.0.0', 12],
  ['192.168.0.0', 16],
  ['224.0.0.0', 4],
  ['240.0.0.0', 4],
] as const)
  NOT_PUBLIC.addSubnet(net, prefix, 'ipv4')
for (const [net, prefix] of [
  ['::', 96],
  ['::1', 128],
  ['64:ff9b::', 96],
  ['fc00::', 7],
  ['fe80::', 10],
  ['fec0::', 10],
  ['ff00::', 8],
] as const)
  NOT_PUBLIC.addSubnet(net, prefix, 'ipv6')

test('publicAddresses on seeded random lists: exactly the first 8 distinct public addresses, suffix stripped; never a private, loopback, DNS or relay address', () => {
  const seed = Number(process.env.UPGRADE_SEED ?? 20261204)
  const rng = new Rng(seed)
  const next = generator(rng)
  let kept = 0
  let capped = 0
  for (let run = 0; run < 3000; run++) {
    const n = rng.int(41)
    const input: Labelled[] = Array.from({ length: n }, () => next())
    // a few repeats of earlier addresses
    for (let k = rng.int(3); k > 0 && n > 0; k--) input.splice(rng.int(input.length + 1), 0, input[rng.int(n)]!)
    const out = keep(input.map((x) => x.ma))
    const expected = [...new Set(input.flatMap((x) => (x.expect === undefined ? [] : [x.expect])))].slice(0, 8)
    const why = `seed ${seed}, run ${run} (UPGRADE_SEED=${seed} replays it): ${JSON.stringify(input.map((x) => x.ma))}`
    assert.deepEqual(out, expected, why)
    // the properties, checked on the output alone
    assert.ok(out.length <= 8, why)
    assert.equal(new Set(out).size, out.length, why)
    const inputs = new Set(input.map((x) => multiaddr(x.ma).toString()))
    for (const a of out) {
      assert.ok(inputs.has(a) || inputs.has(`${a}/p2p/${SELF}`), `${a} was announced (modulo the suffix): ${why}`)
      const c = multiaddr(a).getComponents()
      assert.ok(c[0]!.name === 'ip4' || c[0]!.name === 'ip6', `${a} starts with an IP: ${why}`)
      assert.ok(!c.some((x) => x.name === 'p2p' || x.name === 'p2p-circuit'), `${a} names no peer and no relay: ${why}`)
      const ip = c[0]!.value!
      assert.ok(!NOT_PUBLIC.check(ip, isIP(ip) === 4 ? 'ipv4' : 'ipv6'), `${a} is public: ${why}`)
    }
    kept += out.length
    if (expected.length === 8) capped++
  }
  // the generator exercised both sides of the filter and the cap
  assert.ok(kept > 3000, `public addresses kept: ${kept}`)
  assert.ok(capped > 50, `lists that hit the cap of 8: ${capped}`)
})

// ---------------------------------------------------------------------------------------------
// startDirectUpgrade, driven through peer:identify on a stub node

const PUBLIC = ['/ip4/8.8.8.8/tcp/4001', '/ip6/2a01:4f8::1/tcp/4001'].map((s) => multiaddr(s))

interface StubConn {
  remotePeer: PeerId
  remoteAddr: Multiaddr
  status: 'open' | 'closed'
  closed: boolean
  close: () => Promise<void>
}

function conn(peer: PeerId, relayed: boolean): StubConn {
  const c: StubConn = {
    remotePeer: peer,
    remoteAddr: multiaddr(relayed ? `/ip4/127.0.0.1/tcp/4001/p2p/${RELAY}/p2p-circuit/p2p/${peer}` : `/ip4/127.0.0.1/tcp/4002/p2p/${peer}`),
    status: 'open',
    closed: false,
    close: async () => {
      c.closed = true
      c.status = 'closed'
    },
  }
  return c
}

/** The members of a libp2p node startDirectUpgrade uses; its own dial must never run (tests inject theirs). */
class StubNode extends EventTarget {
  readonly conns = new Map<string, StubConn[]>()
  listeners = 0
  /** every peer:identify listener ever added (to call one directly after it was removed) */
  readonly added: ((e: Event) => void)[] = []
  getConnections(peer?: PeerId): Connection[] {
    const all = peer === undefined ? [...this.conns.values()].flat() : (this.conns.get(peer.toString()) ?? [])
    return all.filter((c) => c.status === 'open') as unknown as Connection[]
  }
  async dial(): Promise<Connection> {
    throw new Error('the node itself dialled: the test must inject the dial')
  }
  /** `peer` reached only through a relay */
  relayed(peer: PeerId): StubConn {
    const c = conn(peer, true)
    this.conns.set(peer.toString(), [...(this.conns.get(peer.toString()) ?? []), c])
    return c
  }
  announce(peer: PeerId, listenAddrs: Multiaddr[] = PUBLIC): void {
    this.dispatchEvent(new CustomEvent('peer:identify', { detail: { peerId: peer, listenAddrs, protocols: [] } as unknown as IdentifyResult }))
  }
  override addEventListener(...args: Parameters<EventTarget['addEventListener']>): void {
    if (args[0] === 'peer:identify') {
      this.listeners++
      this.added.push(args[1] as (e: Event) => void)
    }
    super.addEventListener(...args)
  }
  override removeEventListener(...args: Parameters<EventTarget['removeEventListener']>): void {
    if (args[0] === 'peer:identify') this.listeners--
    super.removeEventListener(...args)
  }
}

interface Dial {
  peer: string
  addrs: string[]
  signal: AbortSignal
  at: number
  settle: (c?: Connection) => void
}

/** Records every dial; each is answered by `answer` (default: fails at once). */
function recorder(answer: 'fail' | 'hold' = 'fail'): { dials: Dial[]; inFlight: () => number; maxInFlight: Map<string, number>; dial: NonNullable<DirectUpgradeInit['dial']> } {
  const dials: Dial[] = []
  let open = 0
  const perPeer = new Map<string, number>()
  const maxInFlight = new Map<string, number>()
  const dial: NonNullable<DirectUpgradeInit['dial']> = (addrs, options) => {
    const peer = addrs[0]!.getComponents().at(-1)!.value!
    open++
    perPeer.set(peer, (perPeer.get(peer) ?? 0) + 1)
    maxInFlight.set(peer, Math.max(maxInFlight.get(peer) ?? 0, perPeer.get(peer)!))
    return new Promise<Connection>((resolve, reject) => {
      const settle = (c?: Connection): void => {
        open--
        perPeer.set(peer, perPeer.get(peer)! - 1)
        if (c === undefined) reject(new Error('no answer (stub)'))
        else resolve(c)
      }
      dials.push({ peer, addrs: addrs.map(String), signal: options.signal, at: Date.now(), settle })
      if (answer === 'fail') settle()
    })
  }
  return { dials, inFlight: () => open, maxInFlight, dial }
}

/** Lets the dial's promise chain run (a real setImmediate: only Date is mocked). */
const flush = (): Promise<void> => new Promise((r) => setImmediate(r))

const running: DirectUpgrade[] = []
afterEach(() => {
  for (const stop of running.splice(0)) stop()
  mock.timers.reset()
})

function start(node: StubNode, init: Omit<DirectUpgradeInit, 'allows'> & { allows?: DirectUpgradeInit['allows'] }): DirectUpgrade {
  const stop = startDirectUpgrade(node as unknown as Parameters<typeof startDirectUpgrade>[0], { allows: () => true, ...init })
  running.push(stop)
  return stop
}

test('a member reached only through a relay that announces a public address is dialled there, with its /p2p suffix; the relayed connection is closed once the direct one opens', async () => {
  const node = new StubNode()
  const [peer] = peerIds(1) as [PeerId]
  const relayed = node.relayed(peer)
  const r = recorder('hold')
  const upgraded: string[] = []
  start(node, { dial: r.dial, onUpgrade: (p, a) => upgraded.push(`${p} ${a}`) })
  node.announce(peer, [multiaddr('/ip4/10.0.0.1/tcp/4001'), ...PUBLIC, multiaddr(`/ip4/9.9.9.9/tcp/4001/p2p/${peer}`)])
  assert.equal(r.dials.length, 1)
  assert.deepEqual(r.dials[0]!.addrs, [`/ip4/8.8.8.8/tcp/4001/p2p/${peer}`, `/ip6/2a01:4f8::1/tcp/4001/p2p/${peer}`, `/ip4/9.9.9.9/tcp/4001/p2p/${peer}`])
  const direct = conn(peer, false)
  node.conns.get(peer.toString())!.push(direct)
  r.dials[0]!.settle(direct as unknown as Connection)
  await flush()
  assert.ok(relayed.closed, 'the relayed connection was closed')
  assert.ok(!direct.closed)
  assert.deepEqual(upgraded, [`${peer} ${direct.remoteAddr}`])
})

test('a dial that comes back relayed closes nothing and reports no upgrade', async () => {
  const node = new StubNode()
  const [peer] = peerIds(1) as [PeerId]
  const relayed = node.relayed(peer)
  const r = recorder('hold')
  const upgraded: string[] = []
  start(node, { dial: r.dial, onUpgrade: (p) => upgraded.push(p) })
  node.announce(peer)
  r.dials[0]!.settle(conn(peer, true) as unknown as Connection)
  await flush()
  assert.ok(!relayed.closed)
  assert.deepEqual(upgraded, [])
})

test('(a) a member announcing 1,000 times within a second gets at most one dial attempt per minGapMs', async () => {
  mock.timers.enable({ apis: ['Date'], now: 1_000_000 })
  const [peer, other] = peerIds(2) as [PeerId, PeerId]
  for (const minGapMs of [undefined, 300]) {
    const node = new StubNode()
    node.relayed(peer)
    const r = recorder('fail')
    const failures: string[] = []
    start(node, { dial: r.dial, onFailure: (p) => failures.push(p), ...(minGapMs !== undefined ? { minGapMs } : {}) })
    const t0 = Date.now()
    for (let i = 0; i < 1000; i++) {
      node.announce(peer)
      await flush() // each failed dial has ended before the next announcement: only minGapMs holds it back
      mock.timers.tick(1)
    }
    assert.ok(Date.now() - t0 <= 1000)
    // default 30 s: one attempt in the second; 300 ms: at 0, 300, 600 and 900 ms
    assert.equal(r.dials.length, minGapMs === undefined ? 1 : 4, `minGapMs ${minGapMs ?? 'default'}: ${r.dials.map((d) => d.at - t0).join(', ')} ms`)
    for (let i = 1; i < r.dials.length; i++) assert.ok(r.dials[i]!.at - r.dials[i - 1]!.at >= (minGapMs ?? 30_000))
    assert.equal(failures.length, r.dials.length, 'every failed attempt is reported')
    // the gap is per peer: another member is dialled at once
    node.relayed(other)
    node.announce(other)
    assert.equal(r.dials.at(-1)!.peer, other.toString())
  }
})

test('(b) never more than one dial in flight per member, however often it announces', async () => {
  mock.timers.enable({ apis: ['Date'], now: 1_000_000 })
  const node = new StubNode()
  const peers = peerIds(3)
  for (const p of peers) node.relayed(p)
  const r = recorder('hold')
  start(node, { dial: r.dial, minGapMs: 10 }) // the gap is no obstacle here: only the dial in flight is
  for (let i = 0; i < 1000; i++) {
    for (const p of peers) node.announce(p)
    await flush()
    mock.timers.tick(11)
  }
  assert.equal(r.dials.length, 3, 'one dial per member')
  for (const p of peers) assert.equal(r.maxInFlight.get(p.toString()), 1)
  // once the dial ends, the member may be dialled again
  r.dials[0]!.settle()
  await flush()
  node.announce(peers[0]!)
  assert.equal(r.dials.length, 4)
  assert.equal(r.dials[3]!.peer, peers[0]!.toString())
  assert.equal(r.maxInFlight.get(peers[0]!.toString()), 1)
})

test('(c) a peer the membership gate refuses is never dialled, however it announces', async () => {
  mock.timers.enable({ apis: ['Date'], now: 1_000_000 })
  const node = new StubNode()
  const peers = peerIds(101)
  for (const p of peers) node.relayed(p)
  const member = peers[100]!.toString()
  const asked = new Set<string>()
  const r = recorder('fail')
  start(node, {
    dial: r.dial,
    allows: (p) => {
      asked.add(p.toString())
      return p.toString() === member
    },
  })
  for (let i = 0; i < 10; i++) {
    for (const p of peers.slice(0, 100)) node.announce(p, [...PUBLIC, multiaddr(`/ip4/8.8.4.4/tcp/4001/p2p/${p}`)])
    await flush()
    mock.timers.tick(60_000)
  }
  assert.equal(asked.size, 100, 'the gate was asked about every announcing peer')
  assert.equal(r.dials.length, 0, 'no non-member was dialled')
  node.announce(peers[100]!)
  assert.deepEqual(r.dials.map((d) => d.peer), [member], 'a member is')
})

test('(d) a member with a direct connection, or with no connection at all, is never dialled', async () => {
  mock.timers.enable({ apis: ['Date'], now: 1_000_000 })
  const node = new StubNode()
  const [both, none] = peerIds(2) as [PeerId, PeerId]
  node.relayed(both)
  const direct = conn(both, false)
  node.conns.get(both.toString())!.push(direct)
  const r = recorder('fail')
  start(node, { dial: r.dial })
  for (let i = 0; i < 1000; i++) {
    node.announce(both)
    node.announce(none)
    await flush()
    mock.timers.tick(60_000)
  }
  assert.equal(r.dials.length, 0)
  // once the direct connection is gone (only the relayed one left), it is
  await direct.close()
  node.announce(both)
  assert.deepEqual(r.dials.map((d) => d.peer), [both.toString()])
})

test('(e) 10,000 distinct members announcing within a second: at most 4096 attempts and 4096 remembered peers per minGapMs; the others are dialled once the gap has passed', async () => {
  mock.timers.enable({ apis: ['Date'], now: 1_000_000 })
  const node = new StubNode()
  const peers = peerIds(20_000)
  for (const p of peers) node.relayed(p)
  const r = recorder('fail')
  const up = start(node, { dial: r.dial })
  const t0 = Date.now()
  let most = 0
  for (let i = 0; i < 10_000; i++) {
    node.announce(peers[i]!)
    most = Math.max(most, up.tracked())
    if (i % 10 === 9) mock.timers.tick(1)
  }
  await flush()
  assert.ok(Date.now() - t0 <= 1000)
  assert.equal(MAX_TRACKED, 4096)
  assert.equal(r.dials.length, MAX_TRACKED, 'at most MAX_TRACKED attempts within minGapMs')
  assert.ok(most <= MAX_TRACKED && up.tracked() <= MAX_TRACKED, `remembered at most: ${most}`)
  assert.deepEqual(new Set(r.dials.map((d) => d.peer)).size, MAX_TRACKED, 'each a different member')
  // a member that had to wait is dialled once its turn comes: 30 s after the first attempts
  mock.timers.tick(30_000)
  node.announce(peers[9_999]!)
  assert.equal(r.dials.at(-1)!.peer, peers[9_999]!.toString())
  // and the next 10,000 again get at most MAX_TRACKED attempts in their second
  const before = r.dials.length
  for (let i = 10_000; i < 20_000; i++) {
    node.announce(peers[i]!)
    most = Math.max(most, up.tracked())
    if (i % 10 === 9) mock.timers.tick(1)
  }
  await flush()
  assert.ok(r.dials.length - before <= MAX_TRACKED, `${r.dials.length - before} attempts`)
  assert.ok(most <= MAX_TRACKED, `remembered at most: ${most}`)
})

test('(f) once stopped: the dial in flight is aborted, nothing is dialled any more and the identify listener is gone', async () => {
  mock.timers.enable({ apis: ['Date'], now: 1_000_000 })
  const node = new StubNode()
  const peers = peerIds(50)
  for (const p of peers) node.relayed(p)
  const r = recorder('hold')
  const stop = start(node, { dial: r.dial })
  assert.equal(node.listeners, 1)
  node.announce(peers[0]!)
  assert.equal(r.dials.length, 1)
  assert.ok(!r.dials[0]!.signal.aborted)
  stop()
  assert.ok(r.dials[0]!.signal.aborted, 'the dial in flight is aborted')
  assert.equal(node.listeners, 0)
  // announcements after the stop; the old listener is also called directly, as an event source
  // that failed to remove it would
  assert.equal(node.added.length, 1)
  for (let i = 0; i < 100; i++) {
    for (const p of peers) {
      node.announce(p)
      node.added[0]!(new CustomEvent('peer:identify', { detail: { peerId: p, listenAddrs: PUBLIC, protocols: [] } }))
    }
    mock.timers.tick(60_000)
  }
  await flush()
  assert.equal(r.dials.length, 1)
})
