/**
 * The aggregation rules of ALGORITHMS.md §4. Each takes validated inputs (same length; the
 * non-finite check is fused into each rule's first pass: a non-finite sum, distance or check
 * value triggers `assertFinite`, which names the input) and returns a
 * new Float32Array that never aliases an input.
 */
import { type ColumnReducer, meamedColumn, meanColumn, medianColumn, trimmedMeanColumn } from './coordinatewise.ts'
import { MissingContextError, TooManySubsetsError } from './errors.ts'
import { type ColumnSums, distancesToNative, distancesToSimd, keptMeanNative, nnmSortedNative, nnmSortedSimd, nnmVectorsNative, nnmVectorsSimd, pairwiseNative, pairwiseSimd, pairwiseSumsNative, sortedNative, sortedSimd } from './fast.ts'
import {
  allFinite,
  assertFinite,
  BLOCK,
  binomial,
  distancesTo,
  orderBy,
  pairwiseSquaredDistances,
  weightedMean,
} from './kernels.ts'
import type { SortedReduce } from './simd.ts'

export interface RuleContext {
  own?: number
  reference?: Float32Array
}

/** Work shared between a pre-aggregator and the rule it feeds (distances computed once). */
export interface Shared {
  distances?: Float64Array
  /** the inputs' column sums, when the distances were computed with them (native kernels) */
  sums?: ColumnSums
}

/**
 * The inputs' pairwise squared distances, computed once per call. `withSums`: also their column
 * sums in the same pass (into shared.sums), when the native kernels are loaded.
 */
export function getDistances(rule: string, inputs: readonly Float32Array[], shared: Shared, withSums = false): Float64Array {
  if (shared.distances === undefined) {
    const fused = withSums ? pairwiseSumsNative(inputs) : null
    let D = fused?.D ?? pairwiseNative(inputs) ?? pairwiseSimd(inputs) ?? pairwiseSquaredDistances(inputs)
    if (inputs.length === 1 || !allFinite(D)) {
      assertFinite(rule, inputs)
      // finite inputs whose Float32 difference overflowed in the native or SIMD kernel: redo in Float64
      D = pairwiseSquaredDistances(inputs)
    }
    shared.distances = D
    if (fused !== null) shared.sums = fused.sums
  }
  return shared.distances
}

/** Distances to v for inputs known finite: SIMD, redone in Float64 if a Float32 square overflowed. */
function distancesExact(inputs: readonly Float32Array[], v: Float32Array): Float64Array {
  const dist = distancesToSimd(inputs, v)
  return dist !== null && allFinite(dist) ? dist : distancesTo(inputs, v)
}

/** Squared distances of every input to v (SIMD when available); throws on non-finite inputs or v. */
function distancesChecked(rule: string, inputs: readonly Float32Array[], v: Float32Array, reference?: Float32Array): Float64Array {
  let dist = distancesToNative(inputs, v) ?? distancesToSimd(inputs, v) ?? distancesTo(inputs, v)
  if (inputs.length === 1 || !allFinite(dist)) {
    assertFinite(rule, inputs, reference)
    dist = distancesTo(inputs, v)
  }
  return dist
}

function finiteOrThrow(rule: string, ok: boolean, inputs: readonly Float32Array[], reference?: Float32Array): void {
  if (!ok) assertFinite(rule, inputs, reference)
}

// ---------------------------------------------------------------------------------------
// mean and the coordinate-wise rules

export function mean(rule: string, inputs: readonly Float32Array[]): Float32Array {
  const out = new Float32Array(inputs[0].length)
  finiteOrThrow(rule, weightedMean(inputs, out), inputs)
  return out
}

export type CoordinatewiseRule = 'mean' | 'cwmed' | 'cwtm' | 'meamed'
const columnReducers: Record<CoordinatewiseRule, ColumnReducer> = {
  mean: meanColumn,
  cwmed: medianColumn,
  cwtm: trimmedMeanColumn,
  meamed: meamedColumn,
}

