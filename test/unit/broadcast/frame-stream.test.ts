import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import type { Stream } from '@libp2p/interface'
import { Uint8ArrayList } from 'uint8arraylist'
import { BroadcastRejectError } from '../../../src/broadcast/errors.ts'
import { FrameReader } from '../../../src/broadcast/frame-stream.ts'
import { encodeFrame, type Frame } from '../../../src/broadcast/wire.ts'
import { Rng } from '../../../src/rng.ts'

const sender = '12D3KooWKnDdG3iXw9eTFijk3EWSunZcFi54Zka4wmtqtt6rPxc8'
const limits = { maxPayloadBytes: 1 << 20 }

/**
 * The stream side FrameReader uses — 'message' events carrying a chunk (a Uint8Array or a list of
 * pieces, as libp2p's streams deliver them), the remote closing its end, pause/resume — driven by
 * the test chunk by chunk, so that every split of the bytes can be tried.
 */
class ChunkedStream extends EventTarget {
  status = 'open'
  remoteWriteStatus = 'writable'
  pauses = 0
  pause(): void {
    this.pauses++
  }
  resume(): void {}
  abort(err: Error): void {
    this.status = 'aborted'
    this.dispatchEvent(Object.assign(new Event('close'), { error: err }))
  }
  push(data: Uint8Array | Uint8ArrayList): void {
    this.dispatchEvent(Object.assign(new Event('message'), { data }))
  }
  end(): void {
    this.remoteWriteStatus = 'closed'
    this.dispatchEvent(new Event('remoteCloseWrite'))
  }
  /** both ends closed, as libp2p reports it after the remote's end */
  close(): void {
    this.status = 'closed'
    this.dispatchEvent(new Event('close'))
  }
}

function bytes(rng: Rng, n: number): Uint8Array {
  const b = new Uint8Array(n)
  for (let i = 0; i < n; i++) b[i] = rng.int(256)
  return b
}

function randomFrame(rng: Rng, i: number): Frame {
  const hash = bytes(rng, 32)
  const base = { swarmId: 's', epoch: 0, round: i, sender }
  // payloads from empty to 200 KB: most span many chunks, some fit in one
  const size = [0, 1, 3, 100, 4096, 65_507, 65_508, 200_000][rng.int(8)]! + rng.int(3)
  switch (rng.int(4)) {
    case 0:
      return { type: 'SEND', ...base, hash, signature: bytes(rng, 64), payload: bytes(rng, size) }
    case 1:
      return { type: 'PAYLOAD', ...base, hash, payload: bytes(rng, size) }
    case 2:
      return { type: 'FINAL', ...base, hash, certificate: [{ signer: sender, signature: bytes(rng, 64) }], ...(size > 0 ? { payload: bytes(rng, size) } : {}) }
    default:
      return { type: 'ECHO', ...base, hash, signer: sender, signature: bytes(rng, 64) }
  }
}

/** `wire` cut at random places into chunks, each a Uint8Array or a list of up to three pieces. */
function chunks(rng: Rng, wire: Uint8Array): (Uint8Array | Uint8ArrayList)[] {
  const out: (Uint8Array | Uint8ArrayList)[] = []
  let o = 0
  while (o < wire.byteLength) {
    // 1 byte to ≈ 150 KB: header, meta, payload and the next frame's start share or split chunks
    const n = Math.min(wire.byteLength - o, [1, 7, 12, 40, 1000, 65_536, 150_000][rng.int(7)]! + rng.int(50))
    const piece = wire.subarray(o, o + n)
    if (n > 2 && rng.int(3) === 0) {
      const a = 1 + rng.int(n - 1)
      out.push(new Uint8ArrayList(piece.subarray(0, a), piece.subarray(a)))
    } else out.push(piece)
    o += n
  }
  return out
}

