/**
 * `npm run bench:transport`: what moving model payloads between two members costs in CPU, per
 * MB, over the transports a member could use on 127.0.0.1 — monna's own node (TCP + Noise +
 * yamux, `createNetNode`), the same stack with libp2p's plaintext encrypter instead of Noise
 * (what Noise itself costs), and libp2p's QUIC transport (`@chainsafe/libp2p-quic`: TLS 1.3 and
 * stream multiplexing in native code). Payloads of LeNet's size (1,724,320 bytes, float32), each
 * on its own stream as a SEND is, `BENCH_PARALLEL` streams at a time; CPU is the whole process's
 * (both ends, native threads included), measured side by side in one run (alternating, twice each).
 * Prints '#' lines for people and one JSON figure per line.
 *
 * The library's Noise stream and monna's lean reading of it (src/net/noise-stream.ts) are both
 * measured on plain libp2p nodes, otherwise configured alike.
 *
 *   BENCH_PAYLOADS=120 BENCH_REPEAT=2 npm run bench:transport
 *   BENCH_CASES='tcp+noise+yamux (library reading),tcp+noise+yamux (lean reading)' BENCH_REPEAT=4 npm run bench:transport
 */
import { cpus, loadavg } from 'node:os'
import { noise } from '@chainsafe/libp2p-noise'
import { quic } from '@chainsafe/libp2p-quic'
import { yamux } from '@chainsafe/libp2p-yamux'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { identify } from '@libp2p/identify'
import type { Libp2p } from '@libp2p/interface'
import { plaintext } from '@libp2p/plaintext'
import { tcp } from '@libp2p/tcp'
import { createLibp2p } from 'libp2p'
import { createNetNode, libp2pLogger, peerIdOfKey } from '../../src/net/index.ts'
import { noiseCrypto } from '../../src/net/noise-crypto.ts'
import { leanNoise } from '../../src/net/noise-stream.ts'

const PAYLOADS = Number(process.env.BENCH_PAYLOADS ?? 120)
const PARALLEL = Number(process.env.BENCH_PARALLEL ?? 5)
const REPEAT = Number(process.env.BENCH_REPEAT ?? 2)
const PAYLOAD_BYTES = 1_724_320
const PROTOCOL = '/monna/bench-transport/1'
const machine = { cpu: cpus()[0]?.model.replace(/\s+\d+-Core Processor/, '').trim(), cores: cpus().length, node: process.version }
const figure = (o: Record<string, unknown>): void => console.log(JSON.stringify({ bench: 'transport', ...o, machine }))
const CASES = ['monna tcp+noise+yamux', 'tcp+noise+yamux (library reading)', 'tcp+noise+yamux (lean reading)', 'tcp+plaintext+yamux', 'quic'] as const
type Case = (typeof CASES)[number]

async function pair(c: Case): Promise<Libp2p[]> {
  if (c === 'monna tcp+noise+yamux') {
    const keys = await Promise.all([0, 1].map(() => generateKeyPair('Ed25519')))
    const membership = { swarmId: 'bench-transport', members: keys.map(peerIdOfKey), f: 0 }
    return Promise.all(keys.map((privateKey) => createNetNode({ privateKey, listen: ['/ip4/127.0.0.1/tcp/0'], membership, reachability: false, holePunch: false })))
  }
  const logger = libp2pLogger()
  return Promise.all(
    [0, 1].map(() =>
      createLibp2p({
        ...(logger === undefined ? {} : { logger }),
        addresses: { listen: [c === 'quic' ? '/ip4/127.0.0.1/udp/0/quic-v1' : '/ip4/127.0.0.1/tcp/0'] },
        transports: c === 'quic' ? [quic()] : [tcp()],
        connectionEncrypters: [c === 'tcp+plaintext+yamux' ? plaintext() : c === 'tcp+noise+yamux (lean reading)' ? leanNoise({ crypto: noiseCrypto }) : noise({ crypto: noiseCrypto })],
        // monna's frame size (src/net/node.ts: one yamux frame per Noise message)
        streamMuxers: [yamux({ maxMessageSize: 65_535 - 16 - 12 })],
        connectionGater: { denyDialMultiaddr: () => false },
        services: { identify: identify() },
      }),
    ),
  )
}

