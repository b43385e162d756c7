/**
 * Block drivers for the SIMD kernels (simd.ts): copy one block of coordinates of every input
 * into WebAssembly memory, run a kernel on it, move on. Work space O(k · BLOCK) whatever d.
 * Each function returns null when SIMD is unavailable (or k is beyond the generated kernels)
 * so the caller can use the JS kernel.
 */

import { nativeKernels } from '../compute/native.ts'
import { BLOCK } from './kernels.ts'
import type { Neighbourhoods } from './rules.ts'
import { MAX_NETWORK_K, type SimdKernels, type SortedReduce, simdKernels, sortingNetwork } from './simd.ts'

const ROW_BYTES = BLOCK * 4
const pad4 = (n: number) => (n + 3) & ~3
const align16 = (n: number) => (n + 15) & ~15

/** Copies inputs[i][s..e) to row i of the region at `base` (zero padding to a multiple of 4). */
function copyBlock(K: SimdKernels, inputs: readonly Float32Array[], base: number, s: number, e: number): void {
  const f32 = K.f32()
  const n = e - s
  const np = pad4(n)
  for (let i = 0; i < inputs.length; i++) {
    const at = (base + i * ROW_BYTES) >> 2
    f32.set(inputs[i].subarray(s, e), at)
    if (np > n) f32.fill(0, at + n, at + np)
  }
}

/**
 * Squared distances from row `a` to the rows listed in `others` (byte offsets), four at a
 * time; adds them into D at `targets`.
 */
function distancesFromRow(K: SimdKernels, a: number, others: number[], targets: number[], D: Float64Array, np: number, scratch: number): void {
  const f64 = K.f64()
  for (let t = 0; t < others.length; t += 4) {
    const b0 = others[t]
    const b1 = others[Math.min(t + 1, others.length - 1)]
    const b2 = others[Math.min(t + 2, others.length - 1)]
    const b3 = others[Math.min(t + 3, others.length - 1)]
    K.sqdist4(a, b0, b1, b2, b3, np, scratch)
    for (let m = 0; m < 4 && t + m < others.length; m++) D[targets[t + m]] += f64[(scratch >> 3) + m]
  }
}

/** All pairwise squared distances (k × k, symmetric, zero diagonal), or null without SIMD. */
export function pairwiseSimd(inputs: readonly Float32Array[]): Float64Array | null {
  const K = simdKernels()
  if (K === null) return null
  const k = inputs.length
  const d = inputs[0].length
  const D = new Float64Array(k * k)
  const scratch = k * ROW_BYTES
  K.reserve(scratch + 64)
  const others: number[][] = []
  const targets: number[][] = []
  for (let i = 0; i < k; i++) {
    others.push([])
    targets.push([])
    for (let j = i + 1; j < k; j++) {
      others[i].push(j * ROW_BYTES)
      targets[i].push(i * k + j)
    }
  }
  for (let s = 0; s < d; s += BLOCK) {
    const e = Math.min(d, s + BLOCK)
    copyBlock(K, inputs, 0, s, e)
    for (let i = 0; i < k - 1; i++) distancesFromRow(K, i * ROW_BYTES, others[i], targets[i], D, pad4(e - s), scratch)
  }
  for (let i = 0; i < k; i++) for (let j = i + 1; j < k; j++) D[j * k + i] = D[i * k + j]
  return D
}

/** All pairwise squared distances on the native kernels, or null when they are not loaded (or k > 128). */
export function pairwiseNative(inputs: readonly Float32Array[]): Float64Array | null {
  const N = nativeKernels()
  const k = inputs.length
  if (N === undefined || typeof N.pairwise !== 'function' || k > 128) return null
  const D = new Float64Array(k * k)
  N.pairwise(inputs, D)
  return D
}

