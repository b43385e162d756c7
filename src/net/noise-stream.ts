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
 * Likewise each outgoing message is encrypted into a buffer its connection uses again once the
 * socket has written it (`leanWrite`), instead of the fresh buffers of Node's cipher.
 */
import { Socket } from 'node:net'
import { type NoiseComponents, type NoiseExtensions, type NoiseInit, noise } from '@chainsafe/libp2p-noise'
import { type ConnectionEncrypter, InvalidParametersError, type SecuredConnection } from '@libp2p/interface'
import { Uint8ArrayList } from 'uint8arraylist'
import { IN_PLACE, noiseCrypto, sealingInto, sealsInto } from './noise-crypto.ts'

/** ChaCha20-Poly1305's tag: the shortest valid Noise transport message. */
const TAG_BYTES = 16
/** The longest Noise transport message (its 2-byte length) … */
const MAX_MESSAGE_BYTES = 65535
/** … and the most plaintext one holds (the library's `NOISE_MSG_MAX_LENGTH_BYTES_WITHOUT_TAG`). */
const MAX_PLAINTEXT_BYTES = MAX_MESSAGE_BYTES - TAG_BYTES
/** What the library's decoder may buffer (its `maxBufferSize`). */
export const NOISE_MAX_BUFFER_BYTES = 16 * 1024 * 1024

/**
 * Connections whose reading was replaced, and those left as the library made them; connections
 * whose writing was replaced (`leanWrite`), and those left as the library made them.
 */
export const leanNoiseStats = { replaced: 0, unchanged: 0, writesReplaced: 0, writesUnchanged: 0 }

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
  encrypt?(plaintext: Uint8Array | Uint8ArrayList): Uint8Array | Uint8ArrayList
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
  metrics?: { decryptedPackets?: { increment(): void }; decryptErrors?: { increment(): void }; encryptedPackets?: { increment(): void } }
  sendData?: unknown
  /** the connection Noise secures: a TCP connection of `@libp2p/tcp` 11 holds its socket */
  stream?: {
    send?: unknown
    writeBufferLength?: unknown
    socket?: unknown
    addEventListener?: unknown
  }
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

/** A Noise message's buffer: its 2-byte length and the longest message. */
const SEAL_BUFFER_BYTES = 2 + MAX_MESSAGE_BYTES
/** Free buffers a connection keeps between sends (more in flight are collected when freed). */
const SEAL_BUFFERS_KEPT = 4

/**
 * Noise messages' buffers (`SealBuffers`) allocated, and taken again once freed, since start; and
 * the times buffers in flight were found still held by the connection or its socket.
 */
export const sealBufferStats = { allocated: 0, reused: 0, held: 0 }

/**
 * The buffers one connection writes its outgoing Noise messages into, each used again once nothing
 * can read it any more: `released()` says when everything handed to the connection has left
 * the process (nothing queued in the connection, nothing in its socket's queue).
 */
export class SealBuffers {
  private readonly free: Uint8Array[] = []
  private readonly inFlight: Uint8Array[] = []

  private readonly released: () => boolean

  constructor(released: () => boolean) {
    this.released = released
  }

  /** A buffer of `SEAL_BUFFER_BYTES` for one message: a free one, or a new one. */
  take(): Uint8Array {
    const buffer = this.free.pop()
    if (buffer !== undefined) {
      sealBufferStats.reused++
      return buffer
    }
    sealBufferStats.allocated++
    return Buffer.allocUnsafeSlow(SEAL_BUFFER_BYTES)
  }

  /** `buffer` was not used after all: free again. */
  putBack(buffer: Uint8Array): void {
    if (this.free.length < SEAL_BUFFERS_KEPT) this.free.push(buffer)
  }

  /** `buffer` was handed to the connection: it is freed by the first `settle` after it has left. */
  sending(buffer: Uint8Array): void {
    this.inFlight.push(buffer)
  }

  /** Frees the buffers in flight when nothing handed to the connection is waiting any more. */
  settle(): void {
    if (this.inFlight.length === 0) return
    if (!this.released()) {
      sealBufferStats.held++
      return
    }
    for (const buffer of this.inFlight) this.putBack(buffer)
    this.inFlight.length = 0
  }
}

