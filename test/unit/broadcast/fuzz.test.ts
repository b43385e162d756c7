/**
 * Fuzz-style robustness: ≥ 10,000 random and mutated frames to the decoder and ≥ 10,000 to the
 * broadcast's handlers (the same code path as frames read from a stream). Nothing may crash,
 * state must stay bounded, and every frame that is not a valid one is rejected with a reason.
 */
import assert from 'node:assert/strict'
import { after, before, test } from 'node:test'
import { setFlagsFromString } from 'node:v8'
import { runInNewContext } from 'node:vm'
import type { PrivateKey } from '@libp2p/interface'
import { hashPayload, sign, signingSeed, statement } from '../../../src/broadcast/crypto.ts'
import { BroadcastRejectError } from '../../../src/broadcast/errors.ts'
import { createEchoBroadcast, type EchoBroadcast, type Rejection, rejectReasons } from '../../../src/broadcast/index.ts'
import type { InstanceStore } from '../../../src/broadcast/instance-store.ts'
import { decodeFrame, encodeFrame, type Frame } from '../../../src/broadcast/wire.ts'
import { createNetNode, type Membership, type NetNode, peerIdOfKey, quorum } from '../../../src/net/index.ts'
import { Rng } from '../../../src/rng.ts'
import { type Ingest, ingestInto } from './adapter.ts'
import { makeKeys } from './harness.ts'

/** A full garbage collection (what remains is what the broadcast holds). */
function collectGarbage(): void {
  setFlagsFromString('--expose-gc')
  ;(runInNewContext('gc') as () => void)()
}

const FRAMES = 10_000
/** handler frames travel on real streams (one exchange each) */
const HANDLER_FRAMES = Number(process.env.FUZZ_HANDLER_FRAMES ?? 2000)
const W = 4
const MAX_PAYLOAD = 4096
let keys: PrivateKey[]
let ids: string[]
let membership: Membership
let node: NetNode
let b: EchoBroadcast
let ingest: Ingest

before(async () => {
  keys = await makeKeys(5) // 0..3 members, 4 outsider
  ids = keys.map(peerIdOfKey)
  membership = { swarmId: 'fuzz', members: ids.slice(0, 4), f: 1 }
  node = await createNetNode({ privateKey: keys[0]!, listen: ['/ip4/127.0.0.1/tcp/0'], membership })
  b = await createEchoBroadcast({ node, privateKey: keys[0]!, membership, roundWindow: W, maxPayloadBytes: MAX_PAYLOAD, maxPendingBytesPerPeer: 4 * MAX_PAYLOAD, penalties: false })
  ingest = ingestInto({ node, b, membership })
})
after(async () => {
  await ingest?.stop()
  await b?.stop()
  await node?.stop()
})

/** Valid frames as honest members 1..3 would send them to member 0 (peer: index of the key). */
function validFrames(rng: Rng): Array<{ peer: number; frame: Frame }> {
  const out: Array<{ peer: number; frame: Frame }> = []
  for (let j = 1; j <= 3; j++) {
    const sender = ids[j]!
    const round = rng.int(W)
    const payload = new Uint8Array(rng.int(MAX_PAYLOAD)).map(() => rng.int(256))
    const hash = hashPayload(payload)
    const inst = { swarmId: 'fuzz', epoch: 0, round, sender }
    out.push({ peer: j, frame: { type: 'SEND', ...inst, hash, signature: sign(signingSeed(keys[j]!), statement('SEND', inst, hash)), payload } })
    const certificate = [1, 2, 3].slice(0, quorum(4, 1)).map((k) => ({ signer: ids[k]!, signature: sign(signingSeed(keys[k]!), statement('ECHO', inst, hash)) }))
    out.push({ peer: 1 + rng.int(3), frame: { type: 'FINAL', ...inst, hash, certificate } })
    out.push({ peer: 1 + rng.int(3), frame: { type: 'FINAL', ...inst, hash, certificate, payload } })
    out.push({ peer: j, frame: { type: 'ECHO', ...inst, hash, signer: sender, signature: certificate[0]!.signature } })
    out.push({ peer: j, frame: { type: 'PULL', ...inst, hash } })
  }
  out.push({ peer: 1, frame: { type: 'FETCH', swarmId: 'fuzz', epoch: 0, round: rng.int(W), have: [ids[2]!] } })
  out.push({ peer: 2, frame: { type: 'END' } })
  return out
}

