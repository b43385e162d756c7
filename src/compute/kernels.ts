/**
 * The fallback kernels as tfjs KernelConfigs, written once over a small `Host` adapter
 * (allocate / view / free a float32 tensor on the backend, multiply two matrices with the
 * backend's own BatchMatMul) with one adapter per backend:
 *
 * - wasm: tensors live on the wasm heap (`makeOutput`, `typedArrayFromHeap`, `disposeData`),
 *   the product runs in the backend's XNNPACK path.
 * - cpu: plain Float32Arrays (`makeTensorInfo`, `readSync`, `disposeIntermediateTensorInfo`),
 *   the product runs in the cpu backend's blocked JS matmul.
 *
 * Only that public backend surface and the kernel registry are used, so the kernels survive
 * tfjs upgrades within major 4 (no fork, no private import paths).
 *
 * With kernel threads (threads.ts), the wasm convolutions split their batch over workers.
 */

import type { KernelConfig, KernelFunc, NamedAttrMap, NamedTensorInfoMap, TensorInfo } from '@tensorflow/tfjs'
import { backend_util, getKernel } from '@tensorflow/tfjs'
import { MonnaError } from '../errors.ts'
import { col2imAdd, type Im2colGeometry, im2colTransposed, maxPoolGradAdd, type PoolGeometry, permute4, transpose2d } from './loops.ts'
import { type ConvDims, nativeKernels } from './native.ts'
import { runSplit } from './threads.ts'

/** A kernel got an input this module does not handle (e.g. NCHW); the message says what to use. */
export class UnsupportedKernelInputError extends MonnaError {
  override name = 'UnsupportedKernelInputError'
  readonly kernel: string
  constructor(kernel: string, message: string) {
    super(`${kernel}: ${message}`)
    this.kernel = kernel
  }
}

type Padding = 'valid' | 'same' | number | backend_util.ExplicitPadding

/** Attributes tfjs-core passes to Conv2DBackpropFilter / Conv2DBackpropInput (kernel_names.d.ts). */
interface ConvGradAttrs {
  strides: [number, number] | number
  pad: Padding
  dataFormat: 'NHWC' | 'NCHW'
  dimRoundingMode?: 'floor' | 'round' | 'ceil'
  filterShape?: [number, number, number, number]
  inputShape?: [number, number, number, number]
}

interface PoolGradAttrs {
  filterSize: [number, number] | number
  strides: [number, number] | number
  pad: Padding
  dimRoundingMode?: 'floor' | 'round' | 'ceil'
}

/** What a kernel needs from its backend. Views are invalidated by the next `alloc` on wasm. */
export interface Host {
  alloc(shape: number[], zeroed: boolean): TensorInfo
  view(t: TensorInfo): Float32Array
  free(t: TensorInfo): void
  /** (m×k)·(k×n) of two float32 tensors holding those matrices row-major, as a new m×n tensor. */
  matmul(a: TensorInfo, b: TensorInfo, m: number, k: number, n: number): TensorInfo
}

/** The structural part of tfjs-backend-wasm's BackendWasm used here (all public members). */
interface WasmBackendLike {
  makeOutput(shape: number[], dtype: 'float32'): TensorInfo
  typedArrayFromHeap(t: TensorInfo): Float32Array | Int32Array | Uint8Array
  disposeData(dataId: object, force?: boolean): boolean
}

/** The structural part of tfjs-backend-cpu's MathBackendCPU used here (all public members). */
interface CpuBackendLike {
  readSync(dataId: object): unknown
  makeTensorInfo(shape: number[], dtype: 'float32', values?: Float32Array): TensorInfo
  disposeIntermediateTensorInfo(t: TensorInfo): void
}

const size = (shape: number[]): number => shape.reduce((a, b) => a * b, 1)

function runMatMul(kernel: KernelFunc, backend: unknown, a: TensorInfo, b: TensorInfo, m: number, k: number, n: number) {
  const out = kernel({
    inputs: {
      a: { dataId: a.dataId, shape: [1, m, k], dtype: 'float32' },
      b: { dataId: b.dataId, shape: [1, k, n], dtype: 'float32' },
    } as NamedTensorInfoMap,
    backend: backend as never,
    attrs: { transposeA: false, transposeB: false } as unknown as NamedAttrMap,
  }) as TensorInfo
  return out
}

