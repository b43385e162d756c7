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
