/**
 * Hot loops shared by the rules: checks, blocked means, pairwise squared distances, and
 * in-place selection on small Float64 scratch buffers. Everything here works on plain typed
 * arrays, allocates nothing per coordinate, and accumulates in Float64.
 */
import { nativeKernels } from '../compute/native.ts'
import { DimensionMismatchError, NonFiniteInputError } from './errors.ts'

/** Coordinates processed per block: a k × BLOCK slice of the inputs stays in L2 cache. */
export const BLOCK = 4096

/** Throws DimensionMismatchError unless every input (and the reference) has input 0's length (k ≥ 1). */
export function checkShapes(rule: string, inputs: readonly Float32Array[], reference?: Float32Array): number {
  const d = inputs[0].length
  for (let i = 1; i < inputs.length; i++) {
    if (inputs[i].length !== d) throw new DimensionMismatchError(rule, i, d, inputs[i].length)
  }
  if (reference !== undefined && reference.length !== d) throw new DimensionMismatchError(rule, -1, d, reference.length)
  return d
}

/**
 * Below this length `firstNonFinite` stays in JavaScript: the addon's call costs more than the
 * scan it saves.
 */
const NATIVE_FINITE_MIN = 1024

/**
 * Index of the first non-finite entry of `x`, or -1. Every received model goes through it
 * (node/payload.ts); with the native kernels a model-sized array is scanned by the addon
 * (native/kernels.cc, `firstNonFinite`), else by `firstNonFiniteJs`.
 */
export function firstNonFinite(x: Float32Array): number {
  const native = x.length >= NATIVE_FINITE_MIN ? nativeKernels()?.firstNonFinite : undefined
  return native !== undefined ? native(x) : firstNonFiniteJs(x)
}

/** `firstNonFinite` in JavaScript (exported for the tests that hold the addon to it). */
export function firstNonFiniteJs(x: Float32Array): number {
  // x * 0 is 0 for every finite x and NaN for NaN/±Infinity; one branch per block of 8.
  const n = x.length
  let c = 0
  for (; c + 7 < n; c += 8) {
    const s = x[c] * 0 + x[c + 1] * 0 + x[c + 2] * 0 + x[c + 3] * 0 + x[c + 4] * 0 + x[c + 5] * 0 + x[c + 6] * 0 + x[c + 7] * 0
    if (s !== 0) break
  }
  for (; c < n; c++) if (!Number.isFinite(x[c])) return c
  return -1
}

/** Throws NonFiniteInputError for the first non-finite entry among the inputs (and the reference). */
export function assertFinite(rule: string, inputs: readonly Float32Array[], reference?: Float32Array): void {
  for (let i = 0; i < inputs.length; i++) {
    const c = firstNonFinite(inputs[i])
    if (c >= 0) throw new NonFiniteInputError(rule, i, c, inputs[i][c])
  }
  if (reference !== undefined) {
    const c = firstNonFinite(reference)
    if (c >= 0) throw new NonFiniteInputError(rule, -1, c, reference[c])
  }
}

/**
 * Weighted average Σ wᵢ·xᵢ / Σ wᵢ over the inputs with wᵢ ≠ 0 (all with weight 1 when
 * `weights` is omitted), accumulated in Float64 block by block. Returns whether the result
 * is finite (a non-finite input makes it non-finite: the caller locates it).
 */
