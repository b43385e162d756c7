/**
 * The wire form of a model. The swarm file's `encoding` chooses it (docs/encodings.md):
 *
 * | encoding   | bytes for d parameters        | layout (all little-endian)                                   |
 * |------------|-------------------------------|--------------------------------------------------------------|
 * | `float32`  | 4·d (the default)             | θ as IEEE binary32                                           |
 * | `float16`  | 2·d                           | θ as IEEE binary16, round-to-nearest-even                    |
 * | `bfloat16` | 2·d                           | the top 16 bits of each binary32, round-to-nearest-even      |
 * | `int8`     | 4·⌈d/256⌉ + d                 | ⌈d/256⌉ float32 block scales, then d int8 values             |
 *
 * int8: parameters are cut into blocks of `INT8_BLOCK` = 256 consecutive entries (the last one
 * shorter); block b stores s_b = fround(max|x|/127) and q = round(x/s_b) ∈ [−127, 127] (ties away
 * from zero; q = 0 when s_b = 0); decoding gives x̂ = fround(q·s_b). Per block
 * |x − x̂| ≤ s_b/2 = max|x|/254, up to float32 rounding (≤ 2⁻²³·max|x| more).
 * float16 / bfloat16: |x − x̂| ≤ 2⁻¹¹·|x| / 2⁻⁸·|x| for normal values (half an ulp), with float16
 * subnormals below 2⁻¹⁴ spaced 2⁻²⁴ apart.
 *
 * Values beyond a format's range are NOT clamped: they round to ±∞ (IEEE round-to-nearest-even:
 * float16 from 65520 on), and ±∞/NaN are refused at decoding as `non-finite`, by every member
 * including the sender — exactly what happens to a float32 model that overflowed. A clamp would
 * turn a diverged model into a plausible-looking one at the edge of the range and hide it.
 *
 * Decoding is hostile input: the exact length is checked before anything is allocated, every
 * decoded entry must be finite (`non-finite`), and an int8 block scale must be finite and ≥ 0
 * (a NaN/±∞ scale is `non-finite`, a negative one `bad-scale`). The echo broadcast certifies the
 * encoded bytes; decoding is a pure function of them, so every member aggregates the same vectors.
 */

import { firstNonFinite } from '../aggregation/kernels.ts'

/** How a model travels (the swarm file's `encoding`; default `float32`). */
export const modelEncodings = ['float32', 'float16', 'bfloat16', 'int8'] as const
export type ModelEncoding = (typeof modelEncodings)[number]

/** int8: parameters per block (one float32 scale each). */
export const INT8_BLOCK = 256

/** Why a delivered payload was not accepted as a model. */
export type PayloadProblem = 'bad-length' | 'non-finite' | 'bad-scale'

export type DecodedModel = { model: Float32Array } | { problem: PayloadProblem }

/** The exact byte length of a d-parameter model in `encoding`. */
export function encodedBytes(dim: number, encoding: ModelEncoding = 'float32'): number {
  switch (encoding) {
    case 'float32':
      return dim * 4
    case 'float16':
    case 'bfloat16':
      return dim * 2
    case 'int8':
      return 4 * Math.ceil(dim / INT8_BLOCK) + dim
  }
}

/**
 * A decoder that decodes each payload object once and hands every later caller the same
 * result: for in-process swarms, where all n members receive the very same payload object
 * (n× fewer 1.7 MB decodes and copies per instance at n = 26: 0.99 → 0.10 CPU-s and GC
 * 0.79 → 0.16 s per round, profiled 2026-11-27). The models it returns are SHARED: callers
 * must only read them (the engine, the aggregation rules and the attacks do).
 */
