/**
 * Kernel threads for the wasm backend. tfjs disables the wasm backend's own thread pool in
 * Node (tfjs issue #3830: its pthread workers are Blob URLs, which Node's Worker cannot load),
 * so `threads: n` starts n − 1 worker_threads, each with its own tfjs wasm backend, and the
 * big convolution kernels (forward, filter gradient, input gradient) split their batch: the
 * main thread computes the first slice while the workers compute the others. Operands and
 * results travel through one SharedArrayBuffer per worker; the kernel blocks (Atomics.wait)
 * until the workers are done, so kernels stay synchronous as tfjs requires.
 */

import { existsSync } from 'node:fs'
import { join } from 'node:path'
import { pathToFileURL } from 'node:url'
import { Worker } from 'node:worker_threads'
import type { KernelFunc, NamedAttrMap, NamedTensorInfoMap, TensorInfo } from '@tensorflow/tfjs'
import { backend_util } from '@tensorflow/tfjs'
import { MonnaError } from '../errors.ts'
import { packageRoot } from '../package-root.ts'
import { encodeJob, HEADER_BYTES, type Job, type JobInput, State, type ThreadedKernel } from './protocol.ts'

// the worker module beside this one: worker.ts run from source, worker.js from the built package;
// in a bundle (the members' program, src/topology/member-program.ts) the one of the package
function workerUrl(): URL {
  const beside = new URL(import.meta.url.endsWith('.ts') ? './worker.ts' : './worker.js', import.meta.url)
  if (existsSync(beside)) return beside
  const root = packageRoot()
  for (const f of [join(root, 'src', 'compute', 'worker.ts'), join(root, 'dist', 'src', 'compute', 'worker.js')]) if (existsSync(f)) return pathToFileURL(f)
  return beside
}

/** Float32 capacity of each worker's shared buffer (8 MiB): a LeNet batch-25 slice needs < 1 M. */
const FLOATS_PER_THREAD = 2 * 1024 * 1024

/**
 * Below this many multiply-adds a kernel runs on the main thread alone: a round trip to a
 * worker (copy in, wake, copy out) costs ~0.1–0.3 ms here.
 */
export const MIN_SPLIT_MACS = 4_000_000
let minSplitMacs = MIN_SPLIT_MACS

/** For tests: split kernels from this size on (0 = every kernel with batch ≥ threads). */
export function setSplitThreshold(macs: number): void {
  minSplitMacs = macs
}

interface KernelThread {
  worker: Worker
  ctrl: Int32Array
  data: Float32Array
}

export class KernelThreadError extends MonnaError {
  override name = 'KernelThreadError'
}

export class KernelThreadPool {
  readonly threads: readonly KernelThread[]
  private constructor(threads: KernelThread[]) {
    this.threads = threads
  }

  /** Starts `count` workers and waits until each has its wasm backend ready. */
  static async start(count: number): Promise<KernelThreadPool> {
    const threads = await Promise.all(
      Array.from({ length: count }, async () => {
        const buffer = new SharedArrayBuffer(HEADER_BYTES + FLOATS_PER_THREAD * 4)
        const worker = new Worker(workerUrl(), { workerData: { buffer } })
        await new Promise<void>((resolve, reject) => {
          worker.once('message', () => resolve())
          worker.once('error', reject)
          worker.once('exit', (code) => reject(new KernelThreadError(`kernel thread exited with code ${code} before it was ready`)))
        })
        worker.removeAllListeners()
        // Idle workers must not keep the process alive.
        worker.unref()
        return { worker, ctrl: new Int32Array(buffer, 0, HEADER_BYTES / 4), data: new Float32Array(buffer, HEADER_BYTES) }
      }),
    )
    return new KernelThreadPool(threads)
  }

  /** Copies the operands in and wakes thread `i` on `job`. */
  post(i: number, job: Job, operands: Float32Array[]): void {
    const t = this.threads[i]!
    job.inputs.forEach((input, k) => {
      t.data.set(operands[k]!, input.offset)
    })
    encodeJob(t.ctrl, job)
    Atomics.store(t.ctrl, 0, State.Posted)
    Atomics.notify(t.ctrl, 0)
  }