function stockKernel(name: string, backendName: string): KernelFunc {
  const k = originalKernels.get(`${name}/${backendName}`) ?? getKernel(name, backendName)
  if (k === undefined) throw new UnsupportedKernelInputError(name, `backend '${backendName}' has no ${name} kernel`)
  return k.kernelFunc
}

/** Kernels of the backends that ours replaced, keyed `name/backend` (filled by index.ts). */
export const originalKernels = new Map<string, KernelConfig>()

export function wasmHost(backend: unknown): Host {
  const be = backend as WasmBackendLike
  return {
    alloc(shape, zeroed) {
      const t = be.makeOutput(shape, 'float32')
      if (zeroed) (be.typedArrayFromHeap(t) as Float32Array).fill(0)
      return t
    },
    view: (t) => be.typedArrayFromHeap({ dataId: t.dataId, shape: t.shape, dtype: 'float32' }) as Float32Array,
    free: (t) => void be.disposeData(t.dataId),
    matmul: (a, b, m, k, n) => runMatMul(stockKernel('BatchMatMul', 'wasm'), backend, a, b, m, k, n),
  }
}

export function cpuHost(backend: unknown): Host {
  const be = backend as CpuBackendLike
  return {
    alloc: (shape) => be.makeTensorInfo(shape, 'float32', new Float32Array(size(shape))),
    view: (t) => be.readSync(t.dataId) as Float32Array,
    free: (t) => be.disposeIntermediateTensorInfo(t),
    matmul: (a, b, m, k, n) => runMatMul(stockKernel('BatchMatMul', 'cpu'), backend, a, b, m, k, n),
  }
}

function requireNHWC(kernel: string, attrs: ConvGradAttrs): void {
  if (attrs.dataFormat === 'NCHW') {
    throw new UnsupportedKernelInputError(kernel, 'only NHWC (channelsLast) is supported; use dataFormat NHWC')
  }
}

export function convGeometry(
  xShape: number[],
  filterShape: number[],
  attrs: ConvGradAttrs,
): Im2colGeometry & { outC: number } {
  const info = backend_util.computeConv2DInfo(
    xShape as [number, number, number, number],
    filterShape as [number, number, number, number],
    attrs.strides,
    1,
    attrs.pad,
    attrs.dimRoundingMode,
    false,
    'channelsLast',
  )
  return {
    batch: info.batchSize,
    inH: info.inHeight,
    inW: info.inWidth,
    inC: info.inChannels,
    outH: info.outHeight,
    outW: info.outWidth,
    outC: info.outChannels,
    filterH: info.filterHeight,
    filterW: info.filterWidth,
    strideH: info.strideHeight,
    strideW: info.strideWidth,
    padTop: info.padInfo.top,
    padLeft: info.padInfo.left,
  }
}

/** dW (K×outC) = colsT (K×M) · dy (M×outC),  K = fh·fw·inC,  M = batch·outH·outW. */
export function conv2dBackpropFilter(host: Host, x: TensorInfo, dy: TensorInfo, attrs: ConvGradAttrs): TensorInfo {
  requireNHWC('Conv2DBackpropFilter', attrs)
  const filterShape = attrs.filterShape!
  const g = convGeometry(x.shape, filterShape, attrs)
  const k = g.filterH * g.filterW * g.inC
  const m = g.batch * g.outH * g.outW
  const colsT = host.alloc([k, m], false)
  try {
    im2colTransposed(host.view(x), g, host.view(colsT))
    const out = host.matmul(colsT, dy, k, m, g.outC)
    return { dataId: out.dataId, shape: [...filterShape], dtype: 'float32' }
  } finally {
    host.free(colsT)
  }
}

/**
 * The filter gradient as one forward convolution on the backend's own Conv2D kernel (XNNPACK
 * on wasm: no im2col buffer, its indirection does the gather):
 *
 *   dW[i, j, c, o] = Σ_{b, oh, ow} x[b, oh·sh + i − pt, ow·sw + j − pl, c] · dy[b, oh, ow, o]
 *
 * is conv2d(x′, F) with x′ = x as [c, h, w, b] (channels as batch, batch as channels),
 * F = dy as [oh, ow, b, o], dilation = the stride, the forward padding on top/left, and the
 * input cropped or padded at the bottom/right so that the result is exactly [c, fh, fw, o].
 */