export function createDecodeCache(opts: { entries?: number } = {}): (bytes: Uint8Array, dim: number, key?: string, encoding?: ModelEncoding, view?: boolean) => DecodedModel {
  // view: as decodeModel's (the bytes are a certified delivery's: read in place); an entry read in place answers only callers that allow it
  type Entry = { encoding: ModelEncoding; decoded: DecodedModel; view: boolean }
  const byObject = new WeakMap<Uint8Array, Entry>()
  // members of one process on libp2p each receive their own copy of a payload: the certified
  // (round, sender, hash) names it for all of them (the hash was checked against these bytes)
  const byKey = new Map<string, Entry>()
  const entries = opts.entries ?? 128
  return (bytes, dim, key, encoding = 'float32', view = false) => {
    const hit = byObject.get(bytes) ?? (key !== undefined ? byKey.get(key) : undefined)
    if (hit !== undefined && hit.encoding === encoding && (view || !hit.view) && (!('model' in hit.decoded) || hit.decoded.model.length === dim)) return hit.decoded
    const decoded = decodeModel(bytes, dim, encoding, { view })
    const entry = { encoding, decoded, view }
    byObject.set(bytes, entry)
    if (key !== undefined) {
      if (byKey.size >= entries) byKey.delete(byKey.keys().next().value!)
      byKey.set(key, entry)
    }
    return decoded
  }
}

const littleEndianHost = new Uint8Array(new Uint32Array([1]).buffer)[0] === 1

/**
 * θ → its wire bytes in `encoding` (`encodedBytes(θ.length, encoding)` long): a fresh buffer, or
 * with `view` (θ is the caller's to give away: nobody writes it afterwards) float32 bytes read
 * in place on a little-endian host, no copy.
 */
export function encodeModel(theta: Float32Array, encoding: ModelEncoding = 'float32', opts: { view?: boolean } = {}): Uint8Array {
  switch (encoding) {
    case 'float32':
      return opts.view === true && littleEndianHost ? new Uint8Array(theta.buffer, theta.byteOffset, theta.byteLength) : encodeFloat32(theta)
    case 'float16':
      return encodeFloat16(theta)
    case 'bfloat16':
      return encodeBfloat16(theta)
    case 'int8':
      return encodeInt8(theta)
  }
}

/**
 * bytes → θ of exactly `dim` finite entries, or the reason it is not one. The result never
 * aliases `bytes` (the caller may keep it after the broadcast reuses its buffers) unless
 * `opts.view`: then a float32 payload on a little-endian host whose bytes start 4-byte aligned
 * is read in place (a `Float32Array` over the same memory, no copy) — for bytes that nothing
 * writes afterwards and that are held anyway (certified deliveries: the broadcast keeps them for
 * FETCH/PULL), so a member holds each model of a round once instead of twice (payload + copy).
 */
export function decodeModel(bytes: Uint8Array, dim: number, encoding: ModelEncoding = 'float32', opts: { view?: boolean } = {}): DecodedModel {
  if (bytes.byteLength !== encodedBytes(dim, encoding)) return { problem: 'bad-length' }
  let model: Float32Array | PayloadProblem
  switch (encoding) {
    case 'float32':
      model = opts.view === true && littleEndianHost && bytes.byteOffset % 4 === 0 ? new Float32Array(bytes.buffer, bytes.byteOffset, dim) : decodeFloat32(bytes, dim)
      break
    case 'float16':
      model = decodeFloat16(bytes, dim)
      break
    case 'bfloat16':
      model = decodeBfloat16(bytes, dim)
      break
    case 'int8':
      model = decodeInt8(bytes, dim)
      break
  }
  if (typeof model === 'string') return { problem: model }
  if (firstNonFinite(model) >= 0) return { problem: 'non-finite' }
  return { model }
}

function encodeFloat32(theta: Float32Array): Uint8Array {
  if (littleEndianHost) return new Uint8Array(theta.buffer.slice(theta.byteOffset, theta.byteOffset + theta.byteLength))
  const out = new Uint8Array(theta.length * 4)
  const view = new DataView(out.buffer)
  for (let i = 0; i < theta.length; i++) view.setFloat32(i * 4, theta[i]!, true)
  return out
}

function decodeFloat32(bytes: Uint8Array, dim: number): Float32Array {
  const model = new Float32Array(dim)
  if (littleEndianHost) {
    new Uint8Array(model.buffer).set(bytes)
  } else {
    const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength)
    for (let i = 0; i < dim; i++) model[i] = view.getFloat32(i * 4, true)
  }
  return model
}

