/**
 * monna's optional native kernels (native/kernels.cc, built on `npm install` by
 * scripts/build-native.mjs into build/monna-kernels.node): a blocked single-precision GEMM
 * (AVX2/FMA when the CPU has it, chosen at run time) and the NHWC convolution kernels over it.
 * They work in place on the tfjs backends' own memory (the wasm heap, the cpu backend's arrays).
 *
 * Absent (no compiler at install, Windows, `MONNA_NATIVE=off`) → `nativeKernels()` is undefined
 * and the wasm kernels run; `nativeStatus()` says why.
 */
import { createRequire } from 'node:module'
import { join } from 'node:path'
import { isMainThread } from 'node:worker_threads'
import { packageRoot } from '../package-root.ts'

/** Convolution geometry, NHWC input, HWIO filter, no dilation (the order the addon takes). */
export type ConvDims = [
  batch: number,
  inH: number,
  inW: number,
  inC: number,
  outH: number,
  outW: number,
  outC: number,
  filterH: number,
  filterW: number,
  strideH: number,
  strideW: number,
  padTop: number,
  padLeft: number,
]

export interface NativeKernels {
  /** C (m×n) = op(A)·op(B) (+ C); op = transpose when the flag is 1; row-major. */
  gemm(transA: number, transB: number, m: number, n: number, k: number, a: Float32Array, b: Float32Array, c: Float32Array, accumulate: boolean): void
  conv2d(x: Float32Array, filter: Float32Array, y: Float32Array, ...dims: ConvDims): void
  conv2dFilterGrad(x: Float32Array, dy: Float32Array, dw: Float32Array, ...dims: ConvDims): void
  conv2dInputGrad(dy: Float32Array, filter: Float32Array, dx: Float32Array, ...dims: ConvDims): void
  maxPoolGrad(
    x: Float32Array,
    y: Float32Array,
    dy: Float32Array,
    dx: Float32Array,
    batch: number,
    inH: number,
    inW: number,
    channels: number,
    outH: number,
    outW: number,
    filterH: number,
    filterW: number,
    strideH: number,
    strideW: number,
    padTop: number,
    padLeft: number,
  ): void
  /**
   * Coordinate-wise rule over k ≤ 128 equal-length inputs into `out`: sorts each coordinate's
   * values with the comparator network `pairs` (index pairs), then kind 0 sums sorted positions
   * param..k−param−1, kind 1 the k − param values nearest the median (meamed); × inv, in double.
   * Uses the GEMM's threads. Returns false when an input holds NaN or ±∞.
   */
  sortedReduce(inputs: readonly Float32Array[], out: Float32Array, pairs: Int32Array, kind: 0 | 1, param: number, inv: number): boolean
  /**
   * Adds the pairwise squared distances of k ≤ 128 equal-length inputs into D (k × k, row-major,
   * symmetric; the caller zeroes it): differences and squares in float over runs of 256
   * coordinates, runs summed in double; a square that overflows float gives +∞. Uses the
   * GEMM's threads.
   */
  pairwise(inputs: readonly Float32Array[], D: Float64Array): void
  /**
   * out[i] = ‖inputs[i] − v‖² for k ≤ 128 equal-length inputs, with pairwise's numerics, read in
   * place (no copy). Uses the GEMM's threads.
   */
  distancesTo(inputs: readonly Float32Array[], v: Float32Array, out: Float64Array): void
  /**
   * out = the plain mean of k ≤ 128 equal-length inputs, summed in double in input order exactly
   * as the JS kernel (kernels.ts weightedMean) sums them — the same bits. Returns whether every
   * output is finite. Uses the GEMM's threads.
   */
  mean(inputs: readonly Float32Array[], out: Float32Array): boolean
  /** The index of x's first NaN or ±∞, or -1 (absent from addons built before it). */
  firstNonFinite?(x: Float32Array): number
  /**
   * As pairwise, and in the same pass (each block of coordinates still in cache) the column
   * sums sums[c] = Σ_i x_i[c] (in double, in input order) and maxAbs[i] = max_c |x_i[c]|.
   */
  pairwiseSums(inputs: readonly Float32Array[], D: Float64Array, sums: Float64Array, maxAbs: Float32Array): void
  /**
   * out[c] = (sums[c] − Σ_t excluded[t][c]) · scale in double, subtracted in the listed order:
   * the mean of the inputs kept, from pairwiseSums's column sums, reading only the excluded ones.
   */
  keptMean(excluded: readonly Float32Array[], sums: Float64Array, scale: number, out: Float32Array): void
  /**
   * NNM's distinct rows into `outs`: spec = [nBase, base…, then per row nAdd, add…, nSub, sub…]
   * (indices of inputs); row r = (Σ base + Σ add_r − Σ sub_r) · scale, summed in double.
   */
  nnmRows(inputs: readonly Float32Array[], spec: Int32Array, scale: number, outs: Float32Array[]): void
  /**
   * NNM then a coordinate-wise rule, fused per block of coordinates (the rows never leave a
   * per-thread scratch): `spec`/`scale` as nnmRows, rowOf[i] the row of input i, then as
   * sortedReduce. Returns false when a row holds NaN or ±∞.
   */
  nnmSorted(inputs: readonly Float32Array[], spec: Int32Array, scale: number, rowOf: Int32Array, out: Float32Array, pairs: Int32Array, kind: 0 | 1, param: number, inv: number): boolean
  /**
   * Polyak momentum step in place: m ← fround(β·m + (1 − β)·g), θ ← fround(θ − γ·m), in double
   * without fused multiply-adds — the same bits as the learner's JS loop; returns ‖g‖² (summed
   * as that loop does).
   */
  momentumStep(grad: Float32Array, momentum: Float32Array, theta: Float32Array, beta: number, gamma: number): number
  /**
   * The mean softmax cross-entropy of a mini-batch (one label per example, examples of the
   * model's input shape back to back in `x`) and its gradient with respect to the flat θ, written
   * into `grad`: the models of src/learning/models.ts (`spec` from `nativeLayerSpec`) forward and
   * backward in one call, without tfjs. Uses the GEMM's threads.
   */
  modelGradient(spec: Int32Array, theta: Float32Array, x: Float32Array, labels: Int32Array, grad: Float32Array): number
  /**
   * An evaluation's batch, forward only (the same forward as `modelGradient`): the summed softmax
   * cross-entropy and how many examples the first largest logit classifies right (as
   * `tf.argMax`). Uses the GEMM's threads.
   */
  modelEvaluate(spec: Int32Array, theta: Float32Array, x: Float32Array, labels: Int32Array): [lossSum: number, correct: number]
  /** 'avx2+fma' or 'portable': the micro-kernel in use */
  simd(): string
  /** use the portable micro-kernel even where AVX2/FMA is available (tests) */
  setPortable(on: boolean): void
  /**
   * Let the kernels that have an AVX-512 variant (pairwise, pairwiseSums: the same bits as their
   * AVX2 one) use it where the CPU has AVX-512F/VL/DQ — the default; off runs the AVX2 variants
   * (tests). Returns whether the AVX-512 variants are now in use.
   */
  setAvx512(on: boolean): boolean
  /** threads of the GEMM, main thread included (1–64; default 1) */
  setThreads(n: number): void
  threads(): number
  /** whether the running Node's OpenSSL has ChaCha20-Poly1305 for `chachaOpenInPlace` and `chachaSealInto` (absent from builds before them) */
  chachaAvailable?(): boolean
  /**
   * Decrypts the ChaCha20-Poly1305 ciphertext held by `parts` (in order, tag excluded) over
   * itself; true when `tag` authenticates it (false: the parts hold garbage). Key 32 bytes,
   * nonce 12, tag 16.
   */
  chachaOpenInPlace?(key: Uint8Array, nonce: Uint8Array, ad: Uint8Array, parts: Uint8Array[], tag: Uint8Array): boolean
  /**
   * Encrypts the plaintext held by `parts` (in order) with ChaCha20-Poly1305 into `dst`: the
   * ciphertext, then the 16-byte tag (`dst`'s length must be the plaintext's plus 16; it must not
   * overlap the parts). Key 32 bytes, nonce 12.
   */
  chachaSealInto?(key: Uint8Array, nonce: Uint8Array, ad: Uint8Array, parts: Uint8Array[], dst: Uint8Array): void
  /**
   * An ArrayBuffer of `length` bytes (contents unspecified) in a page-aligned mapping of its own,
   * taken from the payload pool when it holds one of that size: a mapping goes back to the pool
   * (up to its bound) when V8 collects its ArrayBuffer, instead of being unmapped.
   */
  payloadBuffer?(length: number): ArrayBuffer
  /** Sets the pool's bound in bytes when given (0: unmap every mapping as it is collected); its state and counters since the start. */
  payloadPool?(maxBytes?: number): PayloadPoolStats
}

