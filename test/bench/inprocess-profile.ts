/**
 * Where a round's main-thread time goes, from CPU profiles that `bench:inprocess` wrote with
 * BENCH_CPU_PROFILE (the measured rounds only). Each sample goes to the first category that
 * matches a frame of its stack, from the leaf up (time inside libp2p called by the broadcast is
 * libp2p's; a SIMD kernel called by an aggregation rule is the aggregation's). Prints a markdown
 * table, ms per round (and share) for each profile given:
 *
 *   node test/bench/inprocess-profile.ts <rounds profiled> a.cpuprofile [b.cpuprofile …]
 */
import { readFileSync } from 'node:fs'

interface CallFrame {
  functionName: string
  url: string
}
interface ProfileNode {
  id: number
  callFrame: CallFrame
  children?: number[]
}
interface Profile {
  nodes: ProfileNode[]
  samples: number[]
  timeDeltas: number[]
}

const LIBP2P =
  /node_modules\/(@libp2p\/(utils|memory|interface|multistream-select|peer-id|crypto)|libp2p\/|@chainsafe\/libp2p-yamux|it-|uint8arraylist|uint8arrays|main-event|multiformats|p-queue|race-signal|abort-error|progress-events|@multiformats)/

const categories: [string, (fn: string, url: string) => boolean][] = [
  ['garbage collection', (fn) => fn === '(garbage collector)'],
  ['profiler (bench only)', (_, u) => u.startsWith('node:inspector')],
  [
    'signatures (Ed25519 sign + verify)',
    (fn, u) => u.includes('node:internal/crypto/sig') || /SignJob|signOneShot|verifyOneShot/.test(fn) || (u.includes('src/broadcast/crypto.ts') && /^(sign|verify)$/.test(fn)) || u.includes('ed25519'),
  ],
  ['payload hashing + own copy', (fn, u) => (u.includes('src/broadcast/crypto.ts') && /hashPayload|ownPayload|checkedPayload|knownPayload/.test(fn)) || u.includes('node:internal/crypto/hash')],
  ['training step', (_, u) => u.includes('src/learning/')],
  ['aggregation', (_, u) => u.includes('src/aggregation/')],
  ['model encode/decode', (_, u) => u.includes('src/node/payload.ts')],
  ['gossipsub', (_, u) => u.includes('gossipsub')],
  ['libp2p streams (memory transport, yamux, stream events, buffers)', (_, u) => LIBP2P.test(u) || u.startsWith('node:internal/event_target') || u.startsWith('node:internal/abort_controller')],
  ['broadcast protocol (frames, checks, store)', (_, u) => u.includes('src/broadcast/')],
  ['round engine', (_, u) => u.includes('src/node/') || u.includes('src/topology/')],
]
const OTHER = 'other (event loop, microtasks, Node internals)'

const [roundsArg, ...files] = process.argv.slice(2)
const rounds = Number(roundsArg)
if (!(rounds > 0) || files.length === 0) {
  console.error('usage: node test/bench/inprocess-profile.ts <rounds profiled> a.cpuprofile [b.cpuprofile …]')
  process.exit(2)
}

const rows = new Map<string, number[]>()
files.forEach((file, fi) => {
  const p = JSON.parse(readFileSync(file, 'utf8')) as Profile
  const byId = new Map(p.nodes.map((n) => [n.id, n]))
  const parent = new Map<number, number>()
  for (const n of p.nodes) for (const c of n.children ?? []) parent.set(c, n.id)
  const memo = new Map<number, string>()
  const categoryOf = (id: number): string => {
    const known = memo.get(id)
    if (known !== undefined) return known
    let c = OTHER
    for (let x: number | undefined = id; x !== undefined; x = parent.get(x)) {
      const cf = byId.get(x)!.callFrame
      const hit = categories.find(([, match]) => match(cf.functionName, cf.url))
      if (hit !== undefined) {
        c = hit[0]
        break
      }
    }
    memo.set(id, c)
    return c
  }
  for (let i = 0; i < p.samples.length; i++) {
    const c = categoryOf(p.samples[i]!)
    const r = rows.get(c) ?? files.map(() => 0)
    r[fi]! += (p.timeDeltas[i] ?? 0) / 1000 / rounds
    rows.set(c, r)
  }
})
// the profiler's own start is not a round's cost
rows.delete('profiler (bench only)')
const total = files.map((_, i) => [...rows.values()].reduce((a, r) => a + r[i]!, 0))
console.log(`| ms per round (share) | ${files.map((f) => f.replace(/.*\//, '')).join(' | ')} |`)
console.log(`|---|${files.map(() => '---:').join('|')}|`)
const last = files.length - 1
for (const [c, r] of [...rows].sort((a, b) => b[1][last]! - a[1][last]!)) {
  console.log(`| ${c} | ${r.map((v, i) => `${v.toFixed(0)} (${((100 * v) / total[i]!).toFixed(0)} %)`).join(' | ')} |`)
}
console.log(`| main thread, all | ${total.map((v) => v.toFixed(0)).join(' | ')} |`)
