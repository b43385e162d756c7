/**
 * IDX files (the MNIST format, LeCun et al.): big-endian header — two zero bytes, a type byte,
 * the number of dimensions D — then D uint32 sizes, then the data row-major. Only unsigned bytes
 * (type 0x08) are supported: images and labels of MNIST-like sets. gzip is not handled; unpack
 * `.gz` files first.
 *
 * Reading is bounded and streaming: the header is read and checked first (magic, type, every
 * dimension ≥ 1, total size below a limit, file size equal to header + data) before the data
 * buffer is allocated; the data is then read in 1 MiB chunks into it, and a file that shrinks
 * while being read is still reported as truncated.
 */
import { open } from 'node:fs/promises'
import { AbortError } from '../errors.ts'
import { CorruptDatasetError, DatasetNotFoundError } from './errors.ts'

export interface IdxArray {
  dims: number[]
  data: Uint8Array
}

/** Largest data section accepted (1 GiB: 20× MNIST's training images; guards against absurd headers). */
export const maxIdxBytes = 1 << 30
const typeUbyte = 0x08
const chunkBytes = 1 << 20

export async function readIdx(path: string, opts: { signal?: AbortSignal; expectDims?: number } = {}): Promise<IdxArray> {
  return withIdx(path, opts, async ({ dims, total, readExactly }) => {
    const data = new Uint8Array(total)
    await readExactly(data, 0, 'the data')
    return { dims, data }
  })
}

/**
 * Only some examples of an IDX file (rows along its first dimension): `select(dims)` — called
 * once the header is checked, so it can check the shape first — returns their indices, in the
 * order wanted (repeats allowed); the result holds those rows one after the other (`data`,
 * `indices.length` rows). The file is read in chunks of about `chunkBytes` (1 MiB) that skip the
 * parts holding no selected row, so a member's shard of MNIST (≈ 2,300 of 60,000 images at
 * n = 26) never needs the whole 47 MB images file in memory.
 */
export async function readIdxRows(
  path: string,
  select: (dims: number[]) => ArrayLike<number>,
  opts: { signal?: AbortSignal; chunkBytes?: number } = {},
): Promise<IdxArray & { indices: ArrayLike<number> }> {
  return withIdx(path, opts, async ({ dims, readExactly }) => {
    const indices = select(dims)
    const n = dims[0]!
    let rowBytes = 1
    for (let i = 1; i < dims.length; i++) rowBytes *= dims[i]!
    for (let i = 0; i < indices.length; i++) {
      const e = indices[i]!
      if (!Number.isInteger(e) || e < 0 || e >= n) throw new RangeError(`indices[${i}] = ${e} is not a row of ${path} (0..${n - 1})`)
    }
    const data = new Uint8Array(indices.length * rowBytes)
    // output positions by source row, then runs of rows read a chunk at a time
    const order = Array.from({ length: indices.length }, (_, i) => i).sort((a, b) => indices[a]! - indices[b]! || a - b)
    const chunkRows = Math.max(1, Math.floor((opts.chunkBytes ?? chunkBytes) / rowBytes))
    const buf = new Uint8Array(Math.min(chunkRows, n) * rowBytes)
    for (let k = 0; k < order.length; ) {
      const first = indices[order[k]!]!
      const rows = Math.min(chunkRows, n - first)
      const chunk = buf.subarray(0, rows * rowBytes)
      await readExactly(chunk, first * rowBytes, 'the data')
      for (; k < order.length && indices[order[k]!]! < first + rows; k++) {
        const from = (indices[order[k]!]! - first) * rowBytes
        data.set(chunk.subarray(from, from + rowBytes), order[k]! * rowBytes)
      }
    }
    return { dims, data, indices }
  })
}

/**
 * Rows `first` … `first + count − 1` of an IDX file, read into `into` (its first count × row bytes;
 * the caller's buffer, used again part after part); `check` sees the dimensions first and may
 * throw. Returns the dimensions.
 */
export async function readIdxRowRange(path: string, first: number, count: number, into: Uint8Array, opts: { signal?: AbortSignal; check?: (dims: number[]) => void } = {}): Promise<number[]> {
  return withIdx(path, opts, async ({ dims, readExactly }) => {
    opts.check?.(dims)
    const n = dims[0]!
    let rowBytes = 1
    for (let i = 1; i < dims.length; i++) rowBytes *= dims[i]!
    if (!Number.isInteger(first) || !Number.isInteger(count) || first < 0 || count < 1 || first + count > n) throw new RangeError(`rows ${first}…${first + count - 1} are not rows of ${path} (0..${n - 1})`)
    if (into.length < count * rowBytes) throw new RangeError(`${count} rows of ${rowBytes} bytes do not fit in ${into.length} bytes`)
    await readExactly(into.subarray(0, count * rowBytes), first * rowBytes, 'the data')
    return dims
  })
}

/**
 * Opens an IDX file, reads and checks its header (magic, type, every dimension ≥ 1, total size
 * below the limit, file size equal to header + data), and hands `read` the dimensions and a reader
 * of the data section (offsets from the data's start; a file that shrinks meanwhile is reported
 * as truncated).
 */
