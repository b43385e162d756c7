/**
 * Frames over a libp2p 3 stream (an event target): an incremental reader that checks each
 * header before buffering its body, and a writer that honours back-pressure (`send()`
 * returning false means: wait for 'drain').
 */
import type { AbortOptions, Stream } from '@libp2p/interface'
import { Uint8ArrayList } from 'uint8arraylist'
import { AbortError } from '../errors.ts'
import { BroadcastRejectError } from './errors.ts'
import { decodeHeader, decodeMeta, type Frame, type FrameHeader, HEADER_BYTES, MAX_META_BYTES, type WireLimits } from './wire.ts'

export interface ReadFrameResult {
  frame: Frame
  header: FrameHeader
  bytes: number
}

export interface FrameReaderOptions extends WireLimits {
  /** Called with every header before its body is buffered; throw to refuse the frame. */
  onHeader?: (header: FrameHeader) => void
  /** Called with a decoded frame before its payload is buffered (payload still empty); throw to refuse. */
  onMeta?: (frame: Frame, header: FrameHeader) => void
  /** Called with each received chunk's size (byte accounting). */
  onBytes?: (n: number) => void
}

/** Reads frames from a stream; `next()` resolves null at a clean end of stream. */
export class FrameReader {
  private readonly opts: FrameReaderOptions
  private readonly buf = new Uint8ArrayList()
  private wake: (() => void) | undefined
  private ended = false
  private failure: Error | undefined
  /** Bytes we accept to hold: the frame being read plus the next header and meta. */
  private allowance: number

  constructor(stream: Stream, opts: FrameReaderOptions) {
    this.opts = opts
    this.allowance = HEADER_BYTES + MAX_META_BYTES
    stream.addEventListener('message', (evt) => {
      if (this.failure !== undefined) return
      this.buf.append(evt.data)
      opts.onBytes?.(evt.data.byteLength)
      if (this.buf.byteLength > this.allowance + HEADER_BYTES + MAX_META_BYTES) {
        this.failure = new BroadcastRejectError('oversized', `peer sent ${this.buf.byteLength} bytes beyond the frame being read`)
        this.buf.consume(this.buf.byteLength)
      }
      this.notify()
    })
    const onEnd = (): void => {
      this.ended = true
      this.notify()
    }
    stream.addEventListener('remoteCloseWrite', onEnd)
    stream.addEventListener('close', (evt) => {
      if (evt.error !== undefined && this.failure === undefined) this.failure = evt.error
      onEnd()
    })
    if (stream.remoteWriteStatus !== 'writable' || stream.status !== 'open') this.ended = true
  }

  private notify(): void {
    const w = this.wake
    this.wake = undefined
    w?.()
  }

  private async fill(n: number, options?: AbortOptions): Promise<boolean> {
    while (this.buf.byteLength < n) {
      if (this.failure !== undefined) throw this.failure
      if (this.ended) return false
      options?.signal?.throwIfAborted()
      await new Promise<void>((resolve, reject) => {
        const signal = options?.signal
        const onAbort = (): void => reject(new AbortError())
        this.wake = () => {
          signal?.removeEventListener('abort', onAbort)
          resolve()
        }
        signal?.addEventListener('abort', onAbort, { once: true })
      })
    }
    if (this.failure !== undefined) throw this.failure
    return true
  }

  /** The next frame, or null when the remote closed its end between frames. */
  async next(options?: AbortOptions): Promise<ReadFrameResult | null> {
    if (!(await this.fill(HEADER_BYTES, options))) {
      if (this.buf.byteLength === 0) return null
      throw new BroadcastRejectError('malformed', `stream ended inside a frame header (${this.buf.byteLength} bytes)`)
    }
    const header = decodeHeader(this.buf.subarray(0, HEADER_BYTES), this.opts)
    this.opts.onHeader?.(header)
    const total = HEADER_BYTES + header.metaLength + header.payloadLength
    this.allowance = total
    const metaEnd = HEADER_BYTES + header.metaLength
    if (!(await this.fill(metaEnd, options))) {
      throw new BroadcastRejectError('malformed', `stream ended inside a ${header.type} frame's meta (${this.buf.byteLength}/${metaEnd} bytes)`)
    }
    const frame = decodeMeta(header, this.buf.subarray(HEADER_BYTES, metaEnd), undefined)
    this.opts.onMeta?.(frame, header)
    if (!(await this.fill(total, options))) {
      throw new BroadcastRejectError('malformed', `stream ended inside a ${header.type} frame (${this.buf.byteLength}/${total} bytes)`)
    }
    if (header.payloadLength > 0 && (frame.type === 'SEND' || frame.type === 'PAYLOAD' || frame.type === 'FINAL')) {
      frame.payload = this.buf.slice(metaEnd, total)
    }
    this.buf.consume(total)
    this.allowance = HEADER_BYTES + MAX_META_BYTES
    return { frame, header, bytes: total }
  }
}

/** Writes the parts of an encoded frame, waiting for 'drain' under back-pressure. */
export async function writeParts(stream: Stream, parts: Uint8Array[], options?: AbortOptions): Promise<number> {
  let n = 0
  for (const p of parts) {
    if (!stream.send(p)) await stream.onDrain(options)
    n += p.byteLength
  }
  return n
}
