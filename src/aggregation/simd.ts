/**
 * WebAssembly SIMD kernels for the hot loops, assembled here from their opcodes so no
 * toolchain or binary file is needed:
 *  - sqdist4: squared distances from one row to four others (pairwise distances, nna, ce, gm, cc);
 *  - sumRows / nnmRow: NNM's neighbourhood sums, as a shared base sum ± a few rows;
 *  - trim(k, trim): a lane-wise sorting network (Batcher), generated and compiled per k, that
 *    gives the trimmed mean (cwtm), the median (cwmed) or the mean of 4 coordinates at once.
 * Each kernel works on data the caller copies into the module's memory one block of
 * coordinates at a time (fast.ts), so the work space stays O(k · block), independent of d.
 *
 * Numerics: differences and squares in Float32, summed in Float32 over runs of 256
 * coordinates and then in Float64 (a run's relative error ≲ 1e-5; a square that overflows
 * Float32 gives +∞ and the caller redoes that computation in Float64). NNM sums and the
 * trimmed sums are accumulated in Float64; selection is exact (min/max on the values).
 *
 * `simdKernels()` returns null when the runtime lacks WebAssembly SIMD; callers then use
 * the plain-JS kernels, which compute the same quantities.
 */

// --- a tiny assembler ------------------------------------------------------------------

function uleb(n: number): number[] {
  const out: number[] = []
  do {
    let b = n & 0x7f
    n >>>= 7
    if (n !== 0) b |= 0x80
    out.push(b)
  } while (n !== 0)
  return out
}
function sleb(n: number): number[] {
  const out: number[] = []
  for (;;) {
    const b = n & 0x7f
    n >>= 7
    if ((n === 0 && (b & 0x40) === 0) || (n === -1 && (b & 0x40) !== 0)) {
      out.push(b)
      return out
    }
    out.push(b | 0x80)
  }
}
const vec = (items: number[][]): number[] => [...uleb(items.length), ...items.flat()]
const section = (id: number, body: number[]): number[] => [id, ...uleb(body.length), ...body]
const name = (s: string): number[] => [...uleb(s.length), ...Array.from(s, (c) => c.charCodeAt(0))]

const I32 = 0x7f
const F64 = 0x7c
const V128 = 0x7b

// core opcodes
const block = [0x02, 0x40]
const loop = [0x03, 0x40]
const end = [0x0b]
const br = (l: number) => [0x0c, ...uleb(l)]
const brIf = (l: number) => [0x0d, ...uleb(l)]
const get = (i: number) => [0x20, ...uleb(i)]
const set = (i: number) => [0x21, ...uleb(i)]
const tee = (i: number) => [0x22, ...uleb(i)]
const i32c = (v: number) => [0x41, ...sleb(v)]
const i32add = [0x6a]
const i32shl = [0x74]
const i32geu = [0x4f]
const f32add = [0x92]
const f64add = [0xa0]
const f64promote = [0xbb]
// SIMD opcodes (prefix 0xfd, LEB opcode)
const simd = (op: number, ...imm: number[]) => [0xfd, ...uleb(op), ...imm]
const vload = (offset = 0) => simd(0x00, 0, ...uleb(offset))
const vstore = (offset = 0) => simd(0x0b, 0, ...uleb(offset))
const vconstF32 = (x: number) => {
  const b = new Uint8Array(new Float32Array([x, x, x, x]).buffer)
  return simd(0x0c, ...b)
}
const shuffle = (lanes: number[]) => simd(0x0d, ...lanes)
const HIGH_TO_LOW = [8, 9, 10, 11, 12, 13, 14, 15, 0, 1, 2, 3, 4, 5, 6, 7]
const JOIN_LOW = [0, 1, 2, 3, 4, 5, 6, 7, 16, 17, 18, 19, 20, 21, 22, 23]
const f64x2splat = simd(0x14)
const f32x4extract = (l: number) => simd(0x1f, l)
const f64x2extract = (l: number) => simd(0x21, l)
const demote = simd(0x5e)
const promote = simd(0x5f)
const f32x4add = simd(0xe4)
const f32x4sub = simd(0xe5)
const f32x4mul = simd(0xe6)
const f32x4gt = simd(0x44)
const vbitselect = simd(0x52)
const f32x4min = simd(0xe8)
const f32x4max = simd(0xe9)
const f64x2add = simd(0xf0)
const f64x2sub = simd(0xf1)
const f64x2mul = simd(0xf2)

