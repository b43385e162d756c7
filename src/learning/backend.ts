/**
 * Choosing the tfjs compute backend.
 *
 * `auto` prefers `@tensorflow/tfjs-node` (native TensorFlow, an optional dependency that is
 * often absent), then the wasm backend (XNNPACK; single-threaded SIMD in Node, because tfjs
 * disables wasm threads there — tfjs issue #3830), then the pure-JS cpu backend. After wasm or
 * cpu is selected, `registerFallbackKernels` (src/compute) adds the kernels those backends lack
 * or run slowly. A learner whose model still hits a missing kernel falls back to the cpu backend
 * on its own (see learner.ts), so a chosen backend never makes training crash.
 *
 * `deferLoading` (members: src/node, src/topology): where monna's native kernels compute every
 * model's step and evaluation (learner.ts), a learner on wasm or cpu never calls tfjs, so the
 * choice is only recorded — neither tfjs nor the wasm module is loaded — and applied by
 * `ensureTfBackend` the first time a learner does need tfjs (the native kernels switched off).
 */

import type * as TF from '@tensorflow/tfjs'
import { nativeKernels, nativeStatus, setNativeThreads } from '../compute/native.ts'
import { AbortError, InvalidConfigError } from '../errors.ts'
import type { Logger } from '../logger.ts'
import { silentLogger } from '../logger.ts'
import { BackendUnavailableError } from './errors.ts'
import { loadTf, tfIfLoaded } from './tf-loader.ts'

export type BackendChoice = 'auto' | 'tensorflow' | 'wasm' | 'cpu'

export interface BackendOptions {
  backend?: BackendChoice
  /** threads for the wasm backend / fallback kernels; default: tfjs's own choice */
  threads?: number
  logger?: Logger
  signal?: AbortSignal
  /**
   * Record a wasm or cpu choice without loading tfjs while monna's native kernels serve every
   * model (the module comment); default false: load and initialise the backend now.
   */
  deferLoading?: boolean
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
  /** chosen but not loaded (`deferLoading`): tfjs and the backend load when a learner needs them */
  deferred: boolean
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
  const tf = await loadTf()
  if (!(await tf.setBackend('tensorflow'))) {
    throw new BackendUnavailableError('tensorflow', 'tfjs-node loaded but its backend failed to initialise')
  }
}

let wasmModule: Promise<{ setThreadsCount(n: number): void }> | undefined

async function tryWasm(threads: number | undefined): Promise<void> {
  const tf = await loadTf()
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
  const tf = await loadTf()
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
  const defer = opts.deferLoading === true && tfIfLoaded() === undefined && nativeServesEveryModel()
  for (const name of order) {
    if (opts.signal?.aborted) throw new AbortError()
    if (defer && name !== 'tensorflow') {
      deferredChoice = { name, threads: opts.threads, auto: backend === 'auto', logger }
      if (opts.threads !== undefined) setNativeThreads(opts.threads)
      const kernels = nativeStatus()
      logger.info('compute backend ready', { backend: name, kernels, tfjs: 'loaded only if a model needs it' })
      return { name, fallbackKernels: [], skipped, kernels, deferred: true }
    }
    let fallbackKernels: string[]
    try {
      fallbackKernels = await activate(name, opts.threads)
    } catch (err) {
      if (backend !== 'auto' || !(err instanceof BackendUnavailableError)) throw err
      skipped.push({ backend: name, reason: err.message })
      logger.debug('backend unavailable, trying the next', { backend: name, reason: err.message })
      continue
    }
    deferredChoice = undefined
    const kernels = name === 'tensorflow' ? 'tensorflow' : nativeStatus()
    logger.info('compute backend ready', { backend: name, fallbackKernels: fallbackKernels.length, kernels })
    if (name !== 'tensorflow' && nativeKernels() === undefined) logger.info(`monna's native kernels are ${kernels}; a LeNet step runs about 5× slower on the wasm kernels`)
    return { name: (await loadTf()).getBackend(), fallbackKernels, skipped, kernels, deferred: false }
  }
  // unreachable: cpu always succeeds or throws
  throw new BackendUnavailableError(backend, 'no backend could be initialised')
}

/** Whether the native kernels compute every model's step and evaluation (learner.ts's native path). */
function nativeServesEveryModel(): boolean {
  const N = nativeKernels()
  return N?.modelGradient !== undefined && N.modelEvaluate !== undefined
}

/** Initialises `name` and registers src/compute's kernels for it; returns their names. */
async function activate(name: Exclude<BackendChoice, 'auto'>, threads: number | undefined): Promise<string[]> {
  if (name === 'tensorflow') await tryTensorflow()
  else if (name === 'wasm') await tryWasm(threads)
  else await tryCpu()
  if (name === 'tensorflow') return []
  const { registerFallbackKernels } = await import('../compute/index.ts')
  const fallbackKernels = await registerFallbackKernels(name, threads === undefined ? {} : { threads })
  // Kernels registered after the backend was set need their setup hooks run.
  if (fallbackKernels.length > 0) await (await loadTf()).setBackend(name)
  return fallbackKernels
}

/** A `deferLoading` choice not applied yet. */
let deferredChoice: { name: 'wasm' | 'cpu'; threads: number | undefined; auto: boolean; logger: Logger } | undefined
let applying: Promise<void> | undefined

/**
 * tfjs with the chosen backend active: loads both and applies a deferred choice (once; an `auto`
 * choice of wasm that fails to load falls back to cpu, as `initBackend` would have).
 */
export async function ensureTfBackend(): Promise<typeof TF> {
  const tf = await loadTf()
  const d = deferredChoice
  if (d !== undefined) {
    applying ??= (async () => {
      try {
        await activate(d.name, d.threads)
      } catch (err) {
        if (!d.auto || d.name === 'cpu' || !(err instanceof BackendUnavailableError)) throw err
        d.logger.warn('backend unavailable, using cpu', { backend: d.name, reason: err.message })
        await activate('cpu', d.threads)
      }
      d.logger.info('TensorFlow.js loaded', { backend: tf.getBackend() })
    })().finally(() => {
      if (deferredChoice === d) deferredChoice = undefined
      applying = undefined
    })
    await applying
  }
  return tf
}

/**
 * The backend a learner created now runs on: the deferred choice while tfjs is not loaded, else
 * tfjs's active backend (loading tfjs, and applying a deferred choice, if needed).
 */
export async function learnerBackend(): Promise<string> {
  if (deferredChoice !== undefined && tfIfLoaded() === undefined) return deferredChoice.name
  return (await ensureTfBackend()).getBackend()
}

/** Whether the tfjs backend `name` is registered and initialised in this process. */
export function backendReady(name: string): boolean {
  return tfIfLoaded()?.engine().registry[name] !== undefined
}