/** Squared distances from `v` to each input on the native kernels, or null when they are not loaded (or k > 128). */
export function distancesToNative(inputs: readonly Float32Array[], v: Float32Array): Float64Array | null {
  const N = nativeKernels()
  const k = inputs.length
  if (N === undefined || typeof N.distancesTo !== 'function' || k > 128) return null
  const out = new Float64Array(k)
  N.distancesTo(inputs, v, out)
  return out
}

/** Column sums and magnitudes of the inputs, computed with their distances (rules.ts `Shared`). */
export interface ColumnSums {
  /** sums[c] = Σ_i inputs[i][c], in Float64 */
  sums: Float64Array
  /** maxAbs[i] = max_c |inputs[i][c]| */
  maxAbs: Float32Array
}

let sumsScratch: Float64Array | undefined

/**
 * All pairwise squared distances and, in the same pass over the coordinates, the inputs'
 * column sums and largest magnitudes, on the native kernels; null when they are not loaded
 * (or k > 128).
 */
export function pairwiseSumsNative(inputs: readonly Float32Array[]): { D: Float64Array; sums: ColumnSums } | null {
  const N = nativeKernels()
  const k = inputs.length
  if (N === undefined || typeof N.pairwiseSums !== 'function' || k > 128) return null
  const D = new Float64Array(k * k)
  const d = inputs[0]!.length
  // one buffer reused from call to call (the sums live only within one aggregation, which runs
  // to completion): a fresh 8 MB at d = 10⁶ cost ~6 ms of page faults per call on the dev VM
  if (sumsScratch?.length !== d) sumsScratch = new Float64Array(d)
  const sums = sumsScratch
  const maxAbs = new Float32Array(k)
  N.pairwiseSums(inputs, D, sums, maxAbs)
  return { D, sums: { sums, maxAbs } }
}

/**
 * The mean of the inputs not listed in `excluded` (ascending indices), as (Σ all − Σ excluded)
 * / (k − |excluded|) from the column sums: reads only the excluded inputs. Null when the native
 * kernels are not loaded, or when an excluded input is more than 2⁸ times larger than every kept
 * one (the Float64 sums would then lose the kept inputs' low bits: the caller averages the kept
 * inputs directly).
 */
export function keptMeanNative(inputs: readonly Float32Array[], excluded: ArrayLike<number>, col: ColumnSums): Float32Array | null {
  const N = nativeKernels()
  const k = inputs.length
  if (N === undefined || typeof N.keptMean !== 'function' || excluded.length === 0 || excluded.length >= k) return null
  const out = new Float32Array(inputs[0]!.length)
  const isExcluded = new Uint8Array(k)
  const ex: Float32Array[] = []
  let maxExcluded = 0
  for (let t = 0; t < excluded.length; t++) {
    isExcluded[excluded[t]!] = 1
    ex.push(inputs[excluded[t]!]!)
    maxExcluded = Math.max(maxExcluded, col.maxAbs[excluded[t]!]!)
  }
  let maxKept = 0
  for (let i = 0; i < k; i++) if (isExcluded[i] === 0) maxKept = Math.max(maxKept, col.maxAbs[i]!)
  if (!(maxExcluded <= 256 * maxKept)) return null
  N.keptMean(ex, col.sums, 1 / (k - excluded.length), out)
  return out
}

/**
 * NNM's vectors on the native kernels (one Float32Array per distinct neighbourhood; identical
 * rows share an array), or null when they are not loaded (or k > 128).
 */
export function nnmVectorsNative(inputs: readonly Float32Array[], f: number, nb: Neighbourhoods): Float32Array[] | null {
  const N = nativeKernels()
  const k = inputs.length
  if (N === undefined || typeof N.nnmRows !== 'function' || k > 128 || nb.add.length > 128) return null
  const rows = Array.from({ length: nb.add.length }, () => new Float32Array(inputs[0]!.length))
  N.nnmRows(inputs, nnmSpec(nb), 1 / (k - f), rows)
  return Array.from(nb.rowOf, (r) => rows[r]!)
}