/** while (ptr < endPtr) { body; ptr += step } */
function whileLess(ptr: number, endPtr: number, body: number[], step: number, extra: number[] = []): number[] {
  return [
    ...block,
    ...loop,
    ...get(ptr),
    ...get(endPtr),
    ...i32geu,
    ...brIf(1),
    ...body,
    ...get(ptr),
    ...i32c(step),
    ...i32add,
    ...set(ptr),
    ...extra,
    ...br(0),
    ...end,
    ...end,
  ]
}
const bump = (local: number, step: number) => [...get(local), ...i32c(step), ...i32add, ...set(local)]

interface Fn {
  params: number[]
  results: number[]
  locals: number[]
  body: number[]
  exportName: string
}

const select = [0x1b]
const i32ltu = [0x49]
const f64store = (offset: number) => [0x39, 3, ...uleb(offset)]
const i32loadAt = (offset: number) => [0x28, 2, ...uleb(offset)]

interface Fn {
  params: number[]
  results: number[]
  locals: number[]
  body: number[]
  exportName: string
}

/** v128 holding Σ lanes of an f64x2 local as one f64 on the stack. */
const hsum64 = (local: number) => [...get(local), ...f64x2extract(0), ...get(local), ...f64x2extract(1), ...f64add]
/** acc64 += promote(low half of x), acc64b += promote(high half of x) */
const widenAdd = (x: number, lo: number, hi: number, op: number[] = f64x2add) => [
  ...get(lo),
  ...get(x),
  ...promote,
  ...op,
  ...set(lo),
  ...get(hi),
  ...get(x),
  ...get(x),
  ...shuffle(HIGH_TO_LOW),
  ...promote,
  ...op,
  ...set(hi),
]
/** stack: address; stores f32x4(lo·s, hi·s) from two f64x2 locals and an f64x2 scale local */
const narrowStore = (lo: number, hi: number, s: number) => [
  ...get(lo),
  ...get(s),
  ...f64x2mul,
  ...demote,
  ...get(hi),
  ...get(s),
  ...f64x2mul,
  ...demote,
  ...shuffle(JOIN_LOW),
  ...vstore(),
]

/**
 * sqdist4(a, b0, b1, b2, b3, n, out): out[m] = Σ_c (a[c] − b_m[c])² for m = 0..3 (f64 at
 * out + 8m). One load of a serves four rows. Squares are summed in f32x4 over runs of 256
 * coordinates, then added into f64x2 accumulators (relative error of a run ≲ 1e-5).
 * params 0 a, 1..4 b, 5 n, 6 out; locals 7 end, 8 runEnd, 9 va, 10 t, 11..14 acc32, 15..18 acc64
 */
function sqdist4(): Fn {
  const inner: number[] = [...get(0), ...vload(), ...set(9)]
  for (let m = 0; m < 4; m++) {
    inner.push(...get(1 + m), ...vload(), ...get(9), ...f32x4sub, ...tee(10), ...get(10), ...f32x4mul, ...get(11 + m), ...f32x4add, ...set(11 + m))
  }
  const bumps = [1, 2, 3, 4].flatMap((m) => bump(m, 16))
  const flush: number[] = []
  for (let m = 0; m < 4; m++) flush.push(...widenAdd(11 + m, 15 + m, 15 + m), ...vconstF32(0), ...set(11 + m))
  const body = [
    ...get(0),
    ...get(5),
    ...i32c(2),
    ...i32shl,
    ...i32add,
    ...set(7),
    ...block,
    ...loop,
    ...get(0),
    ...get(7),
    ...i32geu,
    ...brIf(1),
    // runEnd = min(a + 1024, end)
    ...get(0),
    ...i32c(1024),
    ...i32add,
    ...get(7),
    ...get(0),
    ...i32c(1024),
    ...i32add,
    ...get(7),
    ...i32ltu,
    ...select,
    ...set(8),
    ...whileLess(0, 8, inner, 16, bumps),
    ...flush,
    ...br(0),
    ...end,
    ...end,
  ]
  for (let m = 0; m < 4; m++) body.push(...get(6), ...hsum64(15 + m), ...f64store(8 * m))
  return { exportName: 'sqdist4', params: [I32, I32, I32, I32, I32, I32, I32], results: [], locals: [I32, I32, V128, V128, V128, V128, V128, V128, V128, V128, V128, V128], body }
}

