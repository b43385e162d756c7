/**
 * The lean reading and writing of Noise connections (src/net/noise-stream.ts): its decoder against the messages
 * it was given, cut into chunks at random (NOISE_STREAM_SEED=<n> replays another seed); its
 * decryption's checks; and real libp2p nodes over TCP on 127.0.0.1 — lean and library encrypters
 * on either end, payloads with random sizes and random sends compared byte for byte, and a
 * member's node (`createNetNode`) reading its connections the lean way. The writing: its buffers
 * under a random schedule, and a real TCP socket whose reader stalls at random points (every
 * message must authenticate, in order, however the buffers were used again).
 */
import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import { once } from 'node:events'
import { createServer, connect as netConnect, type Socket } from 'node:net'
import { after, test } from 'node:test'
import { noise } from '@chainsafe/libp2p-noise'
import { defaultCrypto } from '@chainsafe/libp2p-noise/crypto'
import { yamux } from '@chainsafe/libp2p-yamux'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { identify } from '@libp2p/identify'
import { InvalidParametersError, type Libp2p } from '@libp2p/interface'
import { tcp } from '@libp2p/tcp'
import { createLibp2p } from 'libp2p'
import { Uint8ArrayList } from 'uint8arraylist'
import { nativeChacha } from '../../../src/compute/native.ts'
import { createNetNode, peerIdOfKey } from '../../../src/net/index.ts'
import { IN_PLACE, noiseCrypto, noiseCryptoStats } from '../../../src/net/noise-crypto.ts'
import {
  decryptMessage,
  leanNoise,
  leanNoiseStats,
  leanRead,
  leanWrite,
  NOISE_MAX_BUFFER_BYTES,
  NoiseMessageDecoder,
  SealBuffers,
  sealBufferStats,
} from '../../../src/net/noise-stream.ts'
import { Rng } from '../../../src/rng.ts'
import { handleEcho, roundTrip } from '../../support/echo.ts'

const SEED = Number(process.env.NOISE_STREAM_SEED ?? 20261206)
const flat = (b: Uint8Array | Uint8ArrayList): Uint8Array => (b instanceof Uint8Array ? b : b.subarray())

/** Each message with its 2-byte big-endian length in front, all joined. */
function framed(messages: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(messages.reduce((s, m) => s + 2 + m.byteLength, 0))
  let o = 0
  for (const m of messages) {
    out[o] = m.byteLength >> 8
    out[o + 1] = m.byteLength & 0xff
    out.set(m, o + 2)
    o += 2 + m.byteLength
  }
  return out
}

test(`NoiseMessageDecoder yields every non-empty message whole and in order, however the bytes are cut (seed ${SEED})`, () => {
  const rng = new Rng(SEED)
  for (let trial = 0; trial < 40; trial++) {
    const messages = Array.from({ length: 1 + rng.int(30) }, () => {
      const pick = rng.int(6)
      const length = pick === 0 ? 0 : pick === 1 ? 1 + rng.int(16) : pick === 2 ? 65_535 : pick === 3 ? 65_535 - rng.int(3) : rng.int(70_000) % 65_536
      return randomBytes(length)
    })
    const bytes = framed(messages)
    const decoder = new NoiseMessageDecoder()
    const got: Uint8Array[] = []
    // chunks from 1 byte to more than a message, some of them handed over as lists of parts
    for (let o = 0; o < bytes.byteLength; ) {
      const pick = rng.int(4)
      const size = Math.min(bytes.byteLength - o, pick === 0 ? 1 + rng.int(3) : pick === 1 ? 1 + rng.int(70_000) : 65_536)
      const chunk = bytes.subarray(o, o + size)
      const cut = rng.int(size + 1)
      const data = rng.int(3) === 0 ? new Uint8ArrayList(chunk.subarray(0, cut), chunk.subarray(cut)) : chunk
      for (const m of decoder.decode(data)) got.push(Uint8Array.from(flat(m)))
      o += size
    }
    const want = messages.filter((m) => m.byteLength > 0)
    assert.equal(got.length, want.length, `trial ${trial}: messages`)
    for (let i = 0; i < want.length; i++) assert.deepEqual(Buffer.from(got[i]!), Buffer.from(want[i]!), `trial ${trial}: message ${i}`)
    assert.equal(decoder.buffer.byteLength, 0, `trial ${trial}: nothing left over`)
  }
})