/** NNM's neighbourhoods as the native kernels take them: [nBase, base…, then per row nAdd, add…, nSub, sub…]. */
function nnmSpec(nb: Neighbourhoods): Int32Array {
  const spec: number[] = [nb.base.length, ...nb.base]
  for (let r = 0; r < nb.add.length; r++) spec.push(nb.add[r]!.length, ...nb.add[r]!, nb.sub[r]!.length, ...nb.sub[r]!)
  return Int32Array.from(spec)
}

/**
 * NNM followed by a coordinate-wise rule on the native kernels, fused per block (no k × d rows
 * in memory), or null when they are not loaded (or k > MAX_NETWORK_K). Inputs known finite.
 */
export function nnmSortedNative(inputs: readonly Float32Array[], f: number, nb: Neighbourhoods, reduce: SortedReduce): Float32Array | 'non-finite' | null {
  const N = nativeKernels()
  const k = inputs.length
  if (N === undefined || typeof N.nnmSorted !== 'function' || k > MAX_NETWORK_K) return null
  const out = new Float32Array(inputs[0]!.length)
  const finite = N.nnmSorted(inputs, nnmSpec(nb), 1 / (k - f), nb.rowOf, out, nativeNetwork(k, reduce), reduce.kind === 'trim' ? 0 : 1, reduce.kind === 'trim' ? reduce.trim : reduce.f, scaleOf(k, reduce))
  return finite ? out : 'non-finite'
}

/**
 * The comparators the native kernels run after sorting each block of 16 wires in registers:
 * Batcher's network from stage 16 on, without the comparators that cannot change the
 * reduction. Pruning, from the last comparator back: the reduction is symmetric in the wires
 * of each class (trim t: the kept middle [t, k − t), and the dropped ends together; meamed:
 * the middle without the median's wires, the median's wires, each end wire alone). A comparator
 * whose two wires are in one class leaves that class's multiset of values as it is, so it goes;
 * one that stays puts its two wires in a class of their own (sound: what follows is symmetric
 * in them). Cached per (k, reduction).
 */
function nativeNetwork(k: number, reduce: SortedReduce): Int32Array {
  const key = `${k}/${reduce.kind}/${reduce.kind === 'trim' ? reduce.trim : reduce.f}`
  let pairs = networks.get(key)
  if (pairs === undefined) {
    const cls = new Int32Array(k)
    const h = k >> 1
    for (let i = 0; i < k; i++) {
      if (reduce.kind === 'trim') cls[i] = i >= reduce.trim && i < k - reduce.trim ? 1 : 0
      else if (i < reduce.f || i >= k - reduce.f) cls[i] = 3 + i
      else cls[i] = i === h || ((k & 1) === 0 && i === h - 1) ? 2 : 1
    }
    let next = 3 + k
    const net = sortingNetwork(k, 16)
    const kept: number[] = []
    for (let p = net.length - 1; p >= 0; p--) {
      const [a, b] = net[p]
      if (cls[a] === cls[b]) continue
      kept.push(b, a)
      cls[a] = cls[b] = next++
    }
    pairs = Int32Array.from(kept.reverse())
    networks.set(key, pairs)
  }
  return pairs
}

/** Squared distance of every input to v, or null without SIMD. */
export function distancesToSimd(inputs: readonly Float32Array[], v: Float32Array): Float64Array | null {
  const K = simdKernels()
  if (K === null) return null
  const k = inputs.length
  const d = v.length
  const out = new Float64Array(k)
  const others: number[] = []
  const targets: number[] = []
  const rows: Float32Array[] = []
  for (let i = 0; i < k; i++) {
    if (inputs[i] === v) continue
    others.push((1 + rows.length) * ROW_BYTES)
    targets.push(i)
    rows.push(inputs[i])
  }
  const scratch = (1 + rows.length) * ROW_BYTES
  K.reserve(scratch + 64)
  for (let s = 0; s < d; s += BLOCK) {
    const e = Math.min(d, s + BLOCK)
    copyBlock(K, [v, ...rows], 0, s, e)
    distancesFromRow(K, 0, others, targets, out, pad4(e - s), scratch)
  }
  return out
}

