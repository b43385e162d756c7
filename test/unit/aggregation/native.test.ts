/**
 * The native coordinate-wise kernels (native/kernels.cc `sortedReduce`) against the wasm SIMD
 * kernel — the same comparator network and the same Float64 sums in the same order, so the very
 * same Float32 values — on the AVX2 path and on the portable one, for odd and even k, ties,
 * signed zeros and a ragged tail; and against the plain-JS reducers to Float32 rounding.
 * Non-finite inputs are caught anywhere, the tail included. Fails (not skips) when the addon is
 * not built: `npm install` builds it on this machine.
 */
import assert from 'node:assert/strict'
import { after, describe, it } from 'node:test'
import { nnmSortedNative, nnmVectorsNative, sortedNative } from '../../../src/aggregation/fast.ts'
import { createAggregator, NonFiniteInputError, pairwiseSquaredDistances } from '../../../src/aggregation/index.ts'
import { firstNonFinite, firstNonFiniteJs, distancesTo as jsDistancesTo, weightedMean } from '../../../src/aggregation/kernels.ts'
import { neighbourhoods } from '../../../src/aggregation/rules.ts'
import { setSimdEnabled } from '../../../src/aggregation/simd.ts'
import { nativeKernels, nativeStatus, setNativeEnabled, setNativeThreads } from '../../../src/compute/native.ts'
import { Rng } from '../../../src/rng.ts'

const D = 3 * (1 << 14) + 13 // several chunks of the thread pool, a tail that is not a multiple of 8

function inputsFor(seed: string, k: number): Float32Array[] {
  const rng = new Rng(seed)
  const base = Float32Array.from({ length: D }, () => rng.normal())
  return Array.from({ length: k }, (_, i) =>
    Float32Array.from(base, (b, c) => {
      // ties (a coarse grid on some coordinates), signed zeros, and spread values
      if (c % 7 === 0) return Math.round(4 * rng.normal()) / 4
      if (c % 11 === 0) return i % 2 === 0 ? 0 : -0
      return b + (i < 3 ? 50 : 0.1) * rng.normal()
    }),
  )
}

type Path = 'native' | 'portable' | 'wasm' | 'js'

function run(rule: string, inputs: Float32Array[], f: number, path: Path): Float32Array {
  setNativeEnabled(path === 'native' || path === 'portable')
  setSimdEnabled(path !== 'js')
  nativeKernels()?.setPortable(path === 'portable')
  try {
    return createAggregator({ rule, f }).aggregate(inputs)
  } finally {
    nativeKernels()?.setPortable(false)
    setNativeEnabled(true)
    setSimdEnabled(true)
  }
}

