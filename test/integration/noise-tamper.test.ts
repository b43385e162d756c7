/**
 * An attacker on the wire between two Noise ends over TCP, against the lean reading of Noise
 * connections (src/net/noise-stream.ts, `leanNoise`). A proxy on 127.0.0.1 relays one connection
 * between a peer P (the library's own encrypter) and the victim V (the lean reading), parses P's
 * side of it (multistream-select up to `/noise`, the Noise handshake, then Noise transport
 * messages: a 2-byte big-endian length and that many bytes) and, at a random transport message,
 * does one of: flip a bit, replace it by one shorter than its tag, insert a random message before
 * it, replay it, drop it, insert an empty message before it, or cut the connection in the middle
 * of it. Everything it relays to V is re-cut into pieces of random sizes, so V's decoder meets
 * messages split over many reads. Who dials whom is random too.
 *
 * Asserted every time: V's application never receives a byte P did not send (what each of its
 * streams received is a prefix of P's payload); V itself hangs up on a connection once a message
 * does not authenticate; an empty message is skipped and the transfer completes byte for byte;
 * V keeps running — a fresh connection carries a payload intact, a bystander's connection stays
 * open and works — and the process sees no uncaught error; and no muxer of V's is left open
 * without its connection. That last one is a race in libp2p's upgrader (src/net/muxer-guard.ts):
 * without `guardMuxer` it left a muxer running in 6 of 8 seeds; test/unit/net/muxer-guard.test.ts
 * shows it deterministically. NOISE_TAMPER_SEED=<n> replays another schedule of tampering (how
 * the proxy cuts what it relays depends on how bytes arrive).
 */
import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import * as net from 'node:net'
import { after, test } from 'node:test'
import { noise } from '@chainsafe/libp2p-noise'
import { yamux } from '@chainsafe/libp2p-yamux'
import { identify } from '@libp2p/identify'
import type { Connection, Libp2p, StreamMuxer, StreamMuxerFactory } from '@libp2p/interface'
import { tcp } from '@libp2p/tcp'
import { multiaddr } from '@multiformats/multiaddr'
import { createLibp2p } from 'libp2p'
import { Uint8ArrayList } from 'uint8arraylist'
import { guardMuxer, muxerGuardStats } from '../../src/net/muxer-guard.ts'
import { noiseCrypto } from '../../src/net/noise-crypto.ts'
import { leanNoise, leanNoiseStats } from '../../src/net/noise-stream.ts'
import { Rng } from '../../src/rng.ts'
import { roundTrip } from '../support/echo.ts'
import { waitEvent } from '../support/events.ts'

const SEED = Number(process.env.NOISE_TAMPER_SEED ?? 20261207)
const PROTOCOL = '/monna/test-noise-tamper/1'
const PROBE = '/monna/test-noise-tamper-probe/1'
/** how long any one wait may take before the test fails (a hang guard: nothing waits on time) */
const GUARD_MS = 60_000

const TAMPERS = ['flip', 'short', 'inject', 'replay', 'drop', 'empty', 'truncate'] as const
type Tamper = (typeof TAMPERS)[number]

const uncaught: unknown[] = []
const onUncaught = (err: unknown): void => {
  uncaught.push(err)
}
process.on('uncaughtException', onUncaught)
process.on('unhandledRejection', onUncaught)

const nodes: Libp2p[] = []
after(async () => {
  await Promise.all(nodes.map((n) => n.stop()))
  process.off('uncaughtException', onUncaught)
  process.off('unhandledRejection', onUncaught)
})

/** The muxers V created, to find any left open on a connection that closed. */
const victimMuxers: StreamMuxer[] = []

function recordMuxers<C>(make: (components: C) => StreamMuxerFactory): (components: C) => StreamMuxerFactory {
  return (components) => {
    const inner = make(components)
    const recorded: StreamMuxerFactory = Object.create(inner)
    recorded.createStreamMuxer = (stream) => {
      const muxer = inner.createStreamMuxer(stream)
      victimMuxers.push(muxer)
      return muxer
    }
    return recorded
  }
}

