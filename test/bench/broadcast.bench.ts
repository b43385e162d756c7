/**
 * npm run bench:broadcast — n = 10 members on loopback, every member broadcasting each round.
 *
 * For payloads of 0.4 MB and 1.7 MB, in the same run and alternating order:
 *   - echo:  signed echo broadcast; time from the round's start until every member delivered
 *            all n certified instances of the round;
 *   - plain: gossipsub publish of the same payloads (no echo, no certificate); time until every
 *            member received the n − 1 other payloads.
 * Reports the ratio echo/plain (target ≤ 1.5) and bytes sent per member (TCP level, from
 * libp2p's data-transfer counters of the connection, so everything sent counts: Noise/yamux
 * framing, identify, gossipsub control traffic and duplicates)
 * against the floor (n − 1)·payload. Table on stdout, then one JSON line per figure.
 *
 * Plain rounds where some payload never arrived (within 60 s) are excluded from the plain
 * median and counted in `plain-rounds-incomplete`.
 *
 * Options (env): BENCH_N (10), BENCH_ROUNDS (3 per size), BENCH_SIZES ("400000,1700000"),
 * BENCH_PLAIN_MAX_RPC (gossipsub maxInboundDataLength and yamux stream read buffer, 64 MiB;
 * 4194304 = the libraries' defaults).
 * Model encodings (docs/encodings.md): BENCH_ENCODINGS="float32,float16,bfloat16,int8" with
 * BENCH_DIM=d (default 425000) replaces BENCH_SIZES by each encoding's exact payload size for d
 * parameters, and adds the figures against the float32 floor (n − 1)·4d.
 */
import { cpus } from 'node:os'
import { type Message, TopicValidatorResult } from '@libp2p/gossipsub'
import { prometheusMetrics } from '@libp2p/prometheus-metrics'
import { Registry } from 'prom-client'
import { createEchoBroadcast, type EchoBroadcast } from '../../src/broadcast/index.ts'
import type { Logger } from '../../src/logger.ts'
import { createNetNode, type Membership, type NetNode, peerIdOfKey, swarmTopic } from '../../src/net/index.ts'
import { encodedBytes, type ModelEncoding, modelEncodings } from '../../src/node/payload.ts'
import { connectAll, makeKeys, payloadOf, waitDeliveries } from '../unit/broadcast/harness.ts'

const N = Number(process.env.BENCH_N ?? 10)
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 3)
const DIM = Number(process.env.BENCH_DIM ?? 425_000)
const ENCODINGS = process.env.BENCH_ENCODINGS === undefined ? undefined : (process.env.BENCH_ENCODINGS.split(',') as ModelEncoding[])
for (const e of ENCODINGS ?? []) if (!modelEncodings.includes(e)) throw new Error(`BENCH_ENCODINGS: ${e} is not one of ${modelEncodings.join(', ')}`)
const SIZES = ENCODINGS !== undefined ? ENCODINGS.map((e) => encodedBytes(DIM, e)) : (process.env.BENCH_SIZES ?? '400000,1700000').split(',').map(Number)
/** the float32 floor (n − 1)·4d when comparing encodings */
const FLOAT32_FLOOR = (N - 1) * 4 * DIM
const F = Math.floor((N - 1) / 3)
const PLAIN_TIMEOUT_MS = 60_000
const PLAIN_MAX_RPC = Number(process.env.BENCH_PLAIN_MAX_RPC ?? 64 * 1024 * 1024)
/**
 * BENCH_RELAYED=k (docs/nat.md): the last k members have no address anybody can dial; they hold
 * a reservation on member 0 (a relay), dial the others themselves, and reach each other only
 * through the relay (BENCH_PUNCH=1 lets them hole-punch, which on loopback always succeeds).
 */
const RELAYED = Number(process.env.BENCH_RELAYED ?? 0)
const PUNCH = process.env.BENCH_PUNCH === '1'
const isRelayed = (i: number): boolean => i >= N - RELAYED

