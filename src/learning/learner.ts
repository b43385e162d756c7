/**
 * The local step of MoNNA (ALGORITHMS §1) at one member:
 *
 *   g   = ∇ loss_B(θ_t)  [+ privacy: per-example clip to G, average, + N(0, s²·I)]  + λ·θ_t/‖θ_t‖
 *   m_t = β·m_{t−1} + (1−β)·g
 *   θ_{t+½} = θ_t − γ_t·m_t
 *
 * θ and m live in JS as `Float32Array`s (the wire format). With monna's native kernels built (and
 * the learner on the wasm or cpu backend), each step's mini-batch loss and gradient are one call
 * of their `modelGradient` on θ and the gradient buffer in place; without them, each step uploads
 * θ once, computes the loss and gradient with tfjs inside `tidy` and reads the gradient back once.
 * Either way the momentum update is one pass (native or a plain loop). The regulariser λ·‖θ‖₂ is
 * data-independent, so it is added after the privacy hook (it needs neither clipping nor noise).
 *
 * Mini-batches are `batchSize` distinct examples drawn uniformly from the member's shard by a
 * member-specific `Rng` (Floyd's algorithm: state = the generator only, so checkpoints are
 * small). The privacy noise has its own generator; both are in `getRngState()`.
 *
 * Least squares (model `linear`, docs/precondition.md): the gradient of the mean ½(x·θ − t)² is
 * computed in plain JS (d is small), and an optional pre-conditioner (`precondition`, arXiv:2108.08670)
 * replaces g by K·g, where the member's own d × d matrix K is updated once per step from its own
 * shard: K ← K − α·((H + β·I)·K − I), H = AᵢᵀAᵢ/nᵢ, K₀ = 0, so K → (H + β·I)⁻¹ for α < 2/(λ_max(H) + β).
 * Softmax regression (model `logreg`, docs/precondition.md §7): H is the Hessian of the mean
 * cross-entropy over the whole shard at the step's θ, recomputed every step (in float64), and the
 * identity is replaced by P, the projection off the directions no probability depends on (each
 * feature's weights, and the biases, all moved by the same amount: H is 0 there):
 * K ← K − α·((H(θₜ) + β·I)·K − P), so K stays 0 on them and → (H + β·I)⁺ on the rest.
 *
 * Backends: the learner runs on the tfjs backend active when it is created. If that backend
 * lacks a kernel of this model's gradient (e.g. wasm without Conv2DBackpropFilter), the first
 * step that fails — a probe at creation catches it before training — moves this learner to the
 * cpu backend with a logged warning; its computations then switch the process-wide backend to
 * cpu and back synchronously, so other learners are unaffected. (The native `modelGradient`
 * and `modelEvaluate` use no tfjs kernel, so this concerns the tfjs path.) A learner loads
 * tfjs only for that path (tf-loader.ts; `ensureTfBackend` applies a deferred backend choice).
 */
import type * as tf from '@tensorflow/tfjs'
import { nativeKernels } from '../compute/native.ts'
import { AbortError, InvalidConfigError } from '../errors.ts'
import type { Logger } from '../logger.ts'
import { silentLogger } from '../logger.ts'
import type { RngState } from '../rng.ts'
import { Rng } from '../rng.ts'
import { backendReady, ensureTfBackend, learnerBackend } from './backend.ts'
import type { Dataset } from './data.ts'
import { NonFiniteGradientError } from './errors.ts'
import { centredDistance } from './exact-logistic.ts'
import type { Model, ModelSpec } from './models.ts'
import { createModel, flatten, initParams, nativeLayerSpec, unflatten } from './models.ts'
import type { LrSchedule } from './schedule.ts'
import { learningRate, validateSchedule } from './schedule.ts'
import { tfNow } from './tf-loader.ts'

/** Per-example clip to `clipNorm`, average, add N(0, noiseStd²) to every coordinate (ALGORITHMS §6). */
export interface PrivacyHook {
  clipNorm: number
  noiseStd: number
  /**
   * Seed of the privacy noise. Absent (the default), the noise generator is seeded from the
   * operating system's secure random source: anyone who knew a deterministic seed (e.g. from
   * the swarm file) could subtract the noise and recover the clipped gradient. Give a seed only
   * for reproducible experiments, where the noise protects nobody.
   */
  noiseSeed?: number | string
}

/** Iterative pre-conditioning (arXiv:2108.08670, docs/precondition.md): K ← K − α·((H + β·I)·K − I). */
export interface PreconditionOptions {
  /** step of the K iteration; it converges for 0 < α < 2/(λ_max(H) + β) */
  alpha: number
  /** regularisation β ≥ 0: K → (H + β·I)⁻¹ */
  beta: number
}

/** Largest model dimension d a member keeps a d × d pre-conditioner for (256² float64 = 512 KiB, one K update ≈ 2·d³ = 34 Mflop a round). */
export const maxPreconditionDim = 256