/** The rule as a reduction of each coordinate's sorted values (for the SIMD sorting network). */
function sortedReduceOf(kind: CoordinatewiseRule, k: number, f: number): SortedReduce {
  if (kind === 'meamed') return { kind: 'meamed', f }
  return { kind: 'trim', trim: kind === 'mean' ? 0 : kind === 'cwtm' ? f : (k - 1) >> 1 }
}

/**
 * A coordinate-wise rule: the sorting network on the native kernels when built, else on wasm
 * SIMD, else JS quickselect (all three give the same values).
 */
export function coordinatewise(rule: string, inputs: readonly Float32Array[], f: number, kind: CoordinatewiseRule): Float32Array {
  const reduce = sortedReduceOf(kind, inputs.length, f)
  const fast = sortedNative(inputs, reduce) ?? sortedSimd(inputs, reduce)
  if (fast === 'non-finite') assertFinite(rule, inputs)
  if (fast !== null && fast !== 'non-finite') return fast
  return coordinatewiseJs(rule, inputs, f, columnReducers[kind])
}

/** Applies a column reducer to every coordinate; the column sum doubles as the finiteness check. */
export function coordinatewiseJs(rule: string, inputs: readonly Float32Array[], f: number, reduce: ColumnReducer): Float32Array {
  const k = inputs.length
  const d = inputs[0].length
  const out = new Float32Array(d)
  const col = new Float64Array(k)
  for (let s = 0; s < d; s += BLOCK) {
    const e = Math.min(d, s + BLOCK)
    let check = 0
    for (let c = s; c < e; c++) {
      for (let i = 0; i < k; i++) {
        const v = inputs[i][c]
        col[i] = v
        check += v * 0
      }
      out[c] = reduce(col, k, f)
    }
    if (check !== 0) assertFinite(rule, inputs)
  }
  return out
}

// ---------------------------------------------------------------------------------------
// distance-based rules

/** Krum scores: sum of squared distances to the k − f − 2 nearest other inputs (Blanchard et al. 2017). */
export function krumScores(D: Float64Array, k: number, f: number): Float64Array {
  const m = k - f - 2
  const scores = new Float64Array(k)
  const row = new Float64Array(k - 1)
  for (let i = 0; i < k; i++) {
    let n = 0
    for (let j = 0; j < k; j++) if (j !== i) row[n++] = D[i * k + j]
    row.sort()
    let s = 0
    for (let t = 0; t < m; t++) s += row[t]
    scores[i] = s
  }
  return scores
}

export function krum(rule: string, inputs: readonly Float32Array[], f: number, shared: Shared): Float32Array {
  const k = inputs.length
  const scores = krumScores(getDistances(rule, inputs, shared), k, f)
  const best = orderBy(scores, k)[0]
  return Float32Array.from(inputs[best])
}

/**
 * The mean of the m best-scoring inputs. With the native kernels, the distance pass also sums
 * all k inputs (their blocks are in cache for it), so when fewer inputs are left out than kept,
 * the mean is (Σ all − Σ left out)/m, reading only the k − m left out instead of the m kept.
 */
export function multikrum(rule: string, inputs: readonly Float32Array[], f: number, m: number | undefined, shared: Shared): Float32Array {
  const k = inputs.length
  const kept = m ?? k - f
  const order = orderBy(krumScores(getDistances(rule, inputs, shared, kept > k - kept), k, f), k)
  if (shared.sums !== undefined) {
    const fast = keptMeanNative(inputs, order.slice(kept).sort(), shared.sums)
    if (fast !== null) return fast
  }
  const out = new Float32Array(inputs[0].length)
  weightedMean(Array.from(order.subarray(0, kept), (i) => inputs[i]), out)
  return out
}

/**
 * Minimum-diameter averaging (El Mhamdi et al. 2018): the mean of the size-(k − f) subset of
 * smallest diameter. Enumerates the C(k, f) excluded sets; the diameter of a subset is the
 * first pair, in order of decreasing distance, with both ends kept. Ties: the first KEPT
 * subset in lexicographic order of its indices — ByzFL's convention (it enumerates the kept
 * subsets in that order and keeps the first of smallest diameter), so results compare case by
 * case: [[1,2,3],[4,5,6],[7,8,9]], f = 1 → [2.5, 3.5, 4.5].
 */