  /** Blocks until thread `i` is done; returns its data region (valid until the next post). */
  wait(i: number): Float32Array {
    const t = this.threads[i]!
    while (Atomics.load(t.ctrl, 0) === State.Posted) Atomics.wait(t.ctrl, 0, State.Posted)
    const state = Atomics.load(t.ctrl, 0)
    Atomics.store(t.ctrl, 0, State.Idle)
    if (state !== State.Done) throw new KernelThreadError('a kernel thread failed to run its part of a kernel')
    return t.data
  }

  async stop(): Promise<void> {
    await Promise.all(
      this.threads.map(async (t) => {
        Atomics.store(t.ctrl, 0, State.Stop)
        Atomics.notify(t.ctrl, 0)
        await t.worker.terminate()
      }),
    )
  }
}

let pool: KernelThreadPool | undefined

/** Sets the pool used by the wasm kernels (n threads = n − 1 workers; 1 = main thread only). */
export async function setKernelThreads(threads: number): Promise<void> {
  const workers = threads - 1
  if ((pool?.threads.length ?? 0) === workers) return
  const old = pool
  pool = undefined
  await old?.stop()
  if (workers > 0) pool = await KernelThreadPool.start(workers)
}

export function kernelThreads(): number {
  return (pool?.threads.length ?? 0) + 1
}

/** The parts of a batch of `batch` over `n` threads: sizes as equal as possible. */
function parts(batch: number, n: number): number[] {
  const out: number[] = []
  for (let i = 0; i < n; i++) out.push(Math.floor((batch * (i + 1)) / n) - Math.floor((batch * i) / n))
  return out
}

interface Host {
  alloc(shape: number[], zeroed: boolean): TensorInfo
  view(t: TensorInfo): Float32Array
  free(t: TensorInfo): void
}

type Shape4 = [number, number, number, number]

/**
 * Runs a convolution kernel with its batch split over the pool, if there is one and the kernel
 * is big enough; returns undefined otherwise (the caller then runs it alone).
 * `batched` names the inputs that carry the batch (split), the others are sent whole.
 * `combine`: 'concat' stacks the parts' outputs along the batch, 'sum' adds them.
 */