/** What V's application received, one list per stream, since the last `received.length = 0`. */
const received: Uint8ArrayList[] = []

async function makeNode(lean: boolean, record = false): Promise<Libp2p> {
  const node = await createLibp2p({
    addresses: { listen: ['/ip4/127.0.0.1/tcp/0'] },
    transports: [tcp()],
    connectionEncrypters: [lean ? leanNoise({ crypto: noiseCrypto }) : noise({ crypto: noiseCrypto })],
    // V's muxers as a member's (`guardMuxer`), and recorded
    streamMuxers: [record ? recordMuxers(guardMuxer(yamux())) : yamux()],
    connectionGater: { denyDialMultiaddr: () => false },
    // every connection here comes from 127.0.0.1: no per-address rate limit (libp2p's default is 5 a second)
    connectionManager: { inboundConnectionThreshold: 1000 },
    services: { identify: identify() },
  })
  nodes.push(node)
  await node.handle(
    PROTOCOL,
    async (stream) => {
      const got = new Uint8ArrayList()
      if (record) received.push(got)
      for await (const chunk of stream) {
        got.append(chunk)
        if (!stream.send(chunk)) await stream.onDrain()
      }
      await stream.close()
    },
    { maxInboundStreams: 64 },
  )
  await node.handle(
    PROBE,
    async (stream) => {
      for await (const _ of stream) {
        // drained
      }
      await stream.close()
    },
    { maxInboundStreams: 64 },
  )
  return node
}

/** A Noise message: its 2-byte big-endian length, then its bytes. */
function frame(body: Uint8Array): Buffer {
  const out = Buffer.alloc(2 + body.byteLength)
  out.writeUInt16BE(body.byteLength, 0)
  out.set(body, 2)
  return out
}

/** An unsigned LEB128 varint at the start of `b`: [value, its length], or undefined if incomplete. */
function varint(b: Buffer): [number, number] | undefined {
  let value = 0
  for (let i = 0; i < Math.min(b.length, 4); i++) {
    value += (b[i]! & 0x7f) * 2 ** (7 * i)
    if ((b[i]! & 0x80) === 0) return [value, i + 1]
  }
  if (b.length >= 4) throw new Error('multistream-select message longer than the proxy expects')
  return undefined
}

/**
 * One direction of a libp2p TCP connection, parsed: multistream-select messages (varint length)
 * until `/noise\n`, then Noise messages, of which the first `handshake` are the handshake's.
 */
class NoiseFramer {
  private buf = Buffer.alloc(0)
  private noise = false
  /** transport messages seen so far */
  transport = 0

  private handshake: number

  constructor(handshake: number) {
    this.handshake = handshake
  }

  /** Complete units in the bytes so far: raw bytes to pass on, or a transport message's body. */
  *push(data: Buffer): Generator<{ raw: Buffer } | { index: number; body: Buffer }> {
    this.buf = Buffer.concat([this.buf, data])
    for (;;) {
      if (!this.noise) {
        const v = varint(this.buf)
        if (v === undefined || this.buf.length < v[1] + v[0]) return
        const raw = this.buf.subarray(0, v[1] + v[0])
        this.buf = this.buf.subarray(raw.length)
        if (raw.subarray(v[1]).toString() === '/noise\n') this.noise = true
        yield { raw }
      } else {
        if (this.buf.length < 2) return
        const end = 2 + this.buf.readUInt16BE(0)
        if (this.buf.length < end) return
        const raw = this.buf.subarray(0, end)
        this.buf = this.buf.subarray(end)
        if (this.handshake > 0) {
          this.handshake--
          yield { raw }
        } else yield { index: this.transport++, body: raw.subarray(2) }
      }
    }
  }
}

interface Plan {
  tamper: Tamper
  /** the index of P's transport message to tamper with */
  at: number
}

