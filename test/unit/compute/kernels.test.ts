/**
 * The fallback kernels against tfjs's own cpu kernels: gradients of conv2d (filter and
 * input), max pooling, and transposed matMul, on random shapes (strides 1 and 2, padding
 * 'same'/'valid', channels ≠ 1, batch 1 and 25), on wasm and on cpu with our kernels. The
 * error measure is ‖ours − reference‖∞ / ‖reference‖∞ ≤ 1e-4. Also: no tensor or backend
 * buffer outlives a call.
 */
import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import { tf } from '../../../src/learning/tf.ts'
import '@tensorflow/tfjs-backend-wasm'
import { kernelThreads, nativeAvailable, nativeStatus, registerFallbackKernels, setNativeEnabled, unregisterFallbackKernels } from '../../../src/compute/index.ts'
import { MIN_SPLIT_MACS, setSplitThreshold } from '../../../src/compute/threads.ts'
import { createModel, initParams, unflatten } from '../../../src/learning/index.ts'
import { Rng } from '../../../src/rng.ts'

const TOLERANCE = 1e-4

interface ConvCase {
  batch: number
  h: number
  w: number
  inC: number
  outC: number
  fh: number
  fw: number
  stride: number
  pad: 'same' | 'valid'
}

function convCases(): ConvCase[] {
  const rng = new Rng('compute-kernels-conv')
  const cases: ConvCase[] = []
  // Few input channels (im2col path) and ≥ 8 (the wasm convolution path of the filter gradient).
  for (const [batch, minC] of [
    [1, 2],
    [25, 2],
    [1, 8],
    [25, 8],
  ] as const) {
    for (const stride of [1, 2]) {
      for (const pad of ['same', 'valid'] as const) {
        const fh = 1 + rng.int(4)
        const fw = 1 + rng.int(4)
        cases.push({
          batch,
          h: fh + rng.int(6),
          w: fw + rng.int(6),
          inC: minC + rng.int(3),
          outC: 2 + rng.int(4),
          fh,
          fw,
          stride,
          pad,
        })
      }
    }
  }
  // The LeNet shapes (ALGORITHMS §7), batch 25.
  cases.push({ batch: 25, h: 28, w: 28, inC: 1, outC: 20, fh: 5, fw: 5, stride: 1, pad: 'valid' })
  cases.push({ batch: 25, h: 12, w: 12, inC: 20, outC: 50, fh: 5, fw: 5, stride: 1, pad: 'valid' })
  return cases
}

function randomArray(rng: Rng, n: number): Float32Array {
  const a = new Float32Array(n)
  for (let i = 0; i < n; i++) a[i] = rng.normal()
  return a
}

function relError(ours: Float32Array, ref: Float32Array): number {
  assert.equal(ours.length, ref.length)
  let diff = 0
  let scale = 0
  for (let i = 0; i < ref.length; i++) {
    diff = Math.max(diff, Math.abs((ours[i] as number) - (ref[i] as number)))
    scale = Math.max(scale, Math.abs(ref[i] as number))
  }
  return diff / Math.max(scale, 1e-30)
}

const references = new Map<string, Float32Array[]>()

/** The stock cpu backend's outputs for `label` (computed once: the LeNet shapes take seconds). */
async function reference(label: string, f: () => tf.Tensor[]): Promise<Float32Array[]> {
  let r = references.get(label)
  if (r === undefined) {
    r = await runOn('cpu', false, f)
    references.set(label, r)
  }
  return r
}

/** Runs `f` on the backend and returns its outputs as arrays, checking nothing leaks. */
async function runOn(backend: 'cpu' | 'wasm', withOurs: boolean, f: () => tf.Tensor[], threads = 1, native = false): Promise<Float32Array[]> {
  if (native) assert.ok(nativeAvailable(), `native kernels ${nativeStatus()} (MONNA_NATIVE=off runs the suite without them)`)
  setNativeEnabled(native)
  await tf.setBackend(backend)
  if (withOurs) await registerFallbackKernels(backend, { threads })
  else await unregisterFallbackKernels(backend)
  const tensorsBefore = tf.memory().numTensors
  const dataIdsBefore = tf.engine().backend.numDataIds()
  const outs = f()
  const arrays = outs.map((t) => t.dataSync() as Float32Array)
  tf.dispose(outs)
  assert.equal(tf.memory().numTensors, tensorsBefore, `tensors leaked on ${backend}`)
  assert.equal(tf.engine().backend.numDataIds(), dataIdsBefore, `backend buffers leaked on ${backend}`)
  return arrays
}

