/**
 * The hot loops of the fallback kernels: pure functions over typed arrays (NHWC, no
 * dilation), no tfjs. Measured by `npm run bench:train`.
 */

/** A 2-D convolution's shape, NHWC, no dilation (padding: top/left of the forward pass). */
export interface Im2colGeometry {
  batch: number
  inH: number
  inW: number
  inC: number
  outH: number
  outW: number
  filterH: number
  filterW: number
  strideH: number
  strideW: number
  padTop: number
  padLeft: number
}

/**
 * im2col in its transposed layout, the one the filter gradient wants: for a conv with filter
 * fh×fw over inC channels, row k = (i·fw + j)·inC + c of colsT (length K·M) holds, for every
 * output position m = (b·outH + oh)·outW + ow, the input value under tap (i, j, c) — zero where
 * the tap falls in the padding. Then dW[k, :] = colsT[k, :] · dy (an M×outC matrix), i.e. one
 * plain (K×M)·(M×outC) matrix product, K = fh·fw·inC, M = batch·outH·outW.
 */
export function im2colTransposed(x: Float32Array, g: Im2colGeometry, colsT: Float32Array): void {
  const { batch, inH, inW, inC, outH, outW, filterH, filterW, strideH, strideW, padTop, padLeft } = g
  const m = batch * outH * outW
  const rowStrideX = inW * inC
  const imageStrideX = inH * rowStrideX
  const colStep = strideW * inC
  for (let i = 0; i < filterH; i++) {
    for (let j = 0; j < filterW; j++) {
      // Output columns whose input column ow·sw + j − pl lies inside [0, inW).
      const owStart = Math.max(0, Math.ceil((padLeft - j) / strideW))
      const owEnd = Math.min(outW, Math.floor((inW - 1 + padLeft - j) / strideW) + 1)
      for (let c = 0; c < inC; c++) {
        let out = ((i * filterW + j) * inC + c) * m
        for (let b = 0; b < batch; b++) {
          const xImage = b * imageStrideX
          for (let oh = 0; oh < outH; oh++) {
            const ih = oh * strideH + i - padTop
            if (ih < 0 || ih >= inH || owStart >= owEnd) {
              colsT.fill(0, out, out + outW)
              out += outW
              continue
            }
            if (owStart > 0) colsT.fill(0, out, out + owStart)
            let xi = xImage + ih * rowStrideX + (owStart * strideW + j - padLeft) * inC + c
            const rowOut = out
            for (let ow = owStart; ow < owEnd; ow++) {
              colsT[rowOut + ow] = x[xi] as number
              xi += colStep
            }
            if (owEnd < outW) colsT.fill(0, out + owEnd, out + outW)
            out += outW
          }
        }
      }
    }
  }
}

/**
 * col2im, the adjoint of im2col in its row layout: dcols is M×K (row m = output position
 * (b, oh, ow), column k = tap (i, j, c)); every entry is added into dx (NHWC) at the input
 * position it was read from. dx must be zeroed by the caller.
 */
export function col2imAdd(dcols: Float32Array, g: Im2colGeometry, dx: Float32Array): void {
  const { batch, inH, inW, inC, outH, outW, filterH, filterW, strideH, strideW, padTop, padLeft } = g
  const k = filterH * filterW * inC
  const rowStrideX = inW * inC
  let src = 0
  for (let b = 0; b < batch; b++) {
    const xImage = b * inH * rowStrideX
    for (let oh = 0; oh < outH; oh++) {
      for (let ow = 0; ow < outW; ow++) {
        for (let i = 0; i < filterH; i++) {
          const ih = oh * strideH + i - padTop
          if (ih < 0 || ih >= inH) continue
          const rowBase = xImage + ih * rowStrideX
          const tapRow = src + i * filterW * inC
          for (let j = 0; j < filterW; j++) {
            const iw = ow * strideW + j - padLeft
            if (iw < 0 || iw >= inW) continue
            const d = rowBase + iw * inC
            const s = tapRow + j * inC
            for (let c = 0; c < inC; c++) dx[d + c] += dcols[s + c] as number
          }
        }
        src += k
      }
    }
  }
}