async function withIdx<T>(
  path: string,
  opts: { signal?: AbortSignal; expectDims?: number },
  read: (idx: { dims: number[]; total: number; readExactly: (buf: Uint8Array, offset: number, what: string) => Promise<void> }) => Promise<T>,
): Promise<T> {
  let fh: Awaited<ReturnType<typeof open>>
  try {
    fh = await open(path, 'r')
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') throw new DatasetNotFoundError(path, 'check the path of the IDX file', { cause: err })
    throw err
  }
  try {
    const { size: fileSize } = await fh.stat()
    const readExactly = async (buf: Uint8Array, position: number, what: string): Promise<void> => {
      let done = 0
      while (done < buf.length) {
        if (opts.signal?.aborted) throw new AbortError()
        const len = Math.min(chunkBytes, buf.length - done)
        const { bytesRead } = await fh.read(buf, done, len, position + done)
        if (bytesRead === 0) {
          throw new CorruptDatasetError(path, 'truncated', `truncated: ${what} needs ${buf.length} bytes at offset ${position}, the file ends after ${done}`)
        }
        done += bytesRead
      }
    }
    const magic = new Uint8Array(4)
    await readExactly(magic, 0, 'the 4-byte magic number')
    if (magic[0] !== 0 || magic[1] !== 0) {
      throw new CorruptDatasetError(path, 'bad-magic', `not an IDX file: magic starts with 0x${hex(magic[0]!)}${hex(magic[1]!)}, expected 0x0000`)
    }
    if (magic[2] !== typeUbyte) {
      throw new CorruptDatasetError(path, 'bad-magic', `unsupported IDX data type 0x${hex(magic[2]!)}; only unsigned bytes (0x08) are supported`)
    }
    const ndims = magic[3]!
    if (ndims < 1 || (opts.expectDims !== undefined && ndims !== opts.expectDims)) {
      const want = opts.expectDims === undefined ? 'at least 1' : String(opts.expectDims)
      throw new CorruptDatasetError(path, 'bad-dimensions', `has ${ndims} dimensions, expected ${want}`)
    }
    const header = new Uint8Array(4 * ndims)
    await readExactly(header, 4, 'the dimension sizes')
    const view = new DataView(header.buffer)
    const dims: number[] = []
    let total = 1
    for (let i = 0; i < ndims; i++) {
      const s = view.getUint32(4 * i, false)
      if (s === 0) throw new CorruptDatasetError(path, 'bad-dimensions', `dimension ${i} has size 0`)
      dims.push(s)
      total *= s
      if (total > maxIdxBytes) {
        throw new CorruptDatasetError(path, 'bad-dimensions', `dimensions [${dims.join(', ')}…] exceed the ${maxIdxBytes}-byte limit`)
      }
    }
    const dataStart = 4 + 4 * ndims
    const expected = dataStart + total
    if (fileSize < expected) {
      throw new CorruptDatasetError(path, 'truncated', `truncated: the header [${dims.join(', ')}] needs ${expected} bytes, the file has ${fileSize}`)
    }
    if (fileSize > expected) {
      throw new CorruptDatasetError(path, 'trailing-data', `${fileSize - expected} bytes after the data declared by the header [${dims.join(', ')}]`)
    }
    return await read({ dims, total, readExactly: (buf, offset, what) => readExactly(buf, dataStart + offset, what) })
  } finally {
    await fh.close()
  }
}

function hex(b: number): string {
  return b.toString(16).padStart(2, '0')
}

/** Reads an images file ([n, rows, cols] or [n, rows, cols, channels]) and a labels file ([n]). */
export async function readIdxPair(
  imagesPath: string,
  labelsPath: string,
  opts: { signal?: AbortSignal } = {},
): Promise<{ x: Float32Array; y: Int32Array; n: number; exampleShape: number[] }> {
  const { pixels, y, n, exampleShape } = await readIdxPairBytes(imagesPath, labelsPath, opts)
  return { x: pixelsToFloat(pixels, pixels.length / n), y, n, exampleShape }
}

/** As `readIdxPair`, with the pixels left as bytes (one example is `pixels.length / n` of them). */
export async function readIdxPairBytes(
  imagesPath: string,
  labelsPath: string,
  opts: { signal?: AbortSignal } = {},
): Promise<{ pixels: Uint8Array; y: Int32Array; n: number; exampleShape: number[] }> {
  const images = await readIdx(imagesPath, opts)
  if (images.dims.length !== 3 && images.dims.length !== 4) {
    throw new CorruptDatasetError(imagesPath, 'bad-dimensions', `images need 3 or 4 dimensions ([n, rows, cols(, channels)]), got [${images.dims.join(', ')}]`)
  }
  const labels = await readIdx(labelsPath, { ...opts, expectDims: 1 })
  const n = images.dims[0]!
  if (labels.dims[0] !== n) {
    throw new CorruptDatasetError(labelsPath, 'mismatch', `${labels.dims[0]} labels for ${n} images in ${imagesPath}`)
  }
  const exampleShape = images.dims.length === 3 ? [images.dims[1]!, images.dims[2]!, 1] : images.dims.slice(1)
  return { pixels: images.data, y: Int32Array.from(labels.data), n, exampleShape }
}

/**
 * Pixels 0..255 → [0, 1] as float32: every example (`rows` omitted), or only the examples
 * `rows` in that order (indices already checked by the caller), `size` pixels each.
 */
export function pixelsToFloat(pixels: Uint8Array, size: number, rows?: ArrayLike<number>): Float32Array {
  if (rows === undefined) {
    const x = new Float32Array(pixels.length)
    for (let i = 0; i < x.length; i++) x[i] = pixels[i]! / 255
    return x
  }
  const x = new Float32Array(rows.length * size)
  for (let r = 0; r < rows.length; r++) {
    const from = rows[r]! * size
    const to = r * size
    for (let j = 0; j < size; j++) x[to + j] = pixels[from + j]! / 255
  }
  return x
}
