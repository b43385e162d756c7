import assert from 'node:assert/strict'
import { before, describe, it } from 'node:test'
import { InvalidConfigError } from '../../../src/errors.ts'
import type { ModelSpec } from '../../../src/learning/index.ts'
import { createModel, flatten, initBackend, initParams, paramCount, unflatten } from '../../../src/learning/index.ts'
import { tf } from '../../../src/learning/tf.ts'

function bytesOf(a: Float32Array): Buffer {
  return Buffer.from(a.buffer, a.byteOffset, a.byteLength)
}

describe('models', () => {
  before(async () => {
    await initBackend({ backend: 'cpu' })
  })

  it('has the documented parameter counts (LeNet of ALGORITHMS §7: 431 080)', () => {
    assert.equal(paramCount({ kind: 'lenet' }, [28, 28, 1], 10), 520 + 25050 + 400500 + 5010)
    assert.equal(paramCount({ kind: 'lenet' }, [28, 28, 1], 10), 431080)
    assert.equal(paramCount({ kind: 'logreg' }, [28, 28, 1], 10), 784 * 10 + 10)
    assert.equal(paramCount({ kind: 'mlp', hidden: [200, 100] }, [784], 10), 784 * 200 + 200 + 200 * 100 + 100 + 100 * 10 + 10)
  })

  it('documents the flat order: per layer kernel then bias, offsets contiguous', () => {
    const m = createModel({ kind: 'lenet' }, [28, 28, 1], 10)
    assert.deepEqual(
      m.slots.map((s) => [s.name, s.shape, s.offset]),
      [
        ['conv1/kernel', [5, 5, 1, 20], 0],
        ['conv1/bias', [20], 500],
        ['conv2/kernel', [5, 5, 20, 50], 520],
        ['conv2/bias', [50], 25520],
        ['dense1/kernel', [800, 500], 25570],
        ['dense1/bias', [500], 425570],
        ['dense2/kernel', [500, 10], 426070],
        ['dense2/bias', [10], 431070],
      ],
    )
  })

  for (const spec of [{ kind: 'logreg' }, { kind: 'mlp', hidden: [32, 16] }, { kind: 'lenet' }] as ModelSpec[]) {
    it(`${spec.kind}: flatten(unflatten(θ)) is bit-exact, including odd values`, () => {
      const m = createModel(spec, [28, 28, 1], 10)
      const theta = initParams(m, 'round-trip')
      // Values a float conversion could alter: -0, a subnormal, the largest float, NaN.
      theta[0] = -0
      theta[1] = 1.4e-45
      theta[2] = 3.4028234663852886e38
      theta[theta.length - 1] = Number.NaN
      const before = tf.memory().numTensors
      const params = unflatten(m, theta)
      params.forEach((p, i) => {
        assert.deepEqual(p.shape, m.slots[i]!.shape)
      })
      const back = flatten(m, params)
      tf.dispose(params)
      assert.equal(tf.memory().numTensors, before)
      assert.ok(bytesOf(back).equals(bytesOf(theta)), 'round trip changed a value')
      // The kernel of the first layer is tfjs's row-major layout of the first slot.
      const t = unflatten(m, theta)
      assert.ok(bytesOf(t[0]!.dataSync() as Float32Array).equals(bytesOf(theta.subarray(0, m.slots[0]!.size))))
      tf.dispose(t)
    })
  }

  it('the round trip is bit-exact on the wasm backend too', async () => {
    await initBackend({ backend: 'wasm' })
    try {
      const m = createModel({ kind: 'lenet' }, [28, 28, 1], 10)
      const theta = initParams(m, 'wasm')
      theta[1] = 1.4e-45
      const params = unflatten(m, theta)
      const back = flatten(m, params)
      tf.dispose(params)
      assert.ok(bytesOf(back).equals(bytesOf(theta)))
    } finally {
      await initBackend({ backend: 'cpu' })
    }
  })

  it('θ0 is bit-identical for identical seeds and different for different seeds', () => {
    const m = createModel({ kind: 'lenet' }, [28, 28, 1], 10)
    const a = initParams(m, 'swarm-1')
    const b = initParams(createModel({ kind: 'lenet' }, [28, 28, 1], 10), 'swarm-1')
    const c = initParams(m, 'swarm-2')
    assert.ok(bytesOf(a).equals(bytesOf(b)))
    assert.ok(!bytesOf(a).equals(bytesOf(c)))
    assert.ok(!bytesOf(initParams(m, 1)).equals(bytesOf(initParams(m, 2))))
  })

  it('θ0 is Glorot-uniform kernels and zero biases', () => {
    const m = createModel({ kind: 'mlp', hidden: [64] }, [100], 10)
    const theta = initParams(m, 7)
    for (const s of m.slots) {
      const v = theta.subarray(s.offset, s.offset + s.size)
      if (s.fans === undefined) {
        assert.ok(v.every((x) => x === 0), `${s.name} not zero`)
      } else {
        const limit = Math.sqrt(6 / (s.fans.fanIn + s.fans.fanOut))
        assert.ok(v.every((x) => Math.abs(x) <= limit))
        const variance = v.reduce((a, x) => a + x * x, 0) / v.length
        assert.ok(Math.abs(variance - (limit * limit) / 3) < 0.1 * ((limit * limit) / 3), `${s.name} variance ${variance}`)
      }
    }
  })

  it('forward gives logits [b, K] for every model', () => {
    for (const spec of [{ kind: 'logreg' }, { kind: 'mlp', hidden: [8] }, { kind: 'lenet' }] as ModelSpec[]) {
      const m = createModel(spec, [28, 28, 1], 10)
      const out = tf.tidy(() => m.forward(unflatten(m, initParams(m, 1)), tf.zeros([3, 28, 28, 1])).shape)
      assert.deepEqual(out, [3, 10])
    }
  })

  it('rejects invalid model arguments with InvalidConfigError', () => {
    assert.throws(() => createModel({ kind: 'lenet' }, [784], 10), InvalidConfigError)
    assert.throws(() => createModel({ kind: 'mlp', hidden: [0] }, [784], 10), InvalidConfigError)
    assert.throws(() => createModel({ kind: 'logreg' }, [784], 1), InvalidConfigError)
    const m = createModel({ kind: 'logreg' }, [4], 2)
    assert.throws(() => unflatten(m, new Float32Array(3)), InvalidConfigError)
  })
})
