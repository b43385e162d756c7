/**
 * npm run bench:adversary — the signed echo broadcast and real round engines against a
 * protocol-level adversary (issue 12, "Must show"), real libp2p nodes on 127.0.0.1.
 *
 * (i) Random schedules: the seeded generator of test/integration/adversary-random.test.ts at
 *     scale (default 1,000 schedules: 90 % at n = 4, f = 1, 10 % at n = 7, f = 2 colluding), every
 *     invariant of that test checked after each; prints how many held.
 * (ii) Attack figures, for n = 4 (f = 1) and n = 7 (f = 2) with ONE Byzantine member and the
 *     others running `RoundEngine`s on a model of d = 100 000 floats: the honest round rate and
 *     the honest process's peak RSS over a fixed wall time per case, all cases in one swarm per
 *     n — no attack (first and last: the reference), then each attack:
 *       max-size-sends-unfinished  SEND headers claiming maxPayloadBytes, half written, held open
 *                                  (40 streams per honest member, reopened when cut)
 *       concurrent-large-frames    complete max-size SENDs on 16 concurrent streams per member
 *       cut-frames                 max-size SENDs cut halfway by the end of their streams, 16
 *                                  concurrent streams per member
 *       trickling-streams          max-size SENDs written one byte per 100 ms (16 streams per
 *                                  member); its handler answers every request (SEND pushes,
 *                                  FETCH, PULL, QUERY) one byte per second
 *       far-future-finals          certified FINALs of its own rounds at the window's edge, and
 *                                  FINALs with forged signatures for rounds up to t + 1000
 *       fetch-flood                32 FETCHes per stream, 4 streams per member, for recent rounds
 *       gossip-junk                junk (256–768 KiB) and forged FINALs on the FINAL topic
 *     Each n runs in its own process (clean RSS) and the Byzantine member in another one, so
 *     what the attacker spends on building frames is not taken from the honest members' CPU.
 *     The broadcast runs with its default penalties (64 penalised rejections in 60 s → banned for
 *     5 min; a ban is lifted before the next case; a flood of refusals without blame past
 *     2(n + 1) + 1 per second cuts the peer off for 1 s, then 4 s, 16 s… within the penalty window —
 *     with BENCH_ISOLATE=0 that memory carries over to the next cases; by default each attack runs
 *     in a process of its own between two attack-free cases); BENCH_PENALTIES=off never bans (the worst
 *     case: forged FINALs and gossip junk go on for the whole case).
 * (iii) Joining: a member started late (engine `join: true`, its broadcast started then) while
 *     the Byzantine member answers every FETCH one byte per second — it echoes SENDs and
 *     broadcasts plausible models, so the swarm runs without the newcomer — next to the same
 *     with a Byzantine member that answers FETCH with END at once: the time to the newcomer's
 *     first catch-up and to its first round.
 *
 * Memory bounds stated, per honest member, M = n·maxPendingBytesPerPeer + n·(2W + 1)·maxPayloadBytes
 * (what the broadcast may hold: payloads in flight or undelivered per peer, delivered payloads
 * of the 2W + 1 rounds a window spans), with maxPayloadBytes = d·4 + 1 KiB and
 * maxPendingBytesPerPeer = 2·maxPayloadBytes + 1 MiB. The n − 1 honest members share one
 * process, whose first no-attack case gives the baselines:
 *   live memory (JS heap + external buffers after a GC) ≤ baseline + (n − 1)·M;
 *   peak RSS ≤ baseline + 3·(n − 1)·M — a frame's bytes exist up to three times while they are
 *   received (as encrypted chunks, decrypted chunks in the frame reader, the assembled payload)
 *   before the garbage collector returns the first two.
 *
 * Output: '#' lines for people, then one JSON object per line per figure.
 * Env: BENCH_SCHEDULES (1000; 0 skips), BENCH_SCHEDULES_PER_SWARM (25), BENCH_ROUNDS (12 per schedule), BENCH_SEED,
 * BENCH_SECONDS (10, per case), BENCH_DIM (100000), BENCH_NS ("4,7"), BENCH_ATTACKS (all, comma
 * list; 'none' skips the attack figures), BENCH_ISOLATE (1: a process per attack; 0: all in one), BENCH_JOIN (1; 0 skips), BENCH_PENALTIES (on | off),
 * BENCH_DEBUG (the newcomer's engine and broadcast log to stderr).
 */
import { type ChildProcess, fork } from 'node:child_process'
import { cpus, loadavg } from 'node:os'
import { fileURLToPath } from 'node:url'
import { setFlagsFromString } from 'node:v8'
import { runInNewContext } from 'node:vm'
import { privateKeyFromProtobuf, privateKeyToProtobuf } from '@libp2p/crypto/keys'
import type { Stream } from '@libp2p/interface'
import { multiaddr } from '@multiformats/multiaddr'
import { type Adversary, createAdversary } from '../../src/adversary/index.ts'
import { FrameReader, writeParts } from '../../src/broadcast/frame-stream.ts'
import { createEchoBroadcast, type EchoBroadcast } from '../../src/broadcast/index.ts'
import type { PenaltyOptions } from '../../src/broadcast/penalties.ts'
import { encodeFrame, encodeFrameParts, type Frame } from '../../src/broadcast/wire.ts'
import type { Logger } from '../../src/logger.ts'
import { banPeer, createNetNode, type Membership } from '../../src/net/index.ts'
import { type AggregatorPort, RoundEngine } from '../../src/node/engine.ts'
import { Rng } from '../../src/rng.ts'
import { type ActionKind, actionKinds, runSchedules, sleep, summarise, tinyLearner } from '../integration/adversary-random.test.ts'
import { type Swarm, startSwarm } from '../unit/broadcast/harness.ts'