export interface LearnerOptions {
  model: ModelSpec
  inputShape: number[]
  numClasses: number
  /** this member's shard (may be label-flipped by the caller) */
  train: Dataset
  batchSize: number
  /** EMA momentum β, ALGORITHMS §1 (0.99; 0 = NNA ablation) */
  beta: number
  /** weight of the λ·‖θ‖₂ term (0 by default) */
  lambda: number
  schedule: LrSchedule
  /** swarm seed: θ₀ identical on every member */
  initSeed: number | string
  /** member-specific: mini-batch sampling and privacy noise */
  dataSeed: number | string
  privacy?: PrivacyHook
  /** iterative pre-conditioning of the gradient (the convex models: `linear` and `logreg`) */
  precondition?: PreconditionOptions
  logger?: Logger
  /** examples per forward pass in `evaluate` (memory/speed trade-off only) */
  evalBatchSize?: number
}

/** Defaults of the reference experiment (ALGORITHMS §7, MoNNA arXiv:2209.10931 on MNIST). */
export const defaultLearnerOptions = {
  /** MoNNA §7: batch 25 */
  batchSize: 25,
  /** MoNNA: β = 0.99 in all runs */
  beta: 0.99,
  /** λ = 0 reproduces the reference numbers (its λ term contributed zero gradient, ALGORITHMS §1) */
  lambda: 0,
  /** γ_t = 0.75/(1 + ⌊t/50⌋), ALGORITHMS §1 */
  schedule: { kind: 'hyperbolic', lr0: 0.75, tau: 50, delta: 50 } as LrSchedule,
  /**
   * 100, not 500: tfjs's wasm heap grows to the largest batch's activations and never shrinks
   * (a LeNet member's peak: 314 MB at 500, 282–298 at 250, 260 at 100), for ≈ 10 % more time over
   * the full MNIST test split (1.26–1.50 s against 1.18–1.26 s, one process, measured 2026-12-05).
   * Accuracy is the same; the summed loss differs in float32 rounding (≈ 2e-7 relative, measured).
   */
  evalBatchSize: 100,
} as const

export interface StepResult {
  /** copy of θ_{t+½}: the caller's (the learner never writes it afterwards) */
  halfStep: Float32Array
  /** mini-batch loss at θ_t (mean cross-entropy, + λ·‖θ_t‖ when λ > 0) */
  loss: number
  /** ‖g‖ of the gradient fed to the momentum (after privacy hook and λ term; before the pre-conditioner) */
  gradNorm: number
}

export interface EvaluationResult {
  /** classification: share of correct predictions; `linear`: R² clipped to [0, 1] */
  accuracy: number
  /** mean cross-entropy; `linear`: mean ½(x·θ − t)² */
  loss: number
  /** `linear` with a known θ* (the train split's exact least-squares minimiser): ‖θ − θ*‖ / ‖θ*‖ */
  distance?: number
}

/**
 * One evaluation over a data set read in parts (`loadShard`'s `testChunks`): the share of
 * examples right and the mean loss over all of them, as one evaluation of the whole would give
 * them (the loss up to the rounding of its sums). A single part is evaluated as it is, so a
 * `linear` task's R² and a known θ*'s distance come through unchanged; parts of several are
 * classification splits, whose accuracy is a share of examples.
 */
export async function evaluateChunks(learner: Pick<Learner, 'evaluate'>, chunks: AsyncIterable<Dataset>, opts: { signal?: AbortSignal } = {}): Promise<EvaluationResult> {
  let first: EvaluationResult | undefined
  let parts = 0
  let n = 0
  let correct = 0
  let lossSum = 0
  for await (const chunk of chunks) {
    const e = await learner.evaluate(chunk, opts)
    if (parts++ === 0) first = e
    n += chunk.n
    // accuracy is correct / n: the count back, exactly
    correct += Math.round(e.accuracy * chunk.n)
    lossSum += e.loss * chunk.n
  }
  if (first === undefined) throw new InvalidConfigError('test', 'the test split has no examples')
  if (parts === 1) return first
  return { accuracy: correct / n, loss: lossSum / n }
}

export interface LearnerRngState {
  batch: RngState
  noise: RngState
}

export interface Learner {
  /** number of parameters d */
  readonly dim: number
  /** the tfjs backend this learner computes on (may be 'cpu' after a missing-kernel fallback) */
  readonly backend: string
  readonly model: Model
  /** copy of current θ (flat, order documented in models.ts) */
  getParams(): Float32Array
  /** replace θ (e.g. by the aggregate) */
  setParams(theta: Float32Array): void
  getMomentum(): Float32Array
  /** writes the momentum into `into` (length d): getMomentum without a fresh d-length buffer */
  copyMomentum(into: Float32Array): void
  setMomentum(m: Float32Array): void
  getRngState(): LearnerRngState
  setRngState(s: unknown): void
  /** One local step at round `round` (see the module comment). */
  step(round: number, opts?: { signal?: AbortSignal }): Promise<StepResult>
  evaluate(test: Dataset, opts?: { maxExamples?: number; signal?: AbortSignal }): Promise<EvaluationResult>
  dispose(): void
}

function prod(shape: readonly number[]): number {
  return shape.reduce((a, b) => a * b, 1)
}