export function weightedMean(inputs: readonly Float32Array[], out: Float32Array, weights?: ArrayLike<number>): boolean {
  const d = out.length
  // the inputs with a non-zero weight, and whether they all weigh 1 (the usual case)
  const xs: Float32Array[] = []
  const ws: number[] = []
  let total = 0
  let unit = true
  for (let i = 0; i < inputs.length; i++) {
    const w = weights === undefined ? 1 : weights[i]
    total += w
    if (w === 0) continue
    if (w !== 1) unit = false
    xs.push(inputs[i])
    ws.push(w)
  }
  const k = xs.length
  const inv = 1 / total
  // the native kernel, when loaded, for the unweighted case (the same bits, ≈ 3× less time: nna's mean)
  const N = unit && k >= 1 && k <= 128 ? nativeKernels() : undefined
  if (N !== undefined && typeof N.mean === 'function') return N.mean(xs, out)
  const acc = new Float64Array(Math.min(BLOCK, d))
  let finite = true
  for (let s = 0; s < d; s += BLOCK) {
    const e = Math.min(d, s + BLOCK)
    const n = e - s
    acc.fill(0, 0, n)
    // Four inputs per pass over the block: a quarter of the accumulator loads and stores
    // (16 inputs of d = 431 080, the NNA mean of §7: 18 → 6–8 ms on the 2-core dev machine).
    let i = 0
    if (unit) {
      for (; i + 3 < k; i += 4) {
        const x0 = xs[i].subarray(s, e)
        const x1 = xs[i + 1].subarray(s, e)
        const x2 = xs[i + 2].subarray(s, e)
        const x3 = xs[i + 3].subarray(s, e)
        for (let c = 0; c < n; c++) acc[c] += x0[c] + x1[c] + x2[c] + x3[c]
      }
      for (; i < k; i++) {
        const x = xs[i].subarray(s, e)
        for (let c = 0; c < n; c++) acc[c] += x[c]
      }
    } else {
      for (; i + 3 < k; i += 4) {
        const x0 = xs[i].subarray(s, e)
        const x1 = xs[i + 1].subarray(s, e)
        const x2 = xs[i + 2].subarray(s, e)
        const x3 = xs[i + 3].subarray(s, e)
        const w0 = ws[i]
        const w1 = ws[i + 1]
        const w2 = ws[i + 2]
        const w3 = ws[i + 3]
        for (let c = 0; c < n; c++) acc[c] += w0 * x0[c] + w1 * x1[c] + w2 * x2[c] + w3 * x3[c]
      }
      for (; i < k; i++) {
        const x = xs[i].subarray(s, e)
        const w = ws[i]
        for (let c = 0; c < n; c++) acc[c] += w * x[c]
      }
    }
    let check = 0
    for (let c = 0; c < n; c++) {
      const v = acc[c] * inv
      out[s + c] = v
      check += v * 0
    }
    if (check !== 0) finite = false
  }
  return finite
}

/** Mean of the inputs whose indices are listed (Float64 accumulation). */
export function meanOf(inputs: readonly Float32Array[], indices: ArrayLike<number>, out: Float32Array): boolean {
  const chosen: Float32Array[] = []
  for (let j = 0; j < indices.length; j++) chosen.push(inputs[indices[j]])
  return weightedMean(chosen, out)
}

/** Σ_c (a[c] − b[c])² over [s, e), four accumulators to break the dependency chain. */
function sqDistRange(a: Float32Array, b: Float32Array, s: number, e: number): number {
  let s0 = 0
  let s1 = 0
  let s2 = 0
  let s3 = 0
  let c = s
  for (; c + 3 < e; c += 4) {
    const e0 = a[c] - b[c]
    const e1 = a[c + 1] - b[c + 1]
    const e2 = a[c + 2] - b[c + 2]
    const e3 = a[c + 3] - b[c + 3]
    s0 += e0 * e0
    s1 += e1 * e1
    s2 += e2 * e2
    s3 += e3 * e3
  }
  for (; c < e; c++) {
    const t = a[c] - b[c]
    s0 += t * t
  }
  return s0 + s1 + s2 + s3
}

/** ‖a − b‖² accumulated in Float64. */
export function squaredDistance(a: Float32Array, b: Float32Array): number {
  return sqDistRange(a, b, 0, a.length)
}

/**
 * All pairwise squared distances, a symmetric k × k Float64Array with zero diagonal,
 * computed once per call and shared by nnm, krum, multikrum, mda. Coordinates are processed
 * in blocks so the k slices of a block stay in cache while every pair visits them.
 * Non-finite entries mean some input was non-finite (Float64 cannot overflow on Float32 data).
 */