const SCHEDULES = Number(process.env.BENCH_SCHEDULES ?? 1000)
const PER_SWARM = Number(process.env.BENCH_SCHEDULES_PER_SWARM ?? 25)
const SEED = process.env.BENCH_SEED ?? 'adversary-bench'
const SECONDS = Number(process.env.BENCH_SECONDS ?? 10)
const DIM = Number(process.env.BENCH_DIM ?? 100_000)
const NS = (process.env.BENCH_NS ?? '4,7').split(',').map(Number)
const JOIN = process.env.BENCH_JOIN !== '0'
const ISOLATE = process.env.BENCH_ISOLATE !== '0'
/** 'on' (default): the broadcast's defaults, bans included; 'off': never banned (worst case). */
const PENALTIES: PenaltyOptions | false = process.env.BENCH_PENALTIES === 'off' ? false : { threshold: 64, windowMs: 60_000, banMs: 300_000 }
const W = 8
const MAX_PAYLOAD = DIM * 4 + 1024
const MAX_PENDING = 2 * MAX_PAYLOAD + 1024 * 1024
const attacks = ['max-size-sends-unfinished', 'concurrent-large-frames', 'cut-frames', 'trickling-streams', 'far-future-finals', 'fetch-flood', 'gossip-junk'] as const
type Attack = (typeof attacks)[number]
const ATTACKS: Attack[] = process.env.BENCH_ATTACKS === undefined ? [...attacks] : process.env.BENCH_ATTACKS === 'none' ? [] : (process.env.BENCH_ATTACKS.split(',') as Attack[])
const SELF = fileURLToPath(import.meta.url)

const machine = { cpu: cpus()[0]?.model ?? 'unknown', cores: cpus().length, node: process.version }
const mb = (b: number): number => Math.round((b / 2 ** 20) * 10) / 10
const r2 = (x: number): number => Math.round(x * 100) / 100
const figure = (o: object): void => console.log(JSON.stringify({ bench: 'adversary', ...o, machine }))

function gcNow(): void {
  setFlagsFromString('--expose-gc')
  ;(runInNewContext('gc') as () => void)()
}

/** Coordinate-wise median, insertion sort per column (k ≤ 7 inputs). */
function fastMedian(): AggregatorPort {
  return {
    aggregate(inputs) {
      const k = inputs.length
      const d = inputs[0]!.length
      const out = new Float32Array(d)
      const col = new Float64Array(k)
      for (let j = 0; j < d; j++) {
        for (let i = 0; i < k; i++) {
          const v = inputs[i]![j]!
          let p = i
          while (p > 0 && col[p - 1]! > v) {
            col[p] = col[p - 1]!
            p--
          }
          col[p] = v
        }
        out[j] = k % 2 === 1 ? col[(k - 1) / 2]! : (col[k / 2 - 1]! + col[k / 2]!) / 2
      }
      return out
    },
  }
}

function bytes(rng: Rng, n: number): Uint8Array {
  const out = new Uint8Array(n)
  const dv = new DataView(out.buffer)
  let i = 0
  for (; i + 4 <= n; i += 4) dv.setUint32(i, rng.nextUint32())
  for (; i < n; i++) out[i] = rng.int(256)
  return out
}

// ================================================================== the Byzantine process

type ToByz =
  | { type: 'init'; key: Uint8Array; membership: Membership; addrs: string[]; honest: string[] }
  | { type: 't'; t: number; tMax: number }
  | { type: 'attack'; attack: Attack; seed: string }
  | { type: 'join-role'; fetch: 'trickle' | 'end'; honest: string[] }
  | { type: 'stop' }
  | { type: 'exit' }
type FromByz = { type: 'ready' } | { type: 'started' } | { type: 'stopped' }

/**
 * The adversary toolkit registers no handler; for 'trickling FETCH replies' the Byzantine node
 * gets one on the broadcast's protocol. `echo`: SENDs are answered with a valid ECHO (so the
 * swarm can certify with this member); FETCH/PULL/QUERY (and SENDs without `echo`) are answered
 * with a FINAL frame's bytes one byte per second ('trickle'), or with END ('end').
 */