export function validateLearnerOptions(opts: LearnerOptions): void {
  const { train } = opts
  if (!Number.isInteger(opts.batchSize) || opts.batchSize < 1) {
    throw new InvalidConfigError('batchSize', `must be a positive integer, got ${opts.batchSize}`)
  }
  if (typeof opts.beta !== 'number' || !(opts.beta >= 0 && opts.beta < 1)) {
    throw new InvalidConfigError('beta', `must be in [0, 1) (0.99 for MoNNA, 0 for the NNA ablation), got ${opts.beta}`)
  }
  if (typeof opts.lambda !== 'number' || !(opts.lambda >= 0) || !Number.isFinite(opts.lambda)) {
    throw new InvalidConfigError('lambda', `must be a finite number ≥ 0, got ${opts.lambda}`)
  }
  validateSchedule(opts.schedule)
  if (opts.privacy !== undefined) {
    const { clipNorm, noiseStd } = opts.privacy
    if (!(clipNorm > 0) || !Number.isFinite(clipNorm)) {
      throw new InvalidConfigError('privacy.clipNorm', `must be a finite number > 0, got ${clipNorm}`)
    }
    if (!(noiseStd >= 0) || !Number.isFinite(noiseStd)) {
      throw new InvalidConfigError('privacy.noiseStd', `must be a finite number ≥ 0, got ${noiseStd}`)
    }
  }
  if (opts.model?.kind === 'linear') {
    if (train !== undefined && train.targets === undefined) {
      throw new InvalidConfigError('model', 'the linear model (least squares) needs regression targets: use the linear data set')
    }
  }
  if (opts.precondition !== undefined) {
    const { alpha, beta } = opts.precondition
    const kind = opts.model?.kind
    if (kind !== 'linear' && kind !== 'logreg') {
      throw new InvalidConfigError('precondition', `iterative pre-conditioning needs a convex model (linear: least squares, or logreg); ${kind} is not convex`)
    }
    if (!(alpha > 0) || !Number.isFinite(alpha)) throw new InvalidConfigError('precondition.alpha', `must be a finite number > 0, got ${alpha}`)
    if (!(beta >= 0) || !Number.isFinite(beta)) throw new InvalidConfigError('precondition.beta', `must be a finite number ≥ 0, got ${beta}`)
    // logreg: kernel [in, K] and bias [K]
    const d = kind === 'linear' ? prod(opts.inputShape) : (prod(opts.inputShape) + 1) * opts.numClasses
    if (d > maxPreconditionDim) {
      throw new InvalidConfigError('precondition', `the model has d = ${d} parameters; a d × d pre-conditioner is kept only for d ≤ ${maxPreconditionDim}`)
    }
  }
  if (opts.evalBatchSize !== undefined && (!Number.isInteger(opts.evalBatchSize) || opts.evalBatchSize < 1)) {
    throw new InvalidConfigError('evalBatchSize', `must be a positive integer, got ${opts.evalBatchSize}`)
  }
  if (train === undefined || !(train.n >= 1)) {
    throw new InvalidConfigError('train', 'the training shard is empty; every member needs at least one example')
  }
  if (prod(train.exampleShape) !== prod(opts.inputShape)) {
    throw new InvalidConfigError('inputShape', `[${opts.inputShape.join(', ')}] does not match the data's example shape [${train.exampleShape.join(', ')}]`)
  }
  if (train.numClasses > opts.numClasses) {
    throw new InvalidConfigError('numClasses', `the data has ${train.numClasses} classes but the model only ${opts.numClasses}`)
  }
  const values = (train.pixels ?? train.x).length
  if (values !== train.n * prod(train.exampleShape) || train.y.length !== train.n) {
    throw new InvalidConfigError('train', `inconsistent data set: n = ${train.n}, ${values} values, ${train.y.length} labels`)
  }
  for (let i = 0; i < train.n; i++) {
    const y = train.y[i]!
    if (!(y >= 0 && y < opts.numClasses)) throw new InvalidConfigError(`train.y[${i}]`, `label ${y} is outside [0, ${opts.numClasses})`)
  }
}

/** Floyd's algorithm: `k` distinct indices of [0, n) (all of them, shuffled, when k ≥ n). */
function sampleDistinct(rng: Rng, n: number, k: number): Int32Array {
  if (k >= n) return rng.shuffle(Int32Array.from({ length: n }, (_, i) => i))
  const chosen = new Set<number>()
  const out = new Int32Array(k)
  let p = 0
  for (let j = n - k; j < n; j++) {
    const t = rng.int(j + 1)
    const v = chosen.has(t) ? j : t
    chosen.add(v)
    out[p++] = v
  }
  return out
}

function isRngState(s: unknown): s is RngState {
  const words = (s as { s?: unknown } | null)?.s
  return Array.isArray(words) && words.length === 4 && words.every((w) => Number.isInteger(w) && w >= 0 && w <= 0xffffffff)
}

/**
 * m ← β·m + (1 − β)·g, θ ← θ − γ·m in place (m rounded to float32 before it moves θ, as stored);
 * returns ‖g‖². A plain function of its arrays, two coordinates per iteration (in isolation,
 * LeNet's 431k values on the loaded 2-core dev machine: 5.3–8.2 ms as the loop inside the async
 * `step` closure, 3.3–6.7 ms here; `npm run bench:train` cannot tell the two apart: 36–38 ms
 * per step either way). The native kernels do the same, bit for bit, in ≈ 0.5 ms when built.
 */
