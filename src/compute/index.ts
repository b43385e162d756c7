/**
 * Kernels that the fallback tfjs backends (wasm, cpu) lack or run too slowly, registered
 * through tfjs's kernel registry (no fork of tfjs: registration only, public surface only).
 *
 * Audit (tfjs 4.22; LeNet and MLP training steps of `test/bench/train.bench.ts` under
 * `tf.profile`): the only kernel a step needs that wasm lacks is Conv2DBackpropFilter. Slow
 * ones on wasm: Conv2DBackpropInput (a direct C++ loop, 134 ms of a 234 ms LeNet step),
 * BatchMatMul with a transposed operand (not on the XNNPACK path: 5–10× slower than
 * untransposed), MaxPoolGrad (18 ms). On cpu: Conv2DBackpropFilter (13.7 s for the first
 * LeNet step), Conv2DBackpropInput, MaxPoolGrad. Everything else (Conv2D, MaxPool, Relu,
 * Step, Sum, Softmax pieces, …) exists and is fast enough.
 *
 * Registered for wasm: Conv2DBackpropFilter (XNNPACK convolution or im2col + matmul),
 * Conv2DBackpropInput (matmul + col2im), MaxPoolGrad (JS), BatchMatMul (explicit transposes
 * and a packing-cost choice of orientation around the stock XNNPACK kernel), Conv2D (the stock
 * one, batch-split over kernel threads when `threads` > 1). For cpu: Conv2DBackpropFilter,
 * Conv2DBackpropInput, MaxPoolGrad (same algorithms over the cpu backend's matmul), and Conv2D
 * and BatchMatMul (native only, else the stock ones).
 *
 * When the native kernels are built (native.ts), every one of these kernels runs them first
 * (NHWC, float32, no dilation) — in place on the backend's memory — and the paths above are the
 * fallback. They serve the tfjs graph (`evaluate`, the learner without `modelGradient`, the
 * bench's `tf-step` case: LeNet 12.8–16.0 ms vs 28.7–29.2 ms on the wasm path, `npm run
 * bench:train`); the learner's training step itself is the native `modelGradient` (6.0–6.2 ms).
 * The native kernels are single-threaded: `threads` splits only the wasm path.
 */

import type { KernelConfig } from '@tensorflow/tfjs'
import { getKernel, registerKernel, unregisterKernel } from '@tensorflow/tfjs'
import { InvalidConfigError } from '../errors.ts'
import { cpuKernels, originalKernels, wasmKernels } from './kernels.ts'
import { nativeKernels, setNativeThreads } from './native.ts'
import { kernelThreads, setKernelThreads } from './threads.ts'

export { UnsupportedKernelInputError } from './kernels.ts'
export type { Im2colGeometry, PoolGeometry } from './loops.ts'
export { col2imAdd, im2colTransposed, maxPoolGradAdd, transpose2d } from './loops.ts'
export type { NativeKernels } from './native.ts'
export { nativeAvailable, nativeKernels, nativeStatus, setNativeEnabled, setNativeThreads } from './native.ts'

export interface FallbackKernelOptions {
  /**
   * Kernel threads (main thread included). With the native kernels: threads of their matrix
   * product (n − 1 native threads). Without: n > 1 starts n − 1 worker_threads, each with its
   * own wasm backend, and splits the batch of big wasm convolutions over them. Default 1 — see
   * `defaultFallbackKernelOptions`.
   */
  threads?: number
}

export const defaultFallbackKernelOptions: Required<FallbackKernelOptions> = {
  // One thread: on the shared 2-core development machine the batch split did not pay
  // (`npm run bench:train`, case lenet/wasm+fallback/2threads), and the members of a
  // simulated swarm are better spread over the cores than a single step is.
  threads: 1,
}

export function validateFallbackKernelOptions(opts: FallbackKernelOptions): Required<FallbackKernelOptions> {
  const o = { threads: opts.threads ?? defaultFallbackKernelOptions.threads }
  if (!Number.isInteger(o.threads) || o.threads < 1 || o.threads > 64) {
    throw new InvalidConfigError('threads', `must be an integer from 1 to 64 (main thread included), got ${o.threads}`)
  }
  return o
}

export { kernelThreads }

const kernelsByBackend: Record<string, readonly KernelConfig[]> = {
  wasm: wasmKernels,
  cpu: cpuKernels,
}

const key = (c: KernelConfig): string => `${c.kernelName}/${c.backendName}`

/**
 * Registers the missing/slow kernels for `backend` ('wasm' or 'cpu'; any other name registers
 * nothing); returns the names of the kernels now provided by this module. Idempotent.
 */
export async function registerFallbackKernels(backend: string, opts: FallbackKernelOptions = {}): Promise<string[]> {
  const { threads } = validateFallbackKernelOptions(opts)
  const list = kernelsByBackend[backend] ?? []
  // the wasm kernel threads only serve the wasm path: not started while the native kernels run
  if (backend === 'wasm') await setKernelThreads(nativeKernels() === undefined ? threads : 1)
  // only when asked: a learner falling back to the cpu backend registers its kernels without
  // options and must not reset the thread count the wasm registration set
  if (list.length > 0 && opts.threads !== undefined) setNativeThreads(threads)
  for (const config of list) {
    const existing = getKernel(config.kernelName, config.backendName)
    if (existing === config) continue
    // tfjs warns when a kernel is registered over another one; replacing is deliberate here.
    if (existing !== undefined) {
      originalKernels.set(key(config), existing)
      unregisterKernel(config.kernelName, config.backendName)
    }
    registerKernel(config)
  }
  return list.map((c) => c.kernelName)
}

/**
 * Removes the kernels this module registered for `backend` and puts back the ones they
 * replaced (used by tests and benchmarks to compare against the stock kernels).
 */
export async function unregisterFallbackKernels(backend: string): Promise<void> {
  if (backend === 'wasm') await setKernelThreads(1)
  setNativeThreads(1)
  for (const config of kernelsByBackend[backend] ?? []) {
    if (getKernel(config.kernelName, config.backendName) !== config) continue
    unregisterKernel(config.kernelName, config.backendName)
    const original = originalKernels.get(key(config))
    if (original !== undefined) registerKernel(original)
    originalKernels.delete(key(config))
  }
}