interface Proxy {
  port: number
  /** resolves once the proxy has tampered */
  tampered: Promise<void>
  /** which side hung up first: `victim`, `peer`, or `proxy` (the proxy cut it: `truncate`) */
  firstClose: Promise<'victim' | 'peer' | 'proxy'>
  /** resolves once both sides are closed */
  closed: Promise<void>
  stop(): Promise<void>
}

/**
 * A one-connection TCP proxy to 127.0.0.1:`target`. `victimDials`: V is the proxy's client (P
 * listens behind it); otherwise P dials through it to V. P's side is parsed and tampered with as
 * `plan` says; V's side is passed on as it is.
 */
async function startProxy(target: number, victimDials: boolean, plan: Plan, rng: Rng): Promise<Proxy> {
  let markTampered: () => void = () => {}
  const tampered = new Promise<void>((r) => (markTampered = r))
  let first: (side: 'victim' | 'peer' | 'proxy') => void = () => {}
  const firstClose = new Promise<'victim' | 'peer' | 'proxy'>((r) => (first = r))
  let bothClosed: () => void = () => {}
  const closed = new Promise<void>((r) => (bothClosed = r))
  const server = net.createServer((client) => {
    server.close()
    const upstream = net.connect({ host: '127.0.0.1', port: target })
    const victim = victimDials ? client : upstream
    const peer = victimDials ? upstream : client
    for (const s of [victim, peer]) {
      s.setNoDelay(true)
      s.on('error', () => {})
    }
    let cut = false
    let open = 2
    const closeBoth = (side: 'victim' | 'peer' | 'proxy'): void => {
      first(side)
      victim.destroy()
      peer.destroy()
    }
    victim.on('close', () => {
      closeBoth(cut ? 'proxy' : 'victim')
      if (--open === 0) bothClosed()
    })
    peer.on('close', () => {
      closeBoth(cut ? 'proxy' : 'peer')
      if (--open === 0) bothClosed()
    })
    victim.on('data', (d: Buffer) => peer.write(d))
    // P's Noise handshake messages: two when it dials (XX: 1st and 3rd), one when it listens
    const framer = new NoiseFramer(victimDials ? 1 : 2)
    // what goes to V, re-cut: written in pieces of random sizes, a macrotask between some
    const queue: Buffer[] = []
    let writing = false
    const pump = async (): Promise<void> => {
      if (writing) return
      writing = true
      while (queue.length > 0 && !victim.destroyed) {
        const b = queue.shift()!
        for (let o = 0; o < b.length && !victim.destroyed; ) {
          const n = Math.min(b.length - o, rng.int(4) === 0 ? 1 + rng.int(16) : 1 + rng.int(40_000))
          victim.write(b.subarray(o, o + n))
          o += n
          if (rng.int(3) === 0) await new Promise((r) => setImmediate(r))
        }
      }
      writing = false
      if (cut) closeBoth('proxy')
    }
    peer.on('data', (d: Buffer) => {
      if (cut) return
      for (const unit of framer.push(d)) {
        if ('raw' in unit) {
          queue.push(unit.raw)
          continue
        }
        const { index, body } = unit
        if (index !== plan.at) {
          queue.push(frame(body))
          continue
        }
        switch (plan.tamper) {
          case 'flip': {
            const bad = Buffer.from(body)
            bad[rng.int(bad.length)]! ^= 1 << rng.int(8)
            queue.push(frame(bad))
            break
          }
          case 'short':
            queue.push(frame(randomBytes(1 + rng.int(15))))
            break
          case 'inject':
            queue.push(frame(randomBytes(16 + rng.int(65_520))), frame(body))
            break
          case 'replay':
            queue.push(frame(body), frame(body))
            break
          case 'drop':
            break
          case 'empty':
            queue.push(frame(new Uint8Array(0)), frame(body))
            break
          case 'truncate':
            queue.push(frame(body).subarray(0, 1 + rng.int(body.length + 1)))
            cut = true
            break
        }
        markTampered()
        if (cut) break
      }
      void pump()
    })
  })
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r))
  return {
    port: (server.address() as net.AddressInfo).port,
    tampered,
    firstClose,
    closed,
    stop: () => new Promise((r) => server.close(() => r())),
  }
}