test('NoiseMessageDecoder: a message inside one chunk is a view of it, not a copy; bytes an earlier decoder held are read first', () => {
  const bytes = framed([randomBytes(1000), randomBytes(3000)])
  const [first] = [...new NoiseMessageDecoder().decode(bytes)]
  assert.ok(first instanceof Uint8Array)
  assert.equal(first.buffer, bytes.buffer)
  assert.equal(first.byteOffset, bytes.byteOffset + 2)
  // the library's decoder had taken the first 1,500 bytes (one message and the start of the next)
  const held = new Uint8ArrayList(bytes.subarray(1002, 1500))
  const rest = [...new NoiseMessageDecoder(held).decode(bytes.subarray(1500))]
  assert.equal(rest.length, 1)
  assert.deepEqual(Buffer.from(flat(rest[0]!)), Buffer.from(bytes.subarray(1004)))
})

test('NoiseMessageDecoder refuses more than 16 MiB buffered, as the library does', () => {
  const decoder = new NoiseMessageDecoder()
  // a declared length never reached: bytes pile up until the bound
  assert.deepEqual([...decoder.decode(Uint8Array.of(0xff, 0xff))], [])
  assert.throws(() => [...decoder.decode(new Uint8Array(NOISE_MAX_BUFFER_BYTES))], InvalidParametersError)
})

test('decryptMessage refuses a message shorter than its tag and decrypts without an in-place destination; leanRead wires it and counts errors', () => {
  const calls: unknown[][] = []
  const handshake = {
    decrypt: (...args: unknown[]) => {
      calls.push(args)
      if ((args[0] as Uint8Array)[0] === 0xee) throw new Error('ciphertext cannot be decrypted using that key')
      return (args[0] as Uint8Array).subarray(0, -16)
    },
  }
  assert.throws(() => decryptMessage(handshake, new Uint8Array(15)), /Invalid chunk/)
  assert.equal(calls.length, 0)
  assert.equal(decryptMessage(handshake, new Uint8Array(40)).byteLength, 24)
  assert.deepEqual(calls.at(-1)?.length, 1)

  const counts = { ok: 0, bad: 0 }
  const held = new Uint8ArrayList(Uint8Array.of(0, 40))
  const library = {
    handshake,
    decoder: { buffer: held, decode: () => [] },
    decrypt: () => assert.fail('the library decrypt must not run'),
    metrics: { decryptedPackets: { increment: () => counts.ok++ }, decryptErrors: { increment: () => counts.bad++ } },
  }
  const before = { ...leanNoiseStats }
  assert.equal(leanRead(library), true)
  assert.equal(leanNoiseStats.replaced, before.replaced + 1)
  assert.ok(library.decoder instanceof NoiseMessageDecoder)
  assert.equal([...library.decoder.decode(new Uint8Array(40))].length, 1, 'the held length prefix is read first')
  const decrypt = library.decrypt as (m: Uint8Array) => Uint8Array
  assert.equal(decrypt(new Uint8Array(40)).byteLength, 24)
  assert.throws(() => decrypt(new Uint8Array(40).fill(0xee)), /cannot be decrypted/)
  assert.deepEqual(counts, { ok: 1, bad: 1 })
  // a stream without the library's fields is left alone, and counted
  assert.equal(leanRead({ decoder: {} }), false)
  assert.equal(leanNoiseStats.unchanged, before.unchanged + 1)
  leanNoiseStats.unchanged = before.unchanged
})