export function conv2dBackpropFilterByConv(host: Host, conv: KernelFunc, backend: unknown, x: TensorInfo, dy: TensorInfo, attrs: ConvGradAttrs): TensorInfo {
  requireNHWC('Conv2DBackpropFilter', attrs)
  const filterShape = attrs.filterShape!
  const g = convGeometry(x.shape, filterShape, attrs)
  // Rows/cols of x that any tap reads: up to (out−1)·s + f − p.
  const hUsed = Math.min(g.inH, (g.outH - 1) * g.strideH + g.filterH - g.padTop)
  const wUsed = Math.min(g.inW, (g.outW - 1) * g.strideW + g.filterW - g.padLeft)
  const padBottom = (g.outH - 1) * g.strideH + g.filterH - g.padTop - hUsed
  const padRight = (g.outW - 1) * g.strideW + g.filterW - g.padLeft - wUsed
  const xT = host.alloc([g.inC, hUsed, wUsed, g.batch], false)
  const f = host.alloc([g.outH, g.outW, g.batch, g.outC], false)
  let out: TensorInfo | undefined
  try {
    const xs = host.view(x)
    const xt = host.view(xT)
    // x[b, h, w, c] → xT[c, h, w, b] over the used rows and columns only.
    const rowX = g.inW * g.inC
    let o = 0
    for (let c = 0; c < g.inC; c++) {
      for (let h = 0; h < hUsed; h++) {
        for (let w = 0; w < wUsed; w++) {
          let p = h * rowX + w * g.inC + c
          const step = g.inH * rowX
          for (let b = 0; b < g.batch; b++, p += step) xt[o++] = xs[p] as number
        }
      }
    }
    permute4(host.view(dy), dy.shape, [1, 2, 0, 3], host.view(f))
    out = conv({
      inputs: { x: xT, filter: f } as NamedTensorInfoMap,
      backend: backend as never,
      attrs: {
        strides: [1, 1],
        pad: [
          [0, 0],
          [g.padTop, padBottom],
          [g.padLeft, padRight],
          [0, 0],
        ],
        dataFormat: 'NHWC',
        dilations: [g.strideH, g.strideW],
      } as unknown as NamedAttrMap,
    }) as TensorInfo
    const dw = host.alloc([...filterShape], false)
    permute4(host.view(out), [g.inC, g.filterH, g.filterW, g.outC], [1, 2, 0, 3], host.view(dw))
    return dw
  } finally {
    host.free(xT)
    host.free(f)
    if (out !== undefined) host.free(out)
  }
}

/**
 * Column-buffer size (floats) per chunk of the input gradient: dcols for a chunk of images
 * stays in L2 between the matrix product and col2im. Measured on the LeNet conv2 (batch 25):
 * chunks of 5–9 images 8.8 ms (min of 40) against 9.6 ms for the whole batch at once.
 */
const INPUT_GRAD_CHUNK_FLOATS = 256 * 1024

/** dcols (M×K) = dy (M×outC) · Wᵀ (outC×K), then col2im into dx — by chunks of images. */
export function conv2dBackpropInput(host: Host, dy: TensorInfo, filter: TensorInfo, attrs: ConvGradAttrs): TensorInfo {
  requireNHWC('Conv2DBackpropInput', attrs)
  const inputShape = attrs.inputShape!
  const g = convGeometry(inputShape, filter.shape, attrs)
  const k = g.filterH * g.filterW * g.inC
  const perImage = g.outH * g.outW
  const chunk = Math.max(1, Math.min(g.batch, Math.floor(INPUT_GRAD_CHUNK_FLOATS / (perImage * k))))
  const dyPerImage = perImage * g.outC
  const dxPerImage = g.inH * g.inW * g.inC
  const wT = host.alloc([g.outC, k], false)
  const temps: TensorInfo[] = [wT]
  try {
    transpose2d(host.view(filter), k, g.outC, host.view(wT))
    const dx = host.alloc([...inputShape], true)
    const dyChunk = chunk === g.batch ? dy : host.alloc([chunk * perImage, g.outC], false)
    if (dyChunk !== dy) temps.push(dyChunk)
    for (let b0 = 0; b0 < g.batch; b0 += chunk) {
      const nb = Math.min(chunk, g.batch - b0)
      if (dyChunk !== dy) host.view(dyChunk).set(host.view(dy).subarray(b0 * dyPerImage, (b0 + nb) * dyPerImage))
      const dcols = host.matmul(dyChunk, wT, nb * perImage, g.outC, k)
      try {
        col2imAdd(host.view(dcols), { ...g, batch: nb }, host.view(dx).subarray(b0 * dxPerImage, (b0 + nb) * dxPerImage))
      } finally {
        host.free(dcols)
      }
    }
    return dx
  } finally {
    for (const t of temps) host.free(t)
  }
}