/**
 * sumRows(acc, table, count, n): acc[c] = Σ_t row_t[c] in Float64, rows at i32 table[t].
 * params 0 acc, 1 table, 2 count, 3 n; locals 4 o, 5 end, 6 p, 7 pend, 8 x, 9 lo, 10 hi
 */
function sumRows(): Fn {
  const body = [
    ...get(3),
    ...i32c(2),
    ...i32shl,
    ...set(5),
    ...get(1),
    ...get(2),
    ...i32c(2),
    ...i32shl,
    ...i32add,
    ...set(7),
    ...whileLess(
      4,
      5,
      [
        ...vconstF32(0),
        ...tee(9),
        ...set(10),
        ...get(1),
        ...set(6),
        ...whileLess(6, 7, [...get(6), ...i32loadAt(0), ...get(4), ...i32add, ...vload(), ...set(8), ...widenAdd(8, 9, 10)], 4),
        ...get(0),
        ...get(9),
        ...vstore(),
        ...get(0),
        ...get(10),
        ...vstore(16),
      ],
      16,
      bump(0, 32),
    ),
  ]
  return { exportName: 'sumRows', params: [I32, I32, I32, I32], results: [], locals: [I32, I32, I32, I32, V128, V128, V128], body }
}

/**
 * nnmRow(dst, base, add, nAdd, sub, nSub, n, scale): dst[c] = f32((base[c] + Σ_add row[c] −
 * Σ_sub row[c]) · scale), base Float64, rows Float32 at i32 tables add/sub.
 * params 0 dst, 1 base, 2 add, 3 nAdd, 4 sub, 5 nSub, 6 n, 7 scale
 * locals 8 o, 9 end, 10 p, 11 pend, 12 x, 13 lo, 14 hi, 15 s, 16 addEnd, 17 subEnd
 */
function nnmRow(): Fn {
  const rowLoop = (tbl: number, tblEnd: number, op: number[]) => [
    ...get(tbl),
    ...set(10),
    ...whileLess(10, tblEnd, [...get(10), ...i32loadAt(0), ...get(8), ...i32add, ...vload(), ...set(12), ...widenAdd(12, 13, 14, op)], 4),
  ]
  const body = [
    ...get(7),
    ...f64x2splat,
    ...set(15),
    ...get(6),
    ...i32c(2),
    ...i32shl,
    ...set(9),
    ...get(2),
    ...get(3),
    ...i32c(2),
    ...i32shl,
    ...i32add,
    ...set(16),
    ...get(4),
    ...get(5),
    ...i32c(2),
    ...i32shl,
    ...i32add,
    ...set(17),
    ...whileLess(
      8,
      9,
      [
        ...get(1),
        ...vload(),
        ...set(13),
        ...get(1),
        ...vload(16),
        ...set(14),
        ...rowLoop(2, 16, f64x2add),
        ...rowLoop(4, 17, f64x2sub),
        ...get(0),
        ...get(8),
        ...i32add,
        ...narrowStore(13, 14, 15),
      ],
      16,
      bump(1, 32),
    ),
  ]
  return {
    exportName: 'nnmRow',
    params: [I32, I32, I32, I32, I32, I32, I32, F64],
    results: [],
    locals: [I32, I32, I32, I32, V128, V128, V128, V128, I32, I32],
    body,
  }
}

/**
 * Batcher's odd–even merge sort comparators for k inputs (the network for the next power of
 * two, without the comparators that touch padding: padding holds +∞ and never moves).
 * `firstStage` (a power of two) leaves out the stages before it: from 16, the network that
 * finishes the sort of k values whose blocks of 16 are each sorted already.
 */
export function sortingNetwork(k: number, firstStage = 1): [number, number][] {
  let n = 1
  while (n < k) n <<= 1
  const pairs: [number, number][] = []
  for (let p = firstStage; p < n; p <<= 1) {
    for (let q = p; q >= 1; q >>= 1) {
      for (let j = q % p; j <= n - 1 - q; j += 2 * q) {
        for (let i = 0; i <= Math.min(q - 1, n - j - q - 1); i++) {
          if (Math.floor((i + j) / (2 * p)) === Math.floor((i + j + q) / (2 * p)) && i + j + q < k) pairs.push([i + j, i + j + q])
        }
      }
    }
  }
  return pairs
}

