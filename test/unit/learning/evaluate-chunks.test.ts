/**
 * `evaluateChunks` (src/learning/learner.ts): a member's final evaluation on the whole test split,
 * read part by part (`loadShard`'s `testChunks`) instead of held through the rounds.
 */
import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { InvalidConfigError } from '../../../src/errors.ts'
import type { Dataset, EvaluationResult } from '../../../src/learning/index.ts'
import { clearDatasetCache, createLearner, evaluateChunks, initBackend, loadShard, partition } from '../../../src/learning/index.ts'

async function* from(parts: Dataset[]): AsyncGenerator<Dataset> {
  for (const p of parts) yield p
}

describe('evaluateChunks', () => {
  it("gives a LeNet learner's evaluation of the whole MNIST test split from its parts: the same share right, the same loss", async () => {
    await initBackend({ backend: 'auto', deferLoading: true })
    clearDatasetCache()
    const pick = (labels: Int32Array, k: number): Int32Array => partition(labels, k, 26, { scheme: 'dirichlet', alpha: 1 }, 1)[2]!
    const lean = await loadShard({ kind: 'mnist' }, pick, { testRows: 3000 })
    clearDatasetCache()
    const whole = await loadShard({ kind: 'mnist' }, pick)
    const learner = await createLearner({ model: { kind: 'lenet' }, inputShape: [28, 28, 1], numClasses: 10, train: lean.shard, batchSize: 25, beta: 0.9, lambda: 0, schedule: { kind: 'constant', lr: 0.05 }, initSeed: 'chunks', dataSeed: 'chunks' })
    try {
      // a few steps, so that the model classifies some examples right and some wrong
      for (let t = 0; t < 20; t++) await learner.step(t)
      const all = await learner.evaluate(whole.test)
      const parts = await evaluateChunks(learner, lean.testChunks())
      assert.ok(all.accuracy > 0.05 && all.accuracy < 0.99, `accuracy ${all.accuracy}`)
      assert.equal(parts.accuracy, all.accuracy)
      assert.ok(Math.abs(parts.loss - all.loss) <= 1e-9 * all.loss, `loss ${parts.loss} against ${all.loss}`)
      // the parts are the split's: evaluated alone, the first one is the kept prefix's evaluation
      const prefix = await learner.evaluate(lean.test)
      assert.notEqual(prefix.accuracy, all.accuracy)
    } finally {
      learner.dispose()
      clearDatasetCache()
    }
  })

  it('an evaluation started while another runs does not change the first one’s model (the snapshot buffer is used again only when none runs)', async () => {
    await initBackend({ backend: 'auto', deferLoading: true })
    clearDatasetCache()
    const pick = (labels: Int32Array, k: number): Int32Array => partition(labels, k, 26, { scheme: 'dirichlet', alpha: 1 }, 1)[4]!
    const { shard, test } = await loadShard({ kind: 'mnist' }, pick, { testRows: 2000 })
    const learner = await createLearner({ model: { kind: 'lenet' }, inputShape: [28, 28, 1], numClasses: 10, train: shard, batchSize: 25, beta: 0.9, lambda: 0, schedule: { kind: 'constant', lr: 0.1 }, initSeed: 'overlap', dataSeed: 'overlap' })
    try {
      for (let t = 0; t < 5; t++) await learner.step(t)
      const before = await learner.evaluate(test)
      const theta = learner.getParams()
      // the first evaluation runs (it pauses between batches), the model moves, a second starts
      const first = learner.evaluate(test)
      await learner.step(5)
      const second = learner.evaluate(test)
      const [a, b] = await Promise.all([first, second])
      assert.deepEqual(a, before)
      const after = await learner.evaluate(test)
      assert.deepEqual(b, after)
      assert.notDeepEqual(after, before)
      // and evaluating again the model of before gives its evaluation (the buffer used again)
      learner.setParams(theta)
      assert.deepEqual(await learner.evaluate(test), before)
    } finally {
      learner.dispose()
      clearDatasetCache()
    }
  })

  it('returns a single part’s evaluation as it is (R², a distance), and refuses a split without examples', async () => {
    const result: EvaluationResult = { accuracy: 0.37, loss: 2.5, distance: 0.125 }
    const seen: number[] = []
    const learner = {
      evaluate: async (test: Dataset) => {
        seen.push(test.n)
        return result
      },
    }
    const one = { n: 7 } as Dataset
    assert.equal(await evaluateChunks(learner, from([one])), result)
    assert.deepEqual(seen, [7])
    await assert.rejects(evaluateChunks(learner, from([])), InvalidConfigError)
    // several parts: shares of examples, weighted by their sizes
    const shares = [
      { accuracy: 1 / 3, loss: 1 },
      { accuracy: 1, loss: 4 },
    ]
    let i = 0
    const weighted = await evaluateChunks({ evaluate: async () => shares[i++]! }, from([{ n: 3 } as Dataset, { n: 1 } as Dataset]))
    assert.deepEqual(weighted, { accuracy: 0.5, loss: 7 / 4 })
  })
})