export interface PayloadPoolStats {
  freeBytes: number
  maxBytes: number
  /** mappings made */
  mapped: number
  /** mappings taken from the pool */
  reused: number
  /** mappings unmapped when collected (the pool full) or when the bound was lowered */
  unmapped: number
}

const ADDON = join(packageRoot(), 'build', 'monna-kernels.node')

let loaded: NativeKernels | undefined
let status: string
if (process.env.MONNA_NATIVE === 'off') {
  status = 'off (MONNA_NATIVE=off)'
} else {
  try {
    loaded = createRequire(import.meta.url)(ADDON) as NativeKernels
    status = `native (${loaded.simd()})`
  } catch (err) {
    status = `not built (${err instanceof Error ? err.message.split('\n')[0] : String(err)}): run \`npm run build:native\``
  }
}
let enabled = loaded !== undefined

/** The native kernels when built, loaded and enabled; undefined otherwise. */
export function nativeKernels(): NativeKernels | undefined {
  return enabled ? loaded : undefined
}

/** The addon's ChaCha20-Poly1305 into buffers it is given (src/net/noise-crypto.ts), when built and available. */
export type NativeChacha = Required<Pick<NativeKernels, 'chachaOpenInPlace' | 'chachaSealInto'>>
const chacha: NativeChacha | undefined =
  loaded?.chachaAvailable?.() === true && loaded.chachaOpenInPlace !== undefined && loaded.chachaSealInto !== undefined ? (loaded as NativeChacha) : undefined

