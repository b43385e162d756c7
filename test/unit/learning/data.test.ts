import assert from 'node:assert/strict'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { AbortError, InvalidConfigError } from '../../../src/errors.ts'
import type { Dataset, DatasetSpec } from '../../../src/learning/index.ts'
import { CorruptDatasetError, clearDatasetCache, DatasetNotFoundError, flipLabels, labelHistogram, loadDataset, loadShard, partition, readIdx, readIdxRowRange, readIdxRows, subset } from '../../../src/learning/index.ts'
import { Rng } from '../../../src/rng.ts'

/** An IDX ubyte file: header for `dims`, then `data` (which may deliberately disagree). */
/** A data set as plain float32 fields (a byte data set's x made from its pixels), for comparisons. */
const asFloat = (ds: Dataset): Dataset => ({ name: ds.name, x: ds.x, y: ds.y, n: ds.n, exampleShape: ds.exampleShape, numClasses: ds.numClasses })

function idx(dims: number[], data: Uint8Array, magic = [0, 0, 0x08, dims.length]): Uint8Array {
  const header = new Uint8Array(4 + 4 * dims.length)
  header.set(magic)
  const view = new DataView(header.buffer)
  dims.forEach((d, i) => {
    view.setUint32(4 + 4 * i, d, false)
  })
  const out = new Uint8Array(header.length + data.length)
  out.set(header)
  out.set(data, header.length)
  return out
}

/** The parts of `testChunks`, each copied as it comes (a part is valid until the next is read). */
async function chunks(parts: AsyncIterable<Dataset>): Promise<Array<{ part: Dataset; n: number; y: number[]; pixels: Buffer; buffer: ArrayBufferLike }>> {
  const out: Array<{ part: Dataset; n: number; y: number[]; pixels: Buffer; buffer: ArrayBufferLike }> = []
  for await (const p of parts) out.push({ part: p, n: p.n, y: Array.from(p.y), pixels: Buffer.from(p.pixels!), buffer: p.pixels!.buffer })
  return out
}

