/**
 * `npm run bench:swarm-transport`: the transport's floor under the 26-process round. n member
 * processes on 127.0.0.1, started like `bench:round`'s members (the same V8 flags and malloc
 * environment), each with monna's node (`createNetNode`: TCP + Noise + yamux, the membership's
 * gater), do nothing each round but what a round's payloads need: every member writes one
 * LeNet-sized payload (1,724,320 bytes) to every other member, each on its own stream and all at
 * once as the broadcast's SENDs are, and the round ends when every member has read the n − 1
 * payloads sent to it (and ran the member's full collection after the round, node/memory.ts). No training, hashing, signatures, echoes, certificates or aggregation: what
 * is left of `bench:round`'s seconds per round above this one's is the protocol's and the
 * learning's.
 *
 * `BENCH_CASES=noise,plaintext` also runs the same swarm with libp2p's plaintext encrypter in place
 * of Noise (plain libp2p nodes, otherwise configured alike), alternated `BENCH_REPEAT` times:
 * what the encryption costs at this scale. Prints '#' lines for people and JSON figures, with the
 * machine: seconds per round (median of the measured rounds, after one warm-up round), CPU of all
 * member processes per round, peak RSS per member.
 *
 *   npm run bench:swarm-transport
 *   BENCH_MEMBERS=26 BENCH_ROUNDS=6 BENCH_CASES=noise,plaintext BENCH_REPEAT=2 npm run bench:swarm-transport
 */
