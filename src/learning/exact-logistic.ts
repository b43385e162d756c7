/**
 * The 2f-redundant logistic-regression generator (issue 18 item 2; docs/exact.md §2): dataset
 * `logistic` with `rank` and `blocks`. The train split is `blocks` consecutive blocks; a block is
 * made of groups of `logisticGroup` = 4 identical examples x, each x in its block's random
 * `rank`-dimensional subspace, with its logit pinned to x·w* = ln(k / (4 − k)), k ∈ {1, 2, 3}
 * drawn uniformly, and k of the 4 copies labelled 1, the others 0. So the labels' frequency at x
 * is exactly σ(x·w*): every group's logistic gradient vanishes at (w*, b* = 0),
 *
 *   Σ_copies (σ(x·w*) − y)·[x, 1] = (4·k/4 − k)·[x, 1] = 0,
 *
 * hence every member's (every block's) and every union of blocks' cost is minimised at w*; it is
 * the unique minimiser of a union whose subspaces span the dim features (its Hessian
 * Σ σ(1 − σ)·[x, 1][x, 1]ᵀ is then positive definite: σ(1 − σ) ≥ 3/16 at these logits). With
 * `exact`, (n − 2f)·rank ≥ dim makes the honest costs 2f-redundant (checked by the config).
 *
 * monna's `logreg` is softmax over K = 2 classes (kernel [dim, 2], then bias [2]): its minimisers
 * are the line W* + 1·cᵀ (adding the same vector to both classes' weights changes no
 * probability). The train split's `optimum` is the centred one (class columns ±w* / 2, biases
 * ±b* / 2), refined in float64 by Newton's method on the stored float32 examples, and the learner
 * reports the distance of the centred θ (docs/exact.md §2).
 */
import { InvalidConfigError } from '../errors.ts'
import type { Rng } from '../rng.ts'
import { choleskySolve, type Dataset } from './data.ts'

/** examples a group: one point, k ∈ {1, 2, 3} of them labelled 1 (its logit ln(k/(4 − k))) */
export const logisticGroup = 4

/**
 * The train split: n examples (a multiple of 4·blocks, validated by the caller), block b's rows
 * z = √(dim/rank)·U_b·c (U_b: `bases[b]`, rank × dim orthonormal rows) with c moved along U_b·v
 * so that z·v is the group's logit, then x = scales ∘ z (w* = v / scales: x·w* = z·v).
 */
export function redundantLogistic(name: string, n: number, dim: number, rank: number, bases: Float64Array[], scales: Float64Array, v: Float64Array, rng: Rng): Dataset {
  const blocks = bases.length
  const x = new Float32Array(n * dim)
  const y = new Int32Array(n)
  const s = Math.sqrt(dim / rank)
  const c = new Float64Array(rank)
  const u = new Float64Array(rank)
  for (let g = 0; g < n / logisticGroup; g++) {
    const first = g * logisticGroup
    const basis = bases[Math.floor((first * blocks) / n)]!
    // u = U_b·v: z·v = s·c·u
    let uu = 0
    let cu = 0
    for (let k = 0; k < rank; k++) {
      let dot = 0
      for (let j = 0; j < dim; j++) dot += basis[k * dim + j]! * v[j]!
      u[k] = dot
      uu += dot * dot
      c[k] = rng.normal()
      cu += c[k]! * dot
    }
    const ones = 1 + Math.min(2, Math.floor(rng.next() * 3))
    const logit = Math.log(ones / (logisticGroup - ones))
    if (!(uu > 1e-12)) throw new InvalidConfigError('dataset.rank', 'a block subspace is orthogonal to w*; use another seed')
    const shift = (logit / s - cu) / uu
    for (let k = 0; k < rank; k++) c[k]! += shift * u[k]!
    for (let j = 0; j < dim; j++) {
      let z = 0
      for (let k = 0; k < rank; k++) z += s * c[k]! * basis[k * dim + j]!
      const xj = Math.fround(scales[j]! * z)
      for (let m = 0; m < logisticGroup; m++) x[(first + m) * dim + j] = xj
    }
    for (let m = 0; m < logisticGroup; m++) y[first + m] = m < ones ? 1 : 0
  }
  return { name, x, y, n, exampleShape: [dim], numClasses: 2 }
}

/**
 * The minimiser of the mean binary logistic loss of (x, y) over (w, b), by Newton's method in
 * float64 from `start` (w*, b = 0), returned in the `logreg` layout centred over the 2 classes:
 * kernel [dim, 2] row-major with columns (−w/2, w/2), then biases (−b/2, b/2).
 */
export function logisticOptimum(ds: Dataset, start: Float64Array): Float64Array {
  const d = ds.exampleShape[0]!
  const p = d + 1
  const wb = new Float64Array(p)
  wb.set(start.subarray(0, d))
  const h = new Float64Array(p * p)
  const g = new Float64Array(p)
  const row = new Float64Array(p)
  for (let it = 0; it < 50; it++) {
    h.fill(0)
    g.fill(0)
    for (let i = 0; i < ds.n; i++) {
      let a = wb[d]!
      for (let j = 0; j < d; j++) {
        row[j] = ds.x[i * d + j]!
        a += row[j]! * wb[j]!
      }
      row[d] = 1
      const sig = 1 / (1 + Math.exp(-a))
      const r = sig - ds.y[i]!
      const w = sig * (1 - sig)
      for (let j = 0; j < p; j++) {
        g[j]! += r * row[j]!
        for (let k = 0; k <= j; k++) h[j * p + k]! += w * row[j]! * row[k]!
      }
    }
    const step = choleskySolve(h, g, p, ds.n)
    let sq = 0
    let norm = 0
    for (let j = 0; j < p; j++) {
      wb[j]! -= step[j]!
      sq += step[j]! ** 2
      norm += wb[j]! ** 2
    }
    if (Math.sqrt(sq) <= 1e-13 * (1 + Math.sqrt(norm))) break
  }
  const out = new Float64Array(2 * d + 2)
  for (let j = 0; j < d; j++) {
    out[2 * j] = -wb[j]! / 2
    out[2 * j + 1] = wb[j]! / 2
  }
  out[2 * d] = -wb[d]! / 2
  out[2 * d + 1] = wb[d]! / 2
  return out
}

/**
 * ‖centre(θ) − θ*‖ / ‖θ*‖ for a softmax-regression θ (kernel [in, K] row-major, then bias [K]) and a
 * centred θ*: centre subtracts from every row (each feature's K weights, and the K biases) its
 * mean, the component no probability depends on.
 */
export function centredDistance(theta: Float32Array, optimum: Float64Array, classes: number): number {
  let dist = 0
  let norm = 0
  for (let r = 0; r < theta.length / classes; r++) {
    let mean = 0
    for (let k = 0; k < classes; k++) mean += theta[r * classes + k]!
    mean /= classes
    for (let k = 0; k < classes; k++) {
      const o = optimum[r * classes + k]!
      dist += (theta[r * classes + k]! - mean - o) ** 2
      norm += o * o
    }
  }
  return Math.sqrt(dist) / Math.sqrt(norm > 0 ? norm : 1)
}
