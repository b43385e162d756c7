/**
 * docs/exact.md §4.3: the exact mechanism's ports (src/node/exact.ts) with agreement on the set
 * emulated — n − f honest learners on the 2f-redundant generator's blocks (dim 10, noise 0, 40
 * examples a block), all at the same θ, aggregating the same inputs each round (nna on the θ parts,
 * CGE on the steps), step 0.5, f = 1 — with all n inputs a round (n − f honest and the Byzantine
 * one, the paper's synchronous setting) or n − f (n − 2f honest and the Byzantine one, as monna's
 * rounds close); the Byzantine vector is the sign-flipped honest mean or ALIE (mean − σ, z = 1).
 * Prints ‖θ − θ*‖/‖θ*‖ after 300 rounds.
 *
 *   node_modules/.bin/node docs/exact-report/sweep.ts
 */
import { createAggregator } from '../../src/aggregation/index.ts'
import { createLearner, initBackend, loadDataset, partition, subset } from '../../src/learning/index.ts'
import { exactAggregator, exactLearner } from '../../src/node/exact.ts'
await initBackend({ backend: 'cpu' })
async function emu(n: number, rank: number, inputs: 'n' | 'n-f', attack: string, R = 300) {
  const f = 1
  const spec = { kind: 'linear' as const, dim: 10, condition: 1, noise: 0, rank, blocks: n, trainSize: 40 * n, testSize: 10, seed: 1 }
  const train = await loadDataset(spec, 'train')
  const shards = partition(train.y, 1, n, { scheme: 'blocks' }, 1)
  const ls = []
  for (let i = 0; i < n - f; i++) ls.push(exactLearner(await createLearner({ model: { kind: 'linear' }, inputShape: [10], numClasses: 1, train: subset(train, shards[i]!), batchSize: 40, beta: 0, lambda: 0, schedule: { kind: 'constant', lr: 0.5 }, initSeed: 1, dataSeed: `1/${i}` })))
  const agg = exactAggregator(createAggregator({ rule: 'nna', f }), f)
  const opt = train.optimum!
  let d = 0
  for (let t = 0; t < R; t++) {
    const h = await Promise.all(ls.map((l) => l.step(t).then((r) => r.halfStep)))
    const used = inputs === 'n' ? h : h.slice(0, n - 2 * f)
    const mu = new Float32Array(20)
    for (const v of used) for (let j = 0; j < 20; j++) mu[j]! += v[j]! / used.length
    const sd = new Float32Array(20)
    for (const v of used) for (let j = 0; j < 20; j++) sd[j]! += (v[j]! - mu[j]!) ** 2 / (used.length - 1)
    const byz = attack === 'sign-flip' ? mu.map((x) => -x) : mu.map((x, j) => x - Math.sqrt(sd[j]!))
    const next = agg.aggregate([...used, byz], { own: 0, reference: ls[0]!.getParams() })
    for (const l of ls) l.setParams(next)
    d = Math.hypot(...Array.from(opt, (v, j) => next[j]! - v)) / Math.hypot(...opt)
  }
  return d
}
for (const n of [7, 10]) for (const rank of [4, 6, 8, 10]) {
  const row = []
  for (const attack of ['sign-flip', 'alie']) for (const inp of ['n', 'n-f'] as const) row.push(`${attack}/${inp}: ${(await emu(n, rank, inp, attack)).toExponential(1)}`)
  console.log(`n=${n} rank=${rank}  ${row.join('  ')}`)
}
