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

const CHACHA = 'chacha20-poly1305'
const TAG = 16
/** below this, the default's WebAssembly implementation is the faster one (its own threshold) */
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

type Sealed = ReturnType<ICryptoInterface['chaCha20Poly1305Encrypt']>

/**
 * Our `uint8arraylist` may be another major version than Noise's own; lists of either are
 * recognised by both (a `Symbol.for` brand and their `bufs`), only their declared types differ.
 */
const asSealed = (list: Uint8ArrayList): Sealed => list as unknown as Sealed

export const noiseCrypto: ICryptoInterface = {
  ...defaultCrypto,
  chaCha20Poly1305Encrypt(plaintext, nonce, ad, k) {
    if (plaintext.byteLength < SMALL) return defaultCrypto.chaCha20Poly1305Encrypt(plaintext, nonce, ad, k)
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
    if (ciphertext.byteLength < SMALL) return defaultCrypto.chaCha20Poly1305Decrypt(ciphertext, nonce, ad, k, dst)
    const end = ciphertext.byteLength - TAG
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
