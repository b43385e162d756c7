/**
 * The wire form of a model: θ as little-endian float32 bytes, d·4 bytes. Decoding checks the
 * exact length and that every entry is finite before anything else touches the vector.
 */

/** Why a delivered payload was not accepted as a model. */
export type PayloadProblem = 'bad-length' | 'non-finite'

export type DecodedModel = { model: Float32Array } | { problem: PayloadProblem }

/**
 * A decoder that decodes each payload object once and hands every later caller the same
 * result: for in-process swarms, where all n members receive the very same payload object
 * (n× fewer 1.7 MB decodes and copies per instance at n = 26: 0.99 → 0.10 CPU-s and GC
 * 0.79 → 0.16 s per round, profiled 2026-11-27). The models it returns are SHARED: callers
 * must only read them (the engine, the aggregation rules and the attacks do).
 */
export function createDecodeCache(opts: { entries?: number } = {}): (bytes: Uint8Array, dim: number, key?: string) => DecodedModel {
  const byObject = new WeakMap<Uint8Array, DecodedModel>()
  // members of one process on libp2p each receive their own copy of a payload: the certified
  // (round, sender, hash) names it for all of them (the hash was checked against these bytes)
  const byKey = new Map<string, DecodedModel>()
  const entries = opts.entries ?? 128
  return (bytes, dim, key) => {
    const hit = byObject.get(bytes) ?? (key !== undefined ? byKey.get(key) : undefined)
    if (hit !== undefined && (!('model' in hit) || hit.model.length === dim)) return hit
    const decoded = decodeModel(bytes, dim)
    byObject.set(bytes, decoded)
    if (key !== undefined) {
      if (byKey.size >= entries) byKey.delete(byKey.keys().next().value!)
      byKey.set(key, decoded)
    }
    return decoded
  }
}

const littleEndianHost = new Uint8Array(new Uint32Array([1]).buffer)[0] === 1

/** θ → d·4 bytes, little-endian float32 (a copy). */
export function encodeModel(theta: Float32Array): Uint8Array {
  if (littleEndianHost) return new Uint8Array(theta.buffer.slice(theta.byteOffset, theta.byteOffset + theta.byteLength))
  const out = new Uint8Array(theta.length * 4)
  const view = new DataView(out.buffer)
  for (let i = 0; i < theta.length; i++) view.setFloat32(i * 4, theta[i]!, true)
  return out
}

/**
 * bytes → θ of exactly `dim` finite entries, or the reason it is not one. The result never
 * aliases `bytes` (the caller may keep it after the broadcast reuses its buffers).
 */
export function decodeModel(bytes: Uint8Array, dim: number): DecodedModel {
  if (bytes.byteLength !== dim * 4) return { problem: 'bad-length' }
  let model: Float32Array
  if (littleEndianHost) {
    model = new Float32Array(dim)
    new Uint8Array(model.buffer).set(bytes)
  } else {
    model = new Float32Array(dim)
    const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength)
    for (let i = 0; i < dim; i++) model[i] = view.getFloat32(i * 4, true)
  }
  for (let i = 0; i < dim; i++) {
    if (!Number.isFinite(model[i]!)) return { problem: 'non-finite' }
  }
  return { model }
}