test(`SealBuffers never hands out a buffer in flight until everything has left (random schedule, seed ${SEED})`, () => {
  const rng = new Rng(SEED + 4)
  let released = false
  const buffers = new SealBuffers(() => released)
  const inFlight = new Set<Uint8Array>()
  const taken = new Set<Uint8Array>()
  const seen = new Set<Uint8Array>()
  let reused = 0
  for (let step = 0; step < 5000; step++) {
    const pick = rng.int(10)
    if (pick < 4) {
      const b = buffers.take()
      assert.ok(!inFlight.has(b), `step ${step}: a buffer still in flight was handed out`)
      assert.ok(!taken.has(b), `step ${step}: a buffer handed out twice`)
      assert.equal(b.byteLength, 65_537)
      if (seen.has(b)) reused++
      seen.add(b)
      taken.add(b)
    } else if (pick < 7 && taken.size > 0) {
      const b = [...taken][rng.int(taken.size)]!
      taken.delete(b)
      if (rng.int(5) === 0) buffers.putBack(b)
      else {
        buffers.sending(b)
        inFlight.add(b)
      }
    } else if (pick < 9) {
      released = rng.int(3) === 0
      buffers.settle()
      if (released) inFlight.clear()
    } else released = false
  }
  assert.ok(reused > 100, `${reused} buffers used again`)
})

/** Noise's 12-byte nonce for message `n` (4 zero bytes, then the counter, little-endian). */
function nonceOf(n: number): Uint8Array {
  const nonce = new Uint8Array(12)
  new DataView(nonce.buffer).setUint32(4, n, true)
  return nonce
}

test(`leanWrite over a TCP socket whose reader stalls at random points: every message arrives intact, buffers reused only once written (seed ${SEED})`, async () => {
  const rng = new Rng(SEED + 5)
  const server = createServer()
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  const accepted = once(server, 'connection') as Promise<[Socket]>
  const socket = netConnect((server.address() as { port: number }).port, '127.0.0.1')
  await once(socket, 'connect')
  const [reader] = await accepted
  reader.pause()
  const received: Buffer[] = []
  reader.on('data', (chunk: Buffer) => received.push(chunk))
  const ended = once(reader, 'end')

  // a cipher state's encryption, as the library's handshake does it, with monna's crypto
  const k = randomBytes(32)
  let sent = 0
  const handshake = {
    encrypt: (plain: Uint8Array | Uint8ArrayList) => noiseCrypto.chaCha20Poly1305Encrypt(plain as never, nonceOf(sent++), new Uint8Array(0), k),
    decrypt: () => assert.fail('not read here'),
  }
  // a connection like @libp2p/tcp's: every buffer straight to the socket
  const library = {
    handshake,
    sendData: () => assert.fail('the library sendData must not run'),
    stream: {
      writeBufferLength: 0,
      socket,
      send: (list: Uint8ArrayList) => {
        let more = true
        for (const b of list) more = socket.write(b)
        return more
      },
      addEventListener: (name: string, fn: () => void) => socket.on(name, fn),
    },
  }
  const before = { ...sealBufferStats }
  const sealedBefore = noiseCryptoStats.sealedInto
  const buffers = leanWrite(library)
  assert.ok(buffers !== undefined)
  const sendData = library.sendData as unknown as (d: Uint8ArrayList) => { sentBytes: number; canSendMore: boolean }
  // the stream's send loop: what one call did not take goes in the next
  const plain: Uint8Array[] = []
  const send = (data: Uint8Array): void => {
    plain.push(data)
    const list = new Uint8ArrayList(data)
    while (list.byteLength > 0) list.consume(sendData(list).sentBytes)
  }
  for (let batch = 0; batch < 8; batch++) {
    // the reader stalled: send until the socket holds bytes it could not write, then some more
    let extra = 1 + rng.int(6)
    while (socket.writableLength === 0 || extra-- > 0) {
      const pick = rng.int(4)
      send(randomBytes(pick === 0 ? 1 + rng.int(1199) : pick === 1 ? 65_519 : 1 + rng.int(400_000)))
    }
    // the reader reads until the socket has written everything, then stalls again
    reader.resume()
    await once(socket, 'drain')
    reader.pause()
  }
  reader.resume()
  socket.end()
  await ended
  server.close()

  // every message authenticates, in order, and together they are what was sent
  const decoder = new NoiseMessageDecoder()
  const out: Uint8Array[] = []
  let n = 0
  for (const chunk of received) for (const m of decoder.decode(chunk)) out.push(flat(defaultCrypto.chaCha20Poly1305Decrypt(Uint8Array.from(flat(m)), nonceOf(n++), new Uint8Array(0), k) as Uint8Array))
  assert.equal(n, sent, 'messages')
  assert.deepEqual(Buffer.concat(out), Buffer.concat(plain), 'the plaintext, byte for byte')
  if (nativeChacha() === undefined) {
    assert.equal(noiseCryptoStats.sealedInto, sealedBefore)
    return
  }
  assert.ok(noiseCryptoStats.sealedInto - sealedBefore > 50, `${noiseCryptoStats.sealedInto - sealedBefore} messages sealed into buffers`)
  assert.ok(sealBufferStats.held - before.held > 0, 'the socket held buffers at times')
  assert.ok(sealBufferStats.reused - before.reused > 20, `${sealBufferStats.reused - before.reused} buffers used again`)
})

