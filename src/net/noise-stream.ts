/**
 * Noise's transport messages read without two per-message costs of `@chainsafe/libp2p-noise`
 * 17's stream layer; the handshake, the cipher states (keys, nonces) and the stream itself stay
 * the library's, and the bytes on the wire are unchanged.
 *
 * The library reads incoming messages (a 2-byte big-endian length, then that many bytes of
 * ciphertext and tag) with `@libp2p/utils`' generic `LengthPrefixedDecoder`, which learns that
 * fewer than two bytes are buffered by catching the length decoder's `RangeError` — an exception,
 * with its stack trace, at the end of nearly every socket read. Its `decrypt` then always prepares
 * an in-place destination, `chunk.subarray(…)` of the message: a message of ≈ 64 KiB spans two
 * socket reads (they are 64 KiB too), so that is a copy of almost every message, which Node's
 * cipher (`noiseCrypto`) never writes into. In `npm run bench:transport` both together were
 * ≈ 15 % of the CPU a payload costs over TCP + Noise + yamux (both ends).
 *
 * `leanNoise` returns the library's encrypter with each secured connection's decoder and decrypt
 * replaced by `NoiseMessageDecoder` and `decryptMessage` below: the same messages, the same
 * checks (a buffer over 16 MiB and a message shorter than its tag are refused; a message that does
 * not authenticate throws, and the library aborts the connection as before). Where a connection
 * does not have the fields this relies on (another version of the library), it is left as the
 * library made it and counted in `leanNoiseStats.unchanged` (a test fails on that).
 *
 * With monna's `noiseCrypto` (as `createNetNode` uses it), each message is also decrypted over its
 * own bytes instead of into a fresh buffer (`IN_PLACE`, noise-crypto.ts): in a swarm of member
 * processes on few cores, the fresh buffers of Node's decipher cost more than the cipher.
 */
import { type NoiseComponents, type NoiseExtensions, type NoiseInit, noise } from '@chainsafe/libp2p-noise'
import { type ConnectionEncrypter, InvalidParametersError, type SecuredConnection } from '@libp2p/interface'
import { Uint8ArrayList } from 'uint8arraylist'
import { IN_PLACE, noiseCrypto } from './noise-crypto.ts'

/** ChaCha20-Poly1305's tag: the shortest valid Noise transport message. */
const TAG_BYTES = 16
/** What the library's decoder may buffer (its `maxBufferSize`). */
export const NOISE_MAX_BUFFER_BYTES = 16 * 1024 * 1024

/** Connections whose reading was replaced, and those left as the library made them. */
export const leanNoiseStats = { replaced: 0, unchanged: 0 }

/**
 * Splits the bytes of a Noise connection into its messages: each a 2-byte big-endian length and
 * that many bytes. Yields each message without its length — a view of the received chunk when it
 * lies in one, a list of views otherwise; never a copy — and skips empty ones, as the library does.
 */
export class NoiseMessageDecoder {
  readonly buffer = new Uint8ArrayList()

  /** `buffered`: bytes an earlier decoder held (the start of a message), read before `data`. */
  constructor(buffered?: Uint8Array | Uint8ArrayList) {
    if (buffered !== undefined && buffered.byteLength > 0) this.buffer.append(buffered)
  }

  *decode(data: Uint8Array | Uint8ArrayList): Generator<Uint8Array | Uint8ArrayList> {
    const buf = this.buffer
    buf.append(data)
    if (buf.byteLength > NOISE_MAX_BUFFER_BYTES) {
      throw new InvalidParametersError(`Buffer length limit exceeded - ${buf.byteLength}/${NOISE_MAX_BUFFER_BYTES}`)
    }
    while (buf.byteLength >= 2) {
      const length = (buf.get(0) << 8) | buf.get(1)
      const end = 2 + length
      if (buf.byteLength < end) return
      const message = buf.sublist(2, end)
      buf.consume(end)
      if (length > 0) yield single(message) ?? message
    }
  }
}

/** The one part of a list of one part. */
function single(list: Uint8ArrayList): Uint8Array | undefined {
  let only: Uint8Array | undefined
  for (const part of list) {
    if (only !== undefined) return undefined
    only = part
  }
  return only
}

interface Sealer {
  decrypt(ciphertext: Uint8Array | Uint8ArrayList, dst?: Uint8Array): Uint8Array | Uint8ArrayList
}

/**
 * One Noise transport message decrypted (the library's `decrypt` for a message of at most 65 535
 * bytes, which is all the decoder yields), without the library's in-place destination (a copy of
 * a message spanning two reads); with `inPlace`, over the message's own bytes (`IN_PLACE`).
 */
export function decryptMessage(handshake: Sealer, message: Uint8Array | Uint8ArrayList, inPlace = false): Uint8Array | Uint8ArrayList {
  if (message.byteLength < TAG_BYTES) throw new Error('Invalid chunk')
  return inPlace ? handshake.decrypt(message, IN_PLACE) : handshake.decrypt(message)
}

/** The fields of the library's encrypted stream this replaces (`@chainsafe/libp2p-noise` 17). */
interface LibraryStream {
  handshake?: Sealer
  decoder?: { buffer?: Uint8ArrayList; decode?: unknown }
  decrypt?: unknown
  metrics?: { decryptedPackets?: { increment(): void }; decryptErrors?: { increment(): void } }
}

/**
 * Replaces the reading of one secured connection (see the module's comment); false when it cannot.
 * `inPlace` (only for connections whose crypto is `noiseCrypto`): each message is decrypted over
 * its own bytes (`IN_PLACE`), which the decoder has consumed and nothing else reads.
 */
export function leanRead(connection: object, inPlace = false): boolean {
  const s = connection as LibraryStream
  const handshake = s.handshake
  if (typeof handshake?.decrypt !== 'function' || typeof s.decoder?.decode !== 'function' || s.decoder.buffer === undefined || typeof s.decrypt !== 'function') {
    leanNoiseStats.unchanged++
    return false
  }
  // bytes the library's decoder already holds (the start of a message) are read first
  s.decoder = new NoiseMessageDecoder(s.decoder.buffer)
  s.decrypt = (message: Uint8Array | Uint8ArrayList) => {
    try {
      const plain = decryptMessage(handshake, message, inPlace)
      s.metrics?.decryptedPackets?.increment()
      return plain
    } catch (err) {
      s.metrics?.decryptErrors?.increment()
      throw err
    }
  }
  leanNoiseStats.replaced++
  return true
}

/** The library's Noise encrypter (`noise(init)`), its secured connections read by `leanRead`. */
export function leanNoise(init: NoiseInit = {}): (components: NoiseComponents) => ConnectionEncrypter<NoiseExtensions> {
  const make = noise(init)
  // IN_PLACE means something only to monna's crypto
  const inPlace = init.crypto === noiseCrypto
  return (components) => {
    const inner = make(components)
    const lean = (secured: SecuredConnection<NoiseExtensions>): SecuredConnection<NoiseExtensions> => {
      leanRead(secured.connection, inPlace)
      return secured
    }
    const encrypter: ConnectionEncrypter<NoiseExtensions> = Object.create(inner)
    encrypter.secureInbound = async (connection, options) => lean(await inner.secureInbound(connection, options))
    encrypter.secureOutbound = async (connection, options) => lean(await inner.secureOutbound(connection, options))
    return encrypter
  }
}