export function mda(rule: string, inputs: readonly Float32Array[], f: number, maxSubsets: number, shared: Shared): Float32Array {
  const k = inputs.length
  checkSubsets(rule, k, f, maxSubsets)
  const excluded = mdaExcluded(getDistances(rule, inputs, shared), k, f)
  const kept: Float32Array[] = []
  for (let i = 0; i < k; i++) if (excluded[i] === 0) kept.push(inputs[i])
  const out = new Float32Array(inputs[0].length)
  weightedMean(kept, out)
  return out
}

function checkSubsets(rule: string, k: number, f: number, maxSubsets: number): void {
  const subsets = binomial(k, f)
  if (subsets > maxSubsets) throw new TooManySubsetsError(rule, k, f, subsets, maxSubsets)
}

/** mda's choice on the distance matrix D: excluded[i] = 1 for the f inputs it leaves out. */
function mdaExcluded(D: Float64Array, k: number, f: number): Uint8Array {
  const pairs = k * (k - 1) / 2
  const pa = new Int32Array(pairs)
  const pb = new Int32Array(pairs)
  const pd = new Float64Array(pairs)
  {
    const tmp: { a: number; b: number; d: number }[] = []
    for (let i = 0; i < k; i++) for (let j = i + 1; j < k; j++) tmp.push({ a: i, b: j, d: D[i * k + j] })
    tmp.sort((x, y) => y.d - x.d || x.a - y.a || x.b - y.b)
    tmp.forEach((p, t) => {
      pa[t] = p.a
      pb[t] = p.b
      pd[t] = p.d
    })
  }
  const excluded = new Uint8Array(k)
  const comb = new Int32Array(f)
  for (let t = 0; t < f; t++) comb[t] = t
  let best = Number.POSITIVE_INFINITY
  let bestComb = Int32Array.from(comb)
  for (;;) {
    for (let t = 0; t < f; t++) excluded[comb[t]] = 1
    let diameter = 0
    for (let p = 0; p < pairs; p++) {
      if (excluded[pa[p]] === 0 && excluded[pb[p]] === 0) {
        diameter = pd[p]
        break
      }
    }
    if (diameter < best || (diameter === best && keptFirst(comb, bestComb, k))) {
      best = diameter
      bestComb = Int32Array.from(comb)
    }
    for (let t = 0; t < f; t++) excluded[comb[t]] = 0
    // next combination
    let t = f - 1
    while (t >= 0 && comb[t] === k - f + t) t--
    if (t < 0) break
    comb[t]++
    for (let u = t + 1; u < f; u++) comb[u] = comb[u - 1] + 1
  }
  for (let t = 0; t < f; t++) excluded[bestComb[t]] = 1
  return excluded
}

/**
 * Whether the subset kept by excluding `a` comes before the one kept by excluding `b`, in
 * lexicographic order of kept indices: at the first index excluded by exactly one of them, the
 * subset that keeps it comes first.
 */
function keptFirst(a: Int32Array, b: Int32Array, k: number): boolean {
  const inA = new Uint8Array(k)
  const inB = new Uint8Array(k)
  for (const i of a) inA[i] = 1
  for (const i of b) inB[i] = 1
  for (let i = 0; i < k; i++) if (inA[i] !== inB[i]) return inA[i] === 0
  return false
}

/** MoNNA's rule: mean of the k − f inputs nearest to `inputs[own]` (own always kept; ties by index). */
export function nna(rule: string, inputs: readonly Float32Array[], f: number, own: number | undefined, shared: Shared): Float32Array {
  const k = inputs.length
  if (own === undefined) {
    throw new MissingContextError(rule, 'own', 'nna averages around the node\'s own vector: pass context.own (its index in inputs)')
  }
  const dist = shared.distances !== undefined ? shared.distances.subarray(own * k, own * k + k) : distancesChecked(rule, inputs, inputs[own])
  const order = orderBy(dist, k, own)
  const out = new Float32Array(inputs[0].length)
  weightedMean(Array.from(order.subarray(0, k - f), (i) => inputs[i]), out)
  return out
}

