import assert from 'node:assert/strict'
import { test } from 'node:test'
import { BroadcastRejectError } from '../../../src/broadcast/errors.ts'
import { decodeFrame, encodeFrame, encodeFrameParts, type Frame, HEADER_BYTES, MAX_META_BYTES } from '../../../src/broadcast/wire.ts'

const sender = '12D3KooWKnDdG3iXw9eTFijk3EWSunZcFi54Zka4wmtqtt6rPxc8'
const h = new Uint8Array(32).fill(7)
const sig = new Uint8Array(64).fill(9)
const limits = { maxPayloadBytes: 1 << 20 }

const samples: Frame[] = [
  { type: 'SEND', swarmId: 's', epoch: 0, round: 3, sender, hash: h, signature: sig, payload: new Uint8Array([1, 2, 3]) },
  { type: 'SEND', swarmId: 's', epoch: 0, round: 0, sender, hash: h, signature: sig, payload: new Uint8Array(0) },
  { type: 'ECHO', swarmId: 's', epoch: 0, round: 0xffffffff, sender, hash: h, signer: sender, signature: sig },
  { type: 'FINAL', swarmId: 'swarm-1', epoch: 0, round: 9, sender, hash: h, certificate: [{ signer: sender, signature: sig }] },
  { type: 'FINAL', swarmId: 'swarm-1', epoch: 0, round: 9, sender, hash: h, certificate: [], payload: new Uint8Array([5]) },
  { type: 'PULL', swarmId: 's', epoch: 0, round: 1, sender, hash: h },
  { type: 'PAYLOAD', swarmId: 's', epoch: 0, round: 1, sender, hash: h, payload: new Uint8Array(1000).fill(3) },
  { type: 'FETCH', swarmId: 's', epoch: 0, round: 1, have: [sender, 'x'] },
  { type: 'QUERY', swarmId: 's', epoch: 0, round: 12, sender },
  { type: 'END' },
]

test('every frame type round-trips', () => {
  for (const f of samples) assert.deepEqual(decodeFrame(encodeFrame(f), limits), f, f.type)
})

test('encodeFrameParts does not copy the payload', () => {
  const payload = new Uint8Array(100)
  const parts = encodeFrameParts({ type: 'PAYLOAD', swarmId: 's', epoch: 0, round: 1, sender, hash: h, payload })
  assert.equal(parts.length, 2)
  assert.equal(parts[1], payload)
})

function reason(fn: () => unknown): string {
  try {
    fn()
  } catch (e) {
    assert.ok(e instanceof BroadcastRejectError, String(e))
    return e.reason
  }
  return 'accepted'
}

test('header checks: version, type, flags, sizes — before anything is allocated', () => {
  const good = encodeFrame(samples[0]!)
  const v2 = good.slice()
  v2[0] = 3
  assert.equal(reason(() => decodeFrame(v2, limits)), 'unknown-version')
  const t = good.slice()
  t[1] = 99
  assert.equal(reason(() => decodeFrame(t, limits)), 'malformed')
  const flags = good.slice()
  flags[3] = 1
  assert.equal(reason(() => decodeFrame(flags, limits)), 'malformed')
  // a 4 GiB payload claim is refused from the 12-byte header alone
  const huge = good.slice(0, HEADER_BYTES)
  new DataView(huge.buffer).setUint32(8, 0xffffffff)
  assert.equal(reason(() => decodeFrame(huge, limits)), 'oversized')
  const bigMeta = good.slice(0, HEADER_BYTES)
  new DataView(bigMeta.buffer).setUint32(4, MAX_META_BYTES + 1)
  assert.equal(reason(() => decodeFrame(bigMeta, limits)), 'oversized')
  // payload on a type that has none
  const echo = encodeFrame(samples[2]!)
  const withPayload = new Uint8Array(echo.length + 1)
  withPayload.set(echo)
  new DataView(withPayload.buffer).setUint32(8, 1)
  assert.equal(reason(() => decodeFrame(withPayload, limits)), 'malformed')
  assert.equal(reason(() => decodeFrame(encodeFrame(samples[6]!), { maxPayloadBytes: 999 })), 'oversized')
})

test('truncation, trailing bytes and bad strings are malformed', () => {
  for (const f of samples) {
    const b = encodeFrame(f)
    for (let cut = 0; cut < b.length; cut += Math.max(1, Math.floor(b.length / 17))) assert.equal(reason(() => decodeFrame(b.subarray(0, cut), limits)), 'malformed', `${f.type} cut at ${cut}`)
    const longer = new Uint8Array(b.length + 1)
    longer.set(b)
    assert.equal(reason(() => decodeFrame(longer, limits)), 'malformed')
  }
  // invalid UTF-8 in the swarm id
  const b = encodeFrame(samples[5]!)
  b[HEADER_BYTES + 1] = 0xff
  assert.equal(reason(() => decodeFrame(b, limits)), 'malformed')
})