const nodes: Libp2p[] = []
after(async () => {
  await Promise.all(nodes.map((n) => n.stop()))
})

const PROTOCOL = '/monna/test-noise-stream/1'

async function plainNode(lean: boolean, crypto = noiseCrypto): Promise<Libp2p> {
  const node = await createLibp2p({
    addresses: { listen: ['/ip4/127.0.0.1/tcp/0'] },
    transports: [tcp()],
    connectionEncrypters: [lean ? leanNoise({ crypto }) : noise({ crypto })],
    streamMuxers: [yamux()],
    connectionGater: { denyDialMultiaddr: () => false },
    services: { identify: identify() },
  })
  nodes.push(node)
  await handleEcho(node, PROTOCOL)
  return node
}

test('lean and library Noise encrypters talk to each other over TCP both ways: every byte arrives, in order', async () => {
  const rng = new Rng(SEED + 1)
  const before = { ...leanNoiseStats }
  const inPlaceBefore = noiseCryptoStats.inPlace
  const [lean1, lean2, lean3, library1, library2] = await Promise.all([true, true, true, false, false].map((lean) => plainNode(lean)))
  // three new connections: lean dials library, library dials lean, lean dials lean
  for (const [a, b] of [
    [lean1, library1],
    [library2, lean2],
    [lean2, lean3],
  ] as [Libp2p, Libp2p][]) {
    await a.dial(b.getMultiaddrs()[0]!)
    const payloads = [randomBytes(1_724_320), randomBytes(1 + rng.int(200_000)), randomBytes(65_519), randomBytes(1)]
    const echoed = await Promise.all(payloads.map((p) => roundTrip(a, b, PROTOCOL, p, rng)))
    for (let i = 0; i < payloads.length; i++) assert.ok(Buffer.from(echoed[i]!).equals(payloads[i]!), `payload ${i}: ${echoed[i]!.byteLength} of ${payloads[i]!.byteLength} bytes back`)
  }
  // three connections, four lean ends
  assert.equal(leanNoiseStats.replaced - before.replaced, 4)
  assert.equal(leanNoiseStats.unchanged, before.unchanged)
  // the lean ends decrypted their large messages over themselves (the 1.7 MB payloads alone are > 26 messages each way); without the addon (MONNA_NATIVE=off) none
  if (nativeChacha() === undefined) assert.equal(noiseCryptoStats.inPlace, inPlaceBefore)
  else assert.ok(noiseCryptoStats.inPlace - inPlaceBefore > 4 * 26, `${noiseCryptoStats.inPlace - inPlaceBefore} messages decrypted in place`)
})