describe('FrameReader (frames cut into chunks anywhere)', () => {
  it('reads back every frame of a stream split at random places, payloads assembled whole, each reservation released once', async () => {
    for (let seed = 0; seed < 40; seed++) {
      const rng = new Rng(`frame-stream/${seed}`)
      const frames = Array.from({ length: 1 + rng.int(6) }, (_, i) => randomFrame(rng, i))
      const wire = new Uint8ArrayList(...frames.map((f) => encodeFrame(f))).subarray()
      const stream = new ChunkedStream()
      let reserved = 0
      let released = 0
      const reader = new FrameReader(stream as unknown as Stream, {
        ...limits,
        onHeader: () => {
          reserved++
          return () => released++
        },
      })
      const got: Frame[] = []
      const reading = (async () => {
        for (;;) {
          const r = await reader.next()
          if (r === null) return
          got.push(r.frame)
        }
      })()
      for (const c of chunks(rng, wire)) {
        stream.push(c)
        // let the reader run between chunks now and then, as the event loop would
        if (rng.int(2) === 0) await new Promise((r) => setImmediate(r))
      }
      stream.end()
      await reading
      assert.equal(got.length, frames.length, `seed ${seed}`)
      for (const [i, f] of frames.entries()) assert.deepEqual(got[i], f, `seed ${seed}, frame ${i} (${f.type})`)
      assert.equal(reserved, frames.length, `seed ${seed}`)
      assert.equal(released, frames.length, `seed ${seed}`)
    }
  })

  it('a stream that ends inside an assembled payload is refused (not blamed) and its reservation released once', async () => {
    const rng = new Rng('frame-stream/cut')
    const frame: Frame = { type: 'SEND', swarmId: 's', epoch: 0, round: 1, sender, hash: bytes(rng, 32), signature: bytes(rng, 64), payload: bytes(rng, 300_000) }
    const wire = encodeFrame(frame)
    const stream = new ChunkedStream()
    let released = 0
    const reader = new FrameReader(stream as unknown as Stream, { ...limits, onHeader: () => () => released++ })
    // the header and meta, then two chunks of the payload, then the end
    const metaEnd = wire.byteLength - 300_000
    stream.push(wire.subarray(0, metaEnd + 10))
    stream.push(wire.subarray(metaEnd + 10, metaEnd + 100_000))
    stream.push(new Uint8ArrayList(wire.subarray(metaEnd + 100_000, metaEnd + 150_000), wire.subarray(metaEnd + 150_000, metaEnd + 200_000)))
    stream.end()
    const err = await reader.next().then(
      () => undefined,
      (e: unknown) => e,
    )
    assert.ok(err instanceof BroadcastRejectError, String(err))
    assert.equal(err.reason, 'malformed')
    assert.equal(err.penalise, false)
    assert.match(err.message, /200[0-9]{3}\/300[0-9]{3} bytes/)
    stream.close()
    assert.equal(released, 1)
  })

  it('a payload trickled in chunks is cut as slow once its time is up, its reservation released', async () => {
    const rng = new Rng('frame-stream/slow')
    const frame: Frame = { type: 'PAYLOAD', swarmId: 's', epoch: 0, round: 1, sender, hash: bytes(rng, 32), payload: bytes(rng, 100_000) }
    const wire = encodeFrame(frame)
    const stream = new ChunkedStream()
    let released = 0
    // 100 KB at ≥ 1 MB/s with 50 ms of slack: ≈ 150 ms in all
    const reader = new FrameReader(stream as unknown as Stream, { ...limits, minBytesPerSecond: 1 << 20, frameBaseMs: 50, onHeader: () => () => released++ })
    stream.push(wire.subarray(0, 5000))
    stream.push(wire.subarray(5000, 6000))
    const err = await reader.next().then(
      () => undefined,
      (e: unknown) => e,
    )
    assert.ok(err instanceof BroadcastRejectError, String(err))
    assert.equal(err.reason, 'slow')
    assert.equal(stream.status, 'aborted')
    assert.equal(released, 1)
    // what still arrives after the cut is dropped, not assembled
    stream.push(wire.subarray(6000))
  })
})
