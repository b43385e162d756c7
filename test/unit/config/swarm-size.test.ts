/** A swarm file the wire cannot certify is refused at load, with a one-line error naming the limit. */
import assert from 'node:assert/strict'
import { it } from 'node:test'
import { maxMembers } from '../../../src/broadcast/wire.ts'
import { parseSwarm } from '../../../src/config/schema.ts'
import { InvalidConfigError } from '../../../src/errors.ts'
import { fakePeerIds } from '../../support/fake-ids.ts'

const ids = fakePeerIds

it('a swarm of more members than a certificate can carry is refused; the largest that fits loads', () => {
  const f = 5
  const max = maxMembers(f)
  assert.equal(max, 1006)
  const ok = parseSwarm({ name: 'big', f, members: ids(max).map((id) => ({ id })) })
  assert.equal(ok.members.length, max)
  assert.throws(
    () => parseSwarm({ name: 'big', f, members: ids(max + 1).map((id) => ({ id })) }),
    (e: unknown) => e instanceof InvalidConfigError && /1007 members with f = 5 are more than the wire can certify \(at most 1006/.test(e.message) && !e.message.includes('\n'),
  )
})