/**
 * The addon's ChaCha20-Poly1305 (decryption in place, encryption into a given buffer), or undefined (not built, MONNA_NATIVE=off, or no
 * OpenSSL ChaCha20-Poly1305 in this Node). Not switched by `setNativeEnabled`, which is about
 * the compute kernels.
 */
export function nativeChacha(): NativeChacha | undefined {
  return chacha
}

/** Payloads at least this long come from the addon's pool (smaller ones are not worth a mapping each). */
export const POOLED_PAYLOAD_BYTES = 256 * 1024

const pool = loaded?.payloadBuffer !== undefined && loaded.payloadPool !== undefined ? (loaded as Required<Pick<NativeKernels, 'payloadBuffer' | 'payloadPool'>>) : undefined

/**
 * `length` bytes for a received payload, contents unspecified (the caller writes every byte
 * before reading any): from the addon's payload pool when built and `length` ≥
 * POOLED_PAYLOAD_BYTES — a model's buffer of an earlier round, its pages already there, instead
 * of a fresh mapping whose every page faults on its first write — otherwise
 * `Buffer.allocUnsafeSlow`. Not switched by `setNativeEnabled`, which is about the compute
 * kernels.
 */
export function payloadBytes(length: number): Uint8Array {
  if (pool !== undefined && length >= POOLED_PAYLOAD_BYTES) {
    pooledSinceCollection += length
    if (pressure !== undefined && pooledSinceCollection >= pressure.bytes) {
      pooledSinceCollection = 0
      pressure.collect()
    }
    return new Uint8Array(pool.payloadBuffer(length))
  }
  return new Uint8Array(Buffer.allocUnsafeSlow(length).buffer, 0, length)
}

/**
 * Pooled payload bytes handed out since the last full collection (`payloadsCollected`). V8 does
 * not count the pool's external ArrayBuffers towards its own collection triggers the way it
 * counts its own buffers' (a young collection once those reach twice the semi-space): with
 * external memory accounted in the global limit (member processes, node/memory.ts), a process
 * doing nothing but allocate payloads and drop them grew by 1.3–2.1 GB before V8 collected
 * (docs/memory.md, test/unit/node/memory.test.ts); what a peer cutting off payloads leaves is
 * collected only when something else brings a collection on. So the pool's own count calls
 * for one.
 */
let pooledSinceCollection = 0
let pressure: { bytes: number; collect: () => void } | undefined

/**
 * Makes `payloadBytes` call `collect` (a full collection) once `bytes` of pooled payloads were
 * handed out since the last one, so that payloads dropped unread cannot pile up faster than
 * collections come; undefined removes it. Member processes set it (node/memory.ts).
 */
export function setPayloadPressure(p: { bytes: number; collect: () => void } | undefined): void {
  pressure = p
  pooledSinceCollection = 0
}

/** A full collection just ran (the member's own, after a round): the count starts again. */
export function payloadsCollected(): void {
  pooledSinceCollection = 0
}

/** The payload pool's state (undefined without the addon); `maxBytes` sets its bound (0: no pool). */
export function payloadPool(maxBytes?: number): PayloadPoolStats | undefined {
  return pool?.payloadPool(maxBytes)
}

/** Whether the addon was built and loaded (whatever `setNativeEnabled` says). */
export function nativeAvailable(): boolean {
  return loaded !== undefined
}

/** One line: 'native (avx2+fma)', 'off (…)' or 'not built (…)'. */
export function nativeStatus(): string {
  return enabled || loaded === undefined ? status : 'disabled (setNativeEnabled(false))'
}

/**
 * Threads of the native GEMM (main thread included). Only the main thread configures them: the
 * wasm kernel threads (worker_threads) load the addon too and always run it single-threaded.
 */
export function setNativeThreads(n: number): void {
  if (loaded !== undefined && isMainThread) loaded.setThreads(n)
}

/** Turns the native kernels on or off at run time (benchmarks and tests compare both paths). */
export function setNativeEnabled(on: boolean): void {
  enabled = on && loaded !== undefined
}