/** 1/(number of values the reduction averages). */
function scaleOf(k: number, reduce: SortedReduce): number {
  return 1 / (reduce.kind === 'trim' ? k - 2 * reduce.trim : k - reduce.f)
}

/**
 * A coordinate-wise rule by a lane-wise sorting network: trimmed mean dropping `trim` values
 * at each end (⌊(k−1)/2⌋ gives the median, 0 the mean) or meamed. Returns null without SIMD
 * (or for k > MAX_NETWORK_K), `'non-finite'` when an input holds NaN/±∞.
 */
export function sortedSimd(inputs: readonly Float32Array[], reduce: SortedReduce): Float32Array | 'non-finite' | null {
  const K = simdKernels()
  const k = inputs.length
  if (K === null || k > MAX_NETWORK_K) return null
  const d = inputs[0].length
  const kernel = K.sorted(k, reduce)
  const table = k * ROW_BYTES
  const out = align16(table + 4 * k)
  K.reserve(out + ROW_BYTES)
  const i32 = K.i32()
  for (let i = 0; i < k; i++) i32[(table >> 2) + i] = i * ROW_BYTES
  const result = new Float32Array(d)
  const inv = scaleOf(k, reduce)
  let check = 0
  for (let s = 0; s < d; s += BLOCK) {
    const e = Math.min(d, s + BLOCK)
    copyBlock(K, inputs, 0, s, e)
    check += kernel(table, 4 * pad4(e - s), out, inv)
    result.set(K.f32().subarray(out >> 2, (out >> 2) + (e - s)), s)
  }
  return check === 0 ? result : 'non-finite'
}

const networks = new Map<string, Int32Array>()

/**
 * A coordinate-wise rule on monna's native kernels (the same network and sums as the wasm
 * kernel, on the inputs in place, 8 coordinates per AVX2 instruction, over the native threads).
 * Returns null when the addon is not loaded (or k > MAX_NETWORK_K), `'non-finite'` when an
 * input holds NaN/±∞.
 */
export function sortedNative(inputs: readonly Float32Array[], reduce: SortedReduce): Float32Array | 'non-finite' | null {
  const N = nativeKernels()
  const k = inputs.length
  if (N === undefined || typeof N.sortedReduce !== 'function' || k > MAX_NETWORK_K) return null
  const out = new Float32Array(inputs[0].length)
  const finite = N.sortedReduce(inputs, out, nativeNetwork(k, reduce), reduce.kind === 'trim' ? 0 : 1, reduce.kind === 'trim' ? reduce.trim : reduce.f, scaleOf(k, reduce))
  return finite ? out : 'non-finite'
}

/**
 * NNM followed by a coordinate-wise rule, block by block: NNM rows = base sum ± a few rows in
 * Float64, then the sorting network. The inputs must already be known finite (the
 * distances that defined the neighbourhoods were).
 */