async function byzHandler(adv: Adversary, o: { echo: boolean; fetch: 'trickle' | 'end' }, stop: AbortSignal): Promise<void> {
  const trickle = async (stream: Stream, round: number): Promise<void> => {
    const zero = new Uint8Array(32)
    const fake = encodeFrame({ type: 'FINAL', ...adv.instance(round), hash: zero, certificate: [adv.echoSignature(round, adv.id, zero)], payload: new Uint8Array(DIM * 4) })
    for (let i = 0; i < fake.length && !stop.aborted && stream.status === 'open'; i++) {
      await writeParts(stream, [fake.subarray(i, i + 1)], { signal: stop })
      await sleep(1000, stop)
    }
  }
  await adv.node.handle(
    adv.protocol,
    (stream) => {
      void (async () => {
        const reader = new FrameReader(stream, { maxPayloadBytes: 0xffff_ffff, frameBaseMs: 600_000 })
        try {
          for (;;) {
            const r = await reader.next({ signal: stop })
            if (r === null) break
            const f = r.frame
            if (f.type === 'SEND' && o.echo) {
              const e = adv.echoSignature(f.round, f.sender, f.hash, f.epoch)
              await writeParts(stream, encodeFrameParts({ type: 'ECHO', swarmId: f.swarmId, epoch: f.epoch, round: f.round, sender: f.sender, hash: f.hash, ...e }), { signal: stop })
              continue
            }
            if (f.type === 'FINAL') continue
            if (o.fetch === 'trickle' && f.type !== 'END') await trickle(stream, 'round' in f ? f.round : 0)
            else await writeParts(stream, encodeFrameParts({ type: 'END' }), { signal: stop })
            break
          }
          await stream.close({ signal: AbortSignal.timeout(5000) })
        } catch (err) {
          stream.abort(err instanceof Error ? err : new Error(String(err)))
        }
      })()
    },
    { maxInboundStreams: 1024 },
  )
}

interface AttackContext {
  adv: Adversary
  honestIds: string[]
  /** the honest round now (slowest honest engine) */
  t: () => number
  signal: AbortSignal
  rng: Rng
}

/** Keeps `slots` workers running `body` until the signal; a worker pauses briefly after each run. */
async function workers(slots: number, signal: AbortSignal, body: (slot: number) => Promise<unknown>, pauseMs = 20): Promise<void> {
  await Promise.all(
    Array.from({ length: slots }, async (_, slot) => {
      while (!signal.aborted) {
        await body(slot).catch(() => {})
        await sleep(pauseMs, signal)
      }
    }),
  )
}

/** Waits until the stream closes or the signal fires, then aborts it. */
function heldUntil(stream: Stream, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const done = (): void => {
      signal.removeEventListener('abort', done)
      stream.abort(new Error('attack over'))
      resolve()
    }
    if (stream.status !== 'open' || signal.aborted) return done()
    stream.addEventListener('close', done, { once: true })
    signal.addEventListener('abort', done, { once: true })
  })
}

async function runAttack(attack: Attack, c: AttackContext): Promise<void> {
  const { adv, honestIds, signal, rng } = c
  const peerOf = (slot: number): string => honestIds[slot % honestIds.length]!
  const big = bytes(rng, MAX_PAYLOAD)
  // one signed max-size SEND per round, built once (one payload per round: a repeat is not equivocation)
  const sends = new Map<number, Uint8Array>()
  const bigSend = (round: number): Uint8Array => {
    let b = sends.get(round)
    if (b === undefined) {
      const p = big.slice()
      new DataView(p.buffer).setUint32(0, round)
      b = encodeFrame(adv.sendFrame(round, p))
      if (sends.size > 64) sends.clear()
      sends.set(round, b)
    }
    return b
  }
  switch (attack) {
    case 'max-size-sends-unfinished': {
      // per honest member 40 streams (the limit is 4W + 16 per connection), each a SEND header
      // claiming maxPayloadBytes with half its payload, held until cut (budget, or 'slow')
      await workers(
        40 * honestIds.length,
        signal,
        async (slot) => {
          const frame = bigSend(c.t() + (slot % W))
          const r = await adv.exchange(peerOf(slot), [frame.subarray(0, frame.length - (MAX_PAYLOAD >> 1))], { holdOpen: true, signal })
          await heldUntil(r.stream, signal)
        },
        100,
      )
      return
    }
    case 'concurrent-large-frames': {
      await workers(16 * honestIds.length, signal, async (slot) => {
        const r = await adv.exchange(peerOf(slot), [bigSend(Math.max(0, c.t() - W + rng.int(2 * W + 1)))], { replies: 1, signal })
        r.stream.abort(new Error('done'))
      })
      return
    }
    case 'cut-frames': {
      // max-size SENDs cut halfway by the end of their streams (refused without blame: an honest
      // sender cuts one when its request times out), 16 concurrent streams per honest member
      await workers(16 * honestIds.length, signal, async (slot) => {
        const frame = bigSend(Math.max(0, c.t() - W + rng.int(2 * W + 1)))
        const r = await adv.exchange(peerOf(slot), [frame.subarray(0, frame.length >> 1)], { signal })
        r.stream.abort(new Error('done'))
      })
      return
    }
    case 'trickling-streams': {
      // 16 streams per honest member trickling a max-size SEND one byte per 100 ms (cut as 'slow');
      // the handler trickles every answer
      await byzHandler(adv, { echo: false, fetch: 'trickle' }, signal)
      try {
        await workers(16 * honestIds.length, signal, (slot) => adv.exchange(peerOf(slot), [bigSend(c.t() + (slot % W))], { chunkBytes: 1, intervalMs: 100, signal }), 100)
      } finally {
        await adv.node.unhandle(adv.protocol)
      }
      return
    }
    case 'far-future-finals': {
      await Promise.all([
        // certified FINALs of its own rounds at the edge of the window (valid: honest members echo them)
        workers(
          1,
          signal,
          async () => {
            const round = c.t() + W - rng.int(3)
            const model = new Uint8Array(new Float32Array(DIM).buffer)
            new DataView(model.buffer).setUint32(0, round)
            const send = adv.sendFrame(round, model)
            const res = await Promise.allSettled(honestIds.map((p) => adv.exchange(p, [send], { replies: 1, signal })))
            const certificate = [adv.echoSignature(round, adv.id, send.hash)]
            for (const r of res) {
              if (r.status !== 'fulfilled') continue
              r.value.stream.abort(new Error('done'))
              const e = r.value.replies[0]
              if (e?.type === 'ECHO') certificate.push({ signer: e.signer, signature: e.signature })
            }
            const fin: Frame = { type: 'FINAL', ...adv.instance(round), hash: send.hash, certificate }
            await Promise.allSettled(honestIds.map((p) => adv.exchange(p, [fin], { replies: 0, signal })))
            await adv.publish(encodeFrame(fin)).catch(() => {})
          },
          50,
        ),
        // forged FINALs for rounds up to t + 1000, on streams and on the topic
        workers(
          4,
          signal,
          async (slot) => {
            const round = c.t() + W + 1 + rng.int(1000)
            const hash = bytes(rng, 32)
            const certificate = [...honestIds, adv.id].slice(0, 5).map((signer) => ({ signer, signature: bytes(rng, 64) }))
            const fin: Frame = { type: 'FINAL', ...adv.instance(round), hash, certificate }
            if (slot === 0) await adv.publish(encodeFrame(fin)).catch(() => {})
            else await adv.exchange(peerOf(slot), [fin], { replies: 0, signal })
          },
          5,
        ),
      ])
      return
    }
    case 'fetch-flood': {
      await workers(
        4 * honestIds.length,
        signal,
        async (slot) => {
          const frames: Frame[] = Array.from({ length: 32 }, () => ({ type: 'FETCH', swarmId: adv.instance(0).swarmId, epoch: 0, round: Math.max(0, c.t() - 1 - rng.int(2)), have: [] }))
          const r = await adv.exchange(peerOf(slot), frames, { signal })
          r.stream.abort(new Error('done'))
        },
        5,
      )
      return
    }
    case 'gossip-junk': {
      await workers(
        2,
        signal,
        async (slot) => {
          const data =
            slot === 0
              ? bytes(rng, 256 * 1024 + rng.int(512 * 1024))
              : encodeFrame({ type: 'FINAL', ...adv.instance(c.t() + rng.int(W)), hash: bytes(rng, 32), certificate: [{ signer: adv.id, signature: bytes(rng, 64) }] })
          await adv.publish(data)
        },
        10,
      )
      return
    }
  }
}

