import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { Rng } from '../../src/rng.ts'

describe('Rng', () => {
  it('is deterministic for a seed and differs across seeds', () => {
    const a = new Rng(42)
    const b = new Rng(42)
    const c = new Rng(43)
    const xa = Array.from({ length: 5 }, () => a.nextUint32())
    const xb = Array.from({ length: 5 }, () => b.nextUint32())
    const xc = Array.from({ length: 5 }, () => c.nextUint32())
    assert.deepEqual(xa, xb)
    assert.notDeepEqual(xa, xc)
  })

  it('restores its state', () => {
    const a = new Rng('swarm')
    a.next()
    const state = a.getState()
    const first = [a.next(), a.next()]
    a.setState(state)
    assert.deepEqual([a.next(), a.next()], first)
  })

  it('draws normals with mean 0 and variance 1', () => {
    const r = new Rng(7)
    let sum = 0
    let sq = 0
    const n = 50_000
    for (let i = 0; i < n; i++) {
      const v = r.normal()
      sum += v
      sq += v * v
    }
    assert.ok(Math.abs(sum / n) < 0.02)
    assert.ok(Math.abs(sq / n - 1) < 0.03)
  })

  it('draws gammas with mean equal to the shape', () => {
    const r = new Rng(9)
    for (const shape of [0.3, 1, 5]) {
      let sum = 0
      const n = 40_000
      for (let i = 0; i < n; i++) sum += r.gamma(shape)
      assert.ok(Math.abs(sum / n - shape) < 0.05 * Math.max(1, shape), `shape ${shape}: mean ${sum / n}`)
    }
  })
})
