import assert from 'node:assert/strict'
import { before, describe, it } from 'node:test'
import { InvalidConfigError } from '../../../src/errors.ts'
import type { Dataset, LearnerOptions, ModelSpec } from '../../../src/learning/index.ts'
import { createLearner, initBackend, learningRate, loadDataset } from '../../../src/learning/index.ts'
import { tf } from '../../../src/learning/tf.ts'

/** A tiny fixed data set: 6 examples, 3 features, 3 classes. */
const tiny: Dataset = {
  name: 'tiny',
  x: Float32Array.from([0.5, -1, 2, 1, 0, -0.5, -1.5, 0.25, 1, 0, 2, 0.75, 0.3, 0.3, -0.3, -2, 1, 0]),
  y: Int32Array.from([0, 2, 1, 1, 0, 2]),
  n: 6,
  exampleShape: [3],
  numClasses: 3,
}

function options(over: Partial<LearnerOptions> = {}): LearnerOptions {
  return {
    model: { kind: 'logreg' },
    inputShape: [3],
    numClasses: 3,
    train: tiny,
    batchSize: 6,
    beta: 0.9,
    lambda: 0,
    schedule: { kind: 'constant', lr: 0.5 },
    initSeed: 'init',
    dataSeed: 'data',
    ...over,
  }
}

/** Mean softmax cross-entropy of logreg θ = [W (3×3 row-major, [in, out]), b (3)] and its gradient, in float64. */
function logregLossAndGrad(theta: Float32Array, ds: Dataset): { loss: number; grad: Float64Array } {
  const D = 3
  const K = 3
  const grad = new Float64Array(theta.length)
  let loss = 0
  for (let i = 0; i < ds.n; i++) {
    const z = new Float64Array(K)
    for (let k = 0; k < K; k++) {
      z[k] = theta[D * K + k]!
      for (let j = 0; j < D; j++) z[k]! += ds.x[i * D + j]! * theta[j * K + k]!
    }
    const mx = Math.max(...z)
    const e = Array.from(z, (v) => Math.exp(v - mx))
    const s = e.reduce((a, b) => a + b, 0)
    const p = e.map((v) => v / s)
    loss += -Math.log(p[ds.y[i]!]!)
    for (let k = 0; k < K; k++) {
      const r = (p[k]! - (k === ds.y[i] ? 1 : 0)) / ds.n
      grad[D * K + k]! += r
      for (let j = 0; j < D; j++) grad[j * K + k]! += ds.x[i * D + j]! * r
    }
  }
  return { loss: loss / ds.n, grad }
}

function norm(v: ArrayLike<number>): number {
  let s = 0
  for (let i = 0; i < v.length; i++) s += v[i]! * v[i]!
  return Math.sqrt(s)
}

function assertClose(actual: ArrayLike<number>, expected: ArrayLike<number>, tol: number, what: string): void {
  assert.equal(actual.length, expected.length, `${what}: length`)
  for (let i = 0; i < actual.length; i++) {
    assert.ok(Math.abs(actual[i]! - expected[i]!) <= tol, `${what}[${i}]: ${actual[i]} vs ${expected[i]}`)
  }
}

