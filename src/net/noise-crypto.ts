/**
 * Noise's symmetric crypto (ChaCha20-Poly1305) through Node's OpenSSL with the session key
 * prepared once: the same algorithms and bytes as `@chainsafe/libp2p-noise`'s default (which it
 * extends; handshake, hashing and X25519 are its own), wire-compatible with any Noise peer.
 *
 * Why: every member pushes its model (1.7 MB for LeNet) to n − 1 others each round, in Noise
 * frames of at most 64 KiB, each one encrypted and decrypted with a fresh cipher. The default
 * passes the raw 32-byte key to `createCipheriv`, which builds a secret KeyObject every frame,
 * and joins ciphertext and tag with `Buffer.concat` (a copy of every frame). Keeping the
 * KeyObject of each cipher state's key and handing ciphertext and tag over as a list measured
 * 596 → 1021 MB/s for 64 KiB frames on the project's 2-core machine.
 */
import { createCipheriv, createDecipheriv, createSecretKey, type KeyObject } from 'node:crypto'
import type { ICryptoInterface } from '@chainsafe/libp2p-noise'
import { defaultCrypto } from '@chainsafe/libp2p-noise/crypto'
import { Uint8ArrayList } from 'uint8arraylist'
import { nativeChacha } from '../compute/native.ts'

const CHACHA = 'chacha20-poly1305'
const TAG = 16
/**
 * Below this, the default's WebAssembly implementation is faster than Node's cipher (the
 * default's own threshold). With the native addon, short messages are encrypted and decrypted by
 * it too: faster than the WebAssembly at every size (`npm run bench:noise-crypto`).
 */
const SMALL = 1200

/**
 * KeyObjects by the key array a Noise cipher state holds for its lifetime (its `k`); the bytes are
 * compared on every use, so a key array rewritten in place is never used with a stale key.
 */
const keys = new WeakMap<Uint8Array, { bytes: Uint8Array; key: KeyObject }>()

function keyObject(k: Uint8Array): KeyObject {
  const known = keys.get(k)
  if (known !== undefined && Buffer.compare(known.bytes, k) === 0) return known.key
  const bytes = Uint8Array.from(k)
  const key = createSecretKey(bytes)
  keys.set(k, { bytes, key })
  return key
}

function asBuffer(b: Uint8Array): Buffer {
  return Buffer.isBuffer(b) ? b : Buffer.from(b.buffer, b.byteOffset, b.byteLength)
}

/**
 * `dst` for `noiseCrypto`'s decrypt meaning: write the plaintext over the ciphertext itself, which
 * the caller owns (`leanRead` passes it: the bytes of a message its decoder has consumed). Node's
 * decipher writes every message into a fresh buffer; at 26 member processes on 2 cores those
 * buffers cost more CPU than the cipher (docs/scale.md). Done by the native addon with the
 * running Node's OpenSSL; without it, the message is decrypted into a fresh buffer as before.
 * Only `noiseCrypto` understands it: other implementations must never be given it.
 */
export const IN_PLACE: Uint8Array = new Uint8Array(0)

/**
 * Messages decrypted over themselves (IN_PLACE with the native addon), messages encrypted into
 * a buffer the caller gave (`sealingInto`), and short ones (< 1,200 bytes) encrypted by the addon
 * into a fresh buffer, since start.
 */
export const noiseCryptoStats = { inPlace: 0, sealedInto: 0, sealedShort: 0 }

/** The destination of the next encryption, set by `sealingInto` for the one call it makes. */
let sealTarget: Uint8Array | undefined

/**
 * Whether `noiseCrypto` can encrypt a plaintext of `length` bytes into a buffer given with
 * `sealingInto` (the native addon is there, and the plaintext is not one the default's
 * WebAssembly handles).
 */
export function sealsInto(length: number): boolean {
  return length >= SMALL && nativeChacha() !== undefined
}

/**
 * Runs `encrypt` — a Noise cipher state's encryption of one message, which calls `noiseCrypto` once
 * — with `dst` (the plaintext's length plus the 16-byte tag) as the destination of its ciphertext
 * and tag instead of fresh buffers, and returns what `encrypt` returned: `dst` itself when it was
 * written there (see `sealsInto`), the crypto's own result otherwise. Node's cipher writes every
 * message into new buffers; a sender that owns `dst` can use it again once it has been sent.
 */