/** Entry of the Byzantine process (BENCH_ROLE=byzantine): driven by the figures process over IPC. */
async function byzantineMain(): Promise<void> {
  let adv: Adversary | undefined
  let t = 0
  let tMax = 0
  let ctl: AbortController | undefined
  let running: Promise<unknown> | undefined
  let addrs: string[] = []
  let honest: string[] = []
  const reply = (m: FromByz): void => {
    process.send?.(m)
  }
  process.on('message', (raw) => {
    const m = raw as ToByz
    void (async () => {
      switch (m.type) {
        case 'init': {
          const key = privateKeyFromProtobuf(m.key)
          const node = await createNetNode({ privateKey: key, listen: ['/ip4/127.0.0.1/tcp/0'], membership: m.membership })
          addrs = m.addrs
          honest = m.honest
          await Promise.all(m.addrs.map((a) => node.dial(multiaddr(a), { signal: AbortSignal.timeout(20_000) })))
          adv = createAdversary({ node, privateKey: key, membership: m.membership })
          await sleep(1500) // gossipsub subscriptions
          reply({ type: 'ready' })
          return
        }
        case 't':
          t = m.t
          tMax = m.tMax
          return
        case 'attack': {
          ctl = new AbortController()
          // connected again after a ban the figures process lifted
          await Promise.allSettled(addrs.map((a) => adv!.node.dial(multiaddr(a), { signal: AbortSignal.timeout(10_000) })))
          await sleep(1000) // gossipsub subscriptions
          running = runAttack(m.attack, { adv: adv!, honestIds: honest, t: () => t, signal: ctl.signal, rng: new Rng(m.seed) })
          reply({ type: 'started' })
          return
        }
        case 'join-role': {
          ctl = new AbortController()
          const signal = ctl.signal
          const a = adv!
          await byzHandler(a, { echo: true, fetch: m.fetch }, signal)
          // a plausible model every round, so the swarm runs without the newcomer
          const model = new Uint8Array(tinyLearner(DIM, 99).getParams().buffer)
          running = (async () => {
            let last = -1
            while (!signal.aborted) {
              if (tMax > last) {
                last = tMax
                const round = tMax
                const send = a.sendFrame(round, model)
                const opts = { replies: 1, signal: AbortSignal.any([signal, AbortSignal.timeout(10_000)]) }
                const res = await Promise.allSettled(m.honest.map((p) => a.exchange(p, [send], opts)))
                const certificate = [a.echoSignature(round, a.id, send.hash)]
                for (const r of res) {
                  if (r.status !== 'fulfilled') continue
                  r.value.stream.abort(new Error('done'))
                  const e = r.value.replies[0]
                  if (e?.type === 'ECHO') certificate.push({ signer: e.signer, signature: e.signature })
                }
                const fin: Frame = { type: 'FINAL', ...a.instance(round), hash: send.hash, certificate }
                await Promise.allSettled(m.honest.map((p) => a.exchange(p, [fin], { replies: 0, signal: AbortSignal.any([signal, AbortSignal.timeout(10_000)]) })))
                await a.publish(encodeFrame(fin)).catch(() => {})
              }
              await sleep(5, signal)
            }
          })()
          reply({ type: 'started' })
          return
        }
        case 'stop':
          ctl?.abort()
          await Promise.race([running?.catch(() => {}), sleep(15_000)])
          await Promise.resolve(adv?.node.unhandle(adv.protocol)).catch(() => {})
          reply({ type: 'stopped' })
          return
        case 'exit':
          await Promise.resolve(adv?.node.stop()).catch(() => {})
          process.exit(0)
      }
    })().catch((err: unknown) => {
      console.error('# byzantine process:', err)
      process.exit(1)
    })
  })
}

