/**
 * The native whole-model gradient (`modelGradient`, native/kernels.cc) against the tfjs graph of
 * models.ts on tfjs's cpu backend with src/compute's JS kernels (native kernels off; those
 * kernels are checked against tfjs's stock ones in test/unit/compute/kernels.test.ts — the stock
 * cpu LeNet gradient alone takes ~10 s): loss and gradient of the
 * mean softmax cross-entropy for LeNet (the §7 shapes, batch 25, and an odd input), an MLP and
 * logreg, on the AVX2 and the portable micro-kernels and with 2 GEMM threads; a learner with the
 * native kernels takes the same steps as one without; bad calls throw, never crash. The error
 * measure is ‖native − tfjs‖∞ / ‖tfjs‖∞ per parameter tensor ≤ 1e-4 (as kernels.test.ts).
 */
import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import '@tensorflow/tfjs-backend-wasm'
import { nativeAvailable, nativeKernels, nativeStatus, registerFallbackKernels, setNativeEnabled, unregisterFallbackKernels } from '../../../src/compute/index.ts'
import type { Dataset, Model, ModelSpec } from '../../../src/learning/index.ts'
import { createLearner, createModel, flatten, initParams, unflatten } from '../../../src/learning/index.ts'
import { nativeLayerSpec } from '../../../src/learning/models.ts'
import { tf } from '../../../src/learning/tf.ts'
import { Rng } from '../../../src/rng.ts'

const off = process.env.MONNA_NATIVE === 'off'
const TOLERANCE = 1e-4

interface Case {
  spec: ModelSpec
  shape: number[]
  batch: number
  classes: number
}

const cases: Case[] = [
  { spec: { kind: 'lenet' }, shape: [28, 28, 1], batch: 25, classes: 10 },
  { spec: { kind: 'lenet' }, shape: [19, 17, 3], batch: 3, classes: 7 },
  { spec: { kind: 'mlp', hidden: [128] }, shape: [784], batch: 25, classes: 10 },
  { spec: { kind: 'mlp', hidden: [33, 17] }, shape: [6, 5], batch: 1, classes: 4 },
  { spec: { kind: 'logreg' }, shape: [13], batch: 9, classes: 3 },
]

/** θ₀ with the zero biases replaced by random values (so the bias paths are exercised), a batch. */
function problem(c: Case, seed: string): { model: Model; theta: Float32Array; x: Float32Array; y: Int32Array } {
  const model = createModel(c.spec, c.shape, c.classes)
  const theta = initParams(model, seed)
  const rng = new Rng(seed)
  for (let i = 0; i < theta.length; i++) if (theta[i] === 0) theta[i] = 0.1 * rng.normal()
  const per = c.shape.reduce((a, b) => a * b, 1)
  const x = Float32Array.from({ length: c.batch * per }, () => rng.next())
  const y = Int32Array.from({ length: c.batch }, () => rng.int(c.classes))
  return { model, theta, x, y }
}

/** `m` random MNIST-shaped examples (LeNet's §7 input, 10 classes). */
function syntheticMnist(rng: Rng, m: number): Dataset {
  return {
    name: 'synthetic',
    x: Float32Array.from({ length: m * 784 }, () => rng.next()),
    y: Int32Array.from({ length: m }, () => rng.int(10)),
    n: m,
    exampleShape: cases[0]!.shape,
    numClasses: 10,
  }
}

/** A LeNet learner on `train` (batch 25, β 0.9, γ 0.05), the native kernels on or off while it runs `use`. */
async function withLenetLearner<T>(train: Dataset, native: boolean, use: (learner: Awaited<ReturnType<typeof createLearner>>) => Promise<T>): Promise<T> {
  setNativeEnabled(native)
  try {
    const learner = await createLearner({ model: cases[0]!.spec, inputShape: cases[0]!.shape, numClasses: 10, train, batchSize: 25, beta: 0.9, lambda: 0, schedule: { kind: 'constant', lr: 0.05 }, initSeed: 'init', dataSeed: 'data' })
    return await use(learner)
  } finally {
    setNativeEnabled(true)
  }
}

