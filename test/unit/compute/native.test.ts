/**
 * The native kernels (native/kernels.cc via src/compute/native.ts): built by `npm install` on a
 * machine with a C++ compiler, and required here unless the suite runs with MONNA_NATIVE=off
 * (the explicit opt-out; the convolution kernels are also checked against tfjs's cpu backend in
 * kernels.test.ts). GEMM against a float64 reference on odd shapes (edges of the 6×16 tiles, the
 * 6×8 last panels and the 256-deep K blocks; operands read in place and packed), every
 * transpose, accumulation; bad calls throw, never crash.
 */
import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { type NativeKernels, nativeAvailable, nativeKernels, nativeStatus, registerFallbackKernels, unregisterFallbackKernels } from '../../../src/compute/index.ts'
import { Rng } from '../../../src/rng.ts'

const off = process.env.MONNA_NATIVE === 'off'

function kernels(): NativeKernels {
  assert.ok(nativeAvailable(), `native kernels ${nativeStatus()}: npm install builds them (MONNA_NATIVE=off runs the suite without)`)
  return nativeKernels()!
}

function random(rng: Rng, n: number): Float32Array {
  const a = new Float32Array(n)
  for (let i = 0; i < n; i++) a[i] = rng.normal()
  return a
}

describe('native kernels', { skip: off ? 'MONNA_NATIVE=off' : false }, () => {
  it('are built and loaded, with the SIMD path the CPU supports', () => {
    const nk = kernels()
    assert.match(nk.simd(), /^(avx2\+fma|portable)$/)
    assert.match(nativeStatus(), /^native \(/)
  })

  for (const portable of [false, true]) {
  it(`gemm${portable ? ' (portable micro-kernel)' : ''} agrees with a float64 reference for every transpose, odd shapes and K beyond one block`, () => {
    const nk = kernels()
    nk.setPortable(portable)
    if (portable) assert.equal(nk.simd(), 'portable')
    const rng = new Rng('native-gemm')
    try {
    for (const [m, n, k] of [
      [1, 1, 1],
      [7, 17, 3],
      [6, 16, 256],
      [13, 33, 300],
      [25, 50, 513],
      [100, 5, 20],
      // m > 96 (B packed even when row-major), full panels then a 9-wide (padded) or 8-wide (half) last one
      [101, 41, 37],
      [130, 24, 300],
    ] as const) {
      for (const ta of [0, 1]) {
        for (const tb of [0, 1]) {
          for (const accumulate of [false, true]) {
            const a = random(rng, m * k)
            const b = random(rng, k * n)
            const c0 = random(rng, m * n)
            const c = c0.slice()
            nk.gemm(ta, tb, m, n, k, a, b, c, accumulate)
            let worst = 0
            for (let i = 0; i < m; i++) {
              for (let j = 0; j < n; j++) {
                let s = accumulate ? (c0[i * n + j] as number) : 0
                for (let p = 0; p < k; p++) s += (ta ? a[p * m + i]! : a[i * k + p]!) * (tb ? b[j * k + p]! : b[p * n + j]!)
                worst = Math.max(worst, Math.abs(c[i * n + j]! - s) / (1 + Math.abs(s)))
              }
            }
            assert.ok(worst < 1e-4, `${m}×${n}×${k} tA=${ta} tB=${tb} acc=${accumulate}: error ${worst}`)
          }
        }
      }
    }
    } finally {
      nk.setPortable(false)
    }
  })
  }

  it('threads (setThreads): the same results, bit for bit, as one thread; validated', () => {
    const nk = kernels()
    const rng = new Rng('native-threads')
    try {
      for (const [m, n, k, ta, tb] of [
        [25, 500, 800, 0, 0],
        [500, 50, 1600, 1, 0],
        [1600, 500, 50, 0, 1],
        [7, 9, 11, 0, 0],
      ] as const) {
        const a = random(rng, m * k)
        const b = random(rng, k * n)
        const one = new Float32Array(m * n)
        nk.setThreads(1)
        nk.gemm(ta, tb, m, n, k, a, b, one, false)
        for (const threads of [2, 3]) {
          nk.setThreads(threads)
          assert.equal(nk.threads(), threads)
          const many = new Float32Array(m * n)
          nk.gemm(ta, tb, m, n, k, a, b, many, false)
          assert.deepEqual(many, one, `${m}×${n}×${k} with ${threads} threads`)
        }
      }
      // a convolution through the threaded GEMM
      const x = random(rng, 25 * 12 * 12 * 20)
      const w = random(rng, 5 * 5 * 20 * 50)
      const dims = [25, 12, 12, 20, 8, 8, 50, 5, 5, 1, 1, 0, 0] as const
      const y1 = new Float32Array(25 * 8 * 8 * 50)
      const y2 = new Float32Array(25 * 8 * 8 * 50)
      nk.setThreads(1)
      nk.conv2d(x, w, y1, ...dims)
      nk.setThreads(2)
      nk.conv2d(x, w, y2, ...dims)
      assert.deepEqual(y2, y1)
      assert.throws(() => nk.setThreads(0), /from 1 to 64/)
      assert.throws(() => nk.setThreads(65), /from 1 to 64/)
    } finally {
      nk.setThreads(1)
    }
  })

  it('registering kernels without a thread count keeps the one set (a cpu fallback after wasm with threads)', async () => {
    const nk = kernels()
    try {
      await registerFallbackKernels('cpu', { threads: 2 })
      assert.equal(nk.threads(), 2)
      await registerFallbackKernels('cpu')
      assert.equal(nk.threads(), 2)
    } finally {
      await unregisterFallbackKernels('cpu')
      nk.setThreads(1)
    }
  })

  it('operates on views (subarrays) in place, leaving the rest of the buffer alone', () => {
    const nk = kernels()
    const buf = new Float32Array(20).fill(7)
    const a = new Float32Array([1, 2, 3, 4]) // 2×2
    const b = new Float32Array([1, 0, 0, 1])
    nk.gemm(0, 0, 2, 2, 2, a, b, buf.subarray(5, 9), false)
    assert.deepEqual([...buf.subarray(4, 10)], [7, 1, 2, 3, 4, 7])
  })

  it('rejects short arrays, wrong types and bad geometry with a thrown error (no crash)', () => {
    const nk = kernels()
    const small = new Float32Array(3)
    assert.throws(() => nk.gemm(0, 0, 2, 2, 2, small, new Float32Array(4), new Float32Array(4), false), /A is too short/)
    assert.throws(() => nk.gemm(0, 0, 2, 2, 2, new Float32Array(4), new Float32Array(4), small, false), /C is too short/)
    assert.throws(() => nk.gemm(0, 0, -1, 2, 2, new Float32Array(4), new Float32Array(4), new Float32Array(4), false), /negative/)
    assert.throws(() => nk.gemm(0, 0, 1, 1, 1, new Float64Array(1) as unknown as Float32Array, new Float32Array(1), new Float32Array(1), false), /Float32Array/)
    assert.throws(() => (nk.gemm as unknown as (...a: unknown[]) => void)(0, 0, 1), /arguments/)
    const x = new Float32Array(2 * 4 * 4 * 1)
    const w = new Float32Array(3 * 3 * 1 * 2)
    // y of 2×2×2×2 needs 16 floats
    assert.throws(() => nk.conv2d(x, w, new Float32Array(15), 2, 4, 4, 1, 2, 2, 2, 3, 3, 1, 1, 0, 0), /y is too short/)
    assert.throws(() => nk.conv2d(x, w, new Float32Array(16), 2, 4, 4, 1, 2, 2, 2, 3, 3, 0, 1, 0, 0), /strides/)
    assert.throws(() => nk.maxPoolGrad(x, small, small, x, 2, 4, 4, 1, 2, 2, 2, 2, 2, 2, 0, 0), /too short/)
    // a valid call still works afterwards
    const y = new Float32Array(16)
    nk.conv2d(x.fill(1), w.fill(1), y, 2, 4, 4, 1, 2, 2, 2, 3, 3, 1, 1, 0, 0)
    assert.deepEqual([...y], new Array(16).fill(9))
  })
})