export function nnmSortedSimd(inputs: readonly Float32Array[], f: number, nb: Neighbourhoods, reduce: SortedReduce): Float32Array | null {
  const K = simdKernels()
  const k = inputs.length
  if (K === null || k > MAX_NETWORK_K) return null
  const d = inputs[0].length
  const distinct = nb.add.length
  const kernel = K.sorted(k, reduce)
  // layout: k input rows | distinct NNM rows | base sum (f64) | tables (i32)
  const yOf = (r: number) => (k + r) * ROW_BYTES
  const baseAcc = (k + distinct) * ROW_BYTES
  const tables = baseAcc + BLOCK * 8
  const tableOut = tables
  const tableBase = align16(tableOut + 4 * k)
  const tableLists: { add: number; sub: number }[] = []
  let at = align16(tableBase + 4 * nb.base.length)
  for (let r = 0; r < distinct; r++) {
    tableLists.push({ add: at, sub: at + 4 * nb.add[r].length })
    at = align16(at + 4 * (nb.add[r].length + nb.sub[r].length))
  }
  const out = at
  K.reserve(out + ROW_BYTES)
  const i32 = K.i32()
  for (let i = 0; i < k; i++) i32[(tableOut >> 2) + i] = yOf(nb.rowOf[i])
  for (let t = 0; t < nb.base.length; t++) i32[(tableBase >> 2) + t] = nb.base[t] * ROW_BYTES
  for (let r = 0; r < distinct; r++) {
    nb.add[r].forEach((j, t) => {
      i32[(tableLists[r].add >> 2) + t] = j * ROW_BYTES
    })
    nb.sub[r].forEach((j, t) => {
      i32[(tableLists[r].sub >> 2) + t] = j * ROW_BYTES
    })
  }
  const result = new Float32Array(d)
  const scale = 1 / (k - f)
  const inv = scaleOf(k, reduce)
  for (let s = 0; s < d; s += BLOCK) {
    const e = Math.min(d, s + BLOCK)
    const np = pad4(e - s)
    copyBlock(K, inputs, 0, s, e)
    K.sumRows(baseAcc, tableBase, nb.base.length, np)
    for (let r = 0; r < distinct; r++) {
      K.nnmRow(yOf(r), baseAcc, tableLists[r].add, nb.add[r].length, tableLists[r].sub, nb.sub[r].length, np, scale)
    }
    kernel(tableOut, 4 * np, out, inv)
    result.set(K.f32().subarray(out >> 2, (out >> 2) + (e - s)), s)
  }
  return result
}

/**
 * The NNM vectors themselves (one Float32Array per distinct neighbourhood; identical rows
 * share an array), block by block with the SIMD row kernels, or null without SIMD.
 */
export function nnmVectorsSimd(inputs: readonly Float32Array[], f: number, nb: Neighbourhoods): Float32Array[] | null {
  const K = simdKernels()
  if (K === null) return null
  const k = inputs.length
  const d = inputs[0].length
  const distinct = nb.add.length
  const yOf = (r: number) => (k + r) * ROW_BYTES
  const baseAcc = (k + distinct) * ROW_BYTES
  const tableBase = baseAcc + BLOCK * 8
  const tableLists: { add: number; sub: number }[] = []
  let at = align16(tableBase + 4 * nb.base.length)
  for (let r = 0; r < distinct; r++) {
    tableLists.push({ add: at, sub: at + 4 * nb.add[r].length })
    at = align16(at + 4 * (nb.add[r].length + nb.sub[r].length))
  }
  K.reserve(at)
  const i32 = K.i32()
  for (let t = 0; t < nb.base.length; t++) i32[(tableBase >> 2) + t] = nb.base[t] * ROW_BYTES
  for (let r = 0; r < distinct; r++) {
    nb.add[r].forEach((j, t) => {
      i32[(tableLists[r].add >> 2) + t] = j * ROW_BYTES
    })
    nb.sub[r].forEach((j, t) => {
      i32[(tableLists[r].sub >> 2) + t] = j * ROW_BYTES
    })
  }
  const rows = Array.from({ length: distinct }, () => new Float32Array(d))
  const scale = 1 / (k - f)
  for (let s = 0; s < d; s += BLOCK) {
    const e = Math.min(d, s + BLOCK)
    const np = pad4(e - s)
    copyBlock(K, inputs, 0, s, e)
    K.sumRows(baseAcc, tableBase, nb.base.length, np)
    const f32 = K.f32()
    for (let r = 0; r < distinct; r++) {
      K.nnmRow(yOf(r), baseAcc, tableLists[r].add, nb.add[r].length, tableLists[r].sub, nb.sub[r].length, np, scale)
      rows[r].set(f32.subarray(yOf(r) >> 2, (yOf(r) >> 2) + (e - s)), s)
    }
  }
  return Array.from(nb.rowOf, (r) => rows[r])
}
