/**
 * The least-squares task (docs/precondition.md): the `linear` data set (condition number of the
 * feature covariance, exact θ* from the normal equations), the `linear` model's gradient and
 * evaluation, and the pre-conditioner on one learner.
 */
import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { createLearner, initBackend, leastSquares, loadDataset } from '../../../src/learning/index.ts'
import { createModel } from '../../../src/learning/models.ts'

const spec = { kind: 'linear', dim: 10, condition: 100, noise: 0, trainSize: 500, testSize: 200, seed: 3 } as const

describe('linear data set and model', () => {
  it('has features whose covariance has the requested condition number, and θ* solving the normal equations', async () => {
    const train = await loadDataset(spec, 'train')
    const test = await loadDataset(spec, 'test')
    assert.equal(train.numClasses, 1)
    assert.equal(train.targets?.length, 500)
    assert.equal(test.targets?.length, 200)
    assert.equal(test.optimum, undefined)
    // per-feature variances: 1 … 1/condition (the covariance is diagonal by construction)
    const variance = (j: number): number => {
      let s = 0
      for (let i = 0; i < train.n; i++) s += train.x[i * 10 + j]! ** 2
      return s / train.n
    }
    const ratio = variance(0) / variance(9)
    assert.ok(ratio > 60 && ratio < 160, `sample variance ratio ${ratio}`)
    // noise 0: θ* fits every target (and so every shard's minimiser is θ*)
    const theta = train.optimum!
    for (let i = 0; i < train.n; i++) {
      let p = 0
      for (let j = 0; j < 10; j++) p += train.x[i * 10 + j]! * theta[j]!
      assert.ok(Math.abs(p - train.targets![i]!) < 1e-5, `example ${i}: ${p} vs ${train.targets![i]}`)
    }
    // a noisy set: θ* makes the residual orthogonal to every feature
    const noisy = await loadDataset({ ...spec, noise: 0.5 }, 'train')
    const w = leastSquares(noisy.x, noisy.targets!, noisy.n, 10)
    assert.deepEqual(Array.from(w), Array.from(noisy.optimum!))
    for (let j = 0; j < 10; j++) {
      let s = 0
      for (let i = 0; i < noisy.n; i++) {
        let r = -noisy.targets![i]!
        for (let k = 0; k < 10; k++) r += noisy.x[i * 10 + k]! * w[k]!
        s += r * noisy.x[i * 10 + j]!
      }
      assert.ok(Math.abs(s) < 1e-3, `Xᵀ(Xθ* − t)[${j}] = ${s}`)
    }
  })

  it('the linear model has d = dim (no bias) and its step is the least-squares gradient step', async () => {
    await initBackend({ backend: 'cpu' })
    assert.equal(createModel({ kind: 'linear' }, [10], 1).dim, 10)
    const train = await loadDataset(spec, 'train')
    const l = await createLearner({ model: { kind: 'linear' }, inputShape: [10], numClasses: 1, train, batchSize: 500, beta: 0, lambda: 0, schedule: { kind: 'constant', lr: 0.1 }, initSeed: 1, dataSeed: 1 })
    const theta = l.getParams()
    const { halfStep, loss } = await l.step(0)
    let expectedLoss = 0
    const g = new Float64Array(10)
    for (let i = 0; i < train.n; i++) {
      let r = -train.targets![i]!
      for (let j = 0; j < 10; j++) r += train.x[i * 10 + j]! * theta[j]!
      expectedLoss += (0.5 * r * r) / train.n
      for (let j = 0; j < 10; j++) g[j]! += (r * train.x[i * 10 + j]!) / train.n
    }
    assert.ok(Math.abs(loss - expectedLoss) < 1e-5 * Math.max(1, expectedLoss))
    for (let j = 0; j < 10; j++) assert.ok(Math.abs(halfStep[j]! - (theta[j]! - 0.1 * g[j]!)) < 1e-5)
    const ev = await l.evaluate(await loadDataset(spec, 'test'))
    assert.ok(ev.distance! > 0 && ev.accuracy >= 0 && ev.accuracy <= 1)
    l.setParams(Float32Array.from(train.optimum!))
    const at = await l.evaluate(await loadDataset(spec, 'test'))
    assert.ok(at.distance! < 1e-6 && at.accuracy > 0.999999 && at.loss < 1e-10, JSON.stringify(at))
  })

  it('pre-conditioned, one learner reaches 1e-3 of θ* in ≥ 5× fewer steps than plain gradient descent', async () => {
    await initBackend({ backend: 'cpu' })
    const train = await loadDataset(spec, 'train')
    const test = await loadDataset(spec, 'test')
    const steps = async (precondition?: { alpha: number; beta: number }): Promise<number> => {
      const l = await createLearner({ model: { kind: 'linear' }, inputShape: [10], numClasses: 1, train, batchSize: 500, beta: 0, lambda: 0, schedule: { kind: 'constant', lr: 1 }, initSeed: 1, dataSeed: 1, ...(precondition ? { precondition } : {}) })
      for (let t = 0; t < 400; t++) {
        await l.step(t)
        if ((await l.evaluate(test)).distance! <= 1e-3) return t + 1
      }
      return Number.POSITIVE_INFINITY
    }
    const plain = await steps()
    const pre = await steps({ alpha: 1, beta: 0 })
    assert.ok(pre * 5 <= plain, `pre-conditioned ${pre} steps, plain ${plain}`)
  })
})