/** A guard on a wait: rejects after GUARD_MS naming what did not happen. */
function guard<T>(p: Promise<T>, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined
  return Promise.race([p, new Promise<T>((_, reject) => (timer = setTimeout(() => reject(new Error(`${what}: not within ${GUARD_MS} ms`)), GUARD_MS)))]).finally(() => clearTimeout(timer))
}

/** P hangs up on V and both see no connection left between them. */
async function hangUp(p: Libp2p, v: Libp2p): Promise<void> {
  await p.hangUp(v.peerId)
  const gone = (a: Libp2p, b: Libp2p): Promise<void> =>
    new Promise((resolve) => {
      const check = (): void => {
        if (a.getConnections(b.peerId).length > 0) return
        a.removeEventListener('connection:close', check)
        resolve()
      }
      a.addEventListener('connection:close', check)
      check()
    })
  await guard(Promise.all([gone(p, v), gone(v, p)]), 'P and V disconnected')
}

/** Opens a probe stream on each of P's connections to V (a new message from P), errors ignored. */
function probe(p: Libp2p, v: Libp2p, signal: AbortSignal): void {
  for (const c of p.getConnections(v.peerId)) {
    void c
      .newStream(PROBE, { signal })
      .then(async (s) => {
        s.send(new Uint8Array([1]))
        await s.close()
      })
      .catch(() => {})
  }
}

function isPrefix(got: Uint8Array, of: Uint8Array): boolean {
  return got.byteLength <= of.byteLength && Buffer.from(got).equals(Buffer.from(of.subarray(0, got.byteLength)))
}

