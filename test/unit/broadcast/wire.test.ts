import assert from 'node:assert/strict'
import { test } from 'node:test'
import { BroadcastRejectError } from '../../../src/broadcast/errors.ts'
import { decodeFrame, encodeFrame, encodeFrameParts, FLAG_SIGNER_INDEX, type Frame, HEADER_BYTES, MAX_META_BYTES, resolveSigners } from '../../../src/broadcast/wire.ts'

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

test('a FINAL names its signers by index into its epoch\'s member list: 66 instead of 117 bytes per signature, resolved against that list', () => {
  const members = Array.from({ length: 26 }, (_, i) => `12D3KooW${String(i).padStart(44, 'x')}`)
  const memberIndex = new Map(members.map((m, i) => [m, i]))
  const certificate = [3, 0, 25, 7].map((i) => ({ signer: members[i]!, signature: new Uint8Array(64).fill(i) }))
  const f: Frame = { type: 'FINAL', swarmId: 'swarm-1', epoch: 2, round: 9, sender: members[1]!, hash: h, certificate }
  const long = encodeFrame(f)
  const short = encodeFrame(f, { memberIndex })
  assert.equal(new DataView(short.buffer).getUint16(2), FLAG_SIGNER_INDEX)
  assert.equal(new DataView(long.buffer).getUint16(2), 0)
  assert.equal(long.length - short.length, certificate.length * (1 + members[0]!.length - 2))
  const d = decodeFrame(short, limits)
  assert.ok(d.type === 'FINAL')
  assert.deepEqual(d.signerIndices, [3, 0, 25, 7])
  assert.deepEqual(d.certificate.map((e) => e.signer), ['', '', '', ''], 'unnamed until resolved')
  assert.deepEqual(resolveSigners(d, members), f)
  // with a payload (the payload is not part of the meta)
  const withPayload = { ...f, payload: new Uint8Array([1, 2, 3]) }
  assert.deepEqual(resolveSigners(decodeFrame(encodeFrame(withPayload, { memberIndex }), limits) as typeof withPayload, members), withPayload)
  // a PeerId FINAL is returned as it is
  const plain = decodeFrame(long, limits) as typeof f
  assert.equal(resolveSigners(plain, members), plain)
  // an index beyond the epoch's list is malformed (a shorter list: another epoch's, or forged)
  assert.equal(reason(() => resolveSigners(d, members.slice(0, 20))), 'malformed')
  // a signer without an index (not in the list): the whole certificate keeps PeerIds
  const stranger = { ...f, certificate: [...certificate, { signer: sender, signature: sig }] }
  assert.equal(new DataView(encodeFrame(stranger, { memberIndex }).buffer).getUint16(2), 0)
  // other frames ignore the option
  assert.deepEqual(encodeFrame(samples[0]!, { memberIndex }), encodeFrame(samples[0]!))
})

test('the signer-index flag: only on a FINAL, only that bit, and its meta must be the indexed layout', () => {
  const members = [sender, `${sender.slice(0, -1)}9`]
  const f: Frame = { type: 'FINAL', swarmId: 's', epoch: 0, round: 1, sender, hash: h, certificate: [{ signer: sender, signature: sig }] }
  const short = encodeFrame(f, { memberIndex: new Map(members.map((m, i) => [m, i])) })
  const other = short.slice()
  new DataView(other.buffer).setUint16(2, 2)
  assert.equal(reason(() => decodeFrame(other, limits)), 'malformed')
  // the flag on a PeerId layout: the signer's length byte and string are read as an index and a
  // signature, leaving bytes over (or missing)
  const flagged = encodeFrame(f)
  new DataView(flagged.buffer).setUint16(2, FLAG_SIGNER_INDEX)
  assert.equal(reason(() => decodeFrame(flagged, limits)), 'malformed')
  for (const t of samples.filter((x) => x.type !== 'FINAL')) {
    const b = encodeFrame(t)
    new DataView(b.buffer).setUint16(2, FLAG_SIGNER_INDEX)
    assert.equal(reason(() => decodeFrame(b, limits)), 'malformed', t.type)
  }
})