/** The library's framing of one sealed message: its 2-byte big-endian length, then the message. */
function appendFramed(out: Uint8ArrayList, sealed: Uint8Array | Uint8ArrayList): void {
  const length = new Uint8Array(2)
  length[0] = sealed.byteLength >> 8
  length[1] = sealed.byteLength & 0xff
  out.append(length)
  out.append(sealed)
}

/**
 * Replaces the writing of one secured connection, when it runs over a TCP socket, and returns the
 * connection's buffers; undefined when it cannot (then it is left as the library made it). The library encrypts each message of up to
 * 65 519 bytes into fresh buffers (Node's cipher returns new ones) and hands the connection its
 * length, ciphertext and tag. Here each message — length, ciphertext, tag — is written into one
 * buffer of the connection's `SealBuffers` (`sealingInto`, noise-crypto.ts), which is used again
 * once the connection has nothing queued and the socket nothing unwritten: Node writes a buffer
 * to the kernel in the `write` call itself when it can, and otherwise keeps it, counted in the
 * socket's `writableLength`, until it has. Messages `noiseCrypto` cannot seal into a buffer
 * (short ones, no native addon) are encrypted as the library does. The bytes on the wire are the
 * library's. Only for connections whose crypto is `noiseCrypto`.
 */
export function leanWrite(connection: object): SealBuffers | undefined {
  const s = connection as LibraryStream
  const handshake = s.handshake
  const stream = s.stream
  const socket = stream?.socket
  const encrypt = handshake?.encrypt
  if (
    handshake === undefined ||
    typeof encrypt !== 'function' ||
    typeof s.sendData !== 'function' ||
    typeof stream?.send !== 'function' ||
    typeof stream.writeBufferLength !== 'number' ||
    typeof stream.addEventListener !== 'function' ||
    !(socket instanceof Socket)
  ) {
    leanNoiseStats.writesUnchanged++
    return undefined
  }
  const send = stream.send.bind(stream) as (data: Uint8ArrayList) => boolean
  const buffers = new SealBuffers(() => stream.writeBufferLength === 0 && socket.writableLength === 0)
  s.sendData = (data: Uint8Array | Uint8ArrayList) => {
    const out = new Uint8ArrayList()
    // at most as many messages as buffers are kept: the stream sends the rest in its next call,
    // by which time the socket has usually written these and they are free again
    const total = Math.min(data.byteLength, SEAL_BUFFERS_KEPT * MAX_PLAINTEXT_BYTES)
    for (let start = 0; start < total; start += MAX_PLAINTEXT_BYTES) {
      const end = Math.min(start + MAX_PLAINTEXT_BYTES, total)
      const chunk = data instanceof Uint8Array ? data.subarray(start, end) : data.sublist(start, end)
      if (sealsInto(end - start)) {
        const length = end - start + TAG_BYTES
        const buffer = buffers.take()
        const message = buffer.subarray(0, 2 + length)
        message[0] = length >> 8
        message[1] = length & 0xff
        const target = message.subarray(2)
        const sealed = sealingInto(target, () => encrypt.call(handshake, chunk))
        if (sealed === target) {
          out.append(message)
          buffers.sending(buffer)
        } else {
          buffers.putBack(buffer)
          appendFramed(out, sealed)
        }
      } else {
        appendFramed(out, encrypt.call(handshake, chunk))
      }
      s.metrics?.encryptedPackets?.increment()
    }
    const canSendMore = send(out)
    buffers.settle()
    return { sentBytes: total, canSendMore }
  }
  stream.addEventListener('drain', () => buffers.settle())
  leanNoiseStats.writesReplaced++
  return buffers
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
      // a buffer given to encrypt into means something only to monna's crypto too
      if (inPlace) leanWrite(secured.connection)
      return secured
    }
    const encrypter: ConnectionEncrypter<NoiseExtensions> = Object.create(inner)
    encrypter.secureInbound = async (connection, options) => lean(await inner.secureInbound(connection, options))
    encrypter.secureOutbound = async (connection, options) => lean(await inner.secureOutbound(connection, options))
    return encrypter
  }
}