export function poolGeometry(xShape: number[], attrs: PoolGradAttrs): PoolGeometry {
  const info = backend_util.computePool2DInfo(
    xShape as [number, number, number, number],
    attrs.filterSize,
    attrs.strides,
    1,
    attrs.pad,
    attrs.dimRoundingMode,
  )
  return {
    batch: info.batchSize,
    inH: info.inHeight,
    inW: info.inWidth,
    channels: info.inChannels,
    outH: info.outHeight,
    outW: info.outWidth,
    filterH: info.filterHeight,
    filterW: info.filterWidth,
    strideH: info.strideHeight,
    strideW: info.strideWidth,
    padTop: info.padInfo.top,
    padLeft: info.padInfo.left,
  }
}

export function maxPoolGrad(host: Host, dy: TensorInfo, x: TensorInfo, y: TensorInfo, attrs: PoolGradAttrs): TensorInfo {
  const g = poolGeometry(x.shape, attrs)
  const dx = host.alloc([...x.shape], true)
  maxPoolGradAdd(host.view(x), host.view(y), host.view(dy), g, host.view(dx))
  return dx
}

/**
 * Relative cost, per element, of XNNPACK packing a fresh right-hand operand versus a JS
 * transpose of the same size (measured here: packing an 800×500 operand ≈ 2.5–3.5 ms, a tiled
 * JS transpose of it ≈ 0.6–1.3 ms).
 */
const PACK_COST = 3

/**
 * BatchMatMul on wasm. The stock kernel only takes its XNNPACK path for untransposed operands
 * (measured: 500×1600×50 NN 19 ms, TN 121 ms, NT 99 ms), and XNNPACK repacks the right-hand
 * operand whenever it is a new tensor — every training step. So transposed operands are
 * transposed explicitly (O(size) JS), and for a single product the orientation is chosen by
 * cost: C = A·B packs K×N elements, Cᵀ = Bᵀ·Aᵀ packs K×M (plus the transposes it needs).
 * For a dense layer with batch 25 the second is 3–5× faster forward (h·W) and backward (dy·Wᵀ).
 */
export function batchMatMulWasm(host: Host, backend: unknown, inputs: NamedTensorInfoMap, attrs: NamedAttrMap): TensorInfo {
  const stock = stockKernel('BatchMatMul', 'wasm')
  const { a, b } = inputs as { a: TensorInfo; b: TensorInfo }
  const { transposeA, transposeB } = attrs as unknown as { transposeA: boolean; transposeB: boolean }
  if (a.dtype !== 'float32' || b.dtype !== 'float32') return stock({ inputs, backend: backend as never, attrs }) as TensorInfo
  const ra = a.shape.length
  const rb = b.shape.length
  const m = transposeA ? a.shape[ra - 1]! : a.shape[ra - 2]!
  const k = transposeA ? a.shape[ra - 2]! : a.shape[ra - 1]!
  const n = transposeB ? b.shape[rb - 2]! : b.shape[rb - 1]!
  const single = size(a.shape) === m * k && size(b.shape) === k * n
  const temps: TensorInfo[] = []
  /** A new tensor holding every matrix of `t` transposed (same leading dims). */
  const transposed = (t: TensorInfo): TensorInfo => {
    const r = t.shape.length
    const rows = t.shape[r - 2] ?? 1
    const cols = t.shape[r - 1]!
    const out = host.alloc([...t.shape.slice(0, -2), cols, rows], false)
    temps.push(out)
    const src = host.view(t)
    const dst = host.view(out)
    const mat = rows * cols
    for (let o = 0; o < src.length; o += mat) transpose2d(src.subarray(o, o + mat), rows, cols, dst.subarray(o, o + mat))
    return out
  }
  const nn = (x: TensorInfo, y: TensorInfo): TensorInfo =>
    stock({
      inputs: { a: x, b: y } as NamedTensorInfoMap,
      backend: backend as never,
      attrs: { ...attrs, transposeA: false, transposeB: false } as unknown as NamedAttrMap,
    }) as TensorInfo
  try {
    const direct = (transposeA ? m * k : 0) + (transposeB ? k * n : 0) + PACK_COST * k * n
    const flipped = (transposeB ? 0 : k * n) + (transposeA ? 0 : m * k) + PACK_COST * k * m + m * n
    if (!single || direct <= flipped) {
      if (!transposeA && !transposeB) return nn(a, b)
      return nn(transposeA ? transposed(a) : a, transposeB ? transposed(b) : b)
    }
    // Cᵀ (N×M) = op(B)ᵀ · op(A)ᵀ; op(B)ᵀ is b itself when transposeB, op(A)ᵀ is a itself when transposeA.
    const bt: TensorInfo = transposeB ? { dataId: b.dataId, shape: [n, k], dtype: 'float32' } : transposed({ ...b, shape: [k, n] })
    const at: TensorInfo = transposeA ? { dataId: a.dataId, shape: [k, m], dtype: 'float32' } : transposed({ ...a, shape: [m, k] })
    const ct = nn({ ...bt, shape: [1, n, k] }, { ...at, shape: [1, k, m] })
    temps.push(ct)
    const outShape = [...(ra >= rb ? a.shape : b.shape).slice(0, -2), m, n]
    const c = host.alloc(outShape, false)
    transpose2d(host.view({ ...ct, shape: [n * m] }), n, m, host.view(c))
    return c
  } finally {
    for (const t of temps) host.free(t)
  }
}