/** What a sorted-column kernel computes from the k sorted values of each coordinate. */
export type SortedReduce = { kind: 'trim'; trim: number } | { kind: 'meamed'; f: number }

/**
 * sorted(table, nbytes, out, inv) -> f64, generated for k rows and one reduction: for every
 * 4 coordinates, load the k values into v128 locals, sort them lane-wise with the unrolled
 * network, then either sum positions trim..k−trim−1 (trimmed mean; median; mean) or, for
 * meamed, the k − f values nearest the median — the window [j, j + k − f) of the sorted
 * values with j = #{i < f : m − v_i > v_{i+k−f} − m} (on a tie the larger value is dropped,
 * as in meamedColumn). Sums in Float64, scaled by `inv`. Returns Σ x·0 over the inputs
 * (NaN iff some input was non-finite: ±∞ would otherwise be trimmed away unnoticed).
 * params 0 table, 1 nbytes, 2 out, 3 inv; locals 4 o, 5 chk, 6 s0, 7 s1, 8 s, 9.. values, then m, t
 */
function sortedKernel(k: number, reduce: SortedReduce): Fn {
  const v = (i: number) => 9 + i
  const m = 9 + k
  const t = 10 + k
  const inner: number[] = []
  for (let i = 0; i < k; i++) {
    inner.push(...get(0), ...i32loadAt(4 * i), ...get(4), ...i32add, ...vload(), ...tee(v(i)), ...vconstF32(0), ...f32x4mul, ...get(5), ...f32x4add, ...set(5))
  }
  for (const [a, b] of sortingNetwork(k)) {
    inner.push(...get(v(a)), ...get(v(b)), ...f32x4min, ...get(v(a)), ...get(v(b)), ...f32x4max, ...set(v(b)), ...set(v(a)))
  }
  inner.push(...vconstF32(0), ...tee(6), ...set(7))
  if (reduce.kind === 'trim') {
    for (let i = reduce.trim; i < k - reduce.trim; i++) inner.push(...widenAdd(v(i), 6, 7))
  } else {
    const f = reduce.f
    const h = k >> 1
    if ((k & 1) === 1) inner.push(...get(v(h)), ...set(m))
    else inner.push(...get(v(h - 1)), ...get(v(h)), ...f32x4add, ...vconstF32(0.5), ...f32x4mul, ...set(m))
    for (let i = f; i < k - f; i++) inner.push(...widenAdd(v(i), 6, 7))
    for (let i = 0; i < f; i++) {
      const hi = v(k - f + i)
      // low value i is dropped (replaced in the window by high value k − f + i) iff m − v_i > v_hi − m
      inner.push(...get(hi), ...get(v(i)), ...get(m), ...get(v(i)), ...f32x4sub, ...get(hi), ...get(m), ...f32x4sub, ...f32x4gt, ...vbitselect, ...set(t))
      inner.push(...widenAdd(t, 6, 7))
    }
  }
  inner.push(...get(2), ...get(4), ...i32add, ...narrowStore(6, 7, 8))
  const body = [
    ...get(3),
    ...f64x2splat,
    ...set(8),
    ...whileLess(4, 1, inner, 16),
    ...get(5),
    ...f32x4extract(0),
    ...get(5),
    ...f32x4extract(1),
    ...f32add,
    ...get(5),
    ...f32x4extract(2),
    ...f32add,
    ...get(5),
    ...f32x4extract(3),
    ...f32add,
    ...f64promote,
  ]
  return { exportName: 'sorted', params: [I32, I32, I32, F64], results: [F64], locals: [I32, V128, V128, V128, V128, ...Array(k + 2).fill(V128)], body }
}

function assemble(fns: Fn[], importMemory: boolean): Uint8Array {
  const types = fns.map((f) => [0x60, ...vec(f.params.map((p) => [p])), ...vec(f.results.map((r) => [r]))])
  const funcs = fns.map((_, i) => uleb(i))
  const fnExports = fns.map((f, i) => [...name(f.exportName), 0x00, ...uleb(i)])
  const codes = fns.map((f) => {
    const locals = vec(f.locals.map((t) => [1, t]))
    const body = [...locals, ...f.body, ...end]
    return [...uleb(body.length), ...body]
  })
  const header = [0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00]
  const parts = [...header, ...section(1, vec(types))]
  if (importMemory) parts.push(...section(2, vec([[...name('env'), ...name('memory'), 0x02, 0x00, ...uleb(1)]])))
  parts.push(...section(3, vec(funcs)))
  // 64 pages = 4 MiB initially; grown on demand
  if (!importMemory) parts.push(...section(5, vec([[0x00, ...uleb(64)]])))
  parts.push(...section(7, vec(importMemory ? fnExports : [...fnExports, [...name('memory'), 0x02, 0]])))
  parts.push(...section(10, vec(codes)))
  return Uint8Array.from(parts)
}