/** The figures process's handle on the Byzantine process. */
class ByzProcess {
  private readonly proc: ChildProcess
  private readonly waiting = new Map<string, Array<() => void>>()
  private constructor(proc: ChildProcess) {
    this.proc = proc
    proc.on('message', (m) => {
      const w = this.waiting.get((m as FromByz).type)?.shift()
      w?.()
    })
  }
  static async start(swarm: Swarm, byz: number, honestIdx: number[]): Promise<ByzProcess> {
    const proc = fork(SELF, [], { env: { ...process.env, BENCH_ROLE: 'byzantine' }, serialization: 'advanced', stdio: ['ignore', 'inherit', 'inherit', 'ipc'] })
    const p = new ByzProcess(proc)
    const addrs = honestIdx.map((i) => swarm.nodes[i]!.getMultiaddrs()[0]!.toString())
    const honest = honestIdx.map((i) => swarm.membership.members[i]!)
    await p.request({ type: 'init', key: privateKeyToProtobuf(swarm.keys[byz]!), membership: swarm.membership, addrs, honest }, 'ready')
    return p
  }
  send(m: ToByz): void {
    this.proc.send(m)
  }
  request(m: ToByz, until: FromByz['type'], ms = 60_000): Promise<void> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`the Byzantine process did not answer ${m.type} within ${ms} ms`)), ms)
      const list = this.waiting.get(until) ?? []
      list.push(() => {
        clearTimeout(timer)
        resolve()
      })
      this.waiting.set(until, list)
      this.proc.send(m)
    })
  }
  async exit(): Promise<void> {
    const done = new Promise<void>((resolve) => this.proc.once('exit', () => resolve()))
    this.proc.send({ type: 'exit' })
    await Promise.race([done, sleep(10_000)])
    this.proc.kill()
  }
}

// ================================================================== the figures process

interface Honest {
  engines: RoundEngine[]
  runs: Promise<unknown>[]
  ctl: AbortController
  roundsDone: number[]
}

/** BENCH_DEBUG: the newcomer's engine and broadcast log to stderr (ms since it started). */
function debugLogger(t0: number): Logger {
  const line = (level: string) => (msg: string, fields?: Record<string, unknown>) => console.error(`${(performance.now() - t0).toFixed(0).padStart(6)} ms ${level} ${msg} ${fields === undefined ? '' : JSON.stringify(fields)}`)
  const l: Logger = { debug: line('debug'), info: line('info'), warn: line('warn'), error: line('error'), child: () => l }
  return l
}

function startEngines(swarm: Swarm, idx: number[], o: { join?: boolean; logger?: Logger } = {}): Honest {
  const ctl = new AbortController()
  const roundsDone = idx.map(() => 0)
  const engines = idx.map(
    (i) =>
      new RoundEngine({
        self: swarm.membership.members[i]!,
        membership: swarm.membership,
        swarmSeed: 'bench',
        port: swarm.bcasts[i]!,
        learner: tinyLearner(DIM, i),
        aggregator: fastMedian(),
        rounds: 1_000_000,
        roundTimeoutMs: 10_000,
        roundWindow: W,
        ...(o.join === true ? { join: true } : {}),
        ...(o.logger !== undefined ? { logger: o.logger } : {}),
      }),
  )
  for (const [k, e] of engines.entries()) e.addEventListener('round', () => roundsDone[k]!++)
  const runs = engines.map((e) => e.run({ signal: ctl.signal }).catch(() => {}))
  return { engines, runs, ctl, roundsDone }
}

async function stopEngines(h: Honest): Promise<void> {
  h.ctl.abort()
  await Promise.allSettled(h.runs)
  for (const e of h.engines) e.dispose()
}

/** Sends the honest round (slowest, fastest) to the Byzantine process every 50 ms. */
function feedRounds(byz: ByzProcess, engines: () => RoundEngine[]): () => void {
  const timer = setInterval(() => {
    const rounds = engines().map((e) => e.round)
    byz.send({ type: 't', t: Math.min(...rounds), tMax: Math.max(...rounds) })
  }, 50)
  return () => clearInterval(timer)
}

