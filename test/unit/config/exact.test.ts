/**
 * `task.exact` and the 2f-redundant generator (dataset linear with rank and blocks, partition
 * blocks) in swarm and scenario files (docs/exact.md): one-line errors naming the field for a
 * non-convex model, momentum, pre-conditioning or privacy with the exact mechanism, too few
 * inputs for CGE (n − r ≤ 2f), blocks that do not match the members, and a generator that is not
 * 2f-redundant; the generator itself: every n − 2f blocks determine θ*, fewer do not.
 */
import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { parseSwarm } from '../../../src/config/schema.ts'
import { InvalidConfigError } from '../../../src/errors.ts'
import { leastSquares, loadDataset, subset } from '../../../src/learning/data.ts'
import { partition } from '../../../src/learning/partition.ts'
import { parseScenario } from '../../../src/topology/schema.ts'

const B58 = '123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz'
const ids = (n: number): string[] =>
  Array.from({ length: n }, (_, i) => {
    let tail = ''
    for (let x = i, k = 0; k < 44; k++, x = Math.floor(x / 58)) tail += B58[x % 58]
    return `12D3KooW${tail}`
  })

const dataset = { kind: 'linear', dim: 10, noise: 0, rank: 4, blocks: 7, trainSize: 280 }
const task = { dataset, partition: { scheme: 'blocks' }, model: { kind: 'linear' }, beta: 0, batchSize: 40, exact: true }
const swarm = (t: Record<string, unknown>, n = 7, extra: Record<string, unknown> = {}): unknown => ({ name: 'ex', f: 1, members: ids(n).map((id) => ({ id })), task: t, ...extra })

/** an InvalidConfigError on one line whose path ends with `path` and whose message matches `re` */
const refused = (path: string, re: RegExp) => (e: unknown) =>
  e instanceof InvalidConfigError && e.path.endsWith(path) && re.test(e.message) && !e.message.includes('\n')

