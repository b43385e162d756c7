import assert from 'node:assert/strict'
import { test } from 'node:test'
import { VerifiedCertificates } from '../../../src/broadcast/certificate.ts'

const cert = (round: number, sender = 's', fill = 1) => ({
  swarmId: 'x',
  epoch: 0,
  round,
  sender,
  hash: new Uint8Array(32).fill(fill),
  signatures: [{ signer: 'a', signature: new Uint8Array(64).fill(round) }],
})

test('verified certificates are forgotten below the store\'s low round, kept from it on, and only for the exact signatures', () => {
  const v = new VerifiedCertificates(1000)
  for (let r = 0; r < 20; r++) v.add(cert(r))
  assert.equal(v.size, 20)
  v.collect(12)
  assert.equal(v.size, 8)
  assert.equal(v.has(cert(11)), false, 'below low: checked again if it ever comes back')
  assert.equal(v.has(cert(12)), true)
  assert.equal(v.has({ ...cert(12), signatures: [{ signer: 'a', signature: new Uint8Array(64).fill(99) }] }), false, 'other signatures: not vouched for')
  assert.equal(v.has(cert(12, 's', 2)), false, 'another hash: not vouched for')
})

test('a certificate verified once in this process is not verified again — but only with the exact signatures, and membership is judged every time; its members keep one copy of its entries', async () => {
  const { generateKeyPair } = await import('@libp2p/crypto/keys')
  const { peerIdOfKey } = await import('../../../src/net/index.ts')
  const { processCertificateStats, verifyCertificate } = await import('../../../src/broadcast/certificate.ts')
  const { sign, signingSeed, statement } = await import('../../../src/broadcast/crypto.ts')
  const keys = await Promise.all(Array.from({ length: 4 }, () => generateKeyPair('Ed25519')))
  const members = keys.map(peerIdOfKey)
  const membership = { swarmId: 'cache', members, f: 1 }
  const inst = { swarmId: 'cache', epoch: 0, round: 7, sender: members[0]! }
  const hash = new Uint8Array(32).fill(5)
  const stmt = statement('ECHO', inst, hash)
  const signatures = keys.slice(0, 3).map((k, i) => ({ signer: members[i]!, signature: sign(signingSeed(k), stmt) }))
  const cert = { ...inst, hash, signatures }
  const hits = processCertificateStats.hits
  const kept = verifyCertificate(cert, membership)
  assert.equal(processCertificateStats.hits, hits, 'first check: verified')
  assert.notEqual(kept, cert.signatures, 'the process keeps its own copy of the entries')
  assert.ok(kept.every((e, i) => e.signer === signatures[i]!.signer && e.signature !== signatures[i]!.signature && Buffer.compare(e.signature, signatures[i]!.signature) === 0))
  const again = verifyCertificate({ ...cert, signatures: cert.signatures.map((e) => ({ ...e, signature: e.signature.slice() })) }, membership)
  assert.equal(processCertificateStats.hits, hits + 1, 'the same bytes again (another copy): from the cache')
  // every member of the process that checks this certificate keeps that one copy, not its own
  assert.equal(again, kept)
  // one signature changed: not vouched for, verified and refused
  const tampered = cert.signatures.map((e, i) => (i === 1 ? { ...e, signature: Uint8Array.from(e.signature, (b, j) => (j === 0 ? b ^ 1 : b)) } : e))
  assert.throws(() => verifyCertificate({ ...cert, signatures: tampered }, membership), /invalid echo signature/)
  // another swarm with the same instance fields: another statement, its signatures do not verify
  assert.throws(() => verifyCertificate({ ...cert, swarmId: 'other' }, { ...membership, swarmId: 'other' }), /invalid echo signature/)
  // a member that judges with a membership without the signers refuses the cached certificate all the same
  assert.throws(() => verifyCertificate(cert, { swarmId: 'cache', members: [members[0]!, members[3]!, ...members.slice(1, 2)], f: 0 }), /not a member/)
  assert.equal(processCertificateStats.hits, hits + 1)
})

test('a member alone in its process keeps at most 256 checked certificates; an in-process swarm keeps 8,192', async () => {
  const { generateKeyPair } = await import('@libp2p/crypto/keys')
  const { peerIdOfKey } = await import('../../../src/net/index.ts')
  const { processCertificateCount, verifyCertificate } = await import('../../../src/broadcast/certificate.ts')
  const { sign, signingSeed, statement, verifyCacheFor } = await import('../../../src/broadcast/crypto.ts')
  const keys = await Promise.all(Array.from({ length: 4 }, () => generateKeyPair('Ed25519')))
  const members = keys.map(peerIdOfKey)
  const membership = { swarmId: 'sizes', members, f: 1 }
  const certify = (round: number) => {
    const inst = { swarmId: 'sizes', epoch: 0, round, sender: members[round % 4]! }
    const hash = new Uint8Array(32).fill(round % 251)
    const stmt = statement('ECHO', inst, hash)
    return verifyCertificate({ ...inst, hash, signatures: keys.slice(0, 3).map((k, i) => ({ signer: members[i]!, signature: sign(signingSeed(k), stmt) })) }, membership)
  }
  verifyCacheFor('member')
  for (let r = 0; r < 300; r++) {
    certify(r)
    assert.ok(processCertificateCount() <= 256, `${processCertificateCount()} certificates kept`)
  }
  verifyCacheFor('shared')
  const from = processCertificateCount()
  for (let r = 1_000; r < 1_300; r++) certify(r)
  assert.equal(processCertificateCount(), from + 300, 'in-process: all kept (below 8,192)')
})
