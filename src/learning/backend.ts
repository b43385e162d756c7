/**
 * Choosing the tfjs compute backend.
 *
 * `auto` prefers `@tensorflow/tfjs-node` (native TensorFlow, an optional dependency that is
 * often absent), then the wasm backend (XNNPACK; single-threaded SIMD in Node, because tfjs
 * disables wasm threads there — tfjs issue #3830), then the pure-JS cpu backend. After wasm or
 * cpu is selected, `registerFallbackKernels` (src/compute) adds the kernels those backends lack
 * or run slowly. A learner whose model still hits a missing kernel falls back to the cpu backend
 * on its own (see learner.ts), so a chosen backend never makes training crash.
 */

import { nativeKernels, nativeStatus, registerFallbackKernels } from '../compute/index.ts'
import { AbortError, InvalidConfigError } from '../errors.ts'
import type { Logger } from '../logger.ts'
import { silentLogger } from '../logger.ts'
import { BackendUnavailableError } from './errors.ts'
import { tf } from './tf.ts'

export type BackendChoice = 'auto' | 'tensorflow' | 'wasm' | 'cpu'

export interface BackendOptions {
  backend?: BackendChoice
  /** threads for the wasm backend / fallback kernels; default: tfjs's own choice */
  threads?: number
  logger?: Logger
  signal?: AbortSignal
}

export interface BackendInfo {
  /** the tfjs backend now active: 'tensorflow', 'wasm' or 'cpu' */
  name: string
  /** kernels registered by src/compute for this backend */
  fallbackKernels: string[]
  /** backends tried before this one and why they failed */
  skipped: { backend: string; reason: string }[]
  /** monna's kernels on wasm/cpu: 'native (avx2+fma)', 'not built (…)', …; 'tensorflow' otherwise */
  kernels: string
}

const choices: readonly BackendChoice[] = ['auto', 'tensorflow', 'wasm', 'cpu']

// A variable specifier keeps TypeScript from resolving the optional module at compile time.
const tfjsNodeModule = '@tensorflow/tfjs-node'

async function tryTensorflow(): Promise<void> {
  try {
    await import(tfjsNodeModule)
  } catch (err) {
    throw new BackendUnavailableError('tensorflow', `${tfjsNodeModule} is not installed or failed to load`, { cause: err })
  }
  if (!(await tf.setBackend('tensorflow'))) {
    throw new BackendUnavailableError('tensorflow', 'tfjs-node loaded but its backend failed to initialise')
  }
}

let wasmModule: Promise<{ setThreadsCount(n: number): void }> | undefined

async function tryWasm(threads: number | undefined): Promise<void> {
  try {
    wasmModule ??= import('@tensorflow/tfjs-backend-wasm')
    const wasm = await wasmModule
    if (threads !== undefined && tf.engine().registry.wasm === undefined) wasm.setThreadsCount(threads)
  } catch (err) {
    wasmModule = undefined
    throw new BackendUnavailableError('wasm', '@tensorflow/tfjs-backend-wasm failed to load', { cause: err })
  }
  let ok = false
  try {
    ok = await tf.setBackend('wasm')
  } catch (err) {
    throw new BackendUnavailableError('wasm', 'the wasm module failed to initialise', { cause: err })
  }
  if (!ok) throw new BackendUnavailableError('wasm', 'the wasm module failed to initialise')
}

async function tryCpu(): Promise<void> {
  if (!(await tf.setBackend('cpu'))) throw new BackendUnavailableError('cpu', 'the cpu backend failed to initialise')
}

/**
 * Selects and initialises the compute backend (process-wide: tfjs has one active backend).
 * An explicit choice that cannot be honoured throws `BackendUnavailableError`; `auto` never does
 * (the cpu backend is always there).
 */
export async function initBackend(opts: BackendOptions = {}): Promise<BackendInfo> {
  const backend = opts.backend ?? 'auto'
  const logger = opts.logger ?? silentLogger
  if (!choices.includes(backend)) {
    throw new InvalidConfigError('backend', `unknown backend '${String(backend)}'; use one of ${choices.join(', ')}`)
  }
  if (opts.threads !== undefined && (!Number.isInteger(opts.threads) || opts.threads < 1)) {
    throw new InvalidConfigError('threads', `must be a positive integer, got ${opts.threads}`)
  }
  const order: Exclude<BackendChoice, 'auto'>[] = backend === 'auto' ? ['tensorflow', 'wasm', 'cpu'] : [backend]
  const skipped: BackendInfo['skipped'] = []
  for (const name of order) {
    if (opts.signal?.aborted) throw new AbortError()
    try {
      if (name === 'tensorflow') await tryTensorflow()
      else if (name === 'wasm') await tryWasm(opts.threads)
      else await tryCpu()
    } catch (err) {
      if (backend !== 'auto' || !(err instanceof BackendUnavailableError)) throw err
      skipped.push({ backend: name, reason: err.message })
      logger.debug('backend unavailable, trying the next', { backend: name, reason: err.message })
      continue
    }
    const fallbackKernels = name === 'tensorflow' ? [] : await registerFallbackKernels(name, opts.threads === undefined ? {} : { threads: opts.threads })
    if (fallbackKernels.length > 0) {
      // Kernels registered after the backend was set need their setup hooks run.
      await tf.setBackend(name)
    }
    const kernels = name === 'tensorflow' ? 'tensorflow' : nativeStatus()
    logger.info('compute backend ready', { backend: name, fallbackKernels: fallbackKernels.length, kernels })
    if (name !== 'tensorflow' && nativeKernels() === undefined) logger.info(`monna's native kernels are ${kernels}; a LeNet step runs about 5× slower on the wasm kernels`)
    return { name: tf.getBackend(), fallbackKernels, skipped, kernels }
  }
  // unreachable: cpu always succeeds or throws
  throw new BackendUnavailableError(backend, 'no backend could be initialised')
}

/** Whether the tfjs backend `name` is registered and initialised in this process. */
export function backendReady(name: string): boolean {
  return tf.engine().registry[name] !== undefined
}