/** Comparative elimination (Gupta et al., arXiv:2108.11769): drop the f inputs farthest from the reference. */
export function ce(rule: string, inputs: readonly Float32Array[], f: number, ctx: RuleContext): Float32Array {
  const k = inputs.length
  const center = centerOf(rule, inputs, ctx, 'ce drops the inputs farthest from the current model')
  const dist = distancesChecked(rule, inputs, center, ctx.reference)
  const order = orderBy(dist, k)
  const out = new Float32Array(inputs[0].length)
  weightedMean(Array.from(order.subarray(0, k - f), (i) => inputs[i]), out)
  return out
}

function centerOf(rule: string, inputs: readonly Float32Array[], ctx: RuleContext, why: string): Float32Array {
  if (ctx.reference !== undefined) return ctx.reference
  if (ctx.own !== undefined) return inputs[ctx.own]
  throw new MissingContextError(rule, 'reference', `${why}: pass context.reference (or context.own)`)
}

/** Comparative gradient elimination (Gupta & Vaidya 2020): drop the f largest-norm inputs, average the rest. */
export function cge(rule: string, inputs: readonly Float32Array[], f: number): Float32Array {
  const k = inputs.length
  const norms = new Float64Array(k)
  for (let i = 0; i < k; i++) {
    const x = inputs[i]
    let s = 0
    for (let c = 0; c < x.length; c++) s += x[c] * x[c]
    norms[i] = s
  }
  if (!allFinite(norms)) assertFinite(rule, inputs)
  const order = orderBy(norms, k)
  const out = new Float32Array(inputs[0].length)
  weightedMean(Array.from(order.subarray(0, k - f), (i) => inputs[i]), out)
  return out
}

// ---------------------------------------------------------------------------------------
// iterative rules

export type GmStart = 'zero' | 'mean' | 'cwmed'

/**
 * Geometric median by smoothed Weiszfeld (Pillutla et al., RFA): z ← Σwᵢxᵢ/Σwᵢ with
 * wᵢ = 1/max(ν, ‖z − xᵢ‖), T iterations from `start`. Work space O(d).
 */
export function gm(rule: string, inputs: readonly Float32Array[], f: number, nu: number, T: number, start: GmStart): Float32Array {
  assertFinite(rule, inputs)
  const k = inputs.length
  let z: Float32Array
  if (start === 'zero') z = new Float32Array(inputs[0].length)
  else if (start === 'mean') z = mean(rule, inputs)
  else z = coordinatewise(rule, inputs, f, 'cwmed')
  const w = new Float64Array(k)
  for (let t = 0; t < T; t++) {
    const dist = distancesExact(inputs, z)
    for (let i = 0; i < k; i++) w[i] = 1 / Math.max(nu, Math.sqrt(dist[i]))
    weightedMean(inputs, z, w)
  }
  return z
}

/**
 * Centered clipping (Karimireddy, He & Jaggi 2021): v ← v + (1/k)·Σ clip(xᵢ − v, τ),
 * clip(u, τ) = u·min(1, τ/‖u‖), L iterations from v₀ = context.reference, else the own
 * input (context.own, the self-centred SCC variant), else the coordinate-wise median.
 * Work space O(d) (one Float64 accumulator).
 */