import { type ChildProcess, fork } from 'node:child_process'
import { once } from 'node:events'
import { readFileSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import { yamux } from '@chainsafe/libp2p-yamux'
import { generateKeyPair, privateKeyFromProtobuf, privateKeyToProtobuf } from '@libp2p/crypto/keys'
import { identify } from '@libp2p/identify'
import type { Libp2p, PrivateKey } from '@libp2p/interface'
import { plaintext } from '@libp2p/plaintext'
import { tcp } from '@libp2p/tcp'
import { multiaddr } from '@multiformats/multiaddr'
import { createLibp2p } from 'libp2p'
import { roundCollector } from '../../node/memory.ts'
import { createNetNode, libp2pLogger, peerIdOfKey } from '../../src/net/index.ts'
import { memberEnv, memberNodeFlags } from '../../src/topology/runner.ts'
import { machine } from './swarm-bench.ts'

const PAYLOAD_BYTES = 1_724_320
const PROTOCOL = '/monna/bench-swarm-transport/1'
const CASES = ['noise', 'plaintext'] as const
type Case = (typeof CASES)[number]

/** Parent → member. */
type Command = { type: 'init'; index: number; key: string; members: string[]; case: Case } | { type: 'peers'; addrs: string[] } | { type: 'round'; round: number } | { type: 'stats' } | { type: 'stop' }
/** Member → parent. */
type Report =
  | { type: 'listening'; addr: string }
  | { type: 'connected' }
  | { type: 'done'; round: number }
  | { type: 'stats'; cpuMs: number; maxRssMB: number; minorFaults: number }

const b64 = (u: Uint8Array): string => Buffer.from(u).toString('base64')

if (process.env.SWARM_TRANSPORT_MEMBER === '1') await member()
else await main()

async function memberNode(c: Case, privateKey: PrivateKey, members: string[]): Promise<Libp2p> {
  if (c === 'noise') return createNetNode({ privateKey, listen: ['/ip4/127.0.0.1/tcp/0'], membership: { swarmId: 'bench-swarm-transport', members, f: 0 }, reachability: false, holePunch: false })
  const logger = libp2pLogger()
  return createLibp2p({
    ...(logger === undefined ? {} : { logger }),
    privateKey,
    addresses: { listen: ['/ip4/127.0.0.1/tcp/0'] },
    transports: [tcp()],
    connectionEncrypters: [plaintext()],
    // monna's frame size (src/net/node.ts: one yamux frame per Noise message)
    streamMuxers: [yamux({ maxMessageSize: 65_535 - 16 - 12 })],
    connectionGater: { denyDialMultiaddr: () => false },
    connectionManager: { inboundConnectionThreshold: 1000, maxIncomingPendingConnections: 1000 },
    services: { identify: identify() },
  })
}

async function member(): Promise<void> {
  const send = (r: Report): void => void process.send?.(r)
  const next = (): Promise<Command> => once(process, 'message').then(([m]) => m as Command)
  const init = (await next()) as Extract<Command, { type: 'init' }>
  // as a member process does (node/memory.ts): array buffers count against V8's global limit, one full collection per round
  const collector = roundCollector()
  const key = privateKeyFromProtobuf(Buffer.from(init.key, 'base64'))
  const node = await memberNode(init.case, key, init.members)
  const payload = new Uint8Array(PAYLOAD_BYTES).fill(init.index + 1)
  let received = 0
  let wake: (() => void) | undefined
  await node.handle(
    PROTOCOL,
    async (stream) => {
      let bytes = 0
      for await (const chunk of stream) bytes += chunk.byteLength
      if (bytes !== PAYLOAD_BYTES) throw new Error(`a payload of ${bytes} bytes, not ${PAYLOAD_BYTES}`)
      received++
      wake?.()
      await stream.close().catch(() => {})
    },
    { maxInboundStreams: 256 },
  )
  send({ type: 'listening', addr: node.getMultiaddrs()[0]!.toString() })
  const { addrs } = (await next()) as Extract<Command, { type: 'peers' }>
  // each pair once: a member dials those after it
  await Promise.all(
    addrs.slice(init.index + 1).map(async (a) => {
      // 26 members dialling at once: a dial the listener could not take yet is tried again
      for (let attempt = 1; ; attempt++) {
        try {
          return await node.dial(multiaddr(a))
        } catch (err) {
          if (attempt === 5) throw err
          await new Promise((r) => setTimeout(r, 200 * attempt))
        }
      }
    }),
  )
  const others = init.members.filter((_, i) => i !== init.index)
  const connected = (): boolean => others.every((p) => node.getConnections().some((c) => c.remotePeer.toString() === p))
  while (!connected()) await new Promise((r) => setTimeout(r, 50))
  send({ type: 'connected' })
  const peers = node.getPeers().filter((p) => others.includes(p.toString()))
  for (;;) {
    const cmd = await next()
    if (cmd.type === 'stop') break
    if (cmd.type === 'stats') {
      const u = process.resourceUsage()
      send({ type: 'stats', cpuMs: (u.userCPUTime + u.systemCPUTime) / 1000, maxRssMB: u.maxRSS / 1024, minorFaults: u.minorPageFault })
      continue
    }
    if (cmd.type !== 'round') continue
    const target = (cmd.round + 1) * others.length
    await Promise.all(
      peers.map(async (p) => {
        const s = await node.dialProtocol(p, PROTOCOL)
        for (let off = 0; off < PAYLOAD_BYTES; off += 256 * 1024) {
          if (!s.send(payload.subarray(off, Math.min(PAYLOAD_BYTES, off + 256 * 1024)))) await s.onDrain()
        }
        await s.close()
      }),
    )
    while (received < target) await new Promise<void>((r) => (wake = r))
    collector.afterRound(received * PAYLOAD_BYTES)
    send({ type: 'done', round: cmd.round })
  }
  await node.stop()
  process.disconnect?.()
}

/** One swarm of `n` member processes, `rounds` rounds after a warm-up one. */
async function swarm(c: Case, n: number, rounds: number): Promise<{ secondsPerRound: number[]; cpuSecondsPerRound: number; minorFaultsPerRound: number; peakRssMB: number[] }> {
  const keys = await Promise.all(Array.from({ length: n }, () => generateKeyPair('Ed25519')))
  const members = keys.map(peerIdOfKey)
  const self = fileURLToPath(import.meta.url)
  const children: ChildProcess[] = keys.map(() =>
    fork(self, [], { execArgv: [...process.execArgv, ...memberNodeFlags], env: { ...memberEnv, ...process.env, SWARM_TRANSPORT_MEMBER: '1' }, stdio: ['ignore', 'inherit', 'inherit', 'ipc'] }),
  )
  const failed = new Promise<never>((_, reject) => {
    for (const ch of children) ch.once('exit', (code) => code !== 0 && reject(new Error(`a member exited with ${code}`)))
  })
  failed.catch(() => {})
  const reports = (ch: ChildProcess, type: Report['type']): Promise<Report> =>
    Promise.race([failed, new Promise<Report>((resolve) => {
      const on = (m: Report): void => {
        if (m.type !== type) return
        ch.off('message', on)
        resolve(m)
      }
      ch.on('message', on)
    })])
  const all = <T extends Report>(type: T['type'], send?: Command): Promise<T[]> => {
    const waits = children.map((ch) => reports(ch, type) as Promise<T>)
    if (send !== undefined) for (const ch of children) ch.send(send)
    return Promise.all(waits)
  }
  try {
    const listening = children.map((ch) => reports(ch, 'listening'))
    for (const [index, ch] of children.entries()) ch.send({ type: 'init', index, key: b64(privateKeyToProtobuf(keys[index]!)), members, case: c } satisfies Command)
    const addrs = (await Promise.all(listening)).map((r) => (r as Extract<Report, { type: 'listening' }>).addr)
    await all('connected', { type: 'peers', addrs })
    await all('done', { type: 'round', round: 0 }) // warm-up
    const before = await all<Extract<Report, { type: 'stats' }>>('stats', { type: 'stats' })
    const secondsPerRound: number[] = []
    for (let r = 1; r <= rounds; r++) {
      const t0 = performance.now()
      await all('done', { type: 'round', round: r })
      secondsPerRound.push((performance.now() - t0) / 1000)
      process.stdout.write(`# ${c}, round ${r}: ${secondsPerRound.at(-1)!.toFixed(2)} s\n`)
    }
    const after = await all<Extract<Report, { type: 'stats' }>>('stats', { type: 'stats' })
    const cpuMs = after.reduce((s, a, i) => s + a.cpuMs - before[i]!.cpuMs, 0)
    const faults = after.reduce((s, a, i) => s + a.minorFaults - before[i]!.minorFaults, 0)
    return { secondsPerRound, cpuSecondsPerRound: cpuMs / 1000 / rounds, minorFaultsPerRound: faults / rounds, peakRssMB: after.map((a) => a.maxRssMB) }
  } finally {
    for (const ch of children) if (ch.connected) ch.send({ type: 'stop' } satisfies Command)
    // a member still busy (after a failure elsewhere) never reads 'stop'
    const kill = setTimeout(() => {
      for (const ch of children) ch.kill('SIGKILL')
    }, 10_000)
    await Promise.all(children.map((ch) => (ch.exitCode === null && ch.signalCode === null ? once(ch, 'exit') : undefined)))
    clearTimeout(kill)
  }
}

async function main(): Promise<void> {
  const n = Number(process.env.BENCH_MEMBERS ?? 26)
  const rounds = Number(process.env.BENCH_ROUNDS ?? 6)
  const repeat = Number(process.env.BENCH_REPEAT ?? 1)
  const cases = (process.env.BENCH_CASES ?? 'noise').split(',').map((s) => s.trim()) as Case[]
  for (const c of cases) if (!CASES.includes(c)) throw new Error(`BENCH_CASES: unknown case "${c}" (cases: ${CASES.join(', ')})`)
  if (!Number.isInteger(n) || n < 2) throw new Error(`BENCH_MEMBERS must be an integer ≥ 2, not "${process.env.BENCH_MEMBERS}"`)
  if (!Number.isInteger(rounds) || rounds < 1) throw new Error(`BENCH_ROUNDS must be an integer ≥ 1, not "${process.env.BENCH_ROUNDS}"`)
  const m = machine()
  console.log(`# bench:swarm-transport — ${n} member processes, ${rounds} rounds (+ 1 warm-up), payload ${PAYLOAD_BYTES} bytes to each other member; ${JSON.stringify(m)}`)
  const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!
  for (let rep = 0; rep < repeat; rep++) {
    for (const c of cases) {
      const r = await swarm(c, n, rounds)
      const mbPerMember = ((n - 1) * PAYLOAD_BYTES) / 1e6
      console.log(
        `# ${c}: ${median(r.secondsPerRound).toFixed(2)} s per round (median), ${r.cpuSecondsPerRound.toFixed(1)} CPU-s per round (all members), ${Math.round(r.minorFaultsPerRound / 1000)} k minor page faults per round (all members), peak per member ${median(r.peakRssMB).toFixed(0)} MB (median)`,
      )
      console.log(
        JSON.stringify({
          bench: 'swarm-transport',
          case: c,
          n,
          rounds,
          secondsPerRound: Number(median(r.secondsPerRound).toFixed(3)),
          roundSeconds: r.secondsPerRound.map((s) => Number(s.toFixed(2))),
          cpuSecondsPerRound: Number(r.cpuSecondsPerRound.toFixed(2)),
          minorFaultsPerRound: Math.round(r.minorFaultsPerRound),
          cpuMsPerMBMoved: Number(((r.cpuSecondsPerRound * 1000) / (n * mbPerMember)).toFixed(2)),
          peakRssMBPerMember: { median: Math.round(median(r.peakRssMB)), max: Math.round(Math.max(...r.peakRssMB)) },
          loadAfter: readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).map(Number),
          machine: m,
        }),
      )
    }
  }
}