async function attackFigures(n: number): Promise<void> {
  const f = Math.floor((n - 1) / 3)
  const byz = n - 1
  const honestIdx = Array.from({ length: n - 1 }, (_, i) => i)
  const swarm = await startSwarm({
    n,
    f,
    swarmId: `bench-${n}`,
    offline: [byz],
    broadcast: { roundWindow: W, maxPayloadBytes: MAX_PAYLOAD, maxPendingBytesPerPeer: MAX_PENDING, penalties: PENALTIES },
  })
  const bans = { count: 0 }
  for (const i of honestIdx) swarm.bcasts[i]!.addEventListener('ban', () => bans.count++)
  const coolOffs = { count: 0 }
  for (const i of honestIdx) swarm.bcasts[i]!.addEventListener('cool-off', () => coolOffs.count++)
  const byzProc = await ByzProcess.start(swarm, byz, honestIdx)
  const h = startEngines(swarm, honestIdx)
  const stopFeed = feedRounds(byzProc, () => h.engines)
  const perMember = n * MAX_PENDING + n * (2 * W + 1) * MAX_PAYLOAD
  try {
    const warmDeadline = performance.now() + 60_000
    while (h.roundsDone.some((r) => r < 3)) {
      if (performance.now() > warmDeadline) throw new Error(`n=${n}: warm-up rounds did not complete in 60 s (${h.roundsDone.join(',')})`)
      await sleep(50)
    }
    console.log(`# n=${n} f=${f}, 1 Byzantine member (own process), ${n - 1} honest engines in this process, d=${DIM} (maxPayloadBytes ${MAX_PAYLOAD}, maxPendingBytesPerPeer ${MAX_PENDING}, W=${W}), ${SECONDS} s per case, penalties ${PENALTIES === false ? 'off' : 'on'}`)
    const mine = process.env.BENCH_FIG_ATTACKS === undefined ? ATTACKS : (process.env.BENCH_FIG_ATTACKS.split(',').filter((a) => a !== '') as Attack[])
    const cases: Array<Attack | 'none'> = ['none', ...mine, 'none']
    const noAttack: number[] = []
    const noAttackCpu: number[] = []
    let baseline: number | undefined
    let baseRetained: number | undefined
    const rows: Array<{ attack: string; cpuMsPerRound: number; rps: number; minRps: number; peak: number; afterGc: number; retained: number; stalls: number; catchUps: number; bans: number; coolOffs: number; rejected: Record<string, number> }> = []
    for (const attack of cases) {
      // every case starts with the Byzantine member admitted (a ban of the previous case lifted)
      for (const i of honestIdx) await banPeer(swarm.nodes[i]!, swarm.membership.members[byz]!, 0)
      gcNow()
      const before = [...h.roundsDone]
      const ev = { stalls: 0, catchUps: 0 }
      const onStall = (): void => {
        ev.stalls++
      }
      const onCatch = (): void => {
        ev.catchUps++
      }
      for (const e of h.engines) {
        e.addEventListener('stall', onStall)
        e.addEventListener('catch-up', onCatch)
      }
      const rej0 = honestIdx.map((i) => ({ ...swarm.bcasts[i]!.stats().rejected }))
      const bans0 = bans.count
      const coolOffs0 = coolOffs.count
      let peak = process.memoryUsage().rss
      const sampler = setInterval(() => {
        peak = Math.max(peak, process.memoryUsage().rss)
      }, 50)
      if (attack !== 'none') await byzProc.request({ type: 'attack', attack, seed: `${SEED}/${n}/${attack}` }, 'started')
      const started = performance.now()
      const startRounds = [...h.roundsDone]
      const cpu0 = process.cpuUsage()
      await sleep(SECONDS * 1000)
      const secs = (performance.now() - started) / 1000
      const cpu = process.cpuUsage(cpu0)
      const done = h.roundsDone.map((r, k) => r - before[k]!)
      // CPU of the honest process per honest round: what the attack adds to the honest members'
      // work, little moved by other load on the machine (the round rate is)
      const cpuMsPerRound = (cpu.user + cpu.system) / 1000 / Math.max(1, h.roundsDone.reduce((a, r, k) => a + r - startRounds[k]!, 0))
      clearInterval(sampler)
      // what is held while the attack still runs (garbage collected first): RSS rarely shrinks,
      // so the JS heap plus array buffers is the figure that shows retention
      gcNow()
      const mem = process.memoryUsage()
      const afterGc = mem.rss
      const retained = mem.heapUsed + mem.external
      if (attack !== 'none') await byzProc.request({ type: 'stop' }, 'stopped')
      for (const e of h.engines) {
        e.removeEventListener('stall', onStall)
        e.removeEventListener('catch-up', onCatch)
      }
      const rejected: Record<string, number> = {}
      for (const [k, i] of honestIdx.entries()) {
        for (const [r, v] of Object.entries(swarm.bcasts[i]!.stats().rejected)) {
          const d = v - (rej0[k]![r] ?? 0)
          if (d > 0) rejected[r] = (rejected[r] ?? 0) + d
        }
      }
      const rps = done.reduce((a, b) => a + b, 0) / done.length / secs
      const minRps = Math.min(...done) / secs
      if (attack === 'none') {
        noAttack.push(rps)
        noAttackCpu.push(cpuMsPerRound)
      }
      baseline ??= peak
      baseRetained ??= retained
      rows.push({ attack, cpuMsPerRound, rps, minRps, peak, afterGc, retained, stalls: ev.stalls, catchUps: ev.catchUps, bans: bans.count - bans0, coolOffs: coolOffs.count - coolOffs0, rejected })
      console.log(
        `#   ${attack.padEnd(26)} ${rps.toFixed(2)} rounds/s (slowest member ${minRps.toFixed(2)}), ${cpuMsPerRound.toFixed(1)} CPU ms per honest round, peak RSS ${mb(peak)} MB (${mb(afterGc)} MB after a GC; heap+external ${mb(retained)} MB), stalls ${ev.stalls}, catch-ups ${ev.catchUps}, bans ${bans.count - bans0}, cool-offs ${coolOffs.count - coolOffs0}, rejected ${JSON.stringify(rejected)}`,
      )
      await sleep(3000) // the swarm settles between cases (queued gossip drains)
    }
    const reference = noAttack.reduce((a, b) => a + b, 0) / noAttack.length
    const referenceCpu = noAttackCpu.reduce((a, b) => a + b, 0) / noAttackCpu.length
    const bound = baseline! + 3 * (n - 1) * perMember
    const retainedBound = baseRetained! + (n - 1) * perMember
    console.log(`#   heap+external after a GC: bound = ${mb(baseRetained!)} + ${n - 1}·${mb(perMember)} = ${mb(retainedBound)} MB`)
    console.log(
      `#   peak RSS bound = baseline + 3·(n−1)·[n·maxPendingBytesPerPeer + n·(2W+1)·maxPayloadBytes] = ${mb(baseline!)} + 3·${n - 1}·(${mb(n * MAX_PENDING)} + ${mb(n * (2 * W + 1) * MAX_PAYLOAD)}) = ${mb(bound)} MB`,
    )
    for (const r of rows) {
      figure({
        case: `n${n}-${r.attack}`,
        n,
        f,
        byzantine: 1,
        attack: r.attack,
        d: DIM,
        seconds: SECONDS,
        roundsPerSecond: r2(r.rps),
        slowestMemberRoundsPerSecond: r2(r.minRps),
        noAttackRoundsPerSecond: r2(reference),
        ratioToNoAttack: r2(r.rps / reference),
        cpuMsPerHonestRound: r2(r.cpuMsPerRound),
        cpuRatioToNoAttack: r2(r.cpuMsPerRound / referenceCpu),
        peakRssMB: mb(r.peak),
        rssAfterGcMB: mb(r.afterGc),
        baselineRssMB: mb(baseline!),
        rssBoundMB: mb(bound),
        rssBoundFormula: 'baseline + 3*(n-1)*(n*maxPendingBytesPerPeer + n*(2W+1)*maxPayloadBytes)',
        retainedBoundFormula: 'baseline + (n-1)*(n*maxPendingBytesPerPeer + n*(2W+1)*maxPayloadBytes)',
        withinBound: r.peak <= bound,
        afterGcWithinBound: r.afterGc <= bound,
        retainedMB: mb(r.retained),
        retainedBoundMB: mb(retainedBound),
        retainedWithinBound: r.retained <= retainedBound,
        stalls: r.stalls,
        catchUps: r.catchUps,
        penalties: PENALTIES === false ? 'off' : 'on',
        bans: r.bans,
        coolOffs: r.coolOffs,
        rejected: r.rejected,
      })
    }
  } finally {
    stopFeed()
    await stopEngines(h)
    await byzProc.exit()
    await swarm.stop()
  }
}

