/**
 * Frames over a libp2p 3 stream (an event target): an incremental reader that checks each
 * header and meta the moment their bytes arrive — before the payload is buffered — and a writer
 * that honours back-pressure (`send()` returning false means: wait for 'drain').
 *
 * Bounds the reader keeps, whatever the remote sends:
 * - a frame's header is decoded as soon as its 12 bytes are in (in the 'message' handler, not
 *   when the consumer next asks), so the buffer never holds more than the frame being read plus
 *   the chunk that completed it: no honest sender, however large its frame, is refused for
 *   bytes that arrived "too early";
 * - once a frame is complete and nobody has consumed it the stream is paused (yamux then stops
 *   granting window), so pipelined frames wait in the sender instead of piling up here;
 * - each frame must arrive within `frameBaseMs + payloadLength / minBytesPerSecond`: a peer that
 *   trickles (one byte per second keeps any idle timer happy) is cut with reason `slow`;
 * - `onHeader` may reserve the frame's payload against a budget and return the release, which
 *   runs when the frame is handed over, refused, or the stream ends with it incomplete.
 *
 * A payload that does not arrive in the chunk that completed its meta (over TCP: a 1.7 MB model
 * comes in ≈ 27 decrypted chunks) is copied, chunk by chunk, into a buffer of its declared length
 * (already bounded by `maxPayloadBytes` and reserved by `onHeader`), and each chunk is let go at
 * once — instead of holding every chunk until the last one and joining them then. Over the memory
 * transport a frame is one chunk, handed over as before.
 */
import type { AbortOptions, Stream } from '@libp2p/interface'
import { Uint8ArrayList } from 'uint8arraylist'
import { onAbort } from '../abort.ts'
import { payloadBytes } from '../compute/native.ts'
import { AbortError } from '../errors.ts'
import { knownPayload } from './crypto.ts'
import { BroadcastRejectError } from './errors.ts'
import { decodeHeader, decodeMeta, type Frame, type FrameHeader, HEADER_BYTES, type WireLimits } from './wire.ts'

export interface ReadFrameResult {
  frame: Frame
  header: FrameHeader
  bytes: number
}

export const frameReaderDefaults = {
  /**
   * Slowest rate a frame may arrive at. 64 KiB/s moves a 1.7 MB LeNet model in 27 s and a 30 MB
   * one in 8 min; a link slower than that cannot take part in rounds anyway.
   */
  minBytesPerSecond: 64 * 1024,
  /** Time every frame gets on top of its size (round trips, a busy event loop). */
  frameBaseMs: 10_000,
}

export interface FrameReaderOptions extends WireLimits {
  /**
   * Called with every header before its body is buffered; throw to refuse the frame. May return
   * a release function (e.g. of a budget reservation), called once the frame is handed over,
   * refused, or abandoned.
   */
  onHeader?: (header: FrameHeader) => (() => void) | undefined
  /** Called with a decoded frame before its payload is buffered (payload still empty); throw to refuse. */
  onMeta?: (frame: Frame, header: FrameHeader) => void
  /** Called with each received chunk's size (byte accounting). */
  onBytes?: (n: number) => void
  /** Called whenever a frame completes (progress, for callers that hedge on slow peers). */
  onFrame?: () => void
  minBytesPerSecond?: number
  frameBaseMs?: number
  /** A stream that starts no frame for this long ends quietly (`next()` resolves null). */
  idleMs?: number
}

interface Pending {
  header: FrameHeader
  total: number
  metaEnd: number
  frame?: Frame
  release?: () => void
  timer?: ReturnType<typeof setTimeout>
  /** the payload being assembled, once its bytes come in more than one chunk (then `buf` holds none of this frame) */
  payload?: Uint8Array
  /** payload bytes copied into `payload` so far */
  filled: number
}

type PayloadFrame = Extract<Frame, { type: 'SEND' | 'PAYLOAD' | 'FINAL' }>
const carriesPayload = (f: Frame): f is PayloadFrame => f.type === 'SEND' || f.type === 'PAYLOAD' || f.type === 'FINAL'

/** Chunks (stream 'message' events) and their bytes read by every FrameReader of this process, and frames written (benchmarks). */
export const chunkStats = { chunks: 0, bytes: 0, framesWritten: 0 }

/** Reads frames from a stream; `next()` resolves null at a clean end of stream. */
export class FrameReader {
  private readonly opts: FrameReaderOptions
  private readonly stream: Stream
  private readonly buf = new Uint8ArrayList()
  private pending: Pending | undefined
  private wake: (() => void) | undefined
  private ended = false
  private paused = false
  private failure: Error | undefined