describe('task.exact', () => {
  it('is accepted on the least-squares task and on logreg (both convex)', () => {
    assert.equal(parseSwarm(swarm(task)).task.exact, true)
    assert.equal(parseSwarm(swarm({ ...task, exact: undefined })).task.exact, undefined)
    assert.doesNotThrow(() => parseSwarm(swarm({ dataset: { kind: 'logistic' }, model: { kind: 'logreg' }, beta: 0, exact: true })))
  })

  it('is refused for a non-convex model, momentum, pre-conditioning and privacy', () => {
    assert.throws(() => parseSwarm(swarm({ model: { kind: 'mlp' }, beta: 0, exact: true })), refused('task.exact', /needs a convex task \(model linear or logreg\); mlp is not convex/))
    assert.throws(() => parseSwarm(swarm({ model: { kind: 'lenet' }, beta: 0, exact: true })), refused('task.exact', /lenet is not convex/))
    assert.throws(() => parseSwarm(swarm({ ...task, beta: 0.9 })), refused('task.exact', /set task.beta to 0 \(got 0.9\)/))
    assert.throws(() => parseSwarm(swarm({ ...task, precondition: { alpha: 1 } })), refused('task.exact', /task.precondition cannot be combined/))
    assert.throws(() => parseSwarm(swarm({ ...task, privacy: { epsilon: 1 } })), refused('task.exact', /task.privacy cannot be combined/))
    assert.throws(() => parseSwarm(swarm({ ...task, exact: 'yes' })), refused('task.exact', /./))
  })

  it('needs n − r > 2f inputs for CGE', () => {
    // the rule on the models may need fewer (mean: k ≥ 1); CGE on the steps needs k > 2f
    assert.doesNotThrow(() => parseSwarm(swarm(task, 7, { r: 4, aggregator: { rule: 'mean' } })))
    assert.throws(() => parseSwarm(swarm(task, 7, { r: 5, aggregator: { rule: 'mean' } })), refused('task.exact', /CGE needs n − r > 2f inputs, but n − r = 2 with f = 1; lower r/))
  })

  it('checks the generator: rank with blocks, partition blocks, one block a member, 2f-redundancy', () => {
    assert.throws(() => parseSwarm(swarm({ ...task, partition: { scheme: 'iid' } })), refused('task.partition', /use partition \{ scheme: blocks \}, not iid/))
    assert.throws(() => parseSwarm(swarm(task, 8)), refused('task.dataset.blocks', /must equal the 8 members \(one block a member\), got 7/))
    assert.throws(() => parseSwarm(swarm({ ...task, dataset: { ...dataset, rank: 1 } })), refused('task.dataset.rank', /not 2f-redundant: n − 2f = 5 blocks of rank 1 span 5 < dim = 10/))
    // 5 = n − 2f blocks of rank 2 span the 10 features; rank 1 would not (refused only with exact)
    assert.doesNotThrow(() => parseSwarm(swarm({ ...task, dataset: { ...dataset, rank: 2 } })))
    assert.throws(() => parseSwarm(swarm({ ...task, dataset: { ...dataset, dim: 12, rank: 2 } })), refused('task.dataset.rank', /not 2f-redundant: n − 2f = 5 blocks of rank 2 span 10 < dim = 12 dimensions; raise rank to ≥ 3/))
    assert.throws(() => parseSwarm(swarm({ ...task, dataset: { ...dataset, blocks: undefined } })), refused('task.dataset.rank', /rank and blocks go together/))
    assert.throws(() => parseSwarm(swarm({ ...task, dataset: { ...dataset, rank: undefined } })), refused('task.dataset.blocks', /rank and blocks go together/))
    assert.throws(() => parseSwarm(swarm({ ...task, dataset: { ...dataset, rank: 11 } })), refused('task.dataset.rank', /must be ≤ dim = 10/))
    assert.throws(() => parseSwarm(swarm({ dataset: { kind: 'gaussian-mixture' }, partition: { scheme: 'blocks' }, model: { kind: 'logreg' } })), refused('task.partition', /blocks splits the linear or logistic data set/))
  })

  it('takes diminishing steps γₜ = lr0 / (1 + t/T)^power with power in (0.5, 1] (Σ γₜ = ∞, Σ γₜ² < ∞)', () => {
    const sched = (s: Record<string, unknown>) => parseSwarm(swarm({ ...task, schedule: { kind: 'diminishing', ...s } })).task.schedule
    assert.deepEqual(sched({ lr0: 0.5 }), { kind: 'diminishing', lr0: 0.5, T: 1, power: 1 })
    assert.deepEqual(sched({ lr0: 0.5, T: 50, power: 0.75 }), { kind: 'diminishing', lr0: 0.5, T: 50, power: 0.75 })
    assert.throws(() => sched({ lr0: 0.5, power: 0.5 }), refused('task.schedule.power', /power must be in \(0.5, 1\]: at 0.5 or below Σ γ_t² diverges/))
    assert.throws(() => sched({ lr0: 0.5, power: 1.5 }), refused('task.schedule.power', /power must be in \(0.5, 1\]: above 1 Σ γ_t converges/))
    assert.throws(() => sched({ lr0: 0.5, T: 0 }), refused('task.schedule.T', /./))
    assert.throws(() => sched({ T: 10 }), refused('task.schedule.lr0', /./))
    const base = { name: 'ex', n: 7, f: 1, task, byzantine: [{ members: 6, behaviour: 'alie' }] }
    const optimizers = [{ name: 'dim', exact: true, schedule: { kind: 'diminishing', lr0: 0.5, power: 0.4 } }]
    assert.throws(() => parseScenario({ ...base, matrix: { rules: [{ rule: 'nna' }], behaviours: ['alie'], optimizers } }), refused('schedule.power', /power must be in \(0.5, 1\]/))
  })

  it('takes timing.waitAllMs, a whole number of ms ≥ 0 (wait for all n certified models after n − r)', () => {
    assert.equal(parseSwarm(swarm(task, 7, { timing: { waitAllMs: 5000 } })).timing.waitAllMs, 5000)
    assert.equal(parseSwarm(swarm(task)).timing.waitAllMs, undefined)
    assert.throws(() => parseSwarm(swarm(task, 7, { timing: { waitAllMs: -1 } })), refused('timing.waitAllMs', /./))
    assert.throws(() => parseSwarm(swarm(task, 7, { timing: { waitAllMs: 1.5 } })), refused('timing.waitAllMs', /./))
  })

  it('is checked in scenario files, for the task and for every matrix optimizer', () => {
    const base = { name: 'ex', n: 7, f: 1, task, byzantine: [{ members: 6, behaviour: 'alie' }] }
    assert.doesNotThrow(() => parseScenario(base))
    assert.throws(() => parseScenario({ ...base, task: { ...task, beta: 0.5 } }), refused('task.exact', /set task.beta to 0/))
    const matrix = (t: Record<string, unknown>, optimizers: unknown[]) => ({ ...base, task: t, matrix: { rules: [{ rule: 'nna' }], behaviours: ['alie'], optimizers } })
    const plain = { ...task, exact: undefined }
    assert.doesNotThrow(() => parseScenario(matrix(plain, [{ name: 'plain', exact: false }, { name: 'exact', exact: true }])))
    assert.throws(() => parseScenario(matrix({ ...plain, beta: 0.9 }, [{ name: 'exact', exact: true }])), refused('matrix.optimizers.0: task.exact', /set task.beta to 0/))
    assert.throws(
      () => parseScenario(matrix({ ...plain, dataset: { ...dataset, dim: 12, rank: 2 } }, [{ name: 'plain' }, { name: 'exact', exact: true }])),
      refused('matrix.optimizers.1: task.dataset.rank', /not 2f-redundant/),
    )
  })
})