async function joinFigure(n: number, fetchMode: 'trickle' | 'end'): Promise<void> {
  const f = Math.floor((n - 1) / 3)
  const byz = n - 1
  const joiner = n - 2
  const early = Array.from({ length: n - 2 }, (_, i) => i)
  const swarm = await startSwarm({
    n,
    f,
    swarmId: `join-${n}`,
    offline: [byz],
    withoutBroadcast: [joiner],
    broadcast: { roundWindow: W, maxPayloadBytes: MAX_PAYLOAD, maxPendingBytesPerPeer: MAX_PENDING, penalties: PENALTIES },
  })
  const byzProc = await ByzProcess.start(swarm, byz, [...early, joiner])
  const h = startEngines(swarm, early)
  let joined: Honest | undefined
  let joinBcast: EchoBroadcast | undefined
  const stopFeed = feedRounds(byzProc, () => [...h.engines, ...(joined?.engines ?? [])])
  await byzProc.request({ type: 'join-role', fetch: fetchMode, honest: [...early, joiner].map((i) => swarm.membership.members[i]!) }, 'started')
  try {
    const deadline = performance.now() + 120_000
    while (Math.min(...h.roundsDone) < 10) {
      if (performance.now() > deadline) throw new Error(`join n=${n}: the swarm did not reach round 10 in 120 s (${h.roundsDone.join(',')})`)
      await sleep(50)
    }
    const at = Math.min(...h.engines.map((e) => e.round))
    const t0 = performance.now()
    const logger = process.env.BENCH_DEBUG !== undefined ? debugLogger(t0) : undefined
    joinBcast = await createEchoBroadcast({
      node: swarm.nodes[joiner]!,
      privateKey: swarm.keys[joiner]!,
      membership: swarm.membership,
      roundWindow: W,
      maxPayloadBytes: MAX_PAYLOAD,
      maxPendingBytesPerPeer: MAX_PENDING,
      penalties: PENALTIES,
      ...(logger !== undefined ? { logger } : {}),
    })
    swarm.bcasts[joiner] = joinBcast
    joined = startEngines(swarm, [joiner], { join: true, ...(logger !== undefined ? { logger } : {}) })
    const e = joined.engines[0]!
    let catchUpMs: number | undefined
    let firstRoundMs: number | undefined
    let catchUps = 0
    e.addEventListener('catch-up', () => {
      catchUps++
      catchUpMs ??= performance.now() - t0
    })
    e.addEventListener('round', () => {
      firstRoundMs ??= performance.now() - t0
    })
    const guard = performance.now() + 120_000
    while (firstRoundMs === undefined && performance.now() < guard) await sleep(20)
    const label = fetchMode === 'trickle' ? 'join-with-fetch-trickler' : 'join-without-trickler'
    console.log(
      `# n=${n}: newcomer started at swarm round ${at}; ${label}: first catch-up after ${catchUpMs?.toFixed(0) ?? '— (none in 120 s)'} ms, first round after ${firstRoundMs?.toFixed(0) ?? '— (none in 120 s)'} ms, ${catchUps} catch-up(s)`,
    )
    figure({
      case: `n${n}-${label}`,
      n,
      f,
      byzantine: 1,
      attack: fetchMode === 'trickle' ? 'trickling-fetch-replies' : 'none',
      d: DIM,
      joinedAtRound: at,
      catchUpMs: catchUpMs === undefined ? null : Math.round(catchUpMs),
      firstRoundMs: firstRoundMs === undefined ? null : Math.round(firstRoundMs),
      catchUps,
    })
  } finally {
    stopFeed()
    await byzProc.request({ type: 'stop' }, 'stopped').catch(() => {})
    if (joined !== undefined) await stopEngines(joined)
    await stopEngines(h)
    await byzProc.exit()
    await swarm.stop()
  }
}