/** Forward and both gradients of conv2d for case `c`, as a function of the active backend. */
function convCase(c: ConvCase): { label: string; compute: () => tf.Tensor[] } {
  const label = `conv2d b${c.batch} ${c.h}x${c.w}x${c.inC}→${c.outC} f${c.fh}x${c.fw} s${c.stride} ${c.pad}`
  const rng = new Rng(label)
  const xs = randomArray(rng, c.batch * c.h * c.w * c.inC)
  const ws = randomArray(rng, c.fh * c.fw * c.inC * c.outC)
  const compute = () =>
    tf.tidy(() => {
      const x = tf.tensor4d(xs, [c.batch, c.h, c.w, c.inC])
      const w = tf.tensor4d(ws, [c.fh, c.fw, c.inC, c.outC])
      const y = tf.conv2d(x, w, c.stride, c.pad)
      // A fixed non-uniform upstream gradient: dL/dy = weights.
      const weights = tf.tensor(randomArray(new Rng(`${label}/dy`), y.size), y.shape)
      const [dx, dw] = tf.grads((a: tf.Tensor, b: tf.Tensor) => tf.conv2d(a as tf.Tensor4D, b as tf.Tensor4D, c.stride, c.pad).mul(weights).sum())([x, w])
      return [dx!, dw!, y]
    })
  return { label, compute }
}

/** The native kernels are checked unless the suite runs with MONNA_NATIVE=off (explicit opt-out). */
const withNative = process.env.MONNA_NATIVE !== 'off'
const variants: readonly { backend: 'wasm' | 'cpu'; withOurs: boolean; native: boolean; name: string }[] = [
  { backend: 'wasm', withOurs: true, native: false, name: 'wasm' },
  { backend: 'cpu', withOurs: true, native: false, name: 'cpu' },
  ...(withNative
    ? [
        { backend: 'wasm' as const, withOurs: true, native: true, name: 'wasm+native' },
        { backend: 'cpu' as const, withOurs: true, native: true, name: 'cpu+native' },
      ]
    : []),
]