test(`a wire attacker flips, shortens, injects, replays, drops, empties and cuts Noise messages to a lean reader: nothing forged reaches it, it hangs up, it keeps working (seed ${SEED})`, { timeout: 600_000 }, async (t) => {
  const rng = new Rng(SEED)
  const [victim, peer, bystander] = await Promise.all([makeNode(true, true), makeNode(false), makeNode(false)])
  const vAddr = victim.getMultiaddrs()[0]!
  const tcpPort = (n: Libp2p): number => Number(/\/tcp\/(\d+)/.exec(n.getMultiaddrs()[0]!.toString())![1])
  const vPort = tcpPort(victim)
  const pPort = tcpPort(peer)
  // the bystander's connection to V stays open through every case
  const bystanderConn = await bystander.dial(vAddr)
  const hello = randomBytes(50_000)
  assert.ok(Buffer.from(await roundTrip(bystander, victim, PROTOCOL, hello, rng)).equals(hello))
  // every kind three times, in a random order
  const kinds: Tamper[] = [...TAMPERS, ...TAMPERS, ...TAMPERS]
  for (let i = kinds.length - 1; i > 0; i--) {
    const j = rng.int(i + 1)
    ;[kinds[i], kinds[j]] = [kinds[j]!, kinds[i]!]
  }
  const seen: string[] = []
  let leanCases = 0
  for (const tamper of kinds) {
    const plan: Plan = { tamper, at: rng.int(20) }
    const victimDials = rng.int(2) === 0
    const label = `${tamper} at transport message ${plan.at}, ${victimDials ? 'V' : 'P'} dialling`
    seen.push(label)
    const replacedBefore = leanNoiseStats.replaced
    // whether V's side of the tampered connection finished its upgrade (a cut right after the
    // handshake may end it before V reads any transport message)
    let victimOpened = false
    const onOpen = (e: CustomEvent<Connection>): void => {
      if (e.detail.remotePeer.equals(peer.peerId)) victimOpened = true
    }
    victim.addEventListener('connection:open', onOpen)
    received.length = 0
    // the proxy's own draws (how it cuts what it relays) depend on how the bytes arrive: apart
    const proxy = await startProxy(victimDials ? pPort : vPort, victimDials, plan, new Rng(rng.int(2 ** 31)))
    const payload = randomBytes(2_000_000)
    // the transfer: P sends 2 MB to V, V echoes it back (≥ 32 of P's transport messages)
    const transfer = (async () => {
      if (victimDials) {
        // P's side of the connection is open once its own upgrade is done, after V's dial returns
        const opened = waitEvent<Connection>(peer, 'connection:open', (c) => c.remotePeer.equals(victim.peerId), GUARD_MS)
        await victim.dial(multiaddr(`/ip4/127.0.0.1/tcp/${proxy.port}/p2p/${peer.peerId}`), { force: true })
        await opened
      } else await peer.dial(multiaddr(`/ip4/127.0.0.1/tcp/${proxy.port}/p2p/${victim.peerId}`), { force: true })
      return await roundTrip(peer, victim, PROTOCOL, payload, rng)
    })().then(
      (echoed) => ({ echoed }),
      (err: unknown) => ({ err }),
    )
    await guard(proxy.tampered, `${label}: the proxy tampered`)
    // P sends something after the tampered message, whatever state its connection is in (a
    // dropped message is only noticed at the next one)
    const probes = new AbortController()
    probe(peer, victim, probes.signal)
    if (tamper === 'empty') {
      const r = await guard(transfer, `${label}: the transfer`)
      assert.ok('echoed' in r, `${label}: the transfer failed: ${'err' in r ? String(r.err) : ''}`)
      assert.ok(Buffer.from(r.echoed).equals(payload), `${label}: ${r.echoed.byteLength} of ${payload.byteLength} bytes echoed intact`)
      await hangUp(peer, victim)
    } else {
      const who = await guard(proxy.firstClose, `${label}: the connection closed`)
      assert.equal(who, tamper === 'truncate' ? 'proxy' : 'victim', `${label}: hung up first by ${who}`)
    }
    await guard(proxy.closed, `${label}: both sides closed`)
    await guard(transfer, `${label}: the transfer settled`)
    await proxy.stop()
    probes.abort()
    victim.removeEventListener('connection:open', onOpen)
    // V read that connection the lean way (V is the only lean node here)
    const lean = leanNoiseStats.replaced - replacedBefore
    assert.ok(lean === 1 || (lean === 0 && !victimOpened), `${label}: V's connection was read the lean way (${lean}; opened: ${victimOpened})`)
    leanCases += lean
    for (const got of received) assert.ok(isPrefix(got.subarray(), payload), `${label}: V's application received ${got.byteLength} bytes that are not what P sent`)
    // V still works: a new connection carries a payload intact
    await hangUp(peer, victim)
    await peer.dial(vAddr)
    const fresh = randomBytes(1 + rng.int(300_000))
    assert.ok(Buffer.from(await roundTrip(peer, victim, PROTOCOL, fresh, rng)).equals(fresh), `${label}: V works afterwards`)
    await hangUp(peer, victim)
  }
  assert.ok(leanCases >= kinds.length / 2, `V read ${leanCases} of ${kinds.length} tampered connections the lean way`)
  assert.equal(bystanderConn.status, 'open', 'the bystander\'s connection to V stayed open')
  // no muxer of V's is left running without a connection (the bystander's is the one open)
  const open = victimMuxers.filter((m) => m.status === 'open')
  assert.equal(open.length, victim.getConnections().length, `${open.length} of V's ${victimMuxers.length} muxers open, for ${victim.getConnections().length} connection(s)`)
  const last = randomBytes(100_000)
  assert.ok(Buffer.from(await roundTrip(bystander, victim, PROTOCOL, last, rng)).equals(last), 'the bystander still talks to V')
  assert.deepEqual(uncaught, [], 'no uncaught error in the process')
  assert.equal(leanNoiseStats.unchanged, 0)
  t.diagnostic(`${seen.join('; ')}; read the lean way: ${leanCases}; muxers aborted at creation (their connection already closed): ${muxerGuardStats.abortedAtCreation}`)
})