describe('data sets', () => {
  let dir: string
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'monna-data-'))
  })
  after(async () => {
    await rm(dir, { recursive: true, force: true })
  })
  const file = async (name: string, bytes: Uint8Array | string): Promise<string> => {
    const p = join(dir, name)
    await writeFile(p, bytes)
    return p
  }

  it('MNIST loads with 60000/10000 examples of 28×28×1 in [0, 1]', async () => {
    const train = await loadDataset({ kind: 'mnist' }, 'train')
    const test = await loadDataset({ kind: 'mnist' }, 'test')
    assert.equal(train.n, 60000)
    assert.equal(test.n, 10000)
    assert.deepEqual(train.exampleShape, [28, 28, 1])
    assert.equal(train.numClasses, 10)
    assert.equal(train.x.length, 60000 * 784)
    assert.equal(test.y.length, 10000)
    let min = Number.POSITIVE_INFINITY
    let max = Number.NEGATIVE_INFINITY
    for (const v of test.x) {
      if (v < min) min = v
      if (v > max) max = v
    }
    assert.equal(min, 0)
    assert.equal(max, 1)
    // MNIST's well-known label counts: 5923 zeros in train, 980 zeros in test.
    assert.equal(labelHistogram(train.y, Array.from({ length: train.n }, (_, i) => i), 10)[0], 5923)
    assert.equal(labelHistogram(test.y, Array.from({ length: test.n }, (_, i) => i), 10)[0], 980)
    // Cached: the same arrays on a second load.
    assert.equal(await loadDataset({ kind: 'mnist' }, 'train'), train)
  })

  it('Fashion-MNIST loads a deterministic 60000/10000 split, 6000/1000 per class', async () => {
    const train = await loadDataset({ kind: 'fashion-mnist' }, 'train')
    const test = await loadDataset({ kind: 'fashion-mnist' }, 'test')
    assert.equal(train.n, 60000)
    assert.equal(test.n, 10000)
    assert.deepEqual(train.exampleShape, [28, 28, 1])
    const all = (n: number) => Array.from({ length: n }, (_, i) => i)
    assert.deepEqual(labelHistogram(train.y, all(train.n), 10), new Array(10).fill(6000))
    assert.deepEqual(labelHistogram(test.y, all(test.n), 10), new Array(10).fill(1000))
    // Interleaved, not sorted by class.
    assert.ok(new Set(train.y.subarray(0, 100)).size >= 8)
    assert.ok(train.x.every((v) => v >= 0 && v <= 1))
  })

  it('reads a valid IDX pair by path; pixels scaled by 1/255', async () => {
    const images = await file('ok-images', idx([3, 2, 2], Uint8Array.from([0, 255, 51, 102, 1, 2, 3, 4, 5, 6, 7, 8])))
    const labels = await file('ok-labels', idx([3], Uint8Array.from([2, 0, 1])))
    const spec: DatasetSpec = { kind: 'idx', trainImages: images, trainLabels: labels, testImages: images, testLabels: labels }
    const ds = await loadDataset(spec, 'train')
    assert.equal(ds.n, 3)
    assert.deepEqual(ds.exampleShape, [2, 2, 1])
    assert.equal(ds.numClasses, 3)
    assert.deepEqual(Array.from(ds.y), [2, 0, 1])
    assert.deepEqual(Array.from(ds.x.subarray(0, 4)), [0, 1, 0.2, 0.4].map(Math.fround))
  })

  it("loadShard: a member's MNIST shard and test split exactly as subset(loadDataset) gives them, without the whole train split as float32", async () => {
    clearDatasetCache()
    const pick = (labels: Int32Array, k: number): Int32Array => partition(labels, k, 26, { scheme: 'dirichlet', alpha: 1 }, 1)[3]!
    const lean = await loadShard({ kind: 'mnist' }, pick)
    const train = await loadDataset({ kind: 'mnist' }, 'train')
    const test = await loadDataset({ kind: 'mnist' }, 'test')
    // the lean path read the files itself and keeps shard and test split as bytes (x = pixels / 255)
    assert.ok(lean.shard.pixels instanceof Uint8Array && lean.test.pixels instanceof Uint8Array)
    assert.equal(lean.test.pixels.byteLength, 10_000 * 784)
    assert.deepEqual(asFloat(lean.shard), subset(train, pick(train.y, 10)))
    assert.deepEqual(asFloat(lean.test), test)
    assert.notEqual(lean.test.x, test.x)
    assert.ok(lean.shard.n > 0 && lean.shard.n < train.n)
    // now that the whole set is cached, loadShard takes it from there (same test arrays)
    const cached = await loadShard({ kind: 'mnist' }, pick)
    assert.equal(cached.test.x, test.x)
    assert.deepEqual(cached.shard, asFloat(lean.shard))
  })

  it("loadShard with testRows: only the test split's first rows held, the whole split read again part by part by testChunks, as without it", async () => {
    clearDatasetCache()
    const pick = (labels: Int32Array, k: number): Int32Array => partition(labels, k, 26, { scheme: 'dirichlet', alpha: 1 }, 1)[5]!
    const lean = await loadShard({ kind: 'mnist' }, pick, { testRows: 3000 })
    assert.equal(lean.test.n, 3000)
    assert.equal(lean.test.pixels!.byteLength, 3000 * 784)
    // its own copy of the rows: not a view that would keep the whole split's buffer alive
    assert.equal(lean.test.pixels!.buffer.byteLength, 3000 * 784)
    clearDatasetCache()
    const whole = await loadShard({ kind: 'mnist' }, pick)
    assert.equal(whole.test.n, 10_000)
    assert.deepEqual(lean.shard, whole.shard)
    assert.deepEqual(Array.from(lean.test.y), Array.from(whole.test.y.subarray(0, 3000)))
    assert.ok(Buffer.from(lean.test.pixels!).equals(whole.test.pixels!.subarray(0, 3000 * 784)))
    assert.equal(lean.test.numClasses, whole.test.numClasses)
    assert.equal(lean.test.name, whole.test.name)
    // the whole split again, read from the files each time, 3000 examples at a time
    for (let pass = 0; pass < 2; pass++) {
      const parts = await chunks(lean.testChunks())
      assert.deepEqual(
        parts.map((p) => p.n),
        [3000, 3000, 3000, 1000],
      )
      assert.ok(Buffer.concat(parts.map((p) => p.pixels)).equals(whole.test.pixels!))
      assert.deepEqual(
        parts.flatMap((p) => p.y),
        Array.from(whole.test.y),
      )
      for (const { part } of parts) {
        assert.equal(part.numClasses, whole.test.numClasses)
        assert.deepEqual(part.exampleShape, whole.test.exampleShape)
      }
      // read into one buffer of 3000 examples, not the kept prefix's
      assert.ok(parts.every((p) => p.buffer === parts[0]!.buffer))
      assert.equal(parts[0]!.buffer.byteLength, 3000 * 784)
      assert.notEqual(parts[0]!.buffer, lean.test.pixels!.buffer)
    }
    // without testRows, the split it returned, whole
    const own = await chunks(whole.testChunks())
    assert.equal(own.length, 1)
    assert.equal(own[0]!.part, whole.test)
    const controller = new AbortController()
    controller.abort()
    await assert.rejects(chunks(lean.testChunks({ signal: controller.signal })), AbortError)
    await assert.rejects(loadShard({ kind: 'mnist' }, pick, { testRows: 0 }), InvalidConfigError)
    await assert.rejects(loadShard({ kind: 'mnist' }, pick, { testRows: 1.5 }), InvalidConfigError)
    clearDatasetCache()
  })

  it('loadShard with testRows on IDX files: a split no longer than testRows is whole; testChunks refuses a test split changed on disk', async () => {
    const images = await file('rows-images', idx([2, 2, 2], Uint8Array.from([1, 2, 3, 4, 5, 6, 7, 8])))
    const labels = await file('rows-labels', idx([2], Uint8Array.from([0, 1])))
    const testPixels = Uint8Array.from([10, 11, 12, 13, 20, 21, 22, 23, 30, 31, 32, 33])
    const testImages = await file('rows-test-images', idx([3, 2, 2], testPixels))
    const testLabels = await file('rows-test-labels', idx([3], Uint8Array.from([1, 0, 1])))
    const spec: DatasetSpec = { kind: 'idx', trainImages: images, trainLabels: labels, testImages, testLabels }
    clearDatasetCache()
    const all = await loadShard(spec, () => [0, 1], { testRows: 3 })
    assert.equal(all.test.n, 3)
    assert.deepEqual(
      (await chunks(all.testChunks())).map((p) => p.part),
      [all.test],
    )
    const some = await loadShard(spec, () => [0, 1], { testRows: 2 })
    assert.deepEqual(Array.from(some.test.pixels!), [10, 11, 12, 13, 20, 21, 22, 23])
    assert.deepEqual(Array.from(some.test.y), [1, 0])
    const read = async (): Promise<number[][]> => (await chunks(some.testChunks())).map((p) => [...p.pixels, ...p.y])
    assert.deepEqual(await read(), [
      [10, 11, 12, 13, 20, 21, 22, 23, 1, 0],
      [30, 31, 32, 33, 1],
    ])
    const changed = (e: unknown): boolean => e instanceof CorruptDatasetError && e.reason === 'mismatch' && /changed since this member loaded it/.test(e.message)
    // a kept row changed
    await writeFile(testImages, idx([3, 2, 2], Uint8Array.from([10, 11, 12, 13, 20, 21, 22, 99, 30, 31, 32, 33])))
    await assert.rejects(read(), changed)
    // a kept label changed
    await writeFile(testImages, idx([3, 2, 2], testPixels))
    await writeFile(testLabels, idx([3], Uint8Array.from([1, 1, 1])))
    await assert.rejects(read(), changed)
    // more examples than there were (labels and images)
    await writeFile(testLabels, idx([4], Uint8Array.from([1, 0, 1, 0])))
    await assert.rejects(read(), changed)
    await writeFile(testLabels, idx([3], Uint8Array.from([1, 0, 1])))
    await writeFile(testImages, idx([4, 2, 2], Uint8Array.from([...testPixels, 40, 41, 42, 43])))
    await assert.rejects(read(), changed)
    // as it was: read again
    await writeFile(testImages, idx([3, 2, 2], testPixels))
    assert.equal((await read()).length, 2)
    // the reader of a range of rows: within the file and the buffer it is given
    const into = new Uint8Array(8)
    assert.deepEqual(await readIdxRowRange(testImages, 1, 2, into), [3, 2, 2])
    assert.deepEqual(Array.from(into), [20, 21, 22, 23, 30, 31, 32, 33])
    await assert.rejects(readIdxRowRange(testImages, 2, 2, into), RangeError)
    await assert.rejects(readIdxRowRange(testImages, 0, 3, into), RangeError)
    clearDatasetCache()
  })

  it('loadShard on IDX files: classes from both splits, the shape check, and indices out of range refused', async () => {
    const images = await file('shard-images', idx([3, 2, 2], Uint8Array.from([0, 255, 51, 102, 1, 2, 3, 4, 5, 6, 7, 8])))
    const labels = await file('shard-labels', idx([3], Uint8Array.from([2, 0, 1])))
    const testImages = await file('shard-test-images', idx([1, 2, 2], Uint8Array.from([9, 9, 9, 9])))
    const testLabels = await file('shard-test-labels', idx([1], Uint8Array.from([4])))
    const spec: DatasetSpec = { kind: 'idx', trainImages: images, trainLabels: labels, testImages, testLabels }
    let seen: [number[], number] | undefined
    const { shard, test } = await loadShard(spec, (y, k) => {
      seen = [Array.from(y), k]
      return [2, 0]
    })
    assert.deepEqual(seen, [[2, 0, 1], 5])
    assert.equal(shard.numClasses, 5)
    assert.equal(test.numClasses, 5)
    assert.deepEqual(Array.from(shard.y), [1, 2])
    assert.deepEqual(Array.from(shard.pixels!), [5, 6, 7, 8, 0, 255, 51, 102])
    assert.deepEqual(Array.from(shard.x), [5, 6, 7, 8, 0, 255, 51, 102].map((v) => Math.fround(v / 255)))
    assert.deepEqual(Array.from(test.pixels!), [9, 9, 9, 9])
    // subset and flipLabels of a byte data set stay bytes, with the same values
    const sub = subset(shard, [1])
    assert.deepEqual(Array.from(sub.pixels!), [0, 255, 51, 102])
    assert.deepEqual(Array.from(sub.x), Array.from(shard.x.subarray(4)))
    const flipped = flipLabels(shard)
    assert.equal(flipped.pixels, shard.pixels)
    assert.deepEqual(Array.from(flipped.y), [3, 2])
    clearDatasetCache()
    assert.deepEqual(asFloat(shard), subset(await loadDataset(spec, 'train'), [2, 0]))
    clearDatasetCache()
    await assert.rejects(
      loadShard(spec, () => [3]),
      (e: unknown) => e instanceof InvalidConfigError && /3 is not an example index/.test(e.message),
    )
    const wide = await file('shard-wide-images', idx([1, 3, 2], Uint8Array.from([1, 2, 3, 4, 5, 6])))
    await assert.rejects(loadShard({ ...spec, testImages: wide }, () => [0]), (e: unknown) => e instanceof CorruptDatasetError && e.reason === 'mismatch')
  })

  it('readIdxRows: the chosen rows in their order (repeats, any chunk size) as readIdx slices them; the header is checked before select, indices after', async () => {
    // 37 rows of 3 × 2 bytes, every byte different from its neighbours
    const rows = 37
    const data = Uint8Array.from({ length: rows * 6 }, (_, i) => (i * 7 + 3) % 251)
    const path = await file('rows-images', idx([rows, 3, 2], data))
    const whole = await readIdx(path)
    const rand = new Rng(11)
    for (const chunkBytes of [1, 6, 7, 18, 100, 1 << 20]) {
      for (let t = 0; t < 5; t++) {
        const picked = Array.from({ length: 1 + rand.int(60) }, () => rand.int(rows))
        let seen: number[] | undefined
        const got = await readIdxRows(
          path,
          (dims) => {
            seen = dims
            return picked
          },
          { chunkBytes },
        )
        assert.deepEqual(seen, [rows, 3, 2])
        const want = new Uint8Array(picked.length * 6)
        for (const [i, e] of picked.entries()) want.set(whole.data.subarray(e * 6, e * 6 + 6), i * 6)
        assert.deepEqual(got.data, want, `chunkBytes ${chunkBytes}, rows ${picked.join(',')}`)
        assert.deepEqual(got.dims, [rows, 3, 2])
      }
    }
    // no rows: an empty result; rows out of range or not integers: refused
    assert.equal((await readIdxRows(path, () => [])).data.byteLength, 0)
    for (const bad of [[rows], [-1], [1.5], [0, Number.NaN]]) await assert.rejects(readIdxRows(path, () => bad), RangeError)
    // a corrupt header is reported before select runs
    const short = await file('rows-short', idx([rows, 3, 2], data.subarray(0, 100)))
    let called = false
    await assert.rejects(
      readIdxRows(short, () => {
        called = true
        return [0]
      }),
      (e: unknown) => e instanceof CorruptDatasetError && e.reason === 'truncated',
    )
    assert.equal(called, false)
  })

  it('rejects corrupt IDX files with CorruptDatasetError (bad magic, wrong dims, truncation, trailing bytes, count mismatch)', async () => {
    const good = Uint8Array.from({ length: 8 }, (_, i) => i)
    const cases: [string, Uint8Array, CorruptDatasetError['reason']][] = [
      ['bad-magic', idx([2, 2, 2], good, [1, 0, 8, 3]), 'bad-magic'],
      ['bad-type', idx([2, 2, 2], good, [0, 0, 0x0d, 3]), 'bad-magic'],
      ['zero-dim', idx([0, 2, 2], new Uint8Array(0)), 'bad-dimensions'],
      ['huge-dims', idx([60000, 60000, 60000], good), 'bad-dimensions'],
      ['truncated-data', idx([2, 2, 2], good.subarray(0, 7)), 'truncated'],
      ['truncated-header', idx([2, 2, 2], good).subarray(0, 10), 'truncated'],
      ['empty', new Uint8Array(0), 'truncated'],
      ['trailing', idx([2, 2, 2], Uint8Array.from({ length: 9 })), 'trailing-data'],
    ]
    const labels = await file('labels-2', idx([2], Uint8Array.from([0, 1])))
    for (const [name, bytes, reason] of cases) {
      const images = await file(name, bytes)
      await assert.rejects(
        loadDataset({ kind: 'idx', trainImages: images, trainLabels: labels, testImages: images, testLabels: labels }, 'train'),
        (err: unknown) => err instanceof CorruptDatasetError && err.name === 'CorruptDatasetError' && err.reason === reason && err.file === images,
        name,
      )
    }
    // Labels file with 2 dimensions, and a label count that does not match the images.
    const images = await file('images-ok', idx([2, 2, 2], good))
    const labels2d = await file('labels-2d', idx([2, 1], Uint8Array.from([0, 1])))
    const labels3 = await file('labels-3', idx([3], Uint8Array.from([0, 1, 1])))
    await assert.rejects(readIdx(labels2d, { expectDims: 1 }), (e: unknown) => e instanceof CorruptDatasetError && e.reason === 'bad-dimensions')
    await assert.rejects(
      loadDataset({ kind: 'idx', trainImages: images, trainLabels: labels3, testImages: images, testLabels: labels3 }, 'test'),
      (e: unknown) => e instanceof CorruptDatasetError && e.reason === 'mismatch',
    )
    await assert.rejects(
      loadDataset({ kind: 'idx', trainImages: join(dir, 'missing'), trainLabels: labels, testImages: images, testLabels: labels }, 'train'),
      DatasetNotFoundError,
    )
  })

  it('reads a CSV with a label column; rejects ragged or non-numeric rows', async () => {
    const train = await file('train.csv', 'a,label,b\n1,0,2\n3,1,4\n\n5,2,6\n')
    const test = await file('test.csv', '"a","label","b"\r\n7,1,8\r\n')
    const ds = await loadDataset({ kind: 'csv', train, test, labelColumn: 'label' }, 'train')
    assert.equal(ds.n, 3)
    assert.deepEqual(ds.exampleShape, [2])
    assert.deepEqual(Array.from(ds.x), [1, 2, 3, 4, 5, 6])
    assert.deepEqual(Array.from(ds.y), [0, 1, 2])
    assert.equal(ds.numClasses, 3)
    const te = await loadDataset({ kind: 'csv', train, test, labelColumn: 'label' }, 'test')
    assert.deepEqual(Array.from(te.x), [7, 8])
    const ragged = await file('ragged.csv', 'a,label\n1,0\n2\n')
    const text = await file('text.csv', 'a,label\nx,0\n')
    const badLabel = await file('badlabel.csv', 'a,label\n1,0.5\n')
    for (const bad of [ragged, text, badLabel]) {
      await assert.rejects(loadDataset({ kind: 'csv', train: bad, test, labelColumn: 'label' }, 'train'), CorruptDatasetError)
    }
    await assert.rejects(loadDataset({ kind: 'csv', train, test, labelColumn: 'nope' }, 'train'), CorruptDatasetError)
  })

  it('synthetic tasks are deterministic in the seed, with the requested sizes', async () => {
    const gm = (seed: string, trainSize = 200): DatasetSpec => ({ kind: 'gaussian-mixture', classes: 4, dim: 5, trainSize, testSize: 50, seed })
    const a = await loadDataset(gm('s'), 'train')
    const b = await loadDataset({ ...gm('s') }, 'train')
    const c = await loadDataset(gm('t'), 'train')
    assert.equal(a.n, 200)
    assert.deepEqual(a.exampleShape, [5])
    assert.equal(a.numClasses, 4)
    assert.deepEqual(b.x, a.x)
    assert.notDeepEqual(c.x, a.x)
    // The test split does not depend on the training size.
    assert.deepEqual((await loadDataset(gm('s', 300), 'test')).x, (await loadDataset(gm('s'), 'test')).x)
    const lr = await loadDataset({ kind: 'logistic', dim: 10, condition: 100, trainSize: 2000, testSize: 10, seed: 1 }, 'train')
    assert.equal(lr.numClasses, 2)
    // Feature variances spread from 1 to 1/condition.
    const variance = (j: number) => {
      let s = 0
      for (let i = 0; i < lr.n; i++) s += lr.x[i * 10 + j]! ** 2
      return s / lr.n
    }
    const ratio = variance(0) / variance(9)
    assert.ok(ratio > 70 && ratio < 140, `variance ratio ${ratio}`)
    const ones = lr.y.reduce((s, v) => s + v, 0)
    assert.ok(ones > 600 && ones < 1400, `class balance ${ones}/2000`)
  })

  it('subset copies the chosen examples; flipLabels maps y to K−1−y', async () => {
    const ds = await loadDataset({ kind: 'gaussian-mixture', classes: 3, dim: 2, trainSize: 10, testSize: 1, seed: 2 }, 'train')
    const s = subset(ds, [4, 1])
    assert.equal(s.n, 2)
    assert.deepEqual(Array.from(s.x), [...ds.x.subarray(8, 10), ...ds.x.subarray(2, 4)])
    assert.deepEqual(Array.from(s.y), [ds.y[4], ds.y[1]])
    assert.throws(() => subset(ds, [10]), InvalidConfigError)
    const f = flipLabels(ds)
    assert.deepEqual(Array.from(f.y), Array.from(ds.y, (y) => 2 - y))
    assert.notEqual(f.y, ds.y)
  })

  it('validates specs and honours an aborted signal', async () => {
    await assert.rejects(loadDataset({ kind: 'gaussian-mixture', classes: 1, dim: 2, trainSize: 1, testSize: 1, seed: 1 }, 'train'), InvalidConfigError)
    await assert.rejects(loadDataset({ kind: 'logistic', dim: 4, condition: 0.5, trainSize: 1, testSize: 1, seed: 1 }, 'train'), InvalidConfigError)
    await assert.rejects(loadDataset({ kind: 'nope' } as unknown as DatasetSpec, 'train'), InvalidConfigError)
    await assert.rejects(loadDataset({ kind: 'mnist' }, 'train', { signal: AbortSignal.abort() }), AbortError)
  })
})