/** The id the next tfjs tensor gets: ids count every tensor tfjs ever made. */
const nextTensorId = (): number => tf.tidy(() => tf.scalar(0).id)

/** Loss and flat gradient by tfjs's graph on the current backend, native kernels off. */
function tfjsGradient(c: Case, model: Model, theta: Float32Array, x: Float32Array, y: Int32Array): { loss: number; grad: Float32Array } {
  setNativeEnabled(false)
  try {
    return tfjsGraph(c, model, theta, x, y)
  } finally {
    setNativeEnabled(true)
  }
}

function tfjsGraph(c: Case, model: Model, theta: Float32Array, x: Float32Array, y: Int32Array): { loss: number; grad: Float32Array } {
  return tf.tidy(() => {
    const params = unflatten(model, theta)
    const xt = tf.tensor(x, [c.batch, ...c.shape])
    const yt = tf.oneHot(tf.tensor1d(y, 'int32'), c.classes)
    const f = (...p: tf.Tensor[]): tf.Scalar => tf.losses.softmaxCrossEntropy(yt, model.forward(p, xt)) as tf.Scalar
    const { value, grads } = tf.valueAndGrads(f)(params)
    return { loss: value.dataSync()[0]!, grad: flatten(model, grads) }
  })
}

function worstRelError(model: Model, ours: Float32Array, ref: Float32Array): { worst: number; slot: string } {
  let worst = 0
  let slot = ''
  for (const s of model.slots) {
    let diff = 0
    let scale = 0
    for (let i = s.offset; i < s.offset + s.size; i++) {
      diff = Math.max(diff, Math.abs(ours[i]! - ref[i]!))
      scale = Math.max(scale, Math.abs(ref[i]!))
    }
    const rel = diff / Math.max(scale, 1e-30)
    if (!(rel <= worst)) {
      worst = rel
      slot = s.name
    }
  }
  return { worst, slot }
}

