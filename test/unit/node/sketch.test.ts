import assert from 'node:assert/strict'
import { it } from 'node:test'
import { sketchOf, spreadFrom } from '../../../src/node/engine.ts'
import { Rng } from '../../../src/rng.ts'

// The definition: sign bit k = i·dims + j of the seeded stream (LSB first), +θᵢ for 1, −θᵢ for 0.
function reference(theta: Float32Array, seed: string, dims: number): number[] {
  const rng = new Rng(`${seed}/sketch`)
  const out = new Float64Array(dims)
  let bits = 0
  let left = 0
  for (let i = 0; i < theta.length; i++) {
    for (let j = 0; j < dims; j++) {
      if (left === 0) {
        bits = rng.nextUint32()
        left = 32
      }
      out[j]! += bits & 1 ? theta[i]! : -theta[i]!
      bits >>>= 1
      left--
    }
  }
  const scale = 1 / Math.sqrt(dims)
  return Array.from(out, (x) => x * scale)
}

it('sketchOf equals the seeded ±1 projection bit for bit and preserves distances roughly', () => {
  const rng = new Rng(3)
  for (const [d, dims] of [[7, 64], [1001, 10], [5000, 64]] as const) {
    const a = Float32Array.from({ length: d }, () => rng.normal())
    assert.deepEqual(sketchOf(a, 'sw', dims), reference(a, 'sw', dims))
    assert.deepEqual(sketchOf(a, 'sw', dims), sketchOf(a, 'sw', dims), 'cached signs give the same result')
    assert.notDeepEqual(sketchOf(a, 'other', dims), sketchOf(a, 'sw', dims))
  }
  const a = Float32Array.from({ length: 20_000 }, () => rng.normal())
  const b = Float32Array.from({ length: 20_000 }, () => rng.normal())
  const dist = (x: ArrayLike<number>, y: ArrayLike<number>) => Math.sqrt(Array.from(x, (v, i) => (v - y[i]!) ** 2).reduce((s, v) => s + v, 0))
  const ratio = dist(sketchOf(a, 's'), sketchOf(b, 's')) / dist(a, b)
  assert.ok(ratio > 0.6 && ratio < 1.4, `JL distance ratio ${ratio}`)
})

it('spreadFrom: the largest L2 distance from the own model to another input, none without another', () => {
  const own = new Float32Array([0, 0, 0])
  assert.equal(spreadFrom(own, [own]), undefined)
  assert.equal(spreadFrom(own, [own, new Float32Array([3, 4, 0]), new Float32Array([1, 0, 0])]), 5)
  // an input of another dimension is not a model of this swarm: skipped
  assert.equal(spreadFrom(own, [own, new Float32Array([100, 0])]), undefined)
})
