/** The native momentum step gives the learner's JS step bit for bit (θ, momentum and ‖g‖²), on the AVX2 and the portable paths. */
import assert from 'node:assert/strict'
import { it } from 'node:test'
import { nativeKernels, nativeStatus } from '../../../src/compute/native.ts'
import { momentumStep } from '../../../src/learning/learner.ts'
import { Rng } from '../../../src/rng.ts'

it('native momentumStep = the JS loop, bit for bit (odd length, extreme and tiny values)', { skip: process.env.MONNA_NATIVE === 'off' ? 'MONNA_NATIVE=off' : false }, () => {
  const N = nativeKernels()
  assert.equal(typeof N?.momentumStep, 'function', nativeStatus())
  const rng = new Rng('momentum')
  const n = 431_081
  const g = Float32Array.from({ length: n }, (_, i) => (i % 97 === 0 ? 1e30 : i % 89 === 0 ? 1e-40 : rng.normal()))
  const m0 = Float32Array.from({ length: n }, () => 0.1 * rng.normal())
  const t0 = Float32Array.from({ length: n }, () => rng.normal())
  for (const portable of [false, true]) {
    for (const [beta, gamma] of [
      [0.99, 0.75],
      [0.9, 0.0123],
      [0, 1],
    ] as const) {
      const [mj, tj, mn, tn] = [m0.slice(), t0.slice(), m0.slice(), t0.slice()]
      const sqJs = momentumStep(g, mj, tj, beta, gamma)
      N!.setPortable(portable)
      const sqNative = N!.momentumStep(g, mn, tn, beta, gamma)
      N!.setPortable(false)
      assert.ok(Object.is(sqNative, sqJs), `‖g‖²: ${sqNative} vs ${sqJs}`)
      for (let i = 0; i < n; i++) {
        if (!Object.is(mn[i], mj[i]) || !Object.is(tn[i], tj[i])) assert.fail(`portable ${portable}, β ${beta}: coordinate ${i}: m ${mn[i]} vs ${mj[i]}, θ ${tn[i]} vs ${tj[i]}`)
      }
    }
  }
  assert.throws(() => N!.momentumStep(g, new Float32Array(3), t0, 0.9, 0.1), /different lengths/)
})
