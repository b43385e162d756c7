/**
 * `npm run bench:streams`: what one short stream costs — open, a 100-byte request, close, as the
 * echo broadcast opens one per SEND, PULL, QUERY and FETCH (≈ 900 per round in a 26-member swarm)
 * — with monna's lean libp2p set-up (`leanStreams`, default: no libp2p debug loggers, no peer-store
 * merge of a protocol already recorded) against libp2p's defaults, side by side in one run
 * (alternating, twice each), over the memory transport and over TCP on 127.0.0.1.
 * Prints '#' lines for people and one JSON figure per line.
 *
 *   BENCH_STREAMS=3000 npm run bench:streams
 */
import { cpus, loadavg } from 'node:os'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { createNetNode, type NetNode, peerIdOfKey } from '../../src/net/index.ts'

const N = Number(process.env.BENCH_STREAMS ?? 3000)
const PROTOCOL = '/monna/bench-streams/1'
const machine = { cpu: cpus()[0]?.model.replace(/\s+\d+-Core Processor/, '').trim(), cores: cpus().length, node: process.version }
const figure = (o: Record<string, unknown>): void => console.log(JSON.stringify({ bench: 'streams', ...o, machine }))

async function pair(transport: 'memory' | 'tcp', lean: boolean, tag: string): Promise<NetNode[]> {
  const keys = await Promise.all([0, 1].map(() => generateKeyPair('Ed25519')))
  const membership = { swarmId: 'bench-streams', members: keys.map(peerIdOfKey), f: 0 }
  const nodes = await Promise.all(
    keys.map((privateKey, i) =>
      createNetNode({ privateKey, listen: [transport === 'memory' ? `/memory/bench-streams-${tag}-${i}` : '/ip4/127.0.0.1/tcp/0'], transport, membership, leanStreams: lean }),
    ),
  )
  for (const n of nodes) {
    await n.handle(PROTOCOL, async (stream) => {
      for await (const _ of stream) {
        // the request is read and dropped
      }
      await stream.close()
    })
  }
  await nodes[0]!.dial(nodes[1]!.getMultiaddrs()[0]!)
  return nodes
}

async function streams(nodes: NetNode[], count: number): Promise<void> {
  const request = new Uint8Array(100)
  for (let i = 0; i < count; i++) {
    const s = await nodes[0]!.dialProtocol(nodes[1]!.peerId, PROTOCOL)
    s.send(request)
    await s.close()
  }
}

console.log(`# bench:streams — ${machine.cpu}, ${machine.cores} cores, node ${machine.node}, load ${loadavg().map((l) => l.toFixed(1)).join(' ')}; ${N} streams per measurement`)
figure({ case: 'machine' })
for (const transport of ['memory', 'tcp'] as const) {
  const cpu: Record<string, number[]> = { lean: [], defaults: [] }
  const wall: Record<string, number[]> = { lean: [], defaults: [] }
  for (const [k, lean] of [true, false, true, false].entries()) {
    const name = lean ? 'lean' : 'defaults'
    const nodes = await pair(transport, lean, String(k))
    try {
      await streams(nodes, Math.min(500, N)) // warm-up (JIT, first merge)
      const c0 = process.cpuUsage()
      const t0 = performance.now()
      await streams(nodes, N)
      const c = process.cpuUsage(c0)
      wall[name]!.push(((performance.now() - t0) * 1000) / N)
      cpu[name]!.push((c.user + c.system) / N)
    } finally {
      await Promise.all(nodes.map((n) => n.stop()))
    }
  }
  const mean = (a: number[]): number => a.reduce((x, y) => x + y, 0) / a.length
  for (const name of ['lean', 'defaults']) {
    console.log(`#   ${transport.padEnd(6)} ${name.padEnd(8)} ${mean(cpu[name]!).toFixed(0)} µs CPU, ${mean(wall[name]!).toFixed(0)} µs wall per stream (runs: ${cpu[name]!.map((x) => x.toFixed(0)).join(', ')} µs CPU)`)
    figure({ case: `${transport}-${name}`, transport, streams: N, cpuMicrosPerStream: Math.round(mean(cpu[name]!)), wallMicrosPerStream: Math.round(mean(wall[name]!)), runs: cpu[name]!.map(Math.round) })
  }
  const ratio = mean(cpu.defaults!) / mean(cpu.lean!)
  console.log(`#   ${transport}: libp2p's defaults cost ${ratio.toFixed(2)}× the lean set-up's CPU per stream`)
  figure({ case: `${transport}-ratio`, transport, defaultsOverLeanCpu: Math.round(ratio * 100) / 100 })
}