/** Sends `count` payloads from a to b, `PARALLEL` streams at a time; resolves when b has read them all. */
async function move(nodes: Libp2p[], count: number, received: { bytes: number; wake?: () => void }): Promise<void> {
  const [a, b] = nodes as [Libp2p, Libp2p]
  const payload = new Uint8Array(PAYLOAD_BYTES).fill(7)
  const target = received.bytes + count * PAYLOAD_BYTES
  let left = count
  await Promise.all(
    Array.from({ length: PARALLEL }, async () => {
      while (left-- > 0) {
        const s = await a.dialProtocol(b.peerId, PROTOCOL)
        for (let off = 0; off < PAYLOAD_BYTES; off += 256 * 1024) {
          if (!s.send(payload.subarray(off, Math.min(PAYLOAD_BYTES, off + 256 * 1024)))) await s.onDrain()
        }
        await s.close()
      }
    }),
  )
  while (received.bytes < target) await new Promise<void>((r) => (received.wake = r))
}

console.log(
  `# bench:transport — ${machine.cpu}, ${machine.cores} cores, node ${machine.node}, load ${loadavg().map((l) => l.toFixed(1)).join(' ')}; ${PAYLOADS} payloads of ${PAYLOAD_BYTES} bytes per measurement, ${PARALLEL} streams at a time`,
)
figure({ case: 'machine' })
const only = process.env.BENCH_CASES?.split(',').map((c) => c.trim())
for (const c of only ?? []) if (!(CASES as readonly string[]).includes(c)) throw new Error(`BENCH_CASES: unknown case "${c}" (cases: ${CASES.join('; ')})`)
const cases: Case[] = CASES.filter((c) => only === undefined || only.includes(c))
const results = new Map<Case, { cpuMsPerMB: number[]; mbPerS: number[] }>(cases.map((c) => [c, { cpuMsPerMB: [], mbPerS: [] }]))
for (let rep = 0; rep < REPEAT; rep++) {
  for (const c of cases) {
    const nodes = await pair(c)
    const received: { bytes: number; wake?: () => void } = { bytes: 0 }
    await nodes[1]!.handle(
      PROTOCOL,
      async (stream) => {
        for await (const chunk of stream) {
          received.bytes += chunk.byteLength
          received.wake?.()
        }
        await stream.close().catch(() => {})
      },
      { maxInboundStreams: 64 },
    )
    await nodes[0]!.dial(nodes[1]!.getMultiaddrs()[0]!)
    try {
      await move(nodes, PARALLEL * 2, received) // warm-up
      const c0 = process.cpuUsage()
      const t0 = performance.now()
      await move(nodes, PAYLOADS, received)
      const wallS = (performance.now() - t0) / 1000
      const cpu = process.cpuUsage(c0)
      const mb = (PAYLOADS * PAYLOAD_BYTES) / 1e6
      const r = results.get(c)!
      r.cpuMsPerMB.push((cpu.user + cpu.system) / 1000 / mb)
      r.mbPerS.push(mb / wallS)
      console.log(`# ${c}: ${(((cpu.user + cpu.system) / 1000) / mb).toFixed(2)} CPU-ms per MB (both ends), ${(mb / wallS).toFixed(0)} MB/s`)
    } finally {
      await Promise.all(nodes.map((n) => n.stop()))
    }
  }
}
const base = Math.min(...results.get(cases[0]!)!.cpuMsPerMB)
for (const [c, r] of results) {
  const best = Math.min(...r.cpuMsPerMB)
  figure({ case: c, cpuMsPerMB: r.cpuMsPerMB.map((v) => Number(v.toFixed(2))), mbPerS: r.mbPerS.map((v) => Math.round(v)), timesFirstCase: Number((best / base).toFixed(2)), firstCase: cases[0] })
}