export function runSplit(opts: {
  kernel: ThreadedKernel
  host: Host
  backend: unknown
  local: KernelFunc
  inputs: Record<string, TensorInfo>
  batched: string[]
  attrs: { strides: number[] | number; pad: unknown; dilations?: number[] | number; dimRoundingMode?: 'floor' | 'round' | 'ceil' }
  convInput: number[]
  filterShape: number[]
  outShape: number[]
  combine: 'concat' | 'sum'
}): TensorInfo | undefined {
  const p = pool
  if (p === undefined) return undefined
  const info = backend_util.computeConv2DInfo(
    opts.convInput as Shape4,
    opts.filterShape as Shape4,
    opts.attrs.strides as [number, number],
    (opts.attrs.dilations ?? 1) as [number, number],
    opts.attrs.pad as 'valid',
    opts.attrs.dimRoundingMode,
  )
  const macs = info.batchSize * info.outHeight * info.outWidth * info.outChannels * info.filterHeight * info.filterWidth * info.inChannels
  const n = p.threads.length + 1
  const batch = info.batchSize
  if (macs < minSplitMacs || batch < n) return undefined
  const sizes = parts(batch, n)
  const outPer = opts.outShape.slice(1).reduce((a, b) => a * b, 1)
  const outSize = opts.combine === 'concat' ? outPer : opts.outShape.reduce((a, b) => a * b, 1)
  const names = Object.keys(opts.inputs)
  const per = (name: string) => opts.inputs[name]!.shape.slice(1).reduce((a, b) => a * b, 1)
  const sliceSize = (name: string, b: number) => (opts.batched.includes(name) ? b * per(name) : opts.inputs[name]!.shape.reduce((a, c) => a * c, 1))
  const largest = Math.max(...sizes)
  const need = names.reduce((s, name) => s + sliceSize(name, largest), 0) + (opts.combine === 'concat' ? largest * outSize : outSize)
  if (need > FLOATS_PER_THREAD) return undefined

  const pad = info.padInfo
  const explicit = {
    strides: [info.strideHeight, info.strideWidth] as [number, number],
    pad: [pad.top, pad.bottom, pad.left, pad.right] as [number, number, number, number],
    dilations: [info.dilationHeight, info.dilationWidth] as [number, number],
  }
  const shapeAttr = (b: number): Shape4 =>
    opts.kernel === 'Conv2DBackpropFilter'
      ? (opts.filterShape as Shape4)
      : opts.kernel === 'Conv2DBackpropInput'
        ? ([b, ...opts.convInput.slice(1)] as Shape4)
        : [0, 0, 0, 0]
  // Post the workers' slices first, so they run while the main thread computes its own.
  let start = sizes[0]!
  for (let w = 1; w < n; w++) {
    const b = sizes[w]!
    let offset = 0
    const jobInputs: JobInput[] = []
    const operands: Float32Array[] = []
    for (const name of names) {
      const t = opts.inputs[name]!
      const isBatched = opts.batched.includes(name)
      const shape = (isBatched ? [b, ...t.shape.slice(1)] : t.shape) as Shape4
      const size = sliceSize(name, b)
      const all = opts.host.view(t)
      operands.push(isBatched ? all.subarray(start * per(name), start * per(name) + size) : all)
      jobInputs.push({ name: name as JobInput['name'], shape, offset })
      offset += size
    }
    p.post(w - 1, { kernel: opts.kernel, inputs: jobInputs as [JobInput, JobInput], outOffset: offset, ...explicit, shapeAttr: shapeAttr(b) }, operands)
    start += b
  }
  // The main thread's slice.
  const b0 = sizes[0]!
  const temps: TensorInfo[] = []
  const localInputs: Record<string, TensorInfo> = {}
  for (const name of names) {
    const t = opts.inputs[name]!
    if (!opts.batched.includes(name)) {
      localInputs[name] = t
      continue
    }
    const s = opts.host.alloc([b0, ...t.shape.slice(1)], false)
    temps.push(s)
    opts.host.view(s).set(opts.host.view(t).subarray(0, b0 * per(name)))
    localInputs[name] = s
  }
  const localAttrs: Record<string, unknown> = {
    strides: explicit.strides,
    pad: [[0, 0], [explicit.pad[0], explicit.pad[1]], [explicit.pad[2], explicit.pad[3]], [0, 0]],
    dilations: explicit.dilations,
    dataFormat: 'NHWC',
  }
  if (opts.kernel === 'Conv2DBackpropFilter') localAttrs.filterShape = opts.filterShape
  if (opts.kernel === 'Conv2DBackpropInput') localAttrs.inputShape = shapeAttr(b0)
  let failed: unknown
  let out: TensorInfo | undefined
  try {
    const mine = opts.local({ inputs: localInputs as NamedTensorInfoMap, backend: opts.backend as never, attrs: localAttrs as unknown as NamedAttrMap }) as TensorInfo
    if (opts.combine === 'sum') {
      out = mine
    } else {
      temps.push(mine)
      out = opts.host.alloc([...opts.outShape], false)
      opts.host.view(out).set(opts.host.view(mine))
    }
  } catch (err) {
    failed = err
  }
  // Always collect every worker (they write into their own buffers only).
  let offsetOut = b0 * outPer
  for (let w = 1; w < n; w++) {
    const b = sizes[w]!
    let data: Float32Array | undefined
    try {
      data = p.wait(w - 1)
    } catch (err) {
      failed ??= err
    }
    if (data !== undefined && out !== undefined && failed === undefined) {
      const outOffset = names.reduce((s, name) => s + sliceSize(name, b), 0)
      const view = opts.host.view(out)
      if (opts.combine === 'concat') {
        view.set(data.subarray(outOffset, outOffset + b * outPer), offsetOut)
      } else {
        for (let i = 0; i < outSize; i++) view[i]! += data[outOffset + i]!
      }
    }
    offsetOut += b * outPer
  }
  for (const t of temps) opts.host.free(t)
  if (failed !== undefined) {
    if (out !== undefined) opts.host.free(out)
    throw failed
  }
  return out
}