describe('native coordinate-wise kernels', () => {
  after(() => setNativeThreads(1))

  it('are built and loaded', () => {
    assert.equal(typeof nativeKernels()?.sortedReduce, 'function', nativeStatus())
  })

  for (const threads of [1, 2]) {
    for (const [k, f] of [
      [4, 1],
      [13, 3],
      [26, 5],
      [50, 10],
      [127, 40],
    ] as const) {
      it(`give the wasm kernel's exact values and the JS reducers' to rounding: k = ${k}, f = ${f}, ${threads} thread(s)`, () => {
        setNativeThreads(threads)
        const inputs = inputsFor(`native/${k}`, k)
        for (const rule of ['mean', 'cwmed', 'cwtm', 'meamed']) {
          const wasm = run(rule, inputs, f, 'wasm')
          const js = run(rule, inputs, f, 'js')
          for (const path of ['native', 'portable'] as const) {
            const got = run(rule, inputs, f, path)
            for (let c = 0; c < D; c++) {
              if (!Object.is(got[c], wasm[c]) && !(got[c] === 0 && wasm[c] === 0)) assert.fail(`${rule} ${path}: coordinate ${c} is ${got[c]}, the wasm kernel's ${wasm[c]}`)
              const rel = Math.abs(got[c] - js[c]) / Math.max(1, Math.abs(js[c]))
              if (rel >= 2e-5) assert.fail(`${rule} ${path}: coordinate ${c} is ${got[c]}, the JS reducer's ${js[c]}`)
            }
          }
        }
      })
    }
  }

  it("run the pruned network (each block of 16 sorted in registers, then the later stages without comparators that cannot change the reduction): the wasm kernel's exact values for every k = 1..128 sampled, trims and meamed", () => {
    for (const k of [1, 2, 3, 5, 8, 15, 16, 17, 24, 31, 32, 33, 47, 63, 64, 65, 81, 96, 100, 113, 127, 128]) {
      const rng = new Rng(`native/pruned/${k}`)
      const inputs = Array.from({ length: k }, () => Float32Array.from({ length: 203 }, (_, c) => (c % 5 === 0 ? Math.round(2 * rng.normal()) : rng.normal())))
      for (const f of new Set([0, 1, (k - 1) >> 2, (k - 1) >> 1].filter((x) => 2 * x < k))) {
        for (const rule of ['cwmed', 'cwtm', 'meamed']) {
          if (rule === 'cwmed' && f !== 0) continue
          const wasm = run(rule, inputs, f, 'wasm')
          for (const path of ['native', 'portable'] as const) {
            const got = run(rule, inputs, f, path)
            for (let c = 0; c < got.length; c++) {
              if (!Object.is(got[c], wasm[c]) && !(got[c] === 0 && wasm[c] === 0)) assert.fail(`k = ${k}, ${rule}, f = ${f}, ${path}: coordinate ${c} is ${got[c]}, the wasm kernel's ${wasm[c]}`)
            }
          }
        }
      }
    }
  })

  for (const threads of [1, 2]) {
    it(`pairwise squared distances: the JS kernel's (Float64) to 1e-5, rules on them pick the same inputs; ${threads} thread(s)`, () => {
      setNativeThreads(threads)
      const N = nativeKernels()!
      for (const [k, f] of [
        [2, 0],
        [13, 3],
        [26, 5],
        [50, 10],
      ] as const) {
        const inputs = inputsFor(`native/pairwise/${k}`, k)
        const exact = pairwiseSquaredDistances(inputs)
        for (const portable of [false, true]) {
          N.setPortable(portable)
          const D = new Float64Array(k * k)
          N.pairwise(inputs, D)
          N.setPortable(false)
          for (let i = 0; i < k; i++) {
            assert.equal(D[i * k + i], 0)
            for (let j = 0; j < k; j++) {
              const rel = Math.abs(D[i * k + j] - exact[i * k + j]) / Math.max(1, exact[i * k + j])
              assert.ok(rel < 1e-5, `k = ${k}, portable ${portable}: D[${i}, ${j}] = ${D[i * k + j]}, exactly ${exact[i * k + j]}`)
            }
          }
        }
        if (k > 2 * f + 2)
          for (const rule of ['krum', 'multikrum', 'nnm+mean', 'nnm+cwtm']) {
            const a = run(rule, inputs, f, 'native')
            const b = run(rule, inputs, f, 'js')
            for (let c = 0; c < D; c++) assert.ok(Math.abs(a[c] - b[c]) <= 2e-5 * Math.max(1, Math.abs(b[c])), `${rule}, k = ${k}: coordinate ${c}`)
          }
      }
    })
  }

  for (const threads of [1, 2]) {
    it(`distancesTo: the JS kernel's (Float64) to 1e-5 on both paths, read in place; nna and ce on it pick the same inputs; ${threads} thread(s)`, () => {
      setNativeThreads(threads)
      const N = nativeKernels()!
      for (const [k, f] of [
        [1, 0],
        [13, 3],
        [26, 5],
        [50, 10],
      ] as const) {
        const inputs = inputsFor(`native/distancesTo/${k}`, k)
        const v = inputs[k - 1]!
        const exact = jsDistancesTo(inputs, v)
        for (const portable of [false, true]) {
          N.setPortable(portable)
          const out = new Float64Array(k).fill(-1)
          N.distancesTo(inputs, v, out)
          N.setPortable(false)
          assert.equal(out[k - 1], 0)
          for (let i = 0; i < k; i++) {
            const rel = Math.abs(out[i]! - exact[i]!) / Math.max(1, exact[i]!)
            assert.ok(rel < 1e-5, `k = ${k}, portable ${portable}: distance ${i} = ${out[i]}, exactly ${exact[i]}`)
          }
        }
        if (k > 2 * f + 2)
          for (const rule of ['nna', 'ce']) {
            const ctx = { own: 3, reference: inputs[3] }
            setNativeEnabled(true)
            const a = createAggregator({ rule, f }).aggregate(inputs, ctx)
            setNativeEnabled(false)
            setSimdEnabled(false)
            const b = createAggregator({ rule, f }).aggregate(inputs, ctx)
            setNativeEnabled(true)
            setSimdEnabled(true)
            assert.deepEqual(Array.from(a), Array.from(b), `${rule}, k = ${k}`)
          }
      }
      assert.throws(() => N.distancesTo(inputsFor('x', 2), new Float32Array(D - 1), new Float64Array(2)), RangeError)
      assert.throws(() => N.distancesTo(inputsFor('x', 2), new Float32Array(D), new Float64Array(1)), RangeError)
    })

    it(`mean: the very bits of the JS kernel on both paths, k = 1 … 128 (groups of four and the inputs left over); non-finite caught; ${threads} thread(s)`, () => {
      setNativeThreads(threads)
      const N = nativeKernels()!
      for (const k of [1, 3, 4, 5, 21, 26, 128]) {
        const inputs = inputsFor(`native/mean/${k}`, k)
        setNativeEnabled(false)
        const js = new Float32Array(D)
        assert.equal(weightedMean(inputs, js), true)
        setNativeEnabled(true)
        for (const portable of [false, true]) {
          N.setPortable(portable)
          const out = new Float32Array(D)
          const finite = N.mean(inputs, out)
          N.setPortable(false)
          assert.equal(finite, true)
          assert.deepEqual(new Uint32Array(out.buffer), new Uint32Array(js.buffer), `k = ${k}, portable ${portable}`)
        }
      }
      for (const [c, bad] of [
        [100, Number.NaN],
        [D - 2, Number.POSITIVE_INFINITY],
      ] as const) {
        const inputs = inputsFor('native/mean/bad', 5)
        inputs[2]![c] = bad
        for (const portable of [false, true]) {
          N.setPortable(portable)
          assert.equal(N.mean(inputs, new Float32Array(D)), false, `a ${bad} at ${c}, portable ${portable}`)
          N.setPortable(false)
        }
      }
      assert.throws(() => N.mean(inputsFor('x', 2), new Float32Array(D - 1)), RangeError)
    })
  }

  // a CPU without AVX-512F/VL/DQ runs the AVX2 kernel only: there is nothing to compare, and the
  // test says so (a visible skip) instead of comparing the AVX2 kernel with itself
  const avx512 = nativeKernels()?.setAvx512(true) === true
  it('pairwise and pairwiseSums: the AVX-512 kernel gives the AVX2 kernel\'s bits — distances, column sums, magnitudes (k off the tiles, d off 8, 256 and 1024, squares that overflow Float32, signed zeros); 1 and 2 threads', { skip: avx512 ? false : 'this CPU has no AVX-512F/VL/DQ' }, () => {
    const N = nativeKernels()!
    const rng = new Rng('native/pairwise/avx512')
    // the distances, then (sums) the column sums and magnitudes
    const distances = (inputs: Float32Array[], avx512: boolean, sums: boolean): number[] => {
      N.setAvx512(avx512)
      const k = inputs.length
      const out = new Float64Array(k * k)
      const col = new Float64Array(inputs[0].length)
      const mx = new Float32Array(k)
      if (sums) N.pairwiseSums(inputs, out, col, mx)
      else N.pairwise(inputs, out)
      N.setAvx512(true)
      return sums ? [...out, ...col, ...mx] : [...out]
    }
    try {
      for (const threads of [1, 2]) {
        setNativeThreads(threads)
        for (const k of [2, 3, 4, 5, 6, 7, 9, 12, 13, 17, 21, 26, 50, 51, 128]) {
          for (const d of [1, 7, 8, 9, 255, 257, 1023, 1025, 2 * 1024 + 8 * 37 + 5]) {
            const inputs = Array.from({ length: k }, (_, i) => {
              // row 1: squares of its differences overflow Float32 on some coordinates; columns of
              // −0 (their sum is −0) and of mixed zeros
              const scale = i === 1 ? 2e19 : i % 4 === 0 ? 1e3 : 1
              return Float32Array.from({ length: d }, (_, c) => (c % 13 === 5 ? -0 : c % 13 === 6 ? (i % 2 === 0 ? -0 : 0) : scale * rng.normal()))
            })
            if (k > 2 && d > 8) inputs[2] = inputs[0] // a duplicate: zero distance
            for (const sums of [false, true]) {
              const want = distances(inputs, false, sums)
              const got = distances(inputs, true, sums)
              for (let x = 0; x < want.length; x++)
                if (!Object.is(got[x], want[x])) assert.fail(`k = ${k}, d = ${d}, ${threads} thread(s), sums ${sums}: [${x}] is ${got[x]} on AVX-512, ${want[x]} on AVX2`)
            }
            const want = distances(inputs, false, false)
            if (d === 257) assert.ok(want.includes(Number.POSITIVE_INFINITY) || k < 2, `k = ${k}: an overflow to +∞`)
          }
        }
      }
    } finally {
      setNativeThreads(1)
    }
  })

  it('pairwise: a Float32 square that overflows gives +∞ (the rules then redo it in Float64)', () => {
    const a = new Float32Array(20).fill(3e38)
    const b = new Float32Array(20).fill(-3e38)
    const D = new Float64Array(4)
    nativeKernels()!.pairwise([a, b], D)
    assert.equal(D[1], Number.POSITIVE_INFINITY)
    // finite inputs: the rule does not refuse them, it redoes the distances in Float64
    const krum = createAggregator({ rule: 'krum', f: 0 }).aggregate([a, b, a])
    assert.equal(krum[0], Math.fround(3e38))
  })

  it('catch a non-finite value in a vector block and in the tail', () => {
    for (const [c, v] of [
      [100, Number.NaN],
      [D - 2, Number.POSITIVE_INFINITY],
    ] as const) {
      const inputs = inputsFor('native/nan', 13)
      inputs[5]![c] = v
      for (const path of ['native', 'portable'] as const) {
        for (const rule of ['cwtm', 'cwmed', 'meamed']) {
          assert.throws(
            () => run(rule, inputs, 3, path),
            (e: unknown) => e instanceof NonFiniteInputError && e.input === 5 && e.coordinate === c,
            `${rule} ${path} at ${c}`,
          )
        }
      }
    }
  })

  it('refuse bad arguments with a typed error instead of reading out of bounds', () => {
    const N = nativeKernels()!
    const a = new Float32Array(8)
    const pairs = Int32Array.of(0, 1)
    assert.throws(() => N.sortedReduce([a, new Float32Array(7)], new Float32Array(8), pairs, 0, 0, 0.5), /different lengths/)
    assert.throws(() => N.sortedReduce([a, a], new Float32Array(4), pairs, 0, 0, 0.5), /too short/)
    assert.throws(() => N.sortedReduce([a, a], new Float32Array(8), Int32Array.of(0, 2), 0, 0, 0.5), /out of range/)
    assert.throws(() => N.sortedReduce([a, a], new Float32Array(8), pairs, 0, 1, 0.5), /2·param < k/)
    assert.throws(() => N.sortedReduce([], new Float32Array(8), pairs, 0, 0, 0.5), /1 to 128 Float32Arrays/)
    assert.throws(() => N.pairwise([a, a], new Float64Array(3)), /too short/)
    const rows = [new Float32Array(8), new Float32Array(8)]
    // base [0, 1], then per row add/sub lists; an index beyond the inputs, a missing row, a length mismatch
    assert.throws(() => N.nnmRows([a, a], Int32Array.of(2, 0, 2, 0, 0, 0, 0), 0.5, rows), /NNM spec/)
    assert.throws(() => N.nnmRows([a, a], Int32Array.of(2, 0, 1, 0, 0), 0.5, rows), /NNM spec/)
    assert.throws(() => N.nnmRows([a, a], Int32Array.of(2, 0, 1, 0, 0, 0, 0), 0.5, [new Float32Array(7)]), /another length/)
    assert.throws(() => N.nnmSorted([a, a], Int32Array.of(2, 0, 1, 0, 0), 0.5, Int32Array.of(0, 2), new Float32Array(8), pairs, 0, 0, 0.5), /rowOf out of range/)
    N.nnmRows([Float32Array.of(1, 2), Float32Array.of(3, 4)], Int32Array.of(2, 0, 1, 0, 1, 1, 0, 0), 0.5, rows.map(() => new Float32Array(2)))
    assert.throws(() => N.pairwise([a, a], new Float32Array(4) as unknown as Float64Array), /Float64Array/)
    assert.throws(() => N.pairwiseSums([a, a], new Float64Array(4), new Float64Array(7), new Float32Array(2)), /sums must be/)
    assert.throws(() => N.pairwiseSums([a, a], new Float64Array(4), new Float64Array(8), new Float32Array(1)), /maxAbs must be/)
    assert.throws(() => N.keptMean([a], new Float64Array(8), 0.5, new Float32Array(7)), /out must be/)
    assert.throws(() => N.keptMean([a], new Float32Array(8) as unknown as Float64Array, 0.5, new Float32Array(8)), /sums must be/)
  })

  it("pairwiseSums: pairwise's distances, the column sums in input order in Float64 and each input's largest magnitude, the same bits on the AVX2 and portable paths; keptMean from them", () => {
    const N = nativeKernels()!
    for (const threads of [1, 2]) {
      setNativeThreads(threads)
      for (const k of [2, 13, 50]) {
        const inputs = inputsFor(`native/sums/${k}`, k)
        const sums = new Float64Array(D)
        for (let c = 0; c < D; c++) {
          sums[c] = inputs[0][c] // x_0 + x_1 + …: −0 + −0 is −0
          for (let i = 1; i < k; i++) sums[c] += inputs[i][c]
        }
        const maxAbs = inputs.map((x) => x.reduce((m, v) => Math.max(m, Math.abs(v)), 0))
        const excluded = [1, k - 1]
        const kept = new Float32Array(D)
        for (let c = 0; c < D; c++) kept[c] = (sums[c] - inputs[1][c] - inputs[k - 1][c]) * (1 / (k - 2))
        for (const portable of [false, true]) {
          N.setPortable(portable)
          const Dp = new Float64Array(k * k)
          N.pairwise(inputs, Dp)
          const Ds = new Float64Array(k * k)
          const got = new Float64Array(D)
          const mx = new Float32Array(k)
          N.pairwiseSums(inputs, Ds, got, mx)
          const out = new Float32Array(D)
          N.keptMean(excluded.map((i) => inputs[i]), got, 1 / (k - 2), out)
          N.setPortable(false)
          assert.deepEqual(Ds, Dp, `k = ${k}, portable ${portable}: the distances`)
          assert.deepEqual(got, sums, `k = ${k}, portable ${portable}: the sums`)
          assert.deepEqual(Array.from(mx), maxAbs, `k = ${k}, portable ${portable}: the magnitudes`)
          if (k > 2) assert.deepEqual(out, kept, `k = ${k}, portable ${portable}: the kept mean`)
        }
      }
    }
    setNativeThreads(1)
  })

  it('nnmSorted (rows 32 coordinates at a time, sorted at once) gives the bits of nnmRows then sortedReduce on the rows, ragged tail included', () => {
    for (const threads of [1, 2]) {
      setNativeThreads(threads)
      for (const [k, f] of [
        [13, 3],
        [26, 5],
        [50, 10],
      ] as const) {
        const inputs = inputsFor(`native/nnm-fused/${k}`, k)
        const nb = neighbourhoods(pairwiseSquaredDistances(inputs), k, f)
        const rows = nnmVectorsNative(inputs, f, nb)!
        for (const reduce of [{ kind: 'trim', trim: (k - 1) >> 1 }, { kind: 'trim', trim: f }, { kind: 'meamed', f }] as const) {
          const fused = nnmSortedNative(inputs, f, nb, reduce)
          assert.ok(fused instanceof Float32Array)
          assert.deepEqual(fused, sortedNative(rows, reduce), `k = ${k}, ${JSON.stringify(reduce)}, ${threads} thread(s)`)
        }
      }
    }
    setNativeThreads(1)
  })

  it("multikrum from the column sums: the JS kernel's mean to 2e-5, also when a left-out input is 1e30 (then averaged directly: Σ all − Σ left out would lose the kept inputs)", () => {
    const k = 26
    const f = 5
    for (const scale of [1, 1e30]) {
      const inputs = inputsFor('native/multikrum-sums', k)
      for (let i = k - f; i < k; i++) inputs[i] = inputs[i].map((v) => v * scale + (scale > 1 ? scale : 3))
      const a = run('multikrum', inputs, f, 'native')
      const b = run('multikrum', inputs, f, 'js')
      for (let c = 0; c < D; c++) assert.ok(Math.abs(a[c] - b[c]) <= 2e-5 * Math.max(1, Math.abs(b[c])), `scale ${scale}: coordinate ${c}: ${a[c]} vs ${b[c]}`)
    }
  })

  it('firstNonFinite: the addon finds the first NaN or ±∞ where the JS scan does (random positions, several at once, subnormals, −0 and the largest finite values clean, lengths around the blocks)', () => {
    assert.equal(typeof nativeKernels()?.firstNonFinite, 'function', nativeStatus())
    const rng = new Rng('native/first-non-finite')
    const special = [Number.NaN, Number.POSITIVE_INFINITY, Number.NEGATIVE_INFINITY, new Float32Array(new Uint32Array([0xffc00001]).buffer)[0]!]
    const clean = [0, -0, 3.4028234663852886e38, -3.4028234663852886e38, 1e-45, -1e-45, 1.1754942e-38]
    for (const n of [1024, 1087, 4096, 431_080, 63, 64, 65, 127, 128, 129]) {
      for (let trial = 0; trial < 12; trial++) {
        const x = Float32Array.from({ length: n }, (_, c) => (c % 97 === 0 ? clean[c % clean.length]! : rng.normal()))
        const hits = trial === 0 ? 0 : 1 + rng.int(3)
        for (let h = 0; h < hits; h++) x[rng.int(n)] = special[rng.int(special.length)]!
        const want = firstNonFiniteJs(x)
        assert.equal(nativeKernels()!.firstNonFinite!(x), want, `n = ${n}, trial ${trial}`)
        // a view into a larger buffer: only its own entries count
        const outer = new Float32Array(n + 16).fill(Number.NaN)
        outer.set(x, 8)
        assert.equal(nativeKernels()!.firstNonFinite!(outer.subarray(8, 8 + n)), want, `n = ${n}, trial ${trial}, a view`)
        // the dispatcher (native from 1024 entries) agrees
        assert.equal(firstNonFinite(x), want)
        if (trial === 0) assert.equal(want, -1)
        else assert.ok(want >= 0 && !Number.isFinite(x[want]!))
      }
    }
  })
})