export function cc(rule: string, inputs: readonly Float32Array[], f: number, tau: number, L: number, ctx: RuleContext): Float32Array {
  assertFinite(rule, inputs, ctx.reference)
  const k = inputs.length
  const d = inputs[0].length
  let v: Float32Array
  if (ctx.reference !== undefined) v = Float32Array.from(ctx.reference)
  else if (ctx.own !== undefined) v = Float32Array.from(inputs[ctx.own])
  else v = coordinatewise(rule, inputs, f, 'cwmed')
  const scale = new Float64Array(k)
  const acc = new Float64Array(Math.min(BLOCK, d))
  for (let l = 0; l < L; l++) {
    let sumScale = 0
    const dist = distancesExact(inputs, v)
    for (let i = 0; i < k; i++) {
      const norm = Math.sqrt(dist[i])
      scale[i] = norm <= tau ? 1 : tau / norm
      sumScale += scale[i]
    }
    // v + (1/k)Σ sᵢ(xᵢ − v) = v·(1 − Σsᵢ/k) + (1/k)Σ sᵢxᵢ
    const keep = 1 - sumScale / k
    for (let s = 0; s < d; s += BLOCK) {
      const e = Math.min(d, s + BLOCK)
      const n = e - s
      acc.fill(0, 0, n)
      for (let i = 0; i < k; i++) {
        const w = scale[i]
        const x = inputs[i]
        for (let c = 0; c < n; c++) acc[c] += w * x[s + c]
      }
      for (let c = 0; c < n; c++) v[s + c] = v[s + c] * keep + acc[c] / k
    }
  }
  return v
}

// ---------------------------------------------------------------------------------------
// nearest-neighbour mixing (NNM, Allouah et al. 2023)

/**
 * Neighbourhoods of NNM: row i = the k − f inputs nearest to input i (itself first, ties by
 * index). Expressed against a base set B = inputs that belong to more than half of the
 * neighbourhoods, so that row i's sum is Σ_B + Σ_{add_i} − Σ_{sub_i}. An input in B is near
 * at least one honest input, so subtracting it never cancels a huge adversarial value (which
 * a "total minus complement" trick would). Identical rows are computed once.
 */
export interface Neighbourhoods {
  base: Int32Array
  /** distinct rows: indices to add and to subtract relative to the base */
  add: Int32Array[]
  sub: Int32Array[]
  /** row i uses distinct row rowOf[i] */
  rowOf: Int32Array
  /** members[r][j] = 1 when input j is in distinct row r's neighbourhood */
  members: Uint8Array[]
}

export function neighbourhoods(D: Float64Array, k: number, f: number): Neighbourhoods {
  const m = k - f
  const member: Uint8Array[] = []
  const count = new Int32Array(k)
  for (let i = 0; i < k; i++) {
    const order = orderBy(D.subarray(i * k, i * k + k), k, i)
    const mem = new Uint8Array(k)
    for (let t = 0; t < m; t++) {
      mem[order[t]] = 1
      count[order[t]]++
    }
    member.push(mem)
  }
  const baseList: number[] = []
  for (let j = 0; j < k; j++) if (2 * count[j] > k) baseList.push(j)
  const inBase = new Uint8Array(k)
  for (const j of baseList) inBase[j] = 1
  const keys = new Map<string, number>()
  const add: Int32Array[] = []
  const sub: Int32Array[] = []
  const rowOf = new Int32Array(k)
  const members: Uint8Array[] = []
  for (let i = 0; i < k; i++) {
    const key = member[i].join('')
    let r = keys.get(key)
    if (r === undefined) {
      const a: number[] = []
      const s: number[] = []
      for (let j = 0; j < k; j++) {
        if (member[i][j] === 1 && inBase[j] === 0) a.push(j)
        else if (member[i][j] === 0 && inBase[j] === 1) s.push(j)
      }
      r = add.length
      keys.set(key, r)
      add.push(Int32Array.from(a))
      sub.push(Int32Array.from(s))
      members.push(member[i])
    }
    rowOf[i] = r
  }
  return { base: Int32Array.from(baseList), add, sub, rowOf, members }
}