/**
 * From this many input channels on, the wasm filter gradient runs as an XNNPACK convolution
 * instead of im2col + matmul: the im2col buffer is fh·fw times the input, the transposes of the
 * convolution path only 1×. Measured (min of 30, batch 25, this machine): LeNet conv2
 * (12×12×20 → 50) 8.6 ms by convolution vs 11.3 ms by im2col; conv1 (28×28×1 → 20) 3.2 ms vs
 * 1.6 ms.
 */
const CONV_PATH_MIN_CHANNELS = 8

const convDims = (g: Im2colGeometry & { outC: number }): ConvDims => [
  g.batch,
  g.inH,
  g.inW,
  g.inC,
  g.outH,
  g.outW,
  g.outC,
  g.filterH,
  g.filterW,
  g.strideH,
  g.strideW,
  g.padTop,
  g.padLeft,
]

const float32 = (...ts: TensorInfo[]): boolean => ts.every((t) => t.dtype === 'float32')

/**
 * The native kernels (native.ts) where they apply: NHWC, float32, no dilation. Each returns
 * undefined when they do not (or are not built), and the caller runs its wasm/JS path. Outputs
 * are allocated before any view is taken (a wasm allocation can move the heap).
 */
export const viaNative = {
  conv2d(host: Host, x: TensorInfo, filter: TensorInfo, attrs: ConvGradAttrs & { dilations?: number | [number, number] }): TensorInfo | undefined {
    const nk = nativeKernels()
    if (nk === undefined || attrs.dataFormat === 'NCHW' || !float32(x, filter)) return undefined
    const d = attrs.dilations ?? 1
    if (!(d === 1 || (Array.isArray(d) && d[0] === 1 && d[1] === 1))) return undefined
    const g = convGeometry(x.shape, filter.shape, attrs)
    const y = host.alloc([g.batch, g.outH, g.outW, g.outC], false)
    nk.conv2d(host.view(x), host.view(filter), host.view(y), ...convDims(g))
    return y
  },
  filterGrad(host: Host, x: TensorInfo, dy: TensorInfo, attrs: ConvGradAttrs): TensorInfo | undefined {
    const nk = nativeKernels()
    if (nk === undefined || attrs.dataFormat === 'NCHW' || !float32(x, dy)) return undefined
    const g = convGeometry(x.shape, attrs.filterShape!, attrs)
    const dw = host.alloc([...attrs.filterShape!], false)
    nk.conv2dFilterGrad(host.view(x), host.view(dy), host.view(dw), ...convDims(g))
    return dw
  },
  inputGrad(host: Host, dy: TensorInfo, filter: TensorInfo, attrs: ConvGradAttrs): TensorInfo | undefined {
    const nk = nativeKernels()
    if (nk === undefined || attrs.dataFormat === 'NCHW' || !float32(dy, filter)) return undefined
    const g = convGeometry(attrs.inputShape!, filter.shape, attrs)
    const dx = host.alloc([...attrs.inputShape!], false)
    nk.conv2dInputGrad(host.view(dy), host.view(filter), host.view(dx), ...convDims(g))
    return dx
  },
  maxPoolGrad(host: Host, dy: TensorInfo, x: TensorInfo, y: TensorInfo, attrs: PoolGradAttrs): TensorInfo | undefined {
    const nk = nativeKernels()
    if (nk === undefined || !float32(dy, x, y)) return undefined
    const g = poolGeometry(x.shape, attrs)
    const dx = host.alloc([...x.shape], false)
    nk.maxPoolGrad(host.view(x), host.view(y), host.view(dy), host.view(dx), g.batch, g.inH, g.inW, g.channels, g.outH, g.outW, g.filterH, g.filterW, g.strideH, g.strideW, g.padTop, g.padLeft)
    return dx
  },
  /** BatchMatMul with equal batches or one side broadcast (batch 1); other broadcasts: undefined. */
  batchMatMul(host: Host, inputs: NamedTensorInfoMap, attrs: NamedAttrMap): TensorInfo | undefined {
    const nk = nativeKernels()
    const { a, b } = inputs as { a: TensorInfo; b: TensorInfo }
    if (nk === undefined || !float32(a, b)) return undefined
    const { transposeA, transposeB } = attrs as unknown as { transposeA: boolean; transposeB: boolean }
    const ra = a.shape.length
    const rb = b.shape.length
    const m = transposeA ? a.shape[ra - 1]! : a.shape[ra - 2]!
    const k = transposeA ? a.shape[ra - 2]! : a.shape[ra - 1]!
    const n = transposeB ? b.shape[rb - 2]! : b.shape[rb - 1]!
    const batchA = size(a.shape) / (m * k)
    const batchB = size(b.shape) / (k * n)
    if (batchA !== batchB && batchA !== 1 && batchB !== 1) return undefined
    const batch = Math.max(batchA, batchB)
    const lead = (batchA >= batchB ? a : b).shape.slice(0, -2)
    const c = host.alloc([...lead, m, n], false)
    const av = host.view(a)
    const bv = host.view(b)
    const cv = host.view(c)
    for (let i = 0; i < batch; i++) {
      const ao = batchA === 1 ? 0 : i * m * k
      const bo = batchB === 1 ? 0 : i * k * n
      nk.gemm(transposeA ? 1 : 0, transposeB ? 1 : 0, m, n, k, av.subarray(ao, ao + m * k), bv.subarray(bo, bo + k * n), cv.subarray(i * m * n, (i + 1) * m * n), false)
    }
    return c
  },
}

