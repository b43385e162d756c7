/**
 * Small byte arrays (frame metas, hashes and signatures read off the wire, signed statements)
 * cut from shared slabs instead of each getting an ArrayBuffer of its own.
 *
 * Why: in an in-process swarm (26 members, one heap of ≈ 1.5 GB) V8's profile put ≈ 3 % of a
 * round on single lines that only allocate a small typed array (`new Uint8Array(150)`) or ask
 * one for its `.buffer` (a ≤ 64-byte array lives on the heap until then): each makes a backing
 * store of its own. A view into a slab makes none. Every slab is fresh (zero-filled) and its
 * bytes are handed out once, so two arrays never share a byte; a slab lives as long as any
 * array cut from it (at most `SLAB_BYTES`, pinned by a hash kept for a few rounds).
 */
const SLAB_BYTES = 64 * 1024
/** larger arrays get their own buffer */
const MAX_SMALL = 4096

let slab = new ArrayBuffer(SLAB_BYTES)
let used = 0

/** A zero-filled array of `n` bytes, a view into a shared slab when small. */
export function smallBytes(n: number): Uint8Array {
  if (n > MAX_SMALL) return new Uint8Array(n)
  if (used + n > SLAB_BYTES) {
    slab = new ArrayBuffer(SLAB_BYTES)
    used = 0
  }
  const b = new Uint8Array(slab, used, n)
  used += (n + 7) & ~7
  return b
}

/** A copy of `src` in a slab (see `smallBytes`). */
export function smallCopy(src: Uint8Array): Uint8Array {
  const b = smallBytes(src.byteLength)
  b.set(src)
  return b
}
