/** Payloads echoed over real libp2p streams, for transport tests. */
import type { Libp2p } from '@libp2p/interface'
import { Uint8ArrayList } from 'uint8arraylist'
import type { Rng } from '../../src/rng.ts'

/**
 * Sends `payload` from a to b over `protocol` (b's handler echoes what it reads) in sends of random
 * sizes — a third of them under 100 bytes, the rest up to 300 KB; resolves with what came back.
 */
export async function roundTrip(a: Libp2p, b: Libp2p, protocol: string, payload: Uint8Array, rng: Rng): Promise<Uint8Array> {
  const s = await a.dialProtocol(b.peerId, protocol)
  const back = new Uint8ArrayList()
  const reading = (async () => {
    for await (const chunk of s) back.append(chunk)
  })()
  for (let o = 0; o < payload.byteLength; ) {
    const size = Math.min(payload.byteLength - o, rng.int(3) === 0 ? 1 + rng.int(100) : 1 + rng.int(300_000))
    if (!s.send(payload.subarray(o, o + size))) await s.onDrain()
    o += size
  }
  await s.close()
  await reading
  return back.subarray()
}

/** Makes `node` echo back every byte it reads on `protocol` (the other end of `roundTrip`). */
export async function handleEcho(node: Libp2p, protocol: string, maxInboundStreams = 64): Promise<void> {
  await node.handle(
    protocol,
    async (stream) => {
      for await (const chunk of stream) if (!stream.send(chunk)) await stream.onDrain()
      await stream.close()
    },
    { maxInboundStreams },
  )
}
