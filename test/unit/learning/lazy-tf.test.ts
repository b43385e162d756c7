/**
 * TensorFlow.js on demand (src/learning/tf-loader.ts, `deferLoading` of backend.ts). This file
 * must not import tfjs statically (nor src/learning/tf.ts, nor src/compute/index.ts): each test
 * file runs in its own process, and the first tests check that tfjs is still not loaded.
 */
import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { nativeAvailable, nativeStatus, setNativeEnabled } from '../../../src/compute/native.ts'
import type { LearnerOptions } from '../../../src/learning/index.ts'
import { backendReady, createLearner, createModel, initBackend, initParams, TfNotLoadedError, tfIfLoaded, unflatten } from '../../../src/learning/index.ts'
import { memoryLogger } from '../../../src/logger.ts'
import { randomImages as images } from '../../support/images.ts'

const lenet = (over: Partial<LearnerOptions> = {}): LearnerOptions => ({
  model: { kind: 'lenet' },
  inputShape: [28, 28, 1],
  numClasses: 10,
  train: images(12, 'train'),
  batchSize: 4,
  beta: 0.9,
  lambda: 0,
  schedule: { kind: 'constant', lr: 0.05 },
  initSeed: 'lazy',
  dataSeed: 'member',
  ...over,
})

/** tfjs-core keeps its engine on the global object from the moment it is imported. */
const tfjsImported = (): boolean => (globalThis as { _tfengine?: unknown })._tfengine !== undefined

/** Three steps and an evaluation: the half-steps' bits, the losses and the evaluation. */
async function run(opts: LearnerOptions): Promise<{ halfSteps: Float32Array[]; losses: number[]; accuracy: number; loss: number }> {
  const learner = await createLearner(opts)
  const halfSteps: Float32Array[] = []
  const losses: number[] = []
  for (let t = 0; t < 3; t++) {
    const r = await learner.step(t)
    halfSteps.push(r.halfStep)
    losses.push(r.loss)
  }
  const e = await learner.evaluate(images(20, 'test'))
  learner.dispose()
  return { halfSteps, losses, accuracy: e.accuracy, loss: e.loss }
}

describe('TensorFlow.js loaded on demand', () => {
  let deferred: Awaited<ReturnType<typeof run>> | undefined

  it('a member-style choice on the native kernels loads neither tfjs nor its wasm module, and trains and evaluates', async () => {
    assert.ok(nativeAvailable(), `native kernels ${nativeStatus()}: npm install builds them (MONNA_NATIVE=off runs the suite without)`)
    assert.equal(tfjsImported(), false, 'nothing imported tfjs before the test')
    const logger = memoryLogger()
    const info = await initBackend({ backend: 'auto', deferLoading: true, logger })
    assert.equal(info.deferred, true)
    // tfjs-node is not installed in this checkout's CI (it downloads libtensorflow); where it is,
    // `auto` loads it, as before
    assert.equal(info.name, 'wasm')
    assert.deepEqual(info.fallbackKernels, [])
    assert.match(info.kernels, /^native/)
    deferred = await run(lenet())
    for (const h of deferred.halfSteps) assert.ok(h.every(Number.isFinite))
    assert.ok(deferred.accuracy >= 0 && deferred.accuracy <= 1 && Number.isFinite(deferred.loss))
    assert.ok(tfIfLoaded() === undefined, 'the learner loaded tfjs')
    assert.equal(tfjsImported(), false, 'something imported tfjs')
    assert.equal(backendReady('wasm'), false)
    assert.ok(logger.records.some((e) => e.msg === 'compute backend ready' && e.fields?.tfjs !== undefined))
  })

  it('an explicit cpu choice is deferred too; tensors asked for before tfjs is loaded are a typed error', async () => {
    const info = await initBackend({ backend: 'cpu', deferLoading: true })
    assert.deepEqual([info.name, info.deferred], ['cpu', true])
    const r = await run(lenet({ initSeed: 'cpu' }))
    assert.ok(r.halfSteps.every((h) => h.every(Number.isFinite)))
    const model = createModel({ kind: 'lenet' }, [28, 28, 1], 10)
    assert.throws(() => unflatten(model, initParams(model, 'x')), TfNotLoadedError)
    assert.equal(tfjsImported(), false)
  })

  it('a learner that needs tfjs (native kernels off) loads it and applies the deferred choice, once for concurrent learners', async () => {
    const logger = memoryLogger()
    await initBackend({ backend: 'wasm', deferLoading: true, logger })
    setNativeEnabled(false)
    try {
      const [a, b] = await Promise.all([createLearner(lenet({ initSeed: 'a' })), createLearner(lenet({ initSeed: 'b' }))])
      const tf = tfIfLoaded()
      assert.ok(tf !== undefined && tfjsImported(), 'tfjs loaded')
      assert.equal(tf.getBackend(), 'wasm')
      assert.ok(backendReady('wasm'))
      // src/compute's kernels registered for wasm (stock wasm has no Conv2DBackpropFilter)
      assert.ok(tf.getKernel('Conv2DBackpropFilter', 'wasm') !== undefined)
      assert.equal(logger.records.filter((e) => e.msg === 'TensorFlow.js loaded').length, 1)
      for (const l of [a, b]) {
        const r = await l.step(0)
        assert.ok(r.halfStep.every(Number.isFinite) && Number.isFinite(r.loss))
        l.dispose()
      }
    } finally {
      setNativeEnabled(true)
    }
  })

  it('once tfjs is loaded, the choice is applied at once and results equal the deferred run bit for bit', async () => {
    const info = await initBackend({ backend: 'wasm', deferLoading: true })
    assert.deepEqual([info.name, info.deferred, info.fallbackKernels.length > 0], ['wasm', false, true])
    const eager = await run(lenet())
    assert.ok(deferred !== undefined)
    assert.deepEqual(eager.losses, deferred.losses)
    for (let t = 0; t < 3; t++) assert.deepEqual(eager.halfSteps[t], deferred.halfSteps[t])
    assert.deepEqual([eager.accuracy, eager.loss], [deferred.accuracy, deferred.loss])
  })
})