function configs(backendName: 'wasm' | 'cpu', hostOf: (backend: unknown) => Host): KernelConfig[] {
  const filterGrad: KernelFunc = ({ inputs, backend, attrs }) =>
    viaNative.filterGrad(hostOf(backend), inputs.x!, inputs.dy!, attrs as unknown as ConvGradAttrs) ??
    (backendName === 'wasm' && inputs.x!.shape[3]! >= CONV_PATH_MIN_CHANNELS
      ? conv2dBackpropFilterByConv(hostOf(backend), stockKernel('Conv2D', 'wasm'), backend, inputs.x!, inputs.dy!, attrs as unknown as ConvGradAttrs)
      : conv2dBackpropFilter(hostOf(backend), inputs.x!, inputs.dy!, attrs as unknown as ConvGradAttrs))
  const inputGrad: KernelFunc = ({ inputs, backend, attrs }) =>
    viaNative.inputGrad(hostOf(backend), inputs.dy!, inputs.filter!, attrs as unknown as ConvGradAttrs) ??
    conv2dBackpropInput(hostOf(backend), inputs.dy!, inputs.filter!, attrs as unknown as ConvGradAttrs)
  const list: KernelConfig[] = [
    {
      kernelName: 'Conv2DBackpropFilter',
      backendName,
      kernelFunc:
        backendName === 'cpu'
          ? filterGrad
          : (args) => {
              const a = args.attrs as unknown as ConvGradAttrs
              const { x, dy } = args.inputs as { x: TensorInfo; dy: TensorInfo }
              if (a.dataFormat === 'NCHW' || nativeKernels() !== undefined) return filterGrad(args)
              const split = runSplit({
                kernel: 'Conv2DBackpropFilter',
                host: hostOf(args.backend),
                backend: args.backend,
                local: filterGrad,
                inputs: { x, dy },
                batched: ['x', 'dy'],
                attrs: a,
                convInput: x.shape,
                filterShape: a.filterShape!,
                outShape: a.filterShape!,
                combine: 'sum',
              })
              return split ?? filterGrad(args)
            },
    },
    {
      kernelName: 'Conv2DBackpropInput',
      backendName,
      kernelFunc:
        backendName === 'cpu'
          ? inputGrad
          : (args) => {
              const a = args.attrs as unknown as ConvGradAttrs
              const { dy, filter } = args.inputs as { dy: TensorInfo; filter: TensorInfo }
              if (a.dataFormat === 'NCHW' || nativeKernels() !== undefined) return inputGrad(args)
              const split = runSplit({
                kernel: 'Conv2DBackpropInput',
                host: hostOf(args.backend),
                backend: args.backend,
                local: inputGrad,
                inputs: { dy, filter },
                batched: ['dy'],
                attrs: a,
                convInput: a.inputShape!,
                filterShape: filter.shape,
                outShape: a.inputShape!,
                combine: 'concat',
              })
              return split ?? inputGrad(args)
            },
    },
    {
      kernelName: 'MaxPoolGrad',
      backendName,
      kernelFunc: ({ inputs, backend, attrs }) =>
        viaNative.maxPoolGrad(hostOf(backend), inputs.dy!, inputs.input!, inputs.output!, attrs as unknown as PoolGradAttrs) ??
        maxPoolGrad(hostOf(backend), inputs.dy!, inputs.input!, inputs.output!, attrs as unknown as PoolGradAttrs),
    },
  ]
  if (backendName === 'wasm') {
    list.push(
      {
        kernelName: 'BatchMatMul',
        backendName,
        kernelFunc: ({ inputs, backend, attrs }) => viaNative.batchMatMul(hostOf(backend), inputs, attrs ?? {}) ?? batchMatMulWasm(hostOf(backend), backend, inputs, attrs ?? {}),
      },
      {
        // The stock XNNPACK convolution, with its batch split over the kernel threads if any.
        kernelName: 'Conv2D',
        backendName,
        kernelFunc: (args) => {
          const stock = stockKernel('Conv2D', 'wasm')
          const a = args.attrs as unknown as ConvGradAttrs & { dilations?: number | [number, number] }
          const { x, filter } = args.inputs as { x: TensorInfo; filter: TensorInfo }
          const native = viaNative.conv2d(hostOf(args.backend), x, filter, a)
          if (native !== undefined) return native
          if (a.dataFormat === 'NCHW') return stock(args)
          const info = backend_util.computeConv2DInfo(
            x.shape as [number, number, number, number],
            filter.shape as [number, number, number, number],
            a.strides,
            a.dilations ?? 1,
            a.pad,
            a.dimRoundingMode,
          )
          const split = runSplit({
            kernel: 'Conv2D',
            host: hostOf(args.backend),
            backend: args.backend,
            local: stock,
            inputs: { x, filter },
            batched: ['x'],
            attrs: a,
            convInput: x.shape,
            filterShape: filter.shape,
            outShape: info.outShape,
            combine: 'concat',
          })
          return split ?? stock(args)
        },
      },
    )
  } else {
    // cpu: the native product and convolution when built, the stock kernels otherwise
    list.push(
      {
        kernelName: 'BatchMatMul',
        backendName,
        kernelFunc: (args) => viaNative.batchMatMul(hostOf(args.backend), args.inputs, args.attrs ?? {}) ?? stockKernel('BatchMatMul', 'cpu')(args),
      },
      {
        kernelName: 'Conv2D',
        backendName,
        kernelFunc: (args) =>
          viaNative.conv2d(hostOf(args.backend), args.inputs.x!, args.inputs.filter!, args.attrs as unknown as ConvGradAttrs) ?? stockKernel('Conv2D', 'cpu')(args),
      },
    )
  }
  return list
}

export const wasmKernels: readonly KernelConfig[] = configs('wasm', wasmHost)
export const cpuKernels: readonly KernelConfig[] = configs('cpu', cpuHost)