  constructor(stream: Stream, opts: FrameReaderOptions) {
    this.opts = opts
    this.stream = stream
    stream.addEventListener('message', (evt) => {
      if (this.failure !== undefined) return
      chunkStats.chunks++
      chunkStats.bytes += evt.data.byteLength
      opts.onBytes?.(evt.data.byteLength)
      const rest = this.fill(evt.data)
      if (rest !== undefined) this.buf.append(rest)
      this.parse()
      this.notify()
    })
    const onEnd = (): void => {
      this.ended = true
      this.notify()
    }
    stream.addEventListener('remoteCloseWrite', onEnd)
    stream.addEventListener('close', (evt) => {
      if (evt.error !== undefined && this.failure === undefined) this.failure = evt.error
      // a frame that arrived whole is still handed over; one cut short is dropped (and released)
      if (this.failure !== undefined || this.pending === undefined || this.received(this.pending) < this.pending.total) this.abandon()
      onEnd()
    })
    if (stream.remoteWriteStatus !== 'writable' || stream.status !== 'open') this.ended = true
  }

  /** Decodes header and meta as soon as their bytes are in; pauses the stream on a complete frame. */
  private parse(): void {
    try {
      if (this.pending === undefined) {
        if (this.buf.byteLength < HEADER_BYTES) return
        const header = decodeHeader(this.buf.subarray(0, HEADER_BYTES), this.opts)
        const metaEnd = HEADER_BYTES + header.metaLength
        const p: Pending = { header, metaEnd, total: metaEnd + header.payloadLength, filled: 0 }
        this.pending = p
        p.release = this.opts.onHeader?.(header) ?? undefined
        const rate = this.opts.minBytesPerSecond ?? frameReaderDefaults.minBytesPerSecond
        const ms = (this.opts.frameBaseMs ?? frameReaderDefaults.frameBaseMs) + (1000 * p.total) / rate
        p.timer = setTimeout(() => {
          this.fail(new BroadcastRejectError('slow', `a ${header.type} frame of ${p.total} bytes did not arrive within ${Math.round(ms)} ms (${this.received(p)} bytes in)`))
          this.stream.abort(this.failure!)
        }, ms)
      }
      const p = this.pending
      if (p.frame === undefined && this.buf.byteLength >= p.metaEnd) {
        p.frame = decodeMeta(p.header, this.buf.subarray(HEADER_BYTES, p.metaEnd), undefined)
        this.opts.onMeta?.(p.frame, p.header)
        if (carriesPayload(p.frame) && p.header.payloadLength > 0 && this.buf.byteLength < p.total) {
          // the payload comes in more chunks: assemble it in place from here on, starting with
          // its bytes already here (all of `buf` past the meta belongs to this frame)
          p.payload = payloadBytes(p.header.payloadLength)
          const first = this.buf.sublist(p.metaEnd)
          this.buf.consume(this.buf.byteLength)
          this.fill(first)
        }
      }
      if (this.received(p) >= p.total) {
        clearTimeout(p.timer)
        if (!this.paused) {
          // nobody may be reading yet: let the remote wait instead of buffering what follows
          this.paused = true
          this.stream.pause()
        }
      }
    } catch (err) {
      this.fail(err instanceof Error ? err : new Error(String(err)))
    }
  }

  /** Bytes of frame `p` received so far. */
  private received(p: Pending): number {
    return p.payload === undefined ? this.buf.byteLength : p.metaEnd + p.filled
  }

  /**
   * Copies what of `data` belongs to the payload being assembled into it; returns the rest (the
   * start of the next frame), or `data` itself when no payload is being assembled.
   */
  private fill(data: Uint8Array | Uint8ArrayList): Uint8Array | Uint8ArrayList | undefined {
    const p = this.pending
    if (p?.payload === undefined || p.filled === p.header.payloadLength) return data
    const n = Math.min(data.byteLength, p.header.payloadLength - p.filled)
    if (data instanceof Uint8Array) p.payload.set(n === data.byteLength ? data : data.subarray(0, n), p.filled)
    else {
      let left = n
      let o = p.filled
      for (const part of data) {
        if (left === 0) break
        const take = Math.min(left, part.byteLength)
        p.payload.set(take === part.byteLength ? part : part.subarray(0, take), o)
        o += take
        left -= take
      }
    }
    p.filled += n
    if (n === data.byteLength) return undefined
    return data instanceof Uint8Array ? data.subarray(n) : data.sublist(n)
  }

