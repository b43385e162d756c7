/**
 * The wire form of a model: θ as little-endian float32 bytes, d·4 bytes. Decoding checks the
 * exact length and that every entry is finite before anything else touches the vector.
 */

/** Why a delivered payload was not accepted as a model. */
export type PayloadProblem = 'bad-length' | 'non-finite'

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
export function decodeModel(bytes: Uint8Array, dim: number): { model: Float32Array } | { problem: PayloadProblem } {
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
