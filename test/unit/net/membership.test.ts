import assert from 'node:assert/strict'
import { test } from 'node:test'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { InvalidConfigError } from '../../../src/errors.ts'
import { memoryLogger } from '../../../src/logger.ts'
import { type Membership, peerIdOfKey, quorum, swarmTopic, validateMembership } from '../../../src/net/index.ts'

async function ids(n: number): Promise<string[]> {
  return (await Promise.all(Array.from({ length: n }, () => generateKeyPair('Ed25519')))).map(peerIdOfKey)
}

test('quorum is ⌊(n+f)/2⌋+1 (ALGORITHMS §2 table)', () => {
  assert.equal(quorum(4, 1), 3)
  assert.equal(quorum(7, 2), 5)
  assert.equal(quorum(10, 3), 7)
  assert.equal(quorum(26, 5), 16)
})

test('two quorums intersect in more than f members whenever n ≥ 3f+1', () => {
  for (let f = 0; f < 12; f++) {
    for (let n = 3 * f + 1; n < 3 * f + 12; n++) {
      const q = quorum(n, f)
      assert.ok(2 * q - n > f, `n=${n} f=${f}`)
      assert.ok(q <= n - f, `a quorum of honest members exists: n=${n} f=${f}`)
    }
  }
})

test('validateMembership refuses n < 3f+1 and says how to fix it', async () => {
  const members = await ids(6)
  assert.throws(
    () => validateMembership({ swarmId: 's', members, f: 2 }),
    (e: unknown) => e instanceof InvalidConfigError && e.path === 'membership.f' && /n ≥ 3f \+ 1/.test(e.message),
  )
  validateMembership({ swarmId: 's', members: members.slice(0, 4), f: 1 })
})

test('validateMembership warns above f/n = 1/5 and not at or below it', async () => {
  const members = await ids(10)
  const warn = memoryLogger()
  validateMembership({ swarmId: 's', members: members.slice(0, 4), f: 1 }, warn)
  assert.equal(warn.records.filter((r) => r.level === 'warn').length, 1)
  const quiet = memoryLogger()
  validateMembership({ swarmId: 's', members: members.slice(0, 10), f: 2 }, quiet)
  assert.equal(quiet.records.length, 0)
})

test('validateMembership refuses duplicates, non-PeerIds, bad swarm ids and bad f', async () => {
  const [a, b, c, d] = await ids(4)
  const bad: Array<[Membership, string]> = [
    [{ swarmId: 's', members: [a!, a!, b!, c!], f: 0 }, 'membership.members[1]'],
    [{ swarmId: 's', members: [a!, 'hello', c!, d!], f: 0 }, 'membership.members[1]'],
    [{ swarmId: 'with space', members: [a!, b!, c!, d!], f: 0 }, 'membership.swarmId'],
    [{ swarmId: 'x'.repeat(65), members: [a!, b!, c!, d!], f: 0 }, 'membership.swarmId'],
    [{ swarmId: 's', members: [a!, b!, c!, d!], f: -1 }, 'membership.f'],
    [{ swarmId: 's', members: [a!, b!, c!, d!], f: 0.5 }, 'membership.f'],
    [{ swarmId: 's', members: [], f: 0 }, 'membership.members'],
  ]
  for (const [m, path] of bad) {
    assert.throws(() => validateMembership(m), (e: unknown) => e instanceof InvalidConfigError && e.path === path, path)
  }
})

test('topics are namespaced by swarm', () => {
  assert.equal(swarmTopic('alpha', 'final'), '/monna/alpha/final/1')
  assert.notEqual(swarmTopic('alpha', 'final'), swarmTopic('beta', 'final'))
})

test('the f/n warning is given once per swarm, n and f, however many parts of the process check the membership', async () => {
  const members = await ids(4)
  const log = memoryLogger()
  const m: Membership = { swarmId: 'warn-once', members, f: 1 }
  for (let i = 0; i < 3; i++) validateMembership(m, log) // member, libp2p node, broadcast
  validateMembership({ ...m }, memoryLogger(log.records)) // another member of an in-process swarm
  assert.equal(log.records.filter((r) => r.level === 'warn' && r.msg.startsWith('f/n is above 1/5')).length, 1)
  validateMembership({ ...m, swarmId: 'warn-once-other' }, log) // another swarm: its own warning
  assert.equal(log.records.filter((r) => r.level === 'warn' && r.msg.startsWith('f/n is above 1/5')).length, 2)
  validateMembership({ ...m, members: [...members, ...(await ids(2))] }, log) // f/n = 1/6: none
  assert.equal(log.records.filter((r) => r.level === 'warn').length, 2)
})