  private fail(err: Error): void {
    if (this.failure === undefined) this.failure = err
    this.buf.consume(this.buf.byteLength)
    this.abandon()
    this.notify()
  }

  /** Drops the frame in progress and runs its release. */
  private abandon(): void {
    const p = this.pending
    this.pending = undefined
    if (p === undefined) return
    clearTimeout(p.timer)
    p.release?.()
  }

  private notify(): void {
    const w = this.wake
    this.wake = undefined
    w?.()
  }

  /** Waits until `ready()` or the stream ends; false when it ended first. */
  private async until(ready: () => boolean, options?: AbortOptions, idleMs?: number): Promise<boolean> {
    let idle: ReturnType<typeof setTimeout> | undefined
    let idleExpired = false
    let drained = false
    try {
      while (!ready()) {
        if (this.failure !== undefined) throw this.failure
        if (this.ended && !drained) {
          // a stream whose remote closed before this reader was attached still has its bytes
          // queued as 'message' events: let them be delivered before concluding it ended
          drained = true
          await new Promise<void>((resolve) => setImmediate(resolve))
          continue
        }
        if (this.ended || idleExpired) return false
        options?.signal?.throwIfAborted()
        if (idleMs !== undefined && idle === undefined) {
          idle = setTimeout(() => {
            idleExpired = true
            this.notify()
          }, idleMs)
        }
        await new Promise<void>((resolve, reject) => {
          const signal = options?.signal
          const forget = signal === undefined ? undefined : onAbort(signal, () => reject(new AbortError()))
          this.wake = () => {
            forget?.()
            resolve()
          }
        })
      }
    } finally {
      clearTimeout(idle)
    }
    if (this.failure !== undefined) throw this.failure
    return true
  }

  /** The next frame, or null when the remote closed its end (or stayed idle past `idleMs`) between frames. */
  async next(options?: AbortOptions): Promise<ReadFrameResult | null> {
    if (this.failure !== undefined) throw this.failure
    if (this.paused && (this.pending === undefined || this.received(this.pending) < this.pending.total)) {
      this.paused = false
      this.stream.resume()
    }
    if (!(await this.until(() => this.pending !== undefined, options, this.opts.idleMs)) && this.pending === undefined) {
      if (this.buf.byteLength === 0) return null
      // not blamed: a sender that gave up (its request timed out under load) or a reset
      // connection cut a frame as a Byzantine peer would — and costs it the same bytes
      throw new BroadcastRejectError('malformed', `stream ended inside a frame header (${this.buf.byteLength} bytes)`, false)
    }
    const p = this.pending!
    if (!(await this.until(() => this.received(p) >= p.total, options))) {
      // not blamed, as above (CI under load: an honest 24 MiB SEND cut at 12.5 MiB by its sender's
      // 30 s request timeout, then re-sent — and its two receivers blamed it)
      throw new BroadcastRejectError('malformed', `stream ended inside a ${p.header.type} frame (${this.received(p)}/${p.total} bytes)`, false)
    }
    const frame = p.frame!
    if (p.payload !== undefined) {
      // assembled from its chunks (nothing of it is in `buf`); a copy of a payload this process
      // already checked under the declared hash is answered with that one (one copy kept)
      if (carriesPayload(frame)) frame.payload = knownPayload([p.payload], p.header.payloadLength, frame.hash) ?? p.payload
    } else {
      if (p.header.payloadLength > 0 && carriesPayload(frame)) {
        // members of one process receive copies of the same payloads: an exact copy of one already
        // checked under the declared hash is answered with that one, without joining the pieces
        const parts = this.buf.sublist(p.metaEnd, p.total)
        frame.payload = knownPayload(parts, p.header.payloadLength, frame.hash) ?? parts.slice()
      }
      this.buf.consume(p.total)
    }
    this.abandon()
    this.opts.onFrame?.()
    // the chunk that completed this frame may hold the start of the next one
    this.parse()
    return { frame, header: p.header, bytes: p.total }
  }
}

/**
 * Writes the parts of an encoded frame as one message (a list of the parts, not a copy: on the
 * memory transport a SEND is then one yamux frame and one chunk instead of a small one for its
 * header and meta and another for the payload), waiting for 'drain' under back-pressure.
 */
export async function writeParts(stream: Stream, parts: Uint8Array[], options?: AbortOptions): Promise<number> {
  let n = 0
  for (const p of parts) n += p.byteLength
  if (parts.length === 0) return 0
  chunkStats.framesWritten++
  const data = parts.length === 1 ? parts[0]! : new Uint8ArrayList(...parts)
  if (!stream.send(data)) await stream.onDrain(options)
  return n
}