async function globalSentBytes(registry: Registry): Promise<number> {
  const metric = registry.getSingleMetric('libp2p_data_transfer_bytes_total')
  if (metric === undefined) return 0
  const v = await metric.get()
  return v.values.filter((x) => x.labels.protocol === 'global sent').reduce((a, x) => a + x.value, 0)
}

function consoleLogger(): Logger {
  const l: Logger = {
    debug: (m, f) => console.error('debug', m, f),
    info: (m, f) => console.error('info', m, f),
    warn: (m, f) => console.error('warn', m, f),
    error: (m, f) => console.error('error', m, f),
    child: () => l,
  }
  return l
}

function dump(bs: EchoBroadcast[], r: number): void {
  for (const b of bs) {
    // biome-ignore lint/suspicious/noExplicitAny: debugging internals
    const x = b as any
    // biome-ignore lint/suspicious/noExplicitAny: debugging internals
    console.error(b.peerId.slice(-4), 'delivered', b.delivered(r).map((d) => d.sender.slice(-4)).join(','), 'own', [...x.sender.own.values()].map((o: any) => `${o.round}:${o.echoes.size}:${o.certificate !== undefined}`).join(' '), 'open', x.streams.open.size, 'tasks', x.tasks.size)
    for (const [s, m] of x.store.instances) for (const [rr, i] of m) if (rr === r && !i.delivered) console.error('   inst', s.slice(-4), rr, 'send', !!i.sendHash, 'payload', !!i.payload, 'cert', !!i.certificate, 'recv', i.receivingSend, 'pull', i.pulling)
  }
}

/** Every pair connected: a relayed member dials the public ones itself, and another relayed member at its relay address. */
async function connectThroughRelay(nodes: NetNode[]): Promise<void> {
  const circuit = (n: NetNode): boolean => n.getMultiaddrs().some((a) => a.toString().includes('/p2p-circuit'))
  const deadline = Date.now() + 60_000
  while (!nodes.filter((_, i) => isRelayed(i)).every(circuit)) {
    if (Date.now() > deadline) throw new Error('relayed members got no reservation within 60 s')
    await new Promise((r) => setTimeout(r, 100))
  }
  const dials: Promise<unknown>[] = []
  for (let i = 0; i < nodes.length; i++)
    for (let j = i + 1; j < nodes.length; j++) {
      const [from, to] = isRelayed(j) && !isRelayed(i) ? [nodes[j]!, nodes[i]!] : [nodes[i]!, nodes[j]!]
      dials.push(from.dial(to.getMultiaddrs().find((a) => isRelayed(nodes.indexOf(to)) === a.toString().includes('/p2p-circuit'))!))
    }
  await Promise.all(dials)
  for (const n of nodes) while (new Set(n.getConnections().map((c) => c.remotePeer.toString())).size < nodes.length - 1) await new Promise((r) => setTimeout(r, 100))
  const relayedPairs = nodes.reduce((a, n) => a + n.getConnections().filter((c) => c.remoteAddr.toString().includes('/p2p-circuit')).length, 0) / 2
  console.error(`# ${RELAYED} of ${nodes.length} members reachable only through member 0 (relay); relayed connections: ${relayedPairs}`)
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b)
  const m = s.length >> 1
  return s.length % 2 === 1 ? s[m]! : (s[m - 1]! + s[m]!) / 2
}

