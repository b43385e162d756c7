/**
 * The WebAssembly SIMD kernels against the plain-JS kernels: same answers (to Float32
 * rounding) for every rule on inputs spanning several blocks with a ragged tail, the
 * sorting network sorts, and non-finite values in a late block are still caught.
 */
import assert from 'node:assert/strict'
import { after, describe, it } from 'node:test'
import { aggregationRules, createAggregator, NonFiniteInputError } from '../../../src/aggregation/index.ts'
import { BLOCK } from '../../../src/aggregation/kernels.ts'
import { setSimdEnabled, simdKernels, sortingNetwork } from '../../../src/aggregation/simd.ts'
import { setNativeEnabled } from '../../../src/compute/native.ts'
import { Rng } from '../../../src/rng.ts'
import { attackedInputs } from '../../support/attacked-inputs.ts'

const D = 2 * BLOCK + 7 // three blocks, the last one not a multiple of 4

const inputsFor = (seed: string, k: number, f: number): Float32Array[] => attackedInputs(seed, k, f, D)

/** The rule with the wasm SIMD kernels (native kernels off), or with neither (plain JS). */
function run(rule: string, inputs: Float32Array[], f: number, simd: boolean): Float32Array {
  setSimdEnabled(simd)
  setNativeEnabled(false)
  try {
    return createAggregator(rule.endsWith('cc') ? { rule, f, tau: 1 } : { rule, f }).aggregate(inputs, { own: 0, reference: inputs[1] })
  } finally {
    setSimdEnabled(true)
    setNativeEnabled(true)
  }
}

describe('SIMD kernels', () => {
  after(() => setSimdEnabled(true))

  it('are available on this runtime (Node 24 has WebAssembly SIMD)', () => {
    assert.notEqual(simdKernels(), null)
  })

  for (const [k, f] of [
    [13, 3],
    [26, 5],
  ] as const) {
    it(`give the JS kernels' answers for every rule (k = ${k}, f = ${f}, d = ${D})`, () => {
      const inputs = inputsFor(`simd/${k}`, k, f)
      for (const rule of aggregationRules) {
        if (rule.endsWith('mda') && k > 13) continue
        const fast = run(rule, inputs, f, true)
        const slow = run(rule, inputs, f, false)
        let worst = 0
        let differ = 0
        for (let c = 0; c < D; c++) {
          const rel = Math.abs(fast[c] - slow[c]) / Math.max(1, Math.abs(slow[c]))
          worst = Math.max(worst, rel)
          if (rel >= 2e-5) differ++
        }
        if (rule === 'nnm+meamed') {
          // meamed jumps at near-ties between a low and a high value; the NNM rows of the two
          // paths differ by Float32 rounding, so a few coordinates may pick the other window
          assert.ok(differ <= D / 100 && worst < 1e-2, `${rule}: ${differ} coordinates differ, worst ${worst}`)
        } else assert.ok(worst < 2e-5, `${rule}: max relative difference ${worst}`)
      }
    })
  }

  it('the sorting network sorts every 0/1 input up to k = 14 and random inputs up to k = 128', () => {
    const apply = (pairs: [number, number][], a: number[]) => {
      for (const [i, j] of pairs) {
        if (a[i] > a[j]) {
          const t = a[i]
          a[i] = a[j]
          a[j] = t
        }
      }
      return a
    }
    for (let k = 1; k <= 14; k++) {
      const pairs = sortingNetwork(k)
      for (let mask = 0; mask < 1 << k; mask++) {
        const a = apply(
          pairs,
          Array.from({ length: k }, (_, i) => (mask >> i) & 1),
        )
        for (let i = 1; i < k; i++) assert.ok(a[i - 1] <= a[i], `k = ${k}, mask = ${mask}`)
      }
    }
    const rng = new Rng('network')
    for (const k of [15, 21, 26, 33, 50, 64, 100, 128]) {
      const pairs = sortingNetwork(k)
      for (let r = 0; r < 50; r++) {
        const a = apply(
          pairs,
          Array.from({ length: k }, () => rng.int(10)),
        )
        for (let i = 1; i < k; i++) assert.ok(a[i - 1] <= a[i], `k = ${k}`)
      }
    }
  })

  it('catch a non-finite value in the last block (cwtm would otherwise trim an ∞ away)', () => {
    const inputs = inputsFor('simd/nan', 13, 3)
    inputs[5][D - 2] = Number.POSITIVE_INFINITY
    for (const rule of ['cwtm', 'cwmed', 'nnm+cwtm', 'nna', 'krum']) {
      assert.throws(
        () => run(rule, inputs, 3, true),
        (e: unknown) => e instanceof NonFiniteInputError && e.input === 5 && e.coordinate === D - 2,
        rule,
      )
    }
  })

  it('fall back to Float64 when a Float32 square overflows (inputs of size 1e30)', () => {
    const inputs = inputsFor('simd/huge', 13, 3)
    inputs[12] = new Float32Array(D).fill(1e30)
    for (const rule of ['nna', 'krum', 'nnm+cwtm', 'ce']) {
      const fast = run(rule, inputs, 3, true)
      const slow = run(rule, inputs, 3, false)
      for (let c = 0; c < D; c++) assert.ok(Math.abs(fast[c] - slow[c]) <= 2e-5 * Math.max(1, Math.abs(slow[c])), `${rule} at ${c}`)
    }
  })
})