describe('learner', () => {
  before(async () => {
    await initBackend({ backend: 'cpu' })
  })

  it('learningRate: constant, and hyperbolic γ_t = lr0/(1 + ⌊t/Δ⌋·Δ/τ)', () => {
    const h = { kind: 'hyperbolic', lr0: 0.75, tau: 50, delta: 50 } as const
    assert.equal(learningRate({ kind: 'constant', lr: 0.1 }, 1234), 0.1)
    assert.equal(learningRate(h, 0), 0.75)
    assert.equal(learningRate(h, 49), 0.75)
    assert.equal(learningRate(h, 50), 0.375)
    assert.equal(learningRate(h, 100), 0.25)
    assert.equal(learningRate({ kind: 'hyperbolic', lr0: 1, tau: 100, delta: 10 }, 25), 1 / 1.2)
  })

  it('one step equals the momentum formula computed by hand (logreg, λ term, preset momentum)', async () => {
    const lambda = 0.05
    const beta = 0.9
    const schedule = { kind: 'hyperbolic', lr0: 0.6, tau: 10, delta: 5 } as const
    const round = 12 // γ = 0.6/(1 + 10/10) = 0.3
    const learner = await createLearner(options({ lambda, beta, schedule }))
    assert.equal(learner.dim, 12)
    const theta = Float32Array.from({ length: 12 }, (_, i) => Math.sin(i + 1) * 0.7)
    const m0 = Float32Array.from({ length: 12 }, (_, i) => Math.cos(i) * 0.2)
    learner.setParams(theta)
    learner.setMomentum(m0)
    const { halfStep, loss, gradNorm } = await learner.step(round)

    const { loss: ce, grad } = logregLossAndGrad(theta, tiny)
    const tn = norm(theta)
    const g = Array.from(grad, (v, i) => v + (lambda * theta[i]!) / tn)
    const gamma = learningRate(schedule, round)
    assert.equal(gamma, 0.3)
    const m1 = g.map((v, i) => beta * m0[i]! + (1 - beta) * v)
    const theta1 = m1.map((v, i) => theta[i]! - gamma * v)
    assertClose(learner.getMomentum(), m1, 1e-6, 'm')
    assertClose(halfStep, theta1, 1e-6, 'θ½')
    assert.deepEqual(learner.getParams(), halfStep)
    assert.ok(Math.abs(loss - (ce + lambda * tn)) < 1e-5, `loss ${loss} vs ${ce + lambda * tn}`)
    assert.ok(Math.abs(gradNorm - norm(g)) < 1e-5, `gradNorm ${gradNorm} vs ${norm(g)}`)
    // The λ term really moves θ: without it the step differs.
    const plain = await createLearner(options({ lambda: 0, beta, schedule }))
    plain.setParams(theta)
    plain.setMomentum(m0)
    const noLambda = await plain.step(round)
    assert.ok(Math.abs(noLambda.halfStep[0]! - halfStep[0]!) > 1e-4)
  })

  it('a data set kept as bytes (pixels) trains and evaluates exactly as its float32 form, without its x ever read', async () => {
    const pixels = Uint8Array.from({ length: 18 }, (_, i) => (i * 47 + 13) % 256)
    const float: Dataset = { ...tiny, x: Float32Array.from(pixels, (v) => v / 255) }
    const bytesOnly = {
      ...tiny,
      pixels,
      get x(): Float32Array {
        throw new Error('x read')
      },
    } as Dataset
    const theta = Float32Array.from({ length: 12 }, (_, i) => Math.sin(2 * i) * 0.5)
    const results = []
    for (const ds of [float, bytesOnly]) {
      const learner = await createLearner({ ...options({ train: ds, batchSize: 4 }), evalBatchSize: 4 })
      learner.setParams(theta)
      const step = await learner.step(3)
      results.push({ halfStep: Array.from(step.halfStep), loss: step.loss, evaluation: await learner.evaluate(ds), first: await learner.evaluate(ds, { maxExamples: 5 }) })
    }
    assert.deepEqual(results[1], results[0])
  })

  it('evaluate returns the accuracy and mean loss of θ on the test set (batched, maxExamples)', async () => {
    const learner = await createLearner({ ...options(), evalBatchSize: 4 })
    const theta = Float32Array.from({ length: 12 }, (_, i) => Math.sin(3 * i) * 0.9)
    learner.setParams(theta)
    const { accuracy, loss } = await learner.evaluate(tiny)
    const ref = logregLossAndGrad(theta, tiny)
    assert.ok(Math.abs(loss - ref.loss) < 1e-5, `loss ${loss} vs ${ref.loss}`)
    let hits = 0
    for (let i = 0; i < tiny.n; i++) {
      const z = [0, 1, 2].map((k) => theta[9 + k]! + [0, 1, 2].reduce((a, j) => a + tiny.x[i * 3 + j]! * theta[j * 3 + k]!, 0))
      if (z.indexOf(Math.max(...z)) === tiny.y[i]) hits++
    }
    assert.equal(accuracy, hits / tiny.n)
    const first2 = await learner.evaluate(tiny, { maxExamples: 2 })
    const ref2 = logregLossAndGrad(theta, { ...tiny, n: 2 })
    assert.ok(Math.abs(first2.loss - ref2.loss) < 1e-5)
  })

  it('β = 0 is plain SGD on the gradient (NNA ablation)', async () => {
    const learner = await createLearner(options({ beta: 0, schedule: { kind: 'constant', lr: 0.1 } }))
    const theta = learner.getParams()
    const { halfStep } = await learner.step(0)
    const { grad } = logregLossAndGrad(theta, tiny)
    assertClose(halfStep, Array.from(grad, (v, i) => theta[i]! - 0.1 * v), 1e-6, 'θ½')
  })

  it('training on the synthetic task reduces the loss', async () => {
    const spec = { kind: 'gaussian-mixture', classes: 4, dim: 10, trainSize: 800, testSize: 400, seed: 'train-test' } as const
    const train = await loadDataset(spec, 'train')
    const test = await loadDataset(spec, 'test')
    const learner = await createLearner(
      options({ model: { kind: 'mlp', hidden: [16] }, inputShape: [10], numClasses: 4, train, batchSize: 25, schedule: { kind: 'constant', lr: 0.1 } }),
    )
    const start = await learner.evaluate(test)
    let first = 0
    let last = 0
    for (let t = 0; t < 150; t++) {
      const { loss } = await learner.step(t)
      if (t < 10) first += loss / 10
      if (t >= 140) last += loss / 10
    }
    const end = await learner.evaluate(test)
    assert.ok(last < 0.5 * first, `mini-batch loss ${first} → ${last}`)
    assert.ok(end.loss < 0.5 * start.loss, `test loss ${start.loss} → ${end.loss}`)
    assert.ok(end.accuracy > 0.85, `test accuracy ${end.accuracy}`)
    const part = await learner.evaluate(test, { maxExamples: 100 })
    assert.ok(part.accuracy >= 0 && part.accuracy <= 1)
  })

  it('200 training steps (and an evaluation) leave tf.memory().numTensors unchanged', async () => {
    const spec = { kind: 'gaussian-mixture', classes: 3, dim: 6, trainSize: 100, testSize: 50, seed: 'leak' } as const
    const train = await loadDataset(spec, 'train')
    for (const model of [{ kind: 'logreg' }, { kind: 'mlp', hidden: [8, 8] }] as ModelSpec[]) {
      const learner = await createLearner(options({ model, inputShape: [6], numClasses: 3, train, batchSize: 10, lambda: 1e-3 }))
      const before = tf.memory().numTensors
      for (let t = 0; t < 200; t++) await learner.step(t)
      await learner.evaluate(await loadDataset(spec, 'test'))
      assert.equal(tf.memory().numTensors, before, `${model.kind} leaked tensors`)
      learner.dispose()
    }
    const priv = await createLearner(options({ privacy: { clipNorm: 1, noiseStd: 0.1 } }))
    const before = tf.memory().numTensors
    for (let t = 0; t < 20; t++) await priv.step(t)
    assert.equal(tf.memory().numTensors, before, 'privacy hook leaked tensors')
  })

  it('identical initSeed gives identical θ0 across learners; different seeds differ', async () => {
    const a = await createLearner(options({ dataSeed: 'member-1' }))
    const b = await createLearner(options({ dataSeed: 'member-2' }))
    const c = await createLearner(options({ initSeed: 'other' }))
    assert.deepEqual(a.getParams(), b.getParams())
    assert.notDeepEqual(a.getParams(), c.getParams())
    assert.ok(a.getMomentum().every((v) => v === 0))
  })

  it('the mini-batch Rng state can be saved and restored (checkpoints)', async () => {
    const spec = { kind: 'gaussian-mixture', classes: 3, dim: 4, trainSize: 60, testSize: 1, seed: 'rng' } as const
    const opts = options({ inputShape: [4], train: await loadDataset(spec, 'train'), batchSize: 5, privacy: { clipNorm: 0.5, noiseStd: 0.01, noiseSeed: 'exp' } })
    const a = await createLearner(opts)
    for (let t = 0; t < 3; t++) await a.step(t)
    const saved = { theta: a.getParams(), m: a.getMomentum(), rng: JSON.parse(JSON.stringify(a.getRngState())) }
    const next = [(await a.step(3)).halfStep, (await a.step(4)).halfStep]
    const b = await createLearner(opts)
    b.setParams(saved.theta)
    b.setMomentum(saved.m)
    b.setRngState(saved.rng)
    assert.deepEqual((await b.step(3)).halfStep, next[0])
    assert.deepEqual((await b.step(4)).halfStep, next[1])
    assert.throws(() => b.setRngState({ batch: 1 }), InvalidConfigError)
  })

  it('privacy hook: clips per-example gradients to clipNorm and adds seeded noise', async () => {
    const step = async (privacy: LearnerOptions['privacy'], dataSeed = 'd') => {
      const l = await createLearner(options({ privacy, beta: 0, dataSeed }))
      return l.step(0)
    }
    const exact = await step(undefined)
    // Huge clip, no noise: the average of per-example gradients is the batch gradient.
    const unclipped = await step({ clipNorm: 1e9, noiseStd: 0 })
    assertClose(unclipped.halfStep, exact.halfStep, 1e-6, 'θ½')
    assert.ok(Math.abs(unclipped.loss - exact.loss) < 1e-5)
    // Tiny clip: the average of vectors of norm ≤ G has norm ≤ G.
    const clipped = await step({ clipNorm: 1e-3, noiseStd: 0 })
    assert.ok(clipped.gradNorm <= 1e-3 * (1 + 1e-5), `gradNorm ${clipped.gradNorm}`)
    assert.ok(clipped.gradNorm > 1e-4)
    // Noise: large; reproducible only from an explicit noiseSeed (experiments), secret otherwise.
    const noisy = await step({ clipNorm: 1e-3, noiseStd: 1, noiseSeed: 'exp' })
    assert.ok(noisy.gradNorm > 1, `gradNorm ${noisy.gradNorm}`)
    assert.deepEqual((await step({ clipNorm: 1e-3, noiseStd: 1, noiseSeed: 'exp' })).halfStep, noisy.halfStep)
    assert.notDeepEqual((await step({ clipNorm: 1e-3, noiseStd: 1, noiseSeed: 'other' })).halfStep, noisy.halfStep)
    const secretA = await step({ clipNorm: 1e-3, noiseStd: 1 })
    const secretB = await step({ clipNorm: 1e-3, noiseStd: 1 })
    assert.notDeepEqual(secretA.halfStep, secretB.halfStep, 'without noiseSeed the noise must not be derivable from the seeds')
  })

  it('privacy hook: a non-finite per-example gradient is a typed error, not a NaN update', async () => {
    const l = await createLearner(options({ privacy: { clipNorm: 1, noiseStd: 0 } }))
    const theta = l.getParams()
    theta[0] = Number.NaN
    l.setParams(theta)
    await assert.rejects(l.step(0), { name: 'NonFiniteGradientError' })
  })

  it('rejects invalid options and parameters of the wrong size', async () => {
    await assert.rejects(createLearner(options({ beta: 1 })), InvalidConfigError)
    await assert.rejects(createLearner(options({ batchSize: 0 })), InvalidConfigError)
    await assert.rejects(createLearner(options({ lambda: -1 })), InvalidConfigError)
    await assert.rejects(createLearner(options({ inputShape: [4] })), InvalidConfigError)
    await assert.rejects(createLearner(options({ schedule: { kind: 'constant', lr: 0 } })), InvalidConfigError)
    await assert.rejects(createLearner(options({ privacy: { clipNorm: 0, noiseStd: 1 } })), InvalidConfigError)
    await assert.rejects(createLearner(options({ train: { ...tiny, n: 0 } })), InvalidConfigError)
    const l = await createLearner(options())
    assert.throws(() => l.setParams(new Float32Array(11)), InvalidConfigError)
    assert.throws(() => l.setMomentum(new Float32Array(13)), InvalidConfigError)
  })
})