async function figuresMain(n: number): Promise<void> {
  if (ATTACKS.length > 0) await attackFigures(n)
  if (JOIN) {
    await joinFigure(n, 'end')
    await joinFigure(n, 'trickle')
  }
}

// ================================================================== main

async function main(): Promise<void> {
  console.log(`# adversary bench — ${machine.cpu}, ${machine.cores} cores, node ${machine.node}, load ${loadavg().map((x) => x.toFixed(1)).join(' ')}`)
  figure({ case: 'machine', ...machine })
  if (SCHEDULES > 0) {
    const n7 = SCHEDULES >= 2 ? Math.max(1, Math.floor(SCHEDULES / 10)) : 0
    for (const [n, f, count] of [
      [4, 1, SCHEDULES - n7],
      [7, 2, n7],
    ] as const) {
      if (count === 0) continue
      const t0 = performance.now()
      let done = 0
      const res = await runSchedules({
        n,
        f,
        count,
        perSwarm: PER_SWARM,
        seed: SEED,
        rounds: Number(process.env.BENCH_ROUNDS ?? 12),
        penalties: (sw) => (sw % 2 === 0 ? { threshold: 64, windowMs: 60_000, banMs: 3000 } : false),
        onResult: (r) => {
          done++
          if (!r.held) console.log(`# schedule ${r.seed} FAILED: ${r.violations.slice(0, 5).join('; ')}`)
          if (done % 50 === 0) console.error(`# n=${n}: ${done}/${count} schedules`)
        },
      })
      const ms = performance.now() - t0
      console.log(summarise(`random schedules n=${n} f=${f}`, res, ms))
      const actions = Object.fromEntries(actionKinds.map((k) => [k, res.swarms.reduce((a, s) => a + s.actions[k], 0)])) as Record<ActionKind, number>
      figure({
        case: `random-schedules-n${n}`,
        n,
        f,
        schedules: res.results.length,
        held: res.results.filter((r) => r.held).length,
        failedSeeds: res.results.filter((r) => !r.held).map((r) => r.seed),
        deliveriesChecked: res.deliveries,
        actions,
        seconds: Math.round(ms / 100) / 10,
      })
    }
  }
  // each n in a process of its own (clean RSS), which forks the Byzantine member's
  // (BENCH_ISOLATE=1, the default: each attack in a process of its own, between two attack-free
  // cases — a member's memory of the attacker's floods and bans does not carry over to the next
  // attack, and each ratio compares cases run side by side)
  for (const n of NS) {
    const groups = ISOLATE && ATTACKS.length > 0 ? ATTACKS.map((a) => [a]) : [ATTACKS]
    for (const group of groups) {
      const child = fork(SELF, [], { env: { ...process.env, BENCH_ROLE: 'figures', BENCH_FIG_N: String(n), BENCH_FIG_ATTACKS: group.join(',') }, stdio: 'inherit' })
      const code = await new Promise<number | null>((resolve) => child.on('exit', resolve))
      if (code !== 0) throw new Error(`the figures process for n = ${n} (${group.join(', ') || 'no attack'}) exited with ${code}`)
    }
  }
}

const role = process.env.BENCH_ROLE
if (role === 'byzantine') await byzantineMain()
else if (role === 'figures') {
  await figuresMain(Number(process.env.BENCH_FIG_N))
  process.exit(0)
} else {
  await main()
  process.exit(0)
}