// --- the JS side -------------------------------------------------------------------------

/** The slice of the WebAssembly API used here (the project's TS lib has no DOM/wasm types). */
interface WasmMemory {
  readonly buffer: ArrayBuffer
  grow(pages: number): number
}
interface WasmApi {
  validate(bytes: Uint8Array): boolean
  Module: new (bytes: Uint8Array) => object
  Instance: new (module: object, imports?: object) => { exports: Record<string, unknown> }
}
const wasm = (globalThis as { WebAssembly?: WasmApi }).WebAssembly

/** Largest k for which the sorting kernel is generated (k v128 locals); above it the JS path runs. */
export const MAX_NETWORK_K = 128

export interface SimdKernels {
  memory: WasmMemory
  /** make the memory at least `bytes` long (views are refreshed) */
  reserve(bytes: number): void
  f32(): Float32Array
  f64(): Float64Array
  i32(): Int32Array
  sqdist4(a: number, b0: number, b1: number, b2: number, b3: number, n: number, out: number): void
  sumRows(acc: number, table: number, count: number, n: number): void
  nnmRow(dst: number, base: number, add: number, nAdd: number, sub: number, nSub: number, n: number, scale: number): void
  /** the sorted-column kernel for k rows and a reduction, compiled on first use and cached */
  sorted(k: number, reduce: SortedReduce): (table: number, nbytes: number, out: number, inv: number) => number
}

let cached: SimdKernels | null | undefined

/** The SIMD kernels, or null when this runtime has no WebAssembly SIMD (or `setSimdEnabled(false)` was called). */
export function simdKernels(): SimdKernels | null {
  if (cached !== undefined) return cached
  cached = null
  if (wasm === undefined) return cached
  const bytes = assemble([sqdist4(), sumRows(), nnmRow()], false)
  if (!wasm.validate(bytes)) return cached
  const api = wasm
  const x = new api.Instance(new api.Module(bytes)).exports as unknown as Pick<SimdKernels, 'sqdist4' | 'sumRows' | 'nnmRow' | 'memory'>
  const memory = x.memory
  let f32 = new Float32Array(memory.buffer)
  let f64 = new Float64Array(memory.buffer)
  let i32 = new Int32Array(memory.buffer)
  const refresh = () => {
    if (f32.buffer !== memory.buffer) {
      f32 = new Float32Array(memory.buffer)
      f64 = new Float64Array(memory.buffer)
      i32 = new Int32Array(memory.buffer)
    }
  }
  const trims = new Map<string, (table: number, nbytes: number, out: number, inv: number) => number>()
  cached = {
    memory,
    reserve(bytes: number) {
      const have = memory.buffer.byteLength
      if (bytes > have) memory.grow(Math.ceil((bytes - have) / 65536))
      refresh()
    },
    f32: () => {
      refresh()
      return f32
    },
    f64: () => {
      refresh()
      return f64
    },
    i32: () => {
      refresh()
      return i32
    },
    sqdist4: x.sqdist4,
    sumRows: x.sumRows,
    nnmRow: x.nnmRow,
    sorted(k: number, reduce: SortedReduce) {
      const key = `${k}/${reduce.kind}/${reduce.kind === 'trim' ? reduce.trim : reduce.f}`
      let fn = trims.get(key)
      if (fn === undefined) {
        const module = new api.Module(assemble([sortedKernel(k, reduce)], true))
        fn = new api.Instance(module, { env: { memory } }).exports.sorted as (table: number, nbytes: number, out: number, inv: number) => number
        trims.set(key, fn)
      }
      return fn
    },
  }
  return cached
}

/** For tests: force the plain-JS path (false) or let the next call detect SIMD again (true). */
export function setSimdEnabled(enabled: boolean): void {
  cached = enabled ? undefined : null
}
