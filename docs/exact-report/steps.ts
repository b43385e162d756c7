/**
 * docs/exact.md §4.6: step sizes for the exact mechanism with agreement on the set emulated (as
 * sweep.ts): 7 members, f = 1, 6 honest learners on the rank-4 blocks (dim 10, noise 0), all at
 * the same θ, aggregating the same inputs (nna on the θ parts, CGE on the steps), m6 sending the
 * sign-flipped honest mean, all n = 7 inputs a round or n − f = 6 (m5 left out). Constant steps
 * 0.05 … 0.5 and diminishing steps γₜ = 0.5/(1 + t/50) (schedule diminishing, T = 50, power 1).
 * Prints ‖θ − θ*‖/‖θ*‖ at rounds 100, 300, 1000 and 3000 (Infinity: float32 overflow before that round).
 *
 *   node_modules/.bin/node docs/exact-report/steps.ts
 */
import { createAggregator } from '../../src/aggregation/index.ts'
import { createLearner, initBackend, type LrSchedule, loadDataset, partition, subset } from '../../src/learning/index.ts'
import { exactAggregator, exactLearner } from '../../src/node/exact.ts'
await initBackend({ backend: 'cpu' })
const spec = { kind: 'linear' as const, dim: 10, condition: 1, noise: 0, rank: 4, blocks: 7, trainSize: 280, testSize: 10, seed: 1 }
const train = await loadDataset(spec, 'train')
const shards = partition(train.y, 1, 7, { scheme: 'blocks' }, 1)
const opt = train.optimum!
const at = [100, 300, 1000, 3000]
async function emu(schedule: LrSchedule, all: boolean): Promise<number[]> {
  const ls = []
  for (let i = 0; i < 6; i++) ls.push(exactLearner(await createLearner({ model: { kind: 'linear' }, inputShape: [10], numClasses: 1, train: subset(train, shards[i]!), batchSize: 40, beta: 0, lambda: 0, schedule, initSeed: 1, dataSeed: `1/${i}` })))
  const agg = exactAggregator(createAggregator({ rule: 'nna', f: 1 }), 1)
  const out: number[] = []
  for (let t = 0; t < at.at(-1)!; t++) {
    const h = await Promise.all(ls.map((l) => l.step(t).then((r) => r.halfStep)))
    const flipped = new Float32Array(20)
    for (const v of h) for (let j = 0; j < 20; j++) flipped[j]! -= v[j]! / h.length
    // float32 overflow (a diverging run): the aggregation refuses non-finite inputs
    if (flipped.some((x) => !Number.isFinite(x))) break
    const next = agg.aggregate([...(all ? h : h.slice(0, 5)), flipped], { own: 0, reference: ls[0]!.getParams() })
    for (const l of ls) l.setParams(next)
    if (at.includes(t + 1)) out.push(Math.hypot(...Array.from(opt, (v, j) => next[j]! - v)) / Math.hypot(...opt))
  }
  while (out.length < at.length) out.push(Number.POSITIVE_INFINITY)
  return out
}
const schedules: [string, LrSchedule][] = [
  ['constant 0.05', { kind: 'constant', lr: 0.05 }],
  ['constant 0.1', { kind: 'constant', lr: 0.1 }],
  ['constant 0.2', { kind: 'constant', lr: 0.2 }],
  ['constant 0.5', { kind: 'constant', lr: 0.5 }],
  ['0.5/(1 + t/50)', { kind: 'diminishing', lr0: 0.5, T: 50, power: 1 }],
]
console.log(`rounds ${at.join(' / ')}`)
for (const [name, s] of schedules) {
  for (const all of [true, false]) console.log(`${name.padEnd(16)} ${all ? 'all n ' : 'n − f '} ${(await emu(s, all)).map((d) => d.toExponential(1)).join(' / ')}`)
}