// float16: the engine's own conversion (Float16Array / DataView.setFloat16, ES2025), which is
// IEEE round-to-nearest-even from the exact float32 value (one rounding: a float32 is exact in
// the double the conversion starts from).
function encodeFloat16(theta: Float32Array): Uint8Array {
  const out = new Uint8Array(theta.length * 2)
  if (littleEndianHost) {
    new Float16Array(out.buffer).set(theta)
  } else {
    const view = new DataView(out.buffer)
    for (let i = 0; i < theta.length; i++) view.setFloat16(i * 2, theta[i]!, true)
  }
  return out
}

function decodeFloat16(bytes: Uint8Array, dim: number): Float32Array {
  const model = new Float32Array(dim)
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength)
  if (littleEndianHost && bytes.byteOffset % 2 === 0) {
    model.set(new Float16Array(bytes.buffer, bytes.byteOffset, dim))
  } else {
    for (let i = 0; i < dim; i++) model[i] = view.getFloat16(i * 2, true)
  }
  return model
}

// bfloat16: the high half of the binary32 bits, rounded to nearest, ties to even; NaN stays a
// (quiet) NaN instead of possibly rounding into ±∞.
function encodeBfloat16(theta: Float32Array): Uint8Array {
  const bits = new Uint32Array(theta.length)
  new Float32Array(bits.buffer).set(theta)
  const out = new Uint8Array(theta.length * 2)
  for (let i = 0; i < theta.length; i++) {
    const b = bits[i]!
    const h = (b & 0x7fffffff) > 0x7f800000 ? 0x7fc0 : ((b + 0x7fff + ((b >>> 16) & 1)) >>> 16) & 0xffff
    out[2 * i] = h & 0xff
    out[2 * i + 1] = h >>> 8
  }
  return out
}

function decodeBfloat16(bytes: Uint8Array, dim: number): Float32Array {
  const bits = new Uint32Array(dim)
  for (let i = 0; i < dim; i++) bits[i] = ((bytes[2 * i]! | (bytes[2 * i + 1]! << 8)) << 16) >>> 0
  return new Float32Array(bits.buffer)
}

function encodeInt8(theta: Float32Array): Uint8Array {
  const d = theta.length
  const blocks = Math.ceil(d / INT8_BLOCK)
  const out = new Uint8Array(encodedBytes(d, 'int8'))
  const view = new DataView(out.buffer)
  const values = new Int8Array(out.buffer, 4 * blocks, d)
  for (let b = 0; b < blocks; b++) {
    const start = b * INT8_BLOCK
    const end = Math.min(d, start + INT8_BLOCK)
    let max = 0
    let finite = true
    for (let i = start; i < end; i++) {
      const a = Math.abs(theta[i]!)
      if (!Number.isFinite(a)) finite = false
      else if (a > max) max = a
    }
    // a non-finite entry makes the block's scale NaN: every member refuses the model (`non-finite`)
    const s = finite ? Math.fround(max / 127) : Number.NaN
    view.setFloat32(4 * b, s, true)
    if (!(s > 0)) continue // all zero (or too small for a float32 scale), or refused anyway: q = 0
    for (let i = start; i < end; i++) {
      const r = theta[i]! / s
      const q = Math.sign(r) * Math.round(Math.abs(r)) // ties away from zero: symmetric
      values[i] = Math.min(127, Math.max(-127, q))
    }
  }
  return out
}

function decodeInt8(bytes: Uint8Array, dim: number): Float32Array | PayloadProblem {
  const blocks = Math.ceil(dim / INT8_BLOCK)
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength)
  const scales = new Float32Array(blocks)
  for (let b = 0; b < blocks; b++) {
    const s = view.getFloat32(4 * b, true)
    if (!Number.isFinite(s)) return 'non-finite'
    if (s < 0) return 'bad-scale'
    scales[b] = s
  }
  const values = new Int8Array(bytes.buffer, bytes.byteOffset + 4 * blocks, dim)
  const model = new Float32Array(dim)
  for (let i = 0; i < dim; i++) model[i] = values[i]! * scales[(i / INT8_BLOCK) | 0]!
  return model
}