describe('the 2f-redundant generator (dataset linear with rank and blocks)', () => {
  it('gives each member a block whose own minimiser is not unique, and every n − 2f blocks the minimiser θ*', async () => {
    const spec = { kind: 'linear' as const, dim: 10, condition: 1, noise: 0, rank: 4, blocks: 7, trainSize: 280, testSize: 50, seed: 3 }
    const train = await loadDataset(spec, 'train')
    const theta = train.optimum!
    const shards = partition(train.y, train.numClasses, 7, { scheme: 'blocks' }, 1)
    assert.deepEqual(shards.map((s) => s.length), [40, 40, 40, 40, 40, 40, 40])
    const solve = (members: number[]): Float64Array => {
      const idx = Int32Array.from(members.flatMap((m) => [...shards[m]!]))
      const ds = subset(train, idx)
      return leastSquares(ds.x, ds.targets!, ds.n, 10)
    }
    // every 5-subset of the 7 blocks (n − 2f with n = 7, f = 1): the same minimiser θ*
    let subsets = 0
    for (let mask = 0; mask < 1 << 7; mask++) {
      const members = [0, 1, 2, 3, 4, 5, 6].filter((m) => (mask >> m) & 1)
      if (members.length !== 5) continue
      const x = solve(members)
      let err = 0
      for (let j = 0; j < 10; j++) err = Math.max(err, Math.abs(x[j]! - theta[j]!))
      assert.ok(err < 1e-4, `blocks ${members}: minimiser ${err} from θ*`)
      subsets++
    }
    assert.equal(subsets, 21)
    // each block's rows span 4 dimensions, two blocks 8 < 10: θ* is not determined by fewer than 3
    const rank = (members: number[]): number => {
      const basis: Float64Array[] = []
      for (const m of members) {
        for (const e of shards[m]!) {
          const v = Float64Array.from(train.x.subarray(e * 10, (e + 1) * 10))
          for (const b of basis) {
            let dot = 0
            for (let j = 0; j < 10; j++) dot += v[j]! * b[j]!
            for (let j = 0; j < 10; j++) v[j]! -= dot * b[j]!
          }
          const norm = Math.hypot(...v)
          if (norm > 1e-3) basis.push(v.map((x) => x / norm))
        }
      }
      return basis.length
    }
    assert.deepEqual([0, 1, 2, 3, 4, 5, 6].map((m) => rank([m])), [4, 4, 4, 4, 4, 4, 4])
    assert.equal(rank([0, 1]), 8)
    assert.equal(rank([0, 1, 2]), 10)
  })
})