export function momentumStep(grad: Float32Array, momentum: Float32Array, theta: Float32Array, beta: number, gamma: number): number {
  const n = grad.length
  const oneMinusBeta = 1 - beta
  let sq0 = 0
  let sq1 = 0
  let j = 0
  for (; j + 1 < n; j += 2) {
    const g0 = grad[j]!
    const g1 = grad[j + 1]!
    sq0 += g0 * g0
    sq1 += g1 * g1
    const m0 = Math.fround(beta * momentum[j]! + oneMinusBeta * g0)
    const m1 = Math.fround(beta * momentum[j + 1]! + oneMinusBeta * g1)
    momentum[j] = m0
    momentum[j + 1] = m1
    theta[j] = theta[j]! - gamma * m0
    theta[j + 1] = theta[j + 1]! - gamma * m1
  }
  for (; j < n; j++) {
    const g = grad[j]!
    sq0 += g * g
    const m = Math.fround(beta * momentum[j]! + oneMinusBeta * g)
    momentum[j] = m
    theta[j] = theta[j]! - gamma * m
  }
  return sq0 + sq1
}

/**
 * The Hessian of softmax regression's mean cross-entropy (model `logreg`: kernel [in, C] row-major,
 * then bias [C], so θ's index of the weight of feature r for class k is r·C + k, the biases being
 * feature r = in) at `theta`, plus β·I, into `out` (d × d, d = (in + 1)·C), in float64 over the
 * `n` examples `x` (row-major n × in):
 *
 *   H = (1/n)·Σᵢ x̃ᵢx̃ᵢᵀ ⊗ (diag(pᵢ) − pᵢpᵢᵀ) + β·I,   x̃ = [x, 1], p = softmax(x̃ᵀW̃).
 *
 * n·(in + 1)²·C²/2 multiply-adds. Its null space holds (at least) every e_r ⊗ 1 (one feature's C
 * weights moved together), which changes no probability.
 */
export function softmaxHessian(x: Float32Array, n: number, inDim: number, C: number, theta: Float32Array, beta: number, out: Float64Array): void {
  const rows = inDim + 1
  const d = rows * C
  if (!(C >= 2) || theta.length !== d || out.length !== d * d || x.length < n * inDim) {
    throw new InvalidConfigError('softmaxHessian', `expected θ of (${inDim} + 1)·${C} = ${d} values, out of ${d}² and ≥ ${n}·${inDim} examples' values; got ${theta.length}, ${out.length}, ${x.length}`)
  }
  const h = out
  const xt = new Float64Array(rows)
  const p = new Float64Array(C)
  const m = new Float64Array(C * C)
  h.fill(0)
  for (let i = 0; i < n; i++) {
    for (let r = 0; r < inDim; r++) xt[r] = x[i * inDim + r]!
    xt[inDim] = 1
    let top = Number.NEGATIVE_INFINITY
    for (let k = 0; k < C; k++) {
      let z = 0
      for (let r = 0; r < rows; r++) z += xt[r]! * theta[r * C + k]!
      p[k] = z
      if (z > top) top = z
    }
    let sum = 0
    for (let k = 0; k < C; k++) {
      p[k] = Math.exp(p[k]! - top)
      sum += p[k]!
    }
    for (let k = 0; k < C; k++) p[k] = p[k]! / sum
    for (let k = 0; k < C; k++) for (let l = 0; l < C; l++) m[k * C + l] = (k === l ? p[k]! : 0) - p[k]! * p[l]!
    // the blocks (a, b ≤ a) of the lower block triangle
    for (let a = 0; a < rows; a++) {
      const xa = xt[a]!
      if (xa === 0) continue
      for (let b = 0; b <= a; b++) {
        const s = xa * xt[b]!
        if (s === 0) continue
        for (let k = 0; k < C; k++) {
          const o = (a * C + k) * d + b * C
          for (let l = 0; l < C; l++) h[o + l]! += s * m[k * C + l]!
        }
      }
    }
  }
  // scale the lower block triangle (its diagonal blocks are symmetric), then mirror it
  for (let a = 0; a < rows; a++) {
    for (let b = 0; b <= a; b++) {
      for (let k = 0; k < C; k++) {
        for (let l = 0; l < C; l++) {
          const v = h[(a * C + k) * d + b * C + l]! / n
          h[(a * C + k) * d + b * C + l] = v
          if (b < a) h[(b * C + l) * d + a * C + k] = v
        }
      }
    }
  }
  for (let j = 0; j < d; j++) h[j * d + j]! += beta
}

/** Runs `fn` synchronously with `backend` active, restoring the previous backend afterwards. */
function onBackend<T>(backend: string, fn: () => T): T {
  const T = tfNow()
  const previous = T.getBackend()
  if (previous === backend) return fn()
  // For an initialised backend, setBackend completes synchronously (no await is reached).
  void T.setBackend(backend)
  try {
    return fn()
  } finally {
    void T.setBackend(previous)
  }
}