/** `crypto` with its decryptions counted: all of them, and those asked to decrypt in place. */
function watchDecryption(crypto: typeof noiseCrypto): { crypto: typeof noiseCrypto; calls: number; inPlace: number } {
  const w = {
    calls: 0,
    inPlace: 0,
    crypto: {
      ...crypto,
      chaCha20Poly1305Decrypt: (...a: Parameters<typeof crypto.chaCha20Poly1305Decrypt>) => {
        w.calls++
        if (a[4] === IN_PLACE) w.inPlace++
        return crypto.chaCha20Poly1305Decrypt(...a)
      },
    },
  }
  return w
}

test('a lean reader with another crypto than monna\'s never asks it to decrypt in place, and reads every byte', async () => {
  const rng = new Rng(SEED + 2)
  // the library's default crypto at the lean end: IN_PLACE means nothing to it
  const other = watchDecryption(defaultCrypto)
  // monna's crypto at the library's end, watched too (the process-wide counters also move with
  // other tests' nodes, still exchanging short messages)
  const ours = watchDecryption(noiseCrypto)
  const [lean, library] = await Promise.all([plainNode(true, other.crypto), plainNode(false, ours.crypto)])
  await lean.dial(library.getMultiaddrs()[0]!)
  const payload = randomBytes(300_000)
  const echoed = await roundTrip(lean, library, PROTOCOL, payload, rng)
  assert.ok(Buffer.from(echoed).equals(payload))
  assert.ok(other.calls > 4, `${other.calls} decryptions by the watched crypto`)
  assert.equal(other.inPlace, 0)
  // the library end (noiseCrypto, no IN_PLACE from the library's reading) decrypted into fresh buffers
  assert.ok(ours.calls > 4, `${ours.calls} decryptions at the library's end`)
  assert.equal(ours.inPlace, 0)
})

test("a member's node reads its TCP connections the lean way", async () => {
  const before = { ...leanNoiseStats }
  const keys = await Promise.all([0, 1].map(() => generateKeyPair('Ed25519')))
  const membership = { swarmId: 'noise-stream-test', members: keys.map(peerIdOfKey), f: 0 }
  const [a, b] = await Promise.all(keys.map((privateKey) => createNetNode({ privateKey, listen: ['/ip4/127.0.0.1/tcp/0'], membership, reachability: false, holePunch: false })))
  nodes.push(a!, b!)
  const opened = new Promise((resolve) => b!.addEventListener('connection:open', resolve, { once: true }))
  await a!.dial(b!.getMultiaddrs()[0]!)
  await opened
  assert.equal(leanNoiseStats.replaced - before.replaced, 2)
  assert.equal(leanNoiseStats.unchanged, before.unchanged)
  assert.equal(leanNoiseStats.writesReplaced - before.writesReplaced, 2)
  assert.equal(leanNoiseStats.writesUnchanged, before.writesUnchanged)
  // and decrypts in place, encrypts into its connections' buffers: a payload there and back, every byte right
  const inPlaceBefore = noiseCryptoStats.inPlace
  const sealedBefore = noiseCryptoStats.sealedInto
  await handleEcho(b!, PROTOCOL)
  const payload = randomBytes(1_724_320)
  assert.ok(Buffer.from(await roundTrip(a!, b!, PROTOCOL, payload, new Rng(SEED + 3))).equals(payload))
  if (nativeChacha() === undefined) assert.equal(noiseCryptoStats.inPlace, inPlaceBefore)
  else assert.ok(noiseCryptoStats.inPlace - inPlaceBefore >= 2 * 26, `${noiseCryptoStats.inPlace - inPlaceBefore} messages decrypted in place`)
  if (nativeChacha() === undefined) assert.equal(noiseCryptoStats.sealedInto, sealedBefore)
  else assert.ok(noiseCryptoStats.sealedInto - sealedBefore >= 2 * 26, `${noiseCryptoStats.sealedInto - sealedBefore} messages sealed into buffers`)
})