export function pairwiseSquaredDistances(inputs: readonly Float32Array[]): Float64Array {
  const k = inputs.length
  const d = k > 0 ? inputs[0].length : 0
  const D = new Float64Array(k * k)
  for (let s = 0; s < d; s += BLOCK) {
    const e = Math.min(d, s + BLOCK)
    for (let i = 0; i < k; i++) {
      const a = inputs[i]
      for (let j = i + 1; j < k; j++) D[i * k + j] += sqDistRange(a, inputs[j], s, e)
    }
  }
  for (let i = 0; i < k; i++) {
    for (let j = i + 1; j < k; j++) D[j * k + i] = D[i * k + j]
  }
  return D
}

/** Squared distance of every input to `v`. */
export function distancesTo(inputs: readonly Float32Array[], v: Float32Array): Float64Array {
  const out = new Float64Array(inputs.length)
  for (let i = 0; i < inputs.length; i++) out[i] = inputs[i] === v ? 0 : squaredDistance(inputs[i], v)
  return out
}

/** True when every entry is finite. */
export function allFinite(a: Float64Array): boolean {
  let s = 0
  for (let i = 0; i < a.length; i++) s += a[i] * 0
  return s === 0
}

/**
 * Indices 0..k−1 ordered by (key ascending, index ascending), with `first` (if ≥ 0) forced
 * to the front. Small k: insertion sort.
 */
export function orderBy(key: ArrayLike<number>, k: number, first = -1): Int32Array {
  const idx = new Int32Array(k)
  for (let i = 0; i < k; i++) idx[i] = i
  for (let i = 1; i < k; i++) {
    const v = idx[i]
    let j = i - 1
    while (j >= 0 && before(v, idx[j], key, first)) {
      idx[j + 1] = idx[j]
      j--
    }
    idx[j + 1] = v
  }
  return idx
}

function before(a: number, b: number, key: ArrayLike<number>, first: number): boolean {
  if (a === first) return true
  if (b === first) return false
  return key[a] < key[b] || (key[a] === key[b] && a < b)
}

/**
 * Partially orders a[lo..hi] in place so that a[kth] holds the value it would have after a
 * sort, everything before it is ≤ and everything after is ≥ (Hoare quickselect with a
 * median-of-three pivot; insertion sort below 12 elements).
 */
export function select(a: Float64Array, lo: number, hi: number, kth: number): void {
  while (hi - lo > 11) {
    const mid = (lo + hi) >>> 1
    // median of three into a[mid]
    if (a[mid] < a[lo]) swap(a, mid, lo)
    if (a[hi] < a[lo]) swap(a, hi, lo)
    if (a[hi] < a[mid]) swap(a, hi, mid)
    const pivot = a[mid]
    let i = lo
    let j = hi
    while (i <= j) {
      while (a[i] < pivot) i++
      while (a[j] > pivot) j--
      if (i <= j) {
        const t = a[i]
        a[i] = a[j]
        a[j] = t
        i++
        j--
      }
    }
    if (kth <= j) hi = j
    else if (kth >= i) lo = i
    else return
  }
  insertionSort(a, lo, hi)
}

/** Sorts a[lo..hi] ascending in place. */
export function insertionSort(a: Float64Array, lo: number, hi: number): void {
  for (let i = lo + 1; i <= hi; i++) {
    const v = a[i]
    let j = i - 1
    while (j >= lo && a[j] > v) {
      a[j + 1] = a[j]
      j--
    }
    a[j + 1] = v
  }
}

function swap(a: Float64Array, i: number, j: number): void {
  const t = a[i]
  a[i] = a[j]
  a[j] = t
}

/** Binomial coefficient C(n, r) as a float (exact below 2^53). */
export function binomial(n: number, r: number): number {
  if (r < 0 || r > n) return 0
  const m = Math.min(r, n - r)
  let c = 1
  for (let i = 1; i <= m; i++) c = (c * (n - m + i)) / i
  return Math.round(c)
}
