/**
 * `npm run bench:noise-crypto`: µs per Noise transport message, encrypted and decrypted, by the
 * library's default crypto (`@chainsafe/libp2p-noise`: WebAssembly below 1,200 bytes, Node's cipher
 * above) and by monna's `noiseCrypto` (src/net/noise-crypto.ts: the native addon's OpenSSL
 * ChaCha20-Poly1305 — short messages into a fresh buffer, decryption in place as a lean reader asks
 * for it), side by side in one process, alternated `BENCH_REPEAT` times (default 3). Sizes: short
 * messages (echoes, certificates, gossip) up to a full 64 KiB Noise message. Prints '#' lines for
 * people and one JSON figure per line, with the machine.
 *
 *   BENCH_REPEAT=3 npm run bench:noise-crypto
 */
import { randomBytes } from 'node:crypto'
import { cpus, loadavg } from 'node:os'
import { defaultCrypto } from '@chainsafe/libp2p-noise/crypto'
import { nativeChacha } from '../../src/compute/native.ts'
import { IN_PLACE, noiseCrypto } from '../../src/net/noise-crypto.ts'

const REPEAT = Number(process.env.BENCH_REPEAT ?? 3)
const SIZES = [100, 300, 1_100, 4_000, 65_519]
const machine = { cpu: cpus()[0]?.model.replace(/\s+\d+-Core Processor/, '').trim(), cores: cpus().length, node: process.version, load: loadavg().map((l) => Number(l.toFixed(1))) }
const figure = (o: Record<string, unknown>): void => console.log(JSON.stringify({ bench: 'noise-crypto', ...o, machine }))
if (nativeChacha() === undefined) throw new Error('the native addon with OpenSSL ChaCha20-Poly1305 is not available: npm run build:native (MONNA_NATIVE must not be off)')

const k = randomBytes(32)
const nonce = randomBytes(12)
const ad = new Uint8Array(0)
const flat = (b: Uint8Array | { subarray(): Uint8Array }): Uint8Array => (b instanceof Uint8Array ? b : b.subarray())

/** µs per call of `fn` over `n` calls (after a warm-up of n / 10). */
function time(n: number, fn: () => void): number {
  for (let i = 0; i < n / 10; i++) fn()
  const t = performance.now()
  for (let i = 0; i < n; i++) fn()
  return ((performance.now() - t) / n) * 1000
}

figure({ case: 'machine' })
for (const size of SIZES) {
  const plain = randomBytes(size)
  // a plain Uint8Array: its slice() copies (a Buffer's is a view)
  const sealed = Uint8Array.from(flat(defaultCrypto.chaCha20Poly1305Encrypt(plain, nonce, ad, k)))
  const n = size > 10_000 ? 5_000 : 50_000
  const r = { defaultEncrypt: [] as number[], monnaEncrypt: [] as number[], defaultDecrypt: [] as number[], monnaDecryptInPlace: [] as number[] }
  // a fresh copy per decryption on both sides (a reader's message is its own bytes), so both pay it
  for (let rep = 0; rep < REPEAT; rep++) {
    r.defaultEncrypt.push(time(n, () => defaultCrypto.chaCha20Poly1305Encrypt(plain, nonce, ad, k)))
    r.monnaEncrypt.push(time(n, () => noiseCrypto.chaCha20Poly1305Encrypt(plain, nonce, ad, k)))
    r.defaultDecrypt.push(time(n, () => defaultCrypto.chaCha20Poly1305Decrypt(sealed.slice(), nonce, ad, k)))
    r.monnaDecryptInPlace.push(time(n, () => noiseCrypto.chaCha20Poly1305Decrypt(sealed.slice(), nonce, ad, k, IN_PLACE)))
  }
  const round = (xs: number[]): number[] => xs.map((x) => Number(x.toFixed(2)))
  const med = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!
  console.log(`# ${size} bytes: encrypt ${med(r.defaultEncrypt).toFixed(2)} → ${med(r.monnaEncrypt).toFixed(2)} µs, decrypt ${med(r.defaultDecrypt).toFixed(2)} → ${med(r.monnaDecryptInPlace).toFixed(2)} µs (default → monna, medians)`)
  figure({ case: 'message', bytes: size, usDefaultEncrypt: round(r.defaultEncrypt), usMonnaEncrypt: round(r.monnaEncrypt), usDefaultDecrypt: round(r.defaultDecrypt), usMonnaDecryptInPlace: round(r.monnaDecryptInPlace) })
}