/** nnm followed by a coordinate-wise rule, fused per coordinate: O(k) scratch, no k × d copy. */
export function nnmCoordinatewise(rule: string, inputs: readonly Float32Array[], f: number, kind: CoordinatewiseRule, shared: Shared): Float32Array {
  const k = inputs.length
  const d = inputs[0].length
  const nb = neighbourhoods(getDistances(rule, inputs, shared), k, f)
  // inputs known finite (the distances were): a non-finite row is an overflow, left to the JS path
  const native = nnmSortedNative(inputs, f, nb, sortedReduceOf(kind, k, f))
  if (native !== null && native !== 'non-finite') return native
  const fast = nnmSortedSimd(inputs, f, nb, sortedReduceOf(kind, k, f))
  if (fast !== null) return fast
  const reduce = columnReducers[kind]
  const inv = 1 / (k - f)
  const rows = nb.add.length
  const col = new Float64Array(k)
  const ys = new Float64Array(rows)
  const y = new Float64Array(k)
  const out = new Float32Array(d)
  const { base, add, sub, rowOf } = nb
  const nBase = base.length
  for (let c = 0; c < d; c++) {
    for (let i = 0; i < k; i++) col[i] = inputs[i][c]
    let b = 0
    for (let t = 0; t < nBase; t++) b += col[base[t]]
    for (let r = 0; r < rows; r++) {
      let s = b
      const a = add[r]
      for (let t = 0; t < a.length; t++) s += col[a[t]]
      const u = sub[r]
      for (let t = 0; t < u.length; t++) s -= col[u[t]]
      ys[r] = s * inv
    }
    for (let i = 0; i < k; i++) y[i] = ys[rowOf[i]]
    out[c] = reduce(y, k, f)
  }
  return out
}

/** nnm materialised: k new vectors (O(k·d) extra memory), for rules that are not coordinate-wise. */
export function nnmVectors(rule: string, inputs: readonly Float32Array[], f: number, shared: Shared): Float32Array[] {
  const k = inputs.length
  const d = inputs[0].length
  const nb = neighbourhoods(getDistances(rule, inputs, shared), k, f)
  const fast = nnmVectorsNative(inputs, f, nb) ?? nnmVectorsSimd(inputs, f, nb)
  if (fast !== null) return fast
  const { base, add, sub, rowOf } = nb
  const rows = add.length
  const inv = 1 / (k - f)
  const distinct: Float32Array[] = []
  const baseSum = new Float64Array(Math.min(BLOCK, d))
  for (let r = 0; r < rows; r++) distinct.push(new Float32Array(d))
  for (let s = 0; s < d; s += BLOCK) {
    const e = Math.min(d, s + BLOCK)
    const n = e - s
    baseSum.fill(0, 0, n)
    for (let t = 0; t < base.length; t++) {
      const x = inputs[base[t]]
      for (let c = 0; c < n; c++) baseSum[c] += x[s + c]
    }
    for (let r = 0; r < rows; r++) {
      const out = distinct[r]
      const a = add[r]
      const u = sub[r]
      for (let c = 0; c < n; c++) {
        let v = baseSum[c]
        for (let t = 0; t < a.length; t++) v += inputs[a[t]][s + c]
        for (let t = 0; t < u.length; t++) v -= inputs[u[t]][s + c]
        out[s + c] = v * inv
      }
    }
  }
  // identical rows share one array: the rules never write to their inputs
  return Array.from(rowOf, (r) => distinct[r])
}


// ---------------------------------------------------------------------------------------
// nnm followed by a rule that needs only distances (krum, multikrum, mda, nna): no NNM vector
// is materialised

/**
 * Squared distances between NNM's vectors y_i = (1/m)·Σ_{j ∈ N_i} x_j (m = k − f), from the
 * inputs' own distance matrix D, without a pass over the coordinates: with w = (1_{N_a} −
 * 1_{N_b})/m (Σw = 0), ‖y_a − y_b‖² = −½·wᵀDw = (1/m²)·[Σ_{A×B} D − ½Σ_{A×A} D − ½Σ_{B×B} D],
 * A = N_a \ N_b, B = N_b \ N_a (|A| = |B| ≤ f). In Float64 on D's values; the sums cancel
 * by a factor of at most about |A|, so the result keeps D's relative precision to a few
 * ulps times f (rounding below 0 is clamped to 0; identical neighbourhoods give exactly 0).
 */