function mutate(rng: Rng, src: Uint8Array): Uint8Array {
  const b = src.slice()
  switch (rng.int(9)) {
    case 0: // flip one bit
      if (b.length > 0) b[rng.int(b.length)]! ^= 1 << rng.int(8)
      return b
    case 1: // several random bytes
      for (let k = 0; k < 1 + rng.int(8) && b.length > 0; k++) b[rng.int(b.length)] = rng.int(256)
      return b
    case 2: // truncate
      return b.subarray(0, rng.int(b.length + 1))
    case 3: {
      // append garbage
      const c = new Uint8Array(b.length + 1 + rng.int(64))
      c.set(b)
      for (let k = b.length; k < c.length; k++) c[k] = rng.int(256)
      return c
    }
    case 4: // header fields: version, type, flags, lengths
      if (b.length >= 12) b[rng.int(12)] = rng.int(256)
      return b
    case 5: // a byte inside the meta (swarm id, round, sender, hash, signature …)
      if (b.length > 12) b[12 + rng.int(Math.min(b.length - 12, 200))] = rng.int(256)
      return b
    case 6: // lengths claiming huge sizes
      if (b.length >= 12) new DataView(b.buffer, b.byteOffset).setUint32(rng.int(2) === 0 ? 4 : 8, rng.int(2) === 0 ? 0xffffffff : rng.int(1 << 20))
      return b
    case 7: // pure noise
      return new Uint8Array(rng.int(300)).map(() => rng.int(256))
    default: {
      // noise behind a plausible header
      const c = new Uint8Array(12 + rng.int(300)).map(() => rng.int(256))
      c[0] = 2
      c[1] = 1 + rng.int(7)
      c[2] = 0
      c[3] = 0
      return c
    }
  }
}

test(`decoder: ${2 * FRAMES} random and mutated frames never crash and are rejected with a reason`, () => {
  const rng = new Rng('fuzz-decoder')
  const originals = validFrames(rng).map((v) => encodeFrame(v.frame))
  let rejected = 0
  for (let i = 0; i < 2 * FRAMES; i++) {
    const src = originals[rng.int(originals.length)]!
    const bytes = mutate(rng, src)
    try {
      decodeFrame(bytes, { maxPayloadBytes: MAX_PAYLOAD })
    } catch (e) {
      assert.ok(e instanceof BroadcastRejectError, `unexpected ${String(e)}`)
      assert.ok(rejectReasons.includes(e.reason))
      rejected++
    }
  }
  // many mutations (a byte of a signature or payload) still decode: the handlers reject those
  assert.ok(rejected > FRAMES / 2, `${rejected} rejected by the decoder alone`)
})

test(`handlers: ${HANDLER_FRAMES} random and mutated frames from members and an outsider, on real streams`, async () => {
  const rng = new Rng('fuzz-handlers')
  const events: Rejection[] = []
  b.addEventListener('reject', (e) => events.push((e as CustomEvent<Rejection>).detail))
  collectGarbage()
  const heapBefore = process.memoryUsage().heapUsed
  let accepted = 0
  let rejected = 0
  let refusedConnections = 0
  const seen: Record<string, number> = {}
  let valid = validFrames(rng)
  for (let i = 0; i < HANDLER_FRAMES; i++) {
    if (i % 500 === 0) valid = validFrames(rng) // fresh instances and hashes now and then
    const v = valid[rng.int(valid.length)]!
    const original = encodeFrame(v.frame)
    const untouched = rng.int(10) === 0
    const bytes = untouched ? original : mutate(rng, original)
    const peer = rng.int(20) === 0 ? 4 : v.peer
    let res: Awaited<ReturnType<Ingest>>
    try {
      res = await ingest(keys[peer]!, bytes)
    } catch {
      // the connection gate refuses an outsider before any frame is read
      assert.equal(peer, 4, 'only the outsider is refused a connection')
      refusedConnections++
      continue
    }
    if (res.rejection !== undefined) {
      assert.ok(rejectReasons.includes(res.rejection.reason), res.rejection.reason)
      assert.equal(typeof res.rejection.detail, 'string')
      seen[res.rejection.reason] = (seen[res.rejection.reason] ?? 0) + 1
      rejected++
      continue
    }
    accepted++
    // an accepted frame is either a valid one untouched, or a request (PULL/FETCH/QUERY) that is still well-formed
    const same = bytes.length === original.length && bytes.every((x, k) => x === original[k])
    const type = decodeFrame(bytes, { maxPayloadBytes: MAX_PAYLOAD }).type
    assert.ok(same || type === 'PULL' || type === 'FETCH' || type === 'QUERY', `accepted a mutated ${type} frame`)
    assert.notEqual(peer, 4, 'nothing is accepted from a non-member')
  }
  assert.equal(accepted + rejected + refusedConnections, HANDLER_FRAMES)
  assert.ok(refusedConnections > 0, 'the outsider was tried')
  assert.ok(events.length >= rejected, 'every rejection is reported as an event')
  for (const r of ['malformed', 'oversized', 'bad-signature', 'hash-mismatch', 'wrong-swarm', 'unknown-version']) {
    assert.ok((seen[r] ?? 0) > 0, `fuzzing provoked '${r}' (${JSON.stringify(seen)})`)
  }
  // bounded state: at most 2W + 1 instances per sender, held bytes within the per-peer budget
  // biome-ignore lint/suspicious/noExplicitAny: inspecting internals on purpose
  const x = b as any
  const open = (x.store as InstanceStore).openCounts()
  assert.ok(open.size > 0, 'instances were opened')
  for (const [, count] of open) assert.ok(count <= 2 * W + 1)
  assert.ok(b.stats().pendingBytes <= 3 * 4 * MAX_PAYLOAD)
  assert.ok(b.evidence().length <= 1024)
  collectGarbage()
  const growth = process.memoryUsage().heapUsed - heapBefore
  assert.ok(growth < 64 * 1024 * 1024, `heap grew by ${growth} bytes`)
})