describe('compute: fallback kernels agree with the cpu backend', () => {
  before(async () => {
    await tf.setBackend('wasm')
    await tf.ready()
  })
  after(async () => {
    setNativeEnabled(true)
    await unregisterFallbackKernels('wasm')
    await unregisterFallbackKernels('cpu')
  })

  for (const c of convCases()) {
    const { label, compute } = convCase(c)
    it(`${label}: filter and input gradients`, async () => {
      const [refDx, refDw, refY] = await reference(label, compute)
      for (const v of variants) {
        const [dx, dw, y] = await runOn(v.backend, v.withOurs, compute, 1, v.native)
        assert.ok(relError(y!, refY!) <= TOLERANCE, `${v.name} forward error ${relError(y!, refY!)}`)
        assert.ok(relError(dw!, refDw!) <= TOLERANCE, `${v.name} filter gradient error ${relError(dw!, refDw!)}`)
        assert.ok(relError(dx!, refDx!) <= TOLERANCE, `${v.name} input gradient error ${relError(dx!, refDx!)}`)
      }
    })
  }

  it('wasm with 2 kernel threads (batch split over a worker): forward and both gradients agree too', async () => {
    setSplitThreshold(0)
    try {
      for (const c of convCases()) {
        if (c.batch < 2) continue
        const { label, compute } = convCase(c)
        const [refDx, refDw, refY] = await reference(label, compute)
        const [dx, dw, y] = await runOn('wasm', true, compute, 2)
        assert.ok(relError(y!, refY!) <= TOLERANCE, `${label}: forward error ${relError(y!, refY!)}`)
        assert.ok(relError(dw!, refDw!) <= TOLERANCE, `${label}: filter gradient error ${relError(dw!, refDw!)}`)
        assert.ok(relError(dx!, refDx!) <= TOLERANCE, `${label}: input gradient error ${relError(dx!, refDx!)}`)
      }
    } finally {
      setSplitThreshold(MIN_SPLIT_MACS)
      await unregisterFallbackKernels('wasm')
    }
  })

  const poolCases = [
    { batch: 1, h: 7, w: 6, ch: 3, size: 2, stride: 2, pad: 'valid' as const, relu: false },
    { batch: 25, h: 9, w: 8, ch: 4, size: 3, stride: 2, pad: 'same' as const, relu: false },
    { batch: 25, h: 8, w: 8, ch: 5, size: 2, stride: 1, pad: 'same' as const, relu: true },
    { batch: 1, h: 24, w: 24, ch: 20, size: 2, stride: 2, pad: 'valid' as const, relu: true },
  ]
  for (const c of poolCases) {
    const label = `maxPool b${c.batch} ${c.h}x${c.w}x${c.ch} k${c.size} s${c.stride} ${c.pad}${c.relu ? ' after relu (ties)' : ''}`
    it(`${label}: input gradient`, async () => {
      const rng = new Rng(label)
      const xs = randomArray(rng, c.batch * c.h * c.w * c.ch)
      const compute = () =>
        tf.tidy(() => {
          const x = tf.tensor4d(xs, [c.batch, c.h, c.w, c.ch])
          const f = (a: tf.Tensor) => {
            const y = tf.maxPool(c.relu ? tf.relu(a as tf.Tensor4D) : (a as tf.Tensor4D), c.size, c.stride, c.pad)
            return y.mul(tf.tensor(randomArray(new Rng(`${label}/dy`), y.size), y.shape)).sum()
          }
          return [tf.grad(f)(x)]
        })
      const [ref] = await reference(label, compute)
      for (const v of variants) {
        const [dx] = await runOn(v.backend, v.withOurs, compute, 1, v.native)
        assert.ok(relError(dx!, ref!) <= TOLERANCE, `${v.name} error ${relError(dx!, ref!)}`)
      }
    })
  }

  for (const [m, k, n, batch] of [
    [25, 33, 17, 1],
    [7, 5, 9, 3],
  ] as const) {
    for (const [ta, tb] of [
      [true, false],
      [false, true],
      [true, true],
    ] as const) {
      const label = `matMul ${batch}×${m}×${k}×${n} transposeA=${ta} transposeB=${tb}`
      it(label, async () => {
        const rng = new Rng(label)
        const as = randomArray(rng, batch * m * k)
        const bs = randomArray(rng, batch * k * n)
        const compute = () =>
          tf.tidy(() => {
            const a = tf.tensor3d(as, ta ? [batch, k, m] : [batch, m, k])
            const b = tf.tensor3d(bs, tb ? [batch, n, k] : [batch, k, n])
            return [tf.matMul(a, b, ta, tb)]
          })
        const [ref] = await reference(label, compute)
        for (const v of variants) {
          const [ours] = await runOn(v.backend, v.withOurs, compute, 1, v.native)
          assert.ok(relError(ours!, ref!) <= TOLERANCE, `${v.name} error ${relError(ours!, ref!)}`)
        }
      })
    }
  }

  it('the LeNet of ALGORITHMS §7 (learning core model, batch 3): every parameter gradient agrees', async () => {
    const model = createModel({ kind: 'lenet' }, [28, 28, 1], 10)
    const theta = initParams(model, 'compute-lenet')
    const rng = new Rng('compute-lenet-data')
    const xs = randomArray(rng, 3 * 784)
    const labels = new Int32Array([3, 7, 1])
    const compute = () =>
      tf.tidy(() => {
        const params = unflatten(model, theta)
        const x = tf.tensor4d(xs, [3, 28, 28, 1])
        const y = tf.oneHot(tf.tensor1d(labels, 'int32'), 10)
        const { grads } = tf.valueAndGrads((...p: tf.Tensor[]) => tf.losses.softmaxCrossEntropy(y, model.forward(p, x)) as tf.Scalar)(params)
        return grads
      })
    const ref = await reference('lenet', compute)
    for (const v of variants) {
      const ours = await runOn(v.backend, v.withOurs, compute, 1, v.native)
      model.slots.forEach((slot, i) => {
        const e = relError(ours[i]!, ref[i]!)
        assert.ok(e <= TOLERANCE, `${v.name} ${slot.name} gradient error ${e}`)
      })
    }
  })

  it('registration is idempotent, reports the kernels, and can be undone', async () => {
    await tf.setBackend('wasm')
    const names = await registerFallbackKernels('wasm')
    assert.deepEqual(await registerFallbackKernels('wasm'), names)
    assert.ok(names.includes('Conv2DBackpropFilter'))
    assert.ok(tf.getKernel('Conv2DBackpropFilter', 'wasm') !== undefined)
    await unregisterFallbackKernels('wasm')
    assert.equal(tf.getKernel('Conv2DBackpropFilter', 'wasm'), undefined)
    assert.ok(tf.getKernel('BatchMatMul', 'wasm') !== undefined, 'the stock BatchMatMul is put back')
    assert.deepEqual(await registerFallbackKernels('webgl'), [])
  })

  it('validates the threads option', async () => {
    for (const threads of [0, 1.5, -2, Number.NaN]) {
      await assert.rejects(registerFallbackKernels('wasm', { threads }), { name: 'InvalidConfigError' })
    }
    assert.ok((await registerFallbackKernels('wasm', { threads: undefined })).length > 0)
    assert.equal(kernelThreads(), 1)
  })

  it('rejects NCHW with a named error', async () => {
    await tf.setBackend('wasm')
    await registerFallbackKernels('wasm')
    const attrs = { strides: 1, pad: 'valid', dataFormat: 'NCHW', filterShape: [1, 1, 1, 1] }
    assert.throws(
      () => tf.tidy(() => tf.engine().runKernel('Conv2DBackpropFilter', { x: tf.zeros([1, 1, 2, 2]), dy: tf.zeros([1, 1, 2, 2]) }, attrs as never)),
      { name: 'UnsupportedKernelInputError' },
    )
  })
})