export function sealingInto<T>(dst: Uint8Array, encrypt: () => T): T {
  sealTarget = dst
  try {
    return encrypt()
  } finally {
    sealTarget = undefined
  }
}

/** Node's own message for a tag that does not authenticate, so both ways fail alike. */
const UNAUTHENTIC = 'Unsupported state or unable to authenticate data'

type Sealed = ReturnType<ICryptoInterface['chaCha20Poly1305Encrypt']>

/**
 * Our `uint8arraylist` may be another major version than Noise's own; lists of either are
 * recognised by both (a `Symbol.for` brand and their `bufs`), only their declared types differ.
 */
const asSealed = (list: Uint8ArrayList): Sealed => list as unknown as Sealed

export const noiseCrypto: ICryptoInterface = {
  ...defaultCrypto,
  chaCha20Poly1305Encrypt(plaintext, nonce, ad, k) {
    // a destination is for this one call, whatever it does
    const dst = sealTarget
    sealTarget = undefined
    // with the addon: a short message into a fresh buffer, a longer one into a destination of its size
    const short = plaintext.byteLength < SMALL
    const into = !short && dst !== undefined && dst.byteLength === plaintext.byteLength + TAG ? dst : undefined
    const native = short || into !== undefined ? nativeChacha() : undefined
    if (native !== undefined) {
      const out = into ?? new Uint8Array(plaintext.byteLength + TAG)
      native.chachaSealInto(k, nonce, ad, plaintext instanceof Uint8Array ? [plaintext] : [...plaintext], out)
      if (into === undefined) noiseCryptoStats.sealedShort++
      else noiseCryptoStats.sealedInto++
      return out
    }
    if (short) return defaultCrypto.chaCha20Poly1305Encrypt(plaintext, nonce, ad, k)
    const cipher = createCipheriv(CHACHA, keyObject(k), nonce, { authTagLength: TAG })
    cipher.setAAD(ad, { plaintextLength: plaintext.byteLength })
    const out = new Uint8ArrayList()
    if (plaintext instanceof Uint8Array) out.append(cipher.update(plaintext))
    else for (const buf of plaintext) out.append(cipher.update(buf))
    const final = cipher.final()
    if (final.byteLength > 0) out.append(final)
    out.append(cipher.getAuthTag())
    return asSealed(out)
  },
  chaCha20Poly1305Decrypt(ciphertext, nonce, ad, k, dst) {
    // over its own bytes at any length with the addon (a message shorter than the tag: the default's error)
    const native = dst === IN_PLACE && ciphertext.byteLength >= TAG ? nativeChacha() : undefined
    if (native === undefined && ciphertext.byteLength < SMALL) return defaultCrypto.chaCha20Poly1305Decrypt(ciphertext, nonce, ad, k, dst === IN_PLACE ? undefined : dst)
    const end = ciphertext.byteLength - TAG
    if (native !== undefined) {
      // the tag is copied out when it spans two of the list's arrays; never written to
      const tag = ciphertext.subarray(end)
      const body = ciphertext instanceof Uint8Array ? ciphertext.subarray(0, end) : ciphertext.sublist(0, end)
      if (!native.chachaOpenInPlace(k, nonce, ad, body instanceof Uint8Array ? [body] : [...body], tag)) throw new Error(UNAUTHENTIC)
      noiseCryptoStats.inPlace++
      // the library's own list, already of its type
      return body
    }
    const decipher = createDecipheriv(CHACHA, keyObject(k), nonce, { authTagLength: TAG })
    decipher.setAAD(ad, { plaintextLength: end })
    decipher.setAuthTag(asBuffer(ciphertext.subarray(end)))
    if (ciphertext instanceof Uint8Array) {
      const text = decipher.update(ciphertext.subarray(0, end))
      const final = decipher.final()
      return final.byteLength > 0 ? Buffer.concat([text, final]) : text
    }
    const out = new Uint8ArrayList()
    for (const buf of ciphertext.sublist(0, end)) out.append(decipher.update(buf))
    const final = decipher.final()
    if (final.byteLength > 0) out.append(final)
    return asSealed(out)
  },
}