export async function createLearner(opts: LearnerOptions): Promise<Learner> {
  validateLearnerOptions(opts)
  const logger = opts.logger ?? silentLogger
  const model = createModel(opts.model, opts.inputShape, opts.numClasses)
  const { train, batchSize, beta, lambda, schedule, privacy } = opts
  const evalBatchSize = opts.evalBatchSize ?? defaultLearnerOptions.evalBatchSize
  const exampleSize = prod(opts.inputShape)
  const d = model.dim
  const theta = initParams(model, opts.initSeed)
  const momentum = new Float32Array(d)
  const grad = new Float32Array(d)
  const scratch = privacy === undefined ? undefined : new Float32Array(d)
  const root = new Rng(opts.dataSeed)
  const batchRng = root.fork('batch')
  const noiseRng =
    privacy === undefined || privacy.noiseSeed === undefined
      ? new Rng(crypto.getRandomValues(new Uint32Array(1))[0]!)
      : new Rng(`${privacy.noiseSeed}/privacy-noise`)
  let backend = await learnerBackend()
  let disposed = false
  /** evaluations running, and the θ snapshot the first of them uses (kept for the next) */
  let evaluating = 0
  let evalSnapshot: Float32Array | undefined

  /** The examples `indexAt(0..count-1)` of `ds` as one batch: in fresh arrays, or in the first `count` examples of `into`'s. */
  const batchData = (ds: Dataset, count: number, indexAt: (i: number) => number, into?: { xs: Float32Array; ys: Int32Array }) => {
    const xs = into === undefined ? new Float32Array(count * exampleSize) : into.xs.subarray(0, count * exampleSize)
    const ys = into === undefined ? new Int32Array(count) : into.ys.subarray(0, count)
    const pixels = ds.pixels
    for (let i = 0; i < count; i++) {
      const e = indexAt(i)
      if (pixels !== undefined) {
        // kept as bytes (byteDataset): x = pixels / 255, as pixelsToFloat makes it
        const from = e * exampleSize
        const to = i * exampleSize
        for (let j = 0; j < exampleSize; j++) xs[to + j] = pixels[from + j]! / 255
      } else {
        xs.set(ds.x.subarray(e * exampleSize, (e + 1) * exampleSize), i * exampleSize)
      }
      ys[i] = ds.y[e]!
    }
    return { xs, ys }
  }

  const isLinear = opts.model.kind === 'linear'
  /**
   * The model for the native kernels' `modelGradient`: where they are built (and enabled) and
   * this learner runs on wasm or cpu — the backends they serve — the whole forward and backward
   * pass is one native call on θ and the gradient in place (no tensors, no copies of θ); the
   * tfjs graph below is the path without them (and on tfjs-node).
   */
  const layerSpec = nativeLayerSpec(model)
  /** An evaluation's result, with the distance to the 2f-redundant logistic generator's centred minimiser (src/learning/exact-logistic.ts) where there is one. */
  const withOptimum = (out: EvaluationResult, snapshot: Float32Array): EvaluationResult => {
    const opt = train.optimum
    if (opts.model.kind === 'logreg' && opt !== undefined && opt.length === d) out.distance = centredDistance(snapshot, opt, opts.numClasses)
    return out
  }
  /** `linear`: the mean ½(x·θ − t)² over `indices` and its gradient (1/b)·Σ (x·θ − t)·x, into `out`. */
  const linearGradient = (indices: ArrayLike<number>, out: Float32Array): number => {
    const xs = train.x
    const ts = train.targets!
    const acc = new Float64Array(d)
    let loss = 0
    for (let i = 0; i < indices.length; i++) {
      const row = indices[i]! * d
      let r = -ts[indices[i]!]!
      for (let j = 0; j < d; j++) r += xs[row + j]! * theta[j]!
      loss += 0.5 * r * r
      for (let j = 0; j < d; j++) acc[j]! += r * xs[row + j]!
    }
    const b = indices.length
    for (let j = 0; j < d; j++) out[j] = acc[j]! / b
    return loss / b
  }

  // Iterative pre-conditioner (docs/precondition.md): K (d × d, float64, K₀ = 0) and this
  // member's H + β·I from its whole shard: least squares AᵢᵀAᵢ/nᵢ, once; logreg the Hessian of the
  // mean cross-entropy at θₜ, every step (§7 there).
  const pre = opts.precondition
  const isLogreg = opts.model.kind === 'logreg'
  const K = pre === undefined ? undefined : new Float64Array(d * d)
  const H = pre === undefined ? undefined : new Float64Array(d * d)
  const KH = pre === undefined ? undefined : new Float64Array(d * d)
  if (pre !== undefined && !isLogreg) {
    const h = H!
    const tx = train.x
    for (let i = 0; i < train.n; i++) {
      const row = i * d
      for (let a = 0; a < d; a++) {
        const xa = tx[row + a]!
        for (let b = 0; b <= a; b++) h[a * d + b]! += xa * tx[row + b]!
      }
    }
    for (let a = 0; a < d; a++) {
      for (let b = 0; b <= a; b++) {
        const v = h[a * d + b]! / train.n + (a === b ? pre.beta : 0)
        h[a * d + b] = v
        h[b * d + a] = v
      }
    }
  }
  /**
   * The target of K's iteration: I for least squares; for logreg P = I − (the mean over the C
   * classes within each feature row), the projection off H's null space (those directions change
   * no probability and the gradient has no component along them).
   */
  const target = (a: number, b: number): number => {
    if (!isLogreg) return a === b ? 1 : 0
    const C = opts.numClasses
    if (Math.floor(a / C) !== Math.floor(b / C)) return 0
    return (a === b ? 1 : 0) - 1 / C
  }
  /** K ← K − α·(H·K − P) (logreg: H at the current θ first), then grad ← K·grad. */
  const precondition = (): void => {
    if (isLogreg) softmaxHessian(train.x, train.n, exampleSize, opts.numClasses, theta, pre!.beta, H!)
    const k = K!
    const h = H!
    const hk = KH!
    const alpha = pre!.alpha
    hk.fill(0)
    for (let a = 0; a < d; a++) {
      for (let c = 0; c < d; c++) {
        const hac = h[a * d + c]!
        if (hac === 0) continue
        const kr = c * d
        const out = a * d
        for (let b = 0; b < d; b++) hk[out + b]! += hac * k[kr + b]!
      }
    }
    for (let a = 0; a < d; a++) {
      for (let b = 0; b < d; b++) k[a * d + b]! -= alpha * (hk[a * d + b]! - target(a, b))
    }
    const g = Float64Array.from(grad)
    for (let a = 0; a < d; a++) {
      let v = 0
      for (let b = 0; b < d; b++) v += k[a * d + b]! * g[b]!
      grad[a] = v
    }
  }

  /** The native kernels where they serve this learner now (built and enabled, a layer spec, wasm or cpu). */
  const nativeNow = () => (layerSpec !== undefined && (backend === 'wasm' || backend === 'cpu') ? nativeKernels() : undefined)
  /** Whether `gradients` runs without tfjs now: `linear`, or the native kernels serving this backend. */
  const gradientWithoutTf = (): boolean => isLinear || nativeNow()?.modelGradient !== undefined
  /**
   * Loads tfjs for this learner's tfjs path (and applies a deferred backend choice: backend.ts);
   * if that choice could not be honoured (wasm failing over to cpu), the learner follows tfjs's.
   */
  const loadTfPath = async (): Promise<void> => {
    const T = await ensureTfBackend()
    if (!backendReady(backend)) backend = T.getBackend()
  }

  /**
   * For each group of example indices, the mean loss on it and its gradient (written into
   * `out`, then handed to `each`). θ is uploaded once for all groups. Tidy, synchronous.
   */
  const gradients = (groups: readonly ArrayLike<number>[], out: Float32Array, each: (loss: number) => void): void => {
    if (isLinear) {
      for (const indices of groups) each(linearGradient(indices, out))
      return
    }
    const N = nativeNow()
    if (N?.modelGradient !== undefined && layerSpec !== undefined) {
      for (const indices of groups) {
        const { xs, ys } = batchData(train, indices.length, (i) => indices[i]!)
        each(N.modelGradient(layerSpec, theta, xs, ys, out))
      }
      return
    }
    // loaded by `withFallback` before it calls this (`gradientWithoutTf`)
    const T = tfNow()
    onBackend(backend, () =>
      T.tidy(() => {
        const params = unflatten(model, theta)
        for (const indices of groups) {
          const loss = T.tidy(() => {
            const { xs, ys } = batchData(train, indices.length, (i) => indices[i]!)
            const x = T.tensor(xs, [indices.length, ...opts.inputShape], 'float32')
            const y = T.oneHot(T.tensor1d(ys, 'int32'), opts.numClasses)
            const f = (...p: tf.Tensor[]): tf.Scalar => T.losses.softmaxCrossEntropy(y, model.forward(p, x)) as tf.Scalar
            const { value, grads } = T.valueAndGrads(f)(params)
            flatten(model, grads, out)
            return value.dataSync()[0]!
          })
          each(loss)
        }
      }),
    )
  }

  /**
   * Runs `attempt` (which must start from scratch each time); if this learner's backend cannot
   * run it (a missing kernel), moves the learner to the cpu backend once, with a warning, and
   * retries there.
   */
  const withFallback = async (attempt: () => void): Promise<void> => {
    if (!gradientWithoutTf()) await loadTfPath()
    try {
      attempt()
    } catch (err) {
      if (backend === 'cpu') throw err
      logger.warn('the backend cannot compute this model’s gradient; this learner falls back to the cpu backend (slower)', {
        backend,
        model: opts.model.kind,
        error: err instanceof Error ? err.message : String(err),
      })
      // The cpu backend gets src/compute's kernels too (its stock Conv2DBackpropFilter takes
      // seconds per LeNet step); initialising it, then switching back, runs their setup.
      const T = await ensureTfBackend()
      const { registerFallbackKernels } = await import('../compute/index.ts')
      await registerFallbackKernels('cpu')
      const previous = T.getBackend()
      await T.setBackend('cpu')
      await T.setBackend(previous)
      backend = 'cpu'
      attempt()
    }
  }

  // Probe once on one example, so a missing kernel is found now, not in round 1.
  await withFallback(() => gradients([[0]], grad, () => {}))
  grad.fill(0)

  const computeGradient = async (round: number): Promise<number> => {
    const indices = sampleDistinct(batchRng, train.n, batchSize)
    let loss = 0
    if (privacy === undefined) {
      await withFallback(() =>
        gradients([indices], grad, (l) => {
          loss = l
        }),
      )
    } else {
      // Per-example gradients (the honest DP choice): clip each to G, sum, average, add noise.
      const sc = scratch!
      const G = privacy.clipNorm
      let nonFinite = false
      await withFallback(() => {
        grad.fill(0)
        loss = 0
        gradients(
          Array.from(indices, (i) => [i]),
          sc,
          (l) => {
            loss += l
            let sq = 0
            for (let j = 0; j < d; j++) sq += sc[j]! * sc[j]!
            const norm = Math.sqrt(sq)
            if (!Number.isFinite(norm)) nonFinite = true
            const scale = norm > G ? G / norm : 1
            for (let j = 0; j < d; j++) grad[j]! += scale * sc[j]!
          },
        )
      })
      if (nonFinite) throw new NonFiniteGradientError(round)
      const b = indices.length
      loss /= b
      const s = privacy.noiseStd
      for (let j = 0; j < d; j++) grad[j] = grad[j]! / b + (s > 0 ? s * noiseRng.normal() : 0)
      // Normals come in pairs; drawing an even number keeps no spare cached, so the generator's
      // saved state (getRngState) fully determines the next step's noise.
      if (s > 0 && d % 2 === 1) noiseRng.normal()
    }
    if (lambda > 0) {
      let sq = 0
      for (let j = 0; j < d; j++) sq += theta[j]! * theta[j]!
      const norm = Math.sqrt(sq)
      loss += lambda * norm
      // ∇(λ‖θ‖) = λθ/‖θ‖ (undefined at θ = 0, where we take the zero subgradient)
      if (norm > 0) {
        const c = lambda / norm
        for (let j = 0; j < d; j++) grad[j]! += c * theta[j]!
      }
    }
    return loss
  }

  /** `linear`: mean ½(x·θ − t)² over the first `n` test examples, R² (clipped to [0, 1]) and ‖θ − θ*‖/‖θ*‖. */
  const evaluateLinear = (test: Dataset, n: number, th: Float32Array): EvaluationResult => {
    const ts = test.targets
    if (ts === undefined) throw new InvalidConfigError('test', 'the linear model needs a test set with regression targets (the linear data set)')
    let sq = 0
    let mean = 0
    for (let i = 0; i < n; i++) mean += ts[i]!
    mean /= n
    let total = 0
    for (let i = 0; i < n; i++) {
      let r = -ts[i]!
      for (let j = 0; j < d; j++) r += test.x[i * d + j]! * th[j]!
      sq += r * r
      total += (ts[i]! - mean) ** 2
    }
    const out: EvaluationResult = { accuracy: total > 0 ? Math.min(1, Math.max(0, 1 - sq / total)) : 0, loss: (0.5 * sq) / n }
    const opt = train.optimum
    if (opt !== undefined && opt.length === d) {
      let dist = 0
      let norm = 0
      for (let j = 0; j < d; j++) {
        dist += (th[j]! - opt[j]!) ** 2
        norm += opt[j]! ** 2
      }
      out.distance = Math.sqrt(dist) / Math.sqrt(norm > 0 ? norm : 1)
    }
    return out
  }

  const checkLength = (what: string, v: Float32Array): void => {
    if (!(v instanceof Float32Array) || v.length !== d) {
      throw new InvalidConfigError(what, `expected a Float32Array of ${d} parameters, got ${v?.length}`)
    }
  }
  const checkAlive = (): void => {
    if (disposed) throw new InvalidConfigError('learner', 'this learner was disposed')
  }

  return {
    dim: d,
    get backend() {
      return backend
    },
    model,
    getParams: () => theta.slice(),
    setParams(v) {
      checkLength('theta', v)
      theta.set(v)
    },
    getMomentum: () => momentum.slice(),
    copyMomentum(into) {
      checkLength('momentum', into)
      into.set(momentum)
    },
    setMomentum(v) {
      checkLength('momentum', v)
      momentum.set(v)
    },
    getRngState: () => ({ batch: batchRng.getState(), noise: noiseRng.getState() }),
    setRngState(s) {
      const st = s as Partial<LearnerRngState> | null
      if (!isRngState(st?.batch) || !isRngState(st?.noise)) {
        throw new InvalidConfigError('rngState', 'expected { batch: { s: [4 uint32] }, noise: { s: [4 uint32] } } as returned by getRngState()')
      }
      batchRng.setState(st.batch)
      noiseRng.setState(st.noise)
    },
    async step(round, stepOpts = {}) {
      checkAlive()
      if (stepOpts.signal?.aborted) throw new AbortError()
      const loss = await computeGradient(round)
      const gamma = learningRate(schedule, round)
      let rawSq: number | undefined
      if (pre !== undefined) {
        rawSq = 0
        for (let j = 0; j < d; j++) rawSq += grad[j]! * grad[j]!
        precondition()
      }
      const N = nativeKernels()
      const sq = N?.momentumStep !== undefined ? N.momentumStep(grad, momentum, theta, beta, gamma) : momentumStep(grad, momentum, theta, beta, gamma)
      return { halfStep: theta.slice(), loss, gradNorm: Math.sqrt(rawSq ?? sq) }
    },
    async evaluate(test, evalOpts = {}) {
      checkAlive()
      if (prod(test.exampleShape) !== exampleSize) {
        throw new InvalidConfigError('test', `example shape [${test.exampleShape.join(', ')}] does not match the model input [${opts.inputShape.join(', ')}]`)
      }
      const limit = evalOpts.maxExamples ?? test.n
      if (!(limit >= 1)) throw new InvalidConfigError('maxExamples', `must be ≥ 1, got ${limit}`)
      if (test.numClasses > opts.numClasses) {
        throw new InvalidConfigError('test', `the test set has ${test.numClasses} classes but the model only ${opts.numClasses}`)
      }
      const n = Math.min(test.n, Math.floor(limit))
      // θ as it is now: a step or setParams during the evaluation's pauses does not mix models.
      // One buffer, used again by the next evaluation when none is running (a member's final
      // evaluation reads the test split in parts, one call each: a model-sized copy per part
      // left garbage until the next collection)
      if (evaluating === 0 && evalSnapshot === undefined) evalSnapshot = new Float32Array(theta.length)
      const snapshot = evaluating === 0 && evalSnapshot !== undefined ? evalSnapshot : new Float32Array(theta.length)
      evaluating++
      snapshot.set(theta)
      try {
        return await evaluateOn(test, n, snapshot, evalOpts)
      } finally {
        evaluating--
      }
    },
    dispose() {
      disposed = true
    },
  }

  async function evaluateOn(test: Dataset, n: number, snapshot: Float32Array, evalOpts: { signal?: AbortSignal }): Promise<EvaluationResult> {
    if (isLinear) return evaluateLinear(test, n, snapshot)
    let correct = 0
    let lossSum = 0
    // the native kernels' forward pass where they serve this backend (as the gradient): no
    // tensors, and tfjs's wasm heap does not grow to an evaluation batch's activations. Batches
    // no larger than the training's, so the kernels' scratch (kept for the next call) does not
    // grow past what the steps use either.
    const N = nativeNow()
    if (N?.modelEvaluate !== undefined && layerSpec !== undefined) {
      const per = Math.min(evalBatchSize, opts.batchSize, n)
      // one batch's arrays for every batch (each was garbage once read)
      const batch = { xs: new Float32Array(per * exampleSize), ys: new Int32Array(per) }
      for (let start = 0; start < n; start += per) {
        if (evalOpts.signal?.aborted) throw new AbortError()
        const count = Math.min(per, n - start)
        const { xs, ys } = batchData(test, count, (i) => start + i, batch)
        const [l, c] = N.modelEvaluate(layerSpec, snapshot, xs, ys)
        correct += c
        lossSum += l
        await new Promise<void>((resolve) => setImmediate(resolve))
      }
      return withOptimum({ accuracy: correct / n, loss: lossSum / n }, snapshot)
    }
    // the parameter tensors once per evaluation, not per batch (26 LeNet members evaluating the
    // full test split made 4.2 GB of slices and copies into the backend, batch by batch)
    // (on the backend of the evaluation's start, as the batches: a step's fallback to 'cpu' meanwhile does not split them)
    await loadTfPath()
    const T = tfNow()
    const on = backend
    const params = onBackend(on, () => unflatten(model, snapshot))
    try {
      for (let start = 0; start < n; start += evalBatchSize) {
        if (evalOpts.signal?.aborted) throw new AbortError()
        const count = Math.min(evalBatchSize, n - start)
        const [c, l] = onBackend(on, () =>
          T.tidy(() => {
            const { xs, ys } = batchData(test, count, (i) => start + i)
            const x = T.tensor(xs, [count, ...opts.inputShape], 'float32')
            const labels = T.tensor1d(ys, 'int32')
            const logits = model.forward(params, x)
            const lossSum = T.losses.softmaxCrossEntropy(T.oneHot(labels, opts.numClasses), logits, undefined, undefined, T.Reduction.SUM)
            const hits = T.sum(T.cast(T.equal(T.argMax(logits, 1), labels), 'int32'))
            return [hits.dataSync()[0]!, lossSum.dataSync()[0]!] as [number, number]
          }),
        )
        correct += c
        lossSum += l
        // Let the event loop breathe between batches (network heartbeats of the node).
        await new Promise<void>((resolve) => setImmediate(resolve))
      }
    } finally {
      onBackend(on, () => {
        for (const p of params) p.dispose()
      })
    }
    return withOptimum({ accuracy: correct / n, loss: lossSum / n }, snapshot)
  }
}