async function main(): Promise<void> {
  const keys = await makeKeys(N)
  const membership: Membership = { swarmId: 'bench', members: keys.map(peerIdOfKey), f: F }
  const registries = keys.map(() => new Registry())
  const nodes: NetNode[] = []
  for (let i = 0; i < N; i++) {
    const relayAddr = nodes[0]?.getMultiaddrs()[0]?.toString()
    nodes.push(
      await createNetNode({
        privateKey: keys[i]!,
        listen: isRelayed(i) ? [] : ['/ip4/127.0.0.1/tcp/0'],
        ...(RELAYED > 0 ? { relay: i === 0 ? { serve: true } : isRelayed(i) ? { through: [relayAddr!] } : {}, holePunch: PUNCH } : {}),
        membership,
        // gossipsub's default inbound RPC limit (4 MiB, it-length-prefixed) drops RPCs that carry
        // more than two 1.7 MB messages and the stream with them (measured: 60/90 payloads arrived
        // in 60 s); the baseline gets a limit that can carry the payloads.
        // and no peer-score penalties: lost deliveries break IHAVE/IWANT promises, and graylisted
        // peers would then receive nothing at all (measured: a later round with 0/90 arrivals)
        gossipsub: {
          maxInboundDataLength: PLAIN_MAX_RPC,
          scoreThresholds: { gossipThreshold: -Infinity, publishThreshold: -Infinity, graylistThreshold: -Infinity },
        },
        // and a stream read buffer above libp2p's 4 MiB, which gossipsub's paused reader
        // overflows under load (the stream is then reset and its messages lost)
        yamux: { streamOptions: { maxReadBufferLength: PLAIN_MAX_RPC } },
        ...(process.env.BENCH_NO_METRICS === undefined ? { metrics: prometheusMetrics({ registry: registries[i]!, collectDefaultMetrics: false }) } : {}),
      }),
    )
  }
  const bcasts: EchoBroadcast[] = []
  const plainTopic = swarmTopic('bench', 'plain')
  // plain gossipsub receipts: received[member] = Set of "round/sender"
  const plainWaiters: Array<() => void> = []
  const plainCount = new Map<string, number>()
  try {
    if (RELAYED > 0) await connectThroughRelay(nodes)
    else await connectAll(nodes)
    const logger = process.env.BENCH_DEBUG !== undefined ? consoleLogger() : undefined
    for (let i = 0; i < N; i++) bcasts.push(await createEchoBroadcast({ node: nodes[i]!, privateKey: keys[i]!, membership, logger }))
    if (logger !== undefined) for (const b of bcasts) b.addEventListener('reject', (e) => console.error('reject', (e as CustomEvent).detail))
    for (const node of nodes) {
      // the pubsub gate refuses a swarm topic nobody validates; the baseline accepts everything
      node.services.pubsub.topicValidators.set(plainTopic, () => TopicValidatorResult.Accept)
      node.services.pubsub.subscribe(plainTopic)
      node.services.pubsub.addEventListener('message', (evt: CustomEvent<Message>) => {
        if (evt.detail.topic !== plainTopic) return
        const round = new DataView(evt.detail.data.buffer, evt.detail.data.byteOffset).getUint32(0)
        const key = `${node.peerId.toString()}/${round}`
        plainCount.set(key, (plainCount.get(key) ?? 0) + 1)
        for (const w of plainWaiters.splice(0)) w()
      })
    }
    // wait until every node sees every other subscribed to both topics, then two heartbeats for the mesh
    const ready = (): boolean =>
      nodes.every(
        (n) => n.services.pubsub.getSubscribers(plainTopic).length >= N - 1 && n.services.pubsub.getSubscribers(bcasts[0]!.topic).length >= N - 1,
      )
    const deadline = Date.now() + 30_000
    while (!ready()) {
      if (Date.now() > deadline) throw new Error('gossipsub subscriptions did not propagate within 30 s')
      await new Promise((r) => setTimeout(r, 100))
    }
    await new Promise((r) => setTimeout(r, 2500))

    if (process.env.BENCH_DEBUG !== undefined) console.error('connections', nodes.map((n) => n.getConnections().length), nodes.map((n) => n.getConnections().map((c) => c.streams.length).join(',')))
    const plainReceived = (round: number): number => nodes.reduce((a, n) => a + (plainCount.get(`${n.peerId.toString()}/${round}`) ?? 0), 0)
    /** Resolves true when all members received the n − 1 others, false after `ms`. */
    const waitPlain = (round: number, ms: number): Promise<boolean> =>
      new Promise((resolve) => {
        const timer = setTimeout(() => resolve(false), ms)
        const check = (): void => {
          if (plainReceived(round) >= N * (N - 1)) {
            clearTimeout(timer)
            resolve(true)
          } else plainWaiters.push(check)
        }
        check()
      })
    /** Waits until the swarm is quiet (< 64 KB sent by all members in 500 ms; at most 120 s). */
    const settle = async (): Promise<void> => {
      let last = await sentAll()
      for (let k = 0; k < 240; k++) {
        await new Promise((r) => setTimeout(r, 500))
        const now = await sentAll()
        if (now - last < 64 * 1024) return
        last = now
      }
    }

    // cumulative TCP-level bytes sent, summed over members (the counters are monotonic)
    const sentAll = async (): Promise<number> => (await Promise.all(registries.map(globalSentBytes))).reduce((a, b) => a + b, 0)

    interface Row {
      size: number
      echoMs: number[]
      plainMs: number[]
      echoBytes: number[]
      plainBytes: number[]
      echoAppBytes: number[]
      /** bytes the relay (member 0) sent in the round, BENCH_RELAYED only */
      relayBytes: number[]
      plainIncomplete: number
    }
    const rows: Row[] = []
    let round = 0
    let lastPlainIncomplete = false
    for (const size of SIZES) {
      const row: Row = { size, echoMs: [], plainMs: [], echoBytes: [], plainBytes: [], echoAppBytes: [], relayBytes: [], plainIncomplete: 0 }
      const payloads = Array.from({ length: N }, (_, i) => payloadOf(i + 1, size))
      // warm-up round (not measured): connections, JIT
      for (let r = -1; r < ROUNDS; r++) {
        const order = r % 2 === 0 ? ['echo', 'plain'] : ['plain', 'echo']
        for (const kind of order) {
          if (process.env.BENCH_ONLY !== undefined && kind !== process.env.BENCH_ONLY) continue
          round++
          const stamp = (p: Uint8Array): Uint8Array => {
            const c = p.slice()
            new DataView(c.buffer).setUint32(0, round)
            return c
          }
          await settle()
          const tcpBefore = await sentAll()
          const relayBefore = await globalSentBytes(registries[0]!)
          const appBefore = bcasts.reduce((a, b) => a + b.stats().bytesSent, 0)
          const t0 = performance.now()
          if (kind === 'echo') {
            const signal = AbortSignal.timeout(120_000)
            try {
              await Promise.all([
                ...bcasts.map((b, i) => b.broadcast(round, stamp(payloads[i]!), { signal })),
                ...bcasts.map((b) => waitDeliveries(b, round, N, signal)),
              ])
            } catch (e) {
              if (process.env.BENCH_DEBUG !== undefined) dump(bcasts, round)
              throw e
            }
          } else {
            const done = waitPlain(round, PLAIN_TIMEOUT_MS)
            await Promise.all(nodes.map((n, i) => n.services.pubsub.publish(plainTopic, stamp(payloads[i]!))))
            lastPlainIncomplete = !(await done)
            if (lastPlainIncomplete) {
              if (r >= 0) row.plainIncomplete++
              console.error(`plain gossipsub round ${round}: only ${plainReceived(round)}/${N * (N - 1)} payloads arrived within ${PLAIN_TIMEOUT_MS} ms`)
            }
          }
          const ms = performance.now() - t0
          await settle() // the round's traffic includes what is still in flight (gossipsub duplicates)
          const bytes = ((await sentAll()) - tcpBefore) / N
          console.error(`# size ${size} round ${round} ${kind}${r < 0 ? ' (warm-up)' : ''}: ${ms.toFixed(0)} ms${kind === 'plain' && lastPlainIncomplete ? ' INCOMPLETE' : ''}`)
          if (r >= 0 && !(kind === 'plain' && lastPlainIncomplete)) {
            if (kind === 'echo') {
              row.echoMs.push(ms)
              row.echoBytes.push(bytes)
              row.echoAppBytes.push((bcasts.reduce((a, b) => a + b.stats().bytesSent, 0) - appBefore) / N)
              row.relayBytes.push((await globalSentBytes(registries[0]!)) - relayBefore)
            } else {
              row.plainMs.push(ms)
              row.plainBytes.push(bytes)
            }
          }
          for (const b of bcasts) b.setFloor(Math.max(0, round - 2))
        }
      }
      rows.push(row)
    }

    const cpu = cpus()[0]?.model ?? 'unknown'
    console.log(`# broadcast bench: n=${N} f=${F} rounds/size=${ROUNDS} (median) — ${cpu}, ${cpus().length} cores, node ${process.version}`)
    const enc = (i: number): string => (ENCODINGS === undefined ? '' : `${ENCODINGS[i]} (d = ${DIM}) `)
    console.log(`| payload | echo ms | plain gossipsub ms | ratio | echo bytes/member | floor (n−1)·P | echo/floor | plain bytes/member | plain/floor |${ENCODINGS === undefined ? '' : ' echo/float32 floor (n−1)·4d |'}`)
    console.log(`|---|---|---|---|---|---|---|---|---|${ENCODINGS === undefined ? '' : '---|'}`)
    const json: object[] = []
    for (const [i, row] of rows.entries()) {
      const e = median(row.echoMs)
      const p = median(row.plainMs)
      const floor = (N - 1) * row.size
      const eb = median(row.echoBytes)
      const pb = median(row.plainBytes)
      const mb = (x: number): string => (x / 1e6).toFixed(2) + ' MB'
      console.log(
        `| ${enc(i)}${mb(row.size)} | ${e.toFixed(0)} | ${p.toFixed(0)} | ${(e / p).toFixed(2)} | ${mb(eb)} | ${mb(floor)} | ${(eb / floor).toFixed(2)} | ${mb(pb)} | ${(pb / floor).toFixed(2)} |${ENCODINGS === undefined ? '' : ` ${(eb / FLOAT32_FLOOR).toFixed(3)} |`}`,
      )
      const c = `${ENCODINGS === undefined ? `n${N}-${row.size}B` : `n${N}-d${DIM}-${ENCODINGS[i]}`}${RELAYED > 0 ? `-relayed${RELAYED}${PUNCH ? '-punch' : ''}` : ''}`
      if (ENCODINGS !== undefined) {
        json.push(
          { bench: 'broadcast', case: `${c}-float32-floor-bytes-per-member`, value: FLOAT32_FLOOR, unit: 'bytes' },
          { bench: 'broadcast', case: `${c}-echo-bytes-over-float32-floor`, value: eb / FLOAT32_FLOOR, unit: 'ratio' },
        )
      }
      json.push(
        { bench: 'broadcast', case: `${c}-echo-all-delivered`, value: e, unit: 'ms' },
        ...(RELAYED > 0 ? [{ bench: 'broadcast', case: `${c}-echo-relay-bytes-sent`, value: median(row.relayBytes), unit: 'bytes' }] : []),
        { bench: 'broadcast', case: `${c}-plain-gossipsub-all-received`, value: p, unit: 'ms' },
        { bench: 'broadcast', case: `${c}-time-ratio-echo-over-plain`, value: e / p, unit: 'ratio' },
        { bench: 'broadcast', case: `${c}-echo-bytes-sent-per-member`, value: eb, unit: 'bytes' },
        { bench: 'broadcast', case: `${c}-echo-app-bytes-sent-per-member`, value: median(row.echoAppBytes), unit: 'bytes' },
        { bench: 'broadcast', case: `${c}-plain-bytes-sent-per-member`, value: pb, unit: 'bytes' },
        { bench: 'broadcast', case: `${c}-floor-bytes-per-member`, value: floor, unit: 'bytes' },
        { bench: 'broadcast', case: `${c}-echo-bytes-over-floor`, value: eb / floor, unit: 'ratio' },
        { bench: 'broadcast', case: `${c}-plain-rounds-incomplete`, value: row.plainIncomplete, unit: 'rounds' },
      )
    }
    console.log(JSON.stringify({ bench: 'broadcast', case: 'machine', cpu, cores: cpus().length, node: process.version }))
    for (const j of json) console.log(JSON.stringify(j))
  } finally {
    await Promise.allSettled(bcasts.map((b) => b.stop()))
    await Promise.allSettled(nodes.map((n) => n.stop()))
  }
}

await main()