describe('native modelGradient', { skip: off ? 'MONNA_NATIVE=off' : false }, () => {
  before(async () => {
    assert.ok(nativeAvailable(), `native kernels ${nativeStatus()}: npm install builds them (MONNA_NATIVE=off runs the suite without)`)
    await tf.setBackend('cpu')
    await registerFallbackKernels('cpu')
  })
  after(async () => {
    await unregisterFallbackKernels('cpu')
    await unregisterFallbackKernels('wasm')
    await tf.setBackend('cpu')
    setNativeEnabled(true)
    nativeKernels()?.setPortable(false)
    nativeKernels()?.setThreads(1)
  })

  for (const c of cases) {
    it(`${c.spec.kind} ${c.shape.join('×')} batch ${c.batch}: loss and gradient = tfjs's (AVX2, portable, 2 threads)`, () => {
      const N = nativeKernels()!
      const { model, theta, x, y } = problem(c, `native-model/${c.spec.kind}/${c.shape.join('x')}`)
      const ref = tfjsGradient(c, model, theta, x, y)
      for (const [portable, threads] of [
        [false, 1],
        [true, 1],
        [false, 2],
      ] as const) {
        N.setPortable(portable)
        N.setThreads(threads)
        const grad = new Float32Array(model.dim).fill(Number.NaN) // every coordinate must be written
        const loss = N.modelGradient(nativeLayerSpec(model)!, theta, x, y, grad)
        N.setPortable(false)
        N.setThreads(1)
        const what = `portable ${portable}, ${threads} threads`
        assert.ok(Math.abs(loss - ref.loss) <= 1e-5 * Math.max(1, Math.abs(ref.loss)), `${what}: loss ${loss} vs ${ref.loss}`)
        const { worst, slot } = worstRelError(model, grad, ref.grad)
        assert.ok(worst <= TOLERANCE, `${what}: ${slot} off by ${worst}`)
      }
    })
  }

  it('a LeNet learner with the native kernels takes the steps of one on wasm without them (5 steps, β 0.9)', async () => {
    const c = cases[0]!
    await tf.setBackend('wasm')
    await registerFallbackKernels('wasm')
    const train = syntheticMnist(new Rng('native-model/learner'), 60)
    const run = (native: boolean): Promise<{ theta: Float32Array; losses: number[] }> =>
      withLenetLearner(train, native, async (learner) => {
        const losses: number[] = []
        for (let t = 0; t < 5; t++) losses.push((await learner.step(t)).loss)
        return { theta: learner.getParams(), losses }
      })
    // tensor ids count every tensor tfjs ever made: the native learner makes none
    const id0 = nextTensorId()
    const a = await run(true)
    assert.equal(nextTensorId(), id0 + 1, 'the native learner made tensors: it ran the tfjs graph')
    const b = await run(false)
    for (let t = 0; t < 5; t++) assert.ok(Math.abs(a.losses[t]! - b.losses[t]!) <= 1e-4, `step ${t}: loss ${a.losses[t]} vs ${b.losses[t]}`)
    let diff = 0
    let moved = 0
    const theta0 = initParams(createModel(c.spec, c.shape, 10), 'init')
    for (let i = 0; i < a.theta.length; i++) {
      diff = Math.max(diff, Math.abs(a.theta[i]! - b.theta[i]!))
      moved = Math.max(moved, Math.abs(b.theta[i]! - theta0[i]!))
    }
    assert.ok(moved > 1e-3, `θ moved by ${moved}`)
    assert.ok(diff <= 1e-4 * moved, `θ after 5 steps differs by ${diff} (moved ${moved})`)
  })

  for (const c of cases) {
    it(`${c.spec.kind} ${c.shape.join('×')} batch ${c.batch}: modelEvaluate's summed loss and hits = tfjs's forward`, () => {
      const N = nativeKernels()!
      const { model, theta, x, y } = problem(c, `native-eval/${c.spec.kind}/${c.shape.join('x')}`)
      // tfjs's forward with the native kernels off; half the labels made right by its own
      // prediction, so both outcomes are counted
      setNativeEnabled(false)
      let logits: Float32Array
      try {
        logits = tf.tidy(() => model.forward(unflatten(model, theta), tf.tensor(x, [c.batch, ...c.shape])).dataSync() as Float32Array)
      } finally {
        setNativeEnabled(true)
      }
      const labels = y.slice()
      for (let b = 0; b < c.batch; b += 2) {
        let best = 0
        for (let k = 1; k < c.classes; k++) if (logits[b * c.classes + k]! > logits[b * c.classes + best]!) best = k
        labels[b] = best
      }
      const ref = tf.tidy(() => {
        const lg = tf.tensor(logits, [c.batch, c.classes])
        const yt = tf.tensor1d(labels, 'int32')
        const loss = tf.losses.softmaxCrossEntropy(tf.oneHot(yt, c.classes), lg, undefined, undefined, tf.Reduction.SUM).dataSync()[0]!
        const hits = tf.sum(tf.cast(tf.equal(tf.argMax(lg, 1), yt), 'int32')).dataSync()[0]!
        return { loss, hits }
      })
      for (const threads of [1, 2]) {
        N.setThreads(threads)
        const [loss, hits] = N.modelEvaluate(nativeLayerSpec(model)!, theta, x, labels)
        N.setThreads(1)
        assert.equal(hits, ref.hits, `${threads} threads: hits`)
        assert.ok(hits >= Math.ceil(c.batch / 2), `hits ${hits}`)
        assert.ok(Math.abs(loss - ref.loss) <= 1e-5 * Math.max(1, Math.abs(ref.loss)), `${threads} threads: loss ${loss} vs ${ref.loss}`)
        // the same forward as the gradient's: its mean loss times the batch
        const mean = N.modelGradient(nativeLayerSpec(model)!, theta, x, labels, new Float32Array(model.dim))
        assert.ok(Math.abs(loss - mean * c.batch) <= 1e-9 * Math.max(1, Math.abs(loss)), `loss ${loss} vs ${mean} × ${c.batch}`)
      }
    })
  }

  it('a LeNet learner evaluates with the native forward as it does on tfjs (250 examples; accuracy and loss)', async () => {
    await tf.setBackend('wasm')
    await registerFallbackKernels('wasm')
    const rng = new Rng('native-eval/learner')
    const train = syntheticMnist(rng, 60)
    const test = syntheticMnist(rng, 250)
    const evaluate = (native: boolean) =>
      withLenetLearner(train, native, async (learner) => {
        for (let t = 0; t < 3; t++) await learner.step(t)
        return learner.evaluate(test)
      })
    const id0 = nextTensorId()
    const a = await evaluate(true)
    assert.equal(nextTensorId(), id0 + 1, 'the native evaluation made tensors: it ran tfjs')
    const b = await evaluate(false)
    assert.equal(a.accuracy, b.accuracy)
    assert.ok(a.accuracy > 0 && a.accuracy < 1, `accuracy ${a.accuracy}`)
    assert.ok(Math.abs(a.loss - b.loss) <= 1e-5 * b.loss, `loss ${a.loss} vs ${b.loss}`)
  })

  it('rejects bad specs, lengths and labels with a thrown error (no crash)', () => {
    const N = nativeKernels()!
    const { model, theta, x, y } = problem(cases[4]!, 'native-model/bad')
    const spec = nativeLayerSpec(model)!
    const grad = new Float32Array(model.dim)
    const call = (s: Int32Array, t: Float32Array, xs: Float32Array, ys: Int32Array, g: Float32Array) => () => N.modelGradient(s, t, xs, ys, g)
    assert.throws(call(spec.subarray(0, 4), theta, x, y, grad), /header/)
    assert.throws(call(Int32Array.from([...spec.subarray(0, 5), 9, 1, 0, 0, ...spec.subarray(9)]), theta, x, y, grad), /model spec/)
    const badClasses = spec.slice()
    badClasses[3] = 4
    assert.throws(call(badClasses, theta, x, y, grad), /last layer/)
    const huge = Int32Array.from([1, 1, 1 << 20, 3, 2, 2, 0, 0, 0, 3, 1 << 20, 0, 1])
    assert.throws(call(huge, theta, x, y, grad), /model spec/)
    assert.throws(call(spec, theta.subarray(1), x, y, grad), /parameters/)
    assert.throws(call(spec, theta, x, y, grad.subarray(1)), /parameters/)
    assert.throws(call(spec, theta, x.subarray(1), y, grad), /one example/)
    assert.throws(call(spec, theta, x, new Int32Array(0), grad), /labels/)
    const badLabel = y.slice()
    badLabel[2] = 3
    assert.throws(call(spec, theta, x, badLabel, grad), /label out of range/)
    assert.throws(call(spec, theta, x, Float32Array.from(y) as unknown as Int32Array, grad), /Int32Array/)
    assert.throws(() => (N.modelGradient as unknown as (...a: unknown[]) => number)(spec, theta), /arguments/)
    // modelEvaluate checks the same arguments
    assert.throws(() => N.modelEvaluate(spec, theta.subarray(1), x, y), /modelEvaluate: theta/)
    assert.throws(() => N.modelEvaluate(spec, theta, x.subarray(1), y), /one example/)
    assert.throws(() => N.modelEvaluate(spec, theta, x, badLabel), /label out of range/)
    assert.throws(() => N.modelEvaluate(spec.subarray(0, 4), theta, x, y), /header/)
    // a valid call still works afterwards
    assert.ok(Number.isFinite(N.modelGradient(spec, theta, x, y, grad)))
  })
})