export function nnmDistances(D: Float64Array, k: number, f: number, nb: Neighbourhoods): Float64Array {
  const rows = nb.members.length
  const inv = 1 / ((k - f) * (k - f))
  const R = new Float64Array(rows * rows)
  const A: number[] = []
  const B: number[] = []
  for (let r = 0; r < rows; r++) {
    for (let q = r + 1; q < rows; q++) {
      A.length = 0
      B.length = 0
      const mr = nb.members[r]
      const mq = nb.members[q]
      for (let j = 0; j < k; j++) {
        if (mr[j] === 1 && mq[j] === 0) A.push(j)
        else if (mr[j] === 0 && mq[j] === 1) B.push(j)
      }
      let cross = 0
      let within = 0
      for (const a of A) for (const b of B) cross += D[a * k + b]
      for (let t = 0; t < A.length; t++) for (let u = t + 1; u < A.length; u++) within += D[A[t] * k + A[u]]
      for (let t = 0; t < B.length; t++) for (let u = t + 1; u < B.length; u++) within += D[B[t] * k + B[u]]
      // ½Σ_{A×A} over ordered pairs = Σ over unordered pairs (zero diagonal)
      const v = Math.max(0, (cross - within) * inv)
      R[r * rows + q] = v
      R[q * rows + r] = v
    }
  }
  const Y = new Float64Array(k * k)
  for (let i = 0; i < k; i++) for (let j = 0; j < k; j++) Y[i * k + j] = R[nb.rowOf[i] * rows + nb.rowOf[j]]
  return Y
}

/** Mean of the NNM vectors of the inputs listed in `chosen`, as one weighted mean of the inputs. */
function nnmMeanOf(inputs: readonly Float32Array[], nb: Neighbourhoods, chosen: ArrayLike<number>): Float32Array {
  const k = inputs.length
  const counts = new Float64Array(k)
  for (let t = 0; t < chosen.length; t++) {
    const mem = nb.members[nb.rowOf[chosen[t]]]
    for (let j = 0; j < k; j++) counts[j] += mem[j]
  }
  const out = new Float32Array(inputs[0].length)
  weightedMean(inputs, out, counts)
  return out
}

export type NnmDistanceRule = 'krum' | 'multikrum' | 'mda' | 'nna'

/**
 * nnm+krum, nnm+multikrum, nnm+mda, nnm+nna: the rule's choice on the NNM vectors' distances
 * (nnmDistances), and its output — a mean of NNM vectors — as one weighted mean of the inputs.
 * One pass over the inputs for the distances and one for the output, instead of writing k
 * vectors of d coordinates and computing their distances again.
 */
export function nnmByDistances(
  rule: string,
  inputs: readonly Float32Array[],
  f: number,
  base: NnmDistanceRule,
  params: { m?: number; maxSubsets?: number; own?: number },
  shared: Shared,
): Float32Array {
  const k = inputs.length
  if (base === 'mda') checkSubsets(rule, k, f, params.maxSubsets as number)
  if (base === 'nna' && params.own === undefined) {
    throw new MissingContextError(rule, 'own', 'nna averages around the node\'s own vector: pass context.own (its index in inputs)')
  }
  const nb = neighbourhoods(getDistances(rule, inputs, shared), k, f)
  const Y = nnmDistances(shared.distances as Float64Array, k, f, nb)
  let chosen: ArrayLike<number>
  if (base === 'krum' || base === 'multikrum') {
    const order = orderBy(krumScores(Y, k, f), k)
    chosen = order.subarray(0, base === 'krum' ? 1 : (params.m ?? k - f))
  } else if (base === 'mda') {
    const excluded = mdaExcluded(Y, k, f)
    const kept: number[] = []
    for (let i = 0; i < k; i++) if (excluded[i] === 0) kept.push(i)
    chosen = kept
  } else {
    const own = params.own as number
    chosen = orderBy(Y.subarray(own * k, own * k + k), k, own).subarray(0, k - f)
  }
  return nnmMeanOf(inputs, nb, chosen)
}
