import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { nativeAvailable, setNativeEnabled } from '../../../src/compute/index.ts'
import { InvalidConfigError } from '../../../src/errors.ts'
import type { LearnerOptions } from '../../../src/learning/index.ts'
import { BackendUnavailableError, createLearner, initBackend } from '../../../src/learning/index.ts'
import { tf } from '../../../src/learning/tf.ts'
import { memoryLogger } from '../../../src/logger.ts'
import { randomImages as images } from '../../support/images.ts'

function lenetOptions(over: Partial<LearnerOptions> = {}): LearnerOptions {
  return {
    model: { kind: 'lenet' },
    inputShape: [28, 28, 1],
    numClasses: 10,
    train: images(4),
    batchSize: 2,
    beta: 0.99,
    lambda: 0,
    schedule: { kind: 'constant', lr: 0.05 },
    initSeed: 'lenet',
    dataSeed: 'member',
    ...over,
  }
}

async function tfjsNodeInstalled(): Promise<boolean> {
  const name = '@tensorflow/tfjs-node'
  try {
    await import(name)
    return true
  } catch {
    return false
  }
}

describe('compute backends', () => {
  it('auto picks tfjs-node if installed, else wasm, and reports the choice', async () => {
    const info = await initBackend({ backend: 'auto' })
    assert.equal(info.name, tf.getBackend())
    if (await tfjsNodeInstalled()) {
      assert.equal(info.name, 'tensorflow')
    } else {
      assert.equal(info.name, 'wasm')
      assert.equal(info.skipped[0]?.backend, 'tensorflow')
      await assert.rejects(initBackend({ backend: 'tensorflow' }), BackendUnavailableError)
    }
    assert.equal((await initBackend({ backend: 'cpu' })).name, 'cpu')
    await assert.rejects(initBackend({ backend: 'gpu' as 'cpu' }), InvalidConfigError)
    await assert.rejects(initBackend({ backend: 'wasm', threads: 0 }), InvalidConfigError)
  })

  it('a model whose gradient kernel the backend lacks trains on cpu instead (warning logged), with cpu results', async () => {
    await initBackend({ backend: 'wasm' })
    // Simulate a wasm build without Conv2DBackpropFilter (the state before src/compute's kernels).
    const saved = tf.getKernel('Conv2DBackpropFilter', 'wasm')
    if (saved !== undefined) tf.unregisterKernel('Conv2DBackpropFilter', 'wasm')
    try {
      if (nativeAvailable()) {
        // The native kernels' whole-model gradient needs no tfjs kernel: the learner stays on wasm.
        const native = await createLearner(lenetOptions())
        assert.equal(native.backend, 'wasm')
        assert.ok(Number.isFinite((await native.step(0)).loss))
      }
      // The fallback concerns the tfjs graph: the path without the native kernels.
      setNativeEnabled(false)
      const logger = memoryLogger()
      const learner = await createLearner(lenetOptions({ logger }))
      assert.equal(learner.backend, 'cpu')
      assert.equal(tf.getBackend(), 'wasm', 'the process-wide backend is left as chosen')
      assert.ok(logger.records.some((r) => r.level === 'warn' && r.fields?.backend === 'wasm'))
      const before = tf.memory().numTensors
      const a = [await learner.step(0), await learner.step(1)]
      assert.equal(tf.memory().numTensors, before)
      assert.equal(tf.getBackend(), 'wasm')
      assert.ok(Number.isFinite(a[1]!.loss))

      // Bit-identical to a learner created on the cpu backend.
      await initBackend({ backend: 'cpu' })
      const ref = await createLearner(lenetOptions())
      assert.equal(ref.backend, 'cpu')
      const b = [await ref.step(0), await ref.step(1)]
      assert.deepEqual(a[1]!.halfStep, b[1]!.halfStep)
      assert.equal(a[1]!.loss, b[1]!.loss)
    } finally {
      setNativeEnabled(true)
      if (saved !== undefined) tf.registerKernel(saved)
    }
  })

  it('LeNet trains on wasm without leaking tensors (with src/compute kernels when registered)', async () => {
    await initBackend({ backend: 'wasm' })
    const learner = await createLearner(lenetOptions())
    const before = tf.memory().numTensors
    let last = Number.NaN
    for (let t = 0; t < 5; t++) last = (await learner.step(t)).loss
    await learner.evaluate(images(3))
    assert.equal(tf.memory().numTensors, before)
    assert.ok(Number.isFinite(last))
    await assert.rejects(learner.step(5, { signal: AbortSignal.abort() }), { name: 'AbortError' })
  })

  it('a model the backend fully supports stays on it, and agrees with cpu', async () => {
    const opts: LearnerOptions = {
      ...lenetOptions(),
      model: { kind: 'mlp', hidden: [32] },
      batchSize: 4,
      schedule: { kind: 'constant', lr: 0.1 },
    }
    await initBackend({ backend: 'wasm' })
    const logger = memoryLogger()
    const w = await createLearner({ ...opts, logger })
    assert.equal(w.backend, 'wasm')
    assert.equal(logger.records.filter((r) => r.level === 'warn').length, 0)
    const ws = await w.step(0)
    await initBackend({ backend: 'cpu' })
    const c = await createLearner(opts)
    const cs = await c.step(0)
    let maxDiff = 0
    for (let i = 0; i < ws.halfStep.length; i++) maxDiff = Math.max(maxDiff, Math.abs(ws.halfStep[i]! - cs.halfStep[i]!))
    assert.ok(maxDiff < 1e-5, `wasm vs cpu max |Δθ| = ${maxDiff}`)
    assert.ok(Math.abs(ws.loss - cs.loss) < 1e-5)
  })
})