describe('the 2f-redundant logistic generator (dataset logistic with rank and blocks)', () => {
  const spec = { kind: 'logistic' as const, dim: 10, condition: 1, rank: 4, blocks: 7, trainSize: 280, testSize: 50, seed: 3 }

  it('calibrates every group of 4 equal examples so that each member’s gradient vanishes at the stated minimiser', async () => {
    const train = await loadDataset(spec, 'train')
    const opt = train.optimum!
    assert.equal(opt.length, 2 * 10 + 2)
    // centred softmax layout: class columns −w/2 and w/2, biases −b/2 and b/2
    const w = Float64Array.from({ length: 11 }, (_, j) => 2 * opt[2 * j + 1]!)
    for (let j = 0; j < 11; j++) assert.ok(Math.abs(opt[2 * j]! + opt[2 * j + 1]!) < 1e-15)
    assert.ok(Math.abs(w[10]!) < 1e-6, `b* = ${w[10]}`)
    const shards = partition(train.y, train.numClasses, 7, { scheme: 'blocks' }, 1)
    for (const [m, shard] of shards.entries()) {
      assert.equal(shard.length, 40)
      const g = new Float64Array(11)
      let ones = 0
      for (const e of shard) {
        let a = w[10]!
        for (let j = 0; j < 10; j++) a += train.x[e * 10 + j]! * w[j]!
        const r = 1 / (1 + Math.exp(-a)) - train.y[e]!
        for (let j = 0; j < 10; j++) g[j]! += (r * train.x[e * 10 + j]!) / shard.length
        g[10]! += r / shard.length
        ones += train.y[e]!
      }
      // not separable, not degenerate: both labels in every block
      assert.ok(ones > 0 && ones < 40, `member ${m}: ${ones} of 40 labelled 1`)
      assert.ok(Math.hypot(...g) < 1e-6, `member ${m}: ‖∇Qᵢ(x*)‖ = ${Math.hypot(...g)}`)
    }
    // groups: 4 equal rows, k ∈ {1, 2, 3} of them labelled 1, and logit ln(k / (4 − k)) at x*
    for (let grp = 0; grp < 70; grp++) {
      let k = 0
      for (let c = 0; c < 4; c++) {
        k += train.y[4 * grp + c]!
        for (let j = 0; j < 10; j++) assert.equal(train.x[(4 * grp + c) * 10 + j], train.x[4 * grp * 10 + j])
      }
      let a = w[10]!
      for (let j = 0; j < 10; j++) a += train.x[4 * grp * 10 + j]! * w[j]!
      assert.ok(k >= 1 && k <= 3 && Math.abs(a - Math.log(k / (4 - k))) < 1e-5, `group ${grp}: ${k} ones, logit ${a}`)
    }
  })

  it('has a unique minimiser for every n − 2f blocks but not for one block, and refuses sizes that split a group', async () => {
    const train = await loadDataset(spec, 'train')
    const shards = partition(train.y, train.numClasses, 7, { scheme: 'blocks' }, 1)
    // the Hessian Σ σ(1 − σ)·[x, 1][x, 1]ᵀ (σ(1 − σ) ≥ 3/16 > 0) is definite iff the rows [x, 1] span R¹¹
    const rank = (members: number[]): number => {
      const basis: Float64Array[] = []
      for (const m of members) {
        for (const e of shards[m]!) {
          const v = Float64Array.from([...train.x.subarray(e * 10, (e + 1) * 10), 1])
          for (const b of basis) {
            let dot = 0
            for (let j = 0; j < 11; j++) dot += v[j]! * b[j]!
            for (let j = 0; j < 11; j++) v[j]! -= dot * b[j]!
          }
          const norm = Math.hypot(...v)
          if (norm > 1e-3) basis.push(v.map((x) => x / norm))
        }
      }
      return basis.length
    }
    assert.deepEqual([0, 1, 2, 3, 4, 5, 6].map((m) => rank([m])), [5, 5, 5, 5, 5, 5, 5])
    let subsets = 0
    for (let mask = 0; mask < 1 << 7; mask++) {
      const members = [0, 1, 2, 3, 4, 5, 6].filter((m) => (mask >> m) & 1)
      if (members.length !== 5) continue
      assert.equal(rank(members), 11, `blocks ${members}`)
      subsets++
    }
    assert.equal(subsets, 21)
    await assert.rejects(loadDataset({ ...spec, trainSize: 282 }, 'train'), refused('dataset.trainSize', /must be a multiple of 4·blocks = 28 \(groups of 4 examples, whole groups a block\), got 282/))
    assert.throws(() => parseSwarm(swarm({ ...task, dataset: { ...spec, rank: 1 }, model: { kind: 'logreg' } })), refused('task.dataset.rank', /not 2f-redundant: n − 2f = 5 blocks of rank 1 span 5 < dim = 10/))
    assert.throws(() => parseSwarm(swarm({ ...task, dataset: { ...spec, blocks: undefined }, model: { kind: 'logreg' } })), refused('task.dataset.rank', /rank and blocks go together/))
    assert.doesNotThrow(() => parseSwarm(swarm({ ...task, dataset: spec, model: { kind: 'logreg' } })))
    assert.throws(() => parseSwarm(swarm({ ...task, dataset: { ...spec, trainSize: 300 }, model: { kind: 'logreg' } })), refused('task.dataset.trainSize', /must be a multiple of 4·blocks = 28/))
  })
})
