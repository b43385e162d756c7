/**
 * nnm+krum, nnm+multikrum, nnm+mda and nnm+nna take the NNM vectors' distances from the
 * inputs' distance matrix (nnmDistances) and average the inputs with weights: same choices and
 * outputs as the rule applied to the materialised NNM vectors (nnmVectors).
 */
import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { createAggregator, pairwiseSquaredDistances } from '../../../src/aggregation/index.ts'
import { neighbourhoods, nnmDistances, nnmVectors } from '../../../src/aggregation/rules.ts'
import { attackedInputs } from '../../support/attacked-inputs.ts'

const D = 3001

const inputsFor = (seed: string, k: number, f: number): Float32Array[] => attackedInputs(seed, k, f, D)

describe('nnm+ rules on distances', () => {
  for (const [k, f] of [
    [7, 2],
    [13, 3],
    [26, 5],
  ] as const) {
    it(`the NNM vectors' distances from the inputs' (k = ${k}, f = ${f}): to 1e-9 of those of the vectors`, () => {
      const inputs = inputsFor(`nnm-distances/${k}`, k, f)
      const Dx = pairwiseSquaredDistances(inputs)
      const nb = neighbourhoods(Dx, k, f)
      const derived = nnmDistances(Dx, k, f, nb)
      const exact = pairwiseSquaredDistances(nnmVectors('nnm+krum', inputs, f, { distances: Dx }))
      for (let i = 0; i < k * k; i++) {
        if (exact[i] === 0) assert.equal(derived[i], 0)
        // the materialised vectors are rounded to Float32: their distances carry that rounding
        else assert.ok(Math.abs(derived[i] - exact[i]) <= 1e-6 * exact[i], `entry ${i}: ${derived[i]} vs ${exact[i]}`)
      }
    })

    it(`nnm+krum, nnm+multikrum, nnm+mda, nnm+nna: the rule on the NNM vectors (k = ${k}, f = ${f})`, () => {
      const inputs = inputsFor(`nnm-rules/${k}`, k, f)
      const mixed = nnmVectors('nnm+krum', inputs, f, {})
      for (const base of ['krum', 'multikrum', 'mda', 'nna']) {
        if (base === 'mda' && k > 13) continue
        if ((base === 'krum' || base === 'multikrum') && !(k > 2 * f + 2)) continue
        for (const own of [0, k - 1]) {
          const got = createAggregator({ rule: `nnm+${base}`, f }).aggregate(inputs, { own })
          const want = createAggregator({ rule: base, f }).aggregate(mixed, { own })
          for (let c = 0; c < D; c++) {
            assert.ok(Math.abs(got[c] - want[c]) <= 2e-5 * Math.max(1, Math.abs(want[c])), `nnm+${base}, own ${own}: coordinate ${c}: ${got[c]} vs ${want[c]}`)
          }
        }
      }
    })
  }
})