/** out (cols × rows) = transpose of a (rows × cols), both row-major. */
export function transpose2d(a: Float32Array, rows: number, cols: number, out: Float32Array): void {
  // 32×32 tiles keep both the reads and the writes within a few cache lines.
  const T = 32
  for (let r0 = 0; r0 < rows; r0 += T) {
    const r1 = Math.min(rows, r0 + T)
    for (let c0 = 0; c0 < cols; c0 += T) {
      const c1 = Math.min(cols, c0 + T)
      for (let r = r0; r < r1; r++) {
        const rowA = r * cols
        for (let c = c0; c < c1; c++) out[c * rows + r] = a[rowA + c] as number
      }
    }
  }
}

export interface PoolGeometry {
  batch: number
  inH: number
  inW: number
  channels: number
  outH: number
  outW: number
  filterH: number
  filterW: number
  strideH: number
  strideW: number
  padTop: number
  padLeft: number
}

/**
 * Gradient of 2-D max pooling (NHWC): each dy entry goes to the input position of its
 * window's maximum — the first strict maximum in row-then-column scan order, the tie rule of
 * tfjs's cpu backend (it matters: after a ReLU whole windows are 0). `y` is the forward output
 * (the window maxima), so the scan stops at the first input equal to it; a window whose
 * maximum is not found (NaN) falls back to the full scan. dx must be zeroed.
 */
export function maxPoolGradAdd(x: Float32Array, y: Float32Array, dy: Float32Array, g: PoolGeometry, dx: Float32Array): void {
  const { batch, inH, inW, channels, outH, outW, filterH, filterW, strideH, strideW, padTop, padLeft } = g
  const rowStride = inW * channels
  let o = 0
  for (let b = 0; b < batch; b++) {
    const image = b * inH * rowStride
    for (let oh = 0; oh < outH; oh++) {
      const r0 = oh * strideH - padTop
      const rMin = Math.max(0, r0)
      const rMax = Math.min(inH, r0 + filterH)
      for (let ow = 0; ow < outW; ow++) {
        const c0 = ow * strideW - padLeft
        const cMin = Math.max(0, c0)
        const cMax = Math.min(inW, c0 + filterW)
        const corner = image + rMin * rowStride + cMin * channels
        for (let ch = 0; ch < channels; ch++, o++) {
          const target = y[o] as number
          let pos = -1
          search: for (let r = rMin, rowP = corner + ch; r < rMax; r++, rowP += rowStride) {
            for (let c = cMin, p = rowP; c < cMax; c++, p += channels) {
              if (x[p] === target) {
                pos = p
                break search
              }
            }
          }
          if (pos < 0) pos = firstMax(x, corner + ch, rMax - rMin, cMax - cMin, rowStride, channels)
          if (pos >= 0) dx[pos] += dy[o] as number
        }
      }
    }
  }
}

function firstMax(x: Float32Array, start: number, rows: number, cols: number, rowStride: number, step: number): number {
  let best = Number.NEGATIVE_INFINITY
  let pos = -1
  for (let r = 0; r < rows; r++) {
    for (let c = 0, p = start + r * rowStride; c < cols; c++, p += step) {
      if ((x[p] as number) > best) {
        best = x[p] as number
        pos = p
      }
    }
  }
  return pos
}

/**
 * dst = src (a 4-D row-major array of `shape`) with its axes permuted: dst axis d is src axis
 * perm[d] (as `tf.transpose(x, perm)`).
 */
export function permute4(src: Float32Array, shape: readonly number[], perm: readonly number[], dst: Float32Array): void {
  const s0 = shape[1]! * shape[2]! * shape[3]!
  const s1 = shape[2]! * shape[3]!
  const s2 = shape[3]!
  const srcStride = [s0, s1, s2, 1]
  const n0 = shape[perm[0]!]!
  const n1 = shape[perm[1]!]!
  const n2 = shape[perm[2]!]!
  const n3 = shape[perm[3]!]!
  const t0 = srcStride[perm[0]!]!
  const t1 = srcStride[perm[1]!]!
  const t2 = srcStride[perm[2]!]!
  const t3 = srcStride[perm[3]!]!
  let o = 0
  for (let a = 0; a < n0; a++) {
    for (let b = 0; b < n1; b++) {
      for (let c = 0; c < n2; c++) {
        let p = a * t0 + b * t1 + c * t2
        for (let d = 0; d < n3; d++, p += t3) dst[o++] = src[p] as number
      }
    }
  }
}
