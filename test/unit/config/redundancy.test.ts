/**
 * The redundancy r of a swarm or scenario file (docs/redundancy.md): f ≤ r < n, default f,
 * validated against the rule with n − r inputs; absent and r = f keep the swarm id.
 */
import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { parseSwarm, swarmId } from '../../../src/config/schema.ts'
import { InvalidConfigError } from '../../../src/errors.ts'
import { RoundEngine } from '../../../src/node/engine.ts'
import { declaredR, epochR, quorumOf, ruleMaxR, rushingHonestMin } from '../../../src/node/redundancy.ts'
import { parseScenario } from '../../../src/topology/schema.ts'
import { fakePeerIds } from '../../support/fake-ids.ts'
import { createMemoryHub } from '../../support/memory-hub.ts'
import { memberIds, quadraticLearner, simpleNna } from '../node/helpers.ts'

const ids = fakePeerIds

const swarm = (o: Record<string, unknown> = {}): unknown => ({ name: 'stable', f: 1, members: ids(7).map((id) => ({ id })), ...o })

/** an InvalidConfigError on one line whose path ends with `path` and whose message matches `re` */
const refused = (path: string, re: RegExp) => (e: unknown) =>
  e instanceof InvalidConfigError && e.path.endsWith(path) && re.test(e.message) && !e.message.includes('\n')

describe('swarm file r', () => {
  it('defaults to f: absent r parses as absent and waits for n − f', () => {
    const s = parseSwarm(swarm())
    assert.equal(s.r, undefined)
    assert.equal(declaredR(s), 1)
    assert.equal(quorumOf(7, declaredR(s)), 6)
    assert.equal(declaredR(parseSwarm(swarm({ r: 3 }))), 3)
  })

  it('keeps existing swarm ids: absent and r = f hash alike (ids computed before r existed), another r does not', () => {
    // printed by swarmId at dc641d5, before the field existed
    assert.equal(swarmId(parseSwarm(swarm())), 'stable-a914a2113974039f')
    assert.equal(swarmId(parseSwarm(swarm({ r: 1 }))), 'stable-a914a2113974039f')
    assert.equal(swarmId(parseSwarm(swarm({ f: 2, aggregator: { rule: 'cwtm' } }))), 'stable-044a0506e5178c00')
    assert.equal(swarmId(parseSwarm(swarm({ f: 2, r: 2, aggregator: { rule: 'cwtm' } }))), 'stable-044a0506e5178c00')
    const r3 = swarmId(parseSwarm(swarm({ r: 3 })))
    assert.notEqual(r3, 'stable-a914a2113974039f')
    assert.notEqual(r3, swarmId(parseSwarm(swarm({ r: 2 }))))
  })

  it('refuses r below f, r ≥ n and an r that leaves the rule too few inputs, on one line naming the fix', () => {
    assert.throws(() => parseSwarm(swarm({ f: 2, r: 1 })), refused('r', /r = 1 is below f = 2.*use r ≥ 2/))
    assert.throws(() => parseSwarm(swarm({ f: 0, r: 7, aggregator: { rule: 'mean' } })), refused('r', /r = 7 leaves no model to wait for \(n = 7\); use r < 7/))
    assert.throws(() => parseSwarm(swarm({ r: -1 })), refused('r', /Too small|>=|≥/))
    assert.throws(() => parseSwarm(swarm({ r: 1.5 })), InvalidConfigError)
    // nna needs k > 2f: n − r = 2 inputs with f = 1 is too few; r = 4 (k = 3) is the most
    assert.throws(() => parseSwarm(swarm({ r: 5 })), refused('r', /r = 5 leaves k = n − r = 2 models a round, but nna needs k > 2f with f = 1; lower r to at most 4/))
    assert.equal(parseSwarm(swarm({ r: 4 })).r, 4)
    // krum needs k > 2f + 2: 7 − 3 = 4 is not > 4
    assert.throws(() => parseSwarm(swarm({ r: 3, aggregator: { rule: 'krum' } })), refused('r', /krum needs k > 2f \+ 2 with f = 1; lower r to at most 2/))
    assert.equal(parseSwarm(swarm({ r: 2, aggregator: { rule: 'multikrum' } })).r, 2)
    // nnm+<rule>: the rule's own and k > 2f
    assert.throws(() => parseSwarm(swarm({ r: 5, aggregator: { rule: 'nnm+mean' } })), refused('r', /nnm\+mean needs k ≥ 1 \(and k > 2f for nnm\)/))
    // mean needs one input: any r < n
    assert.equal(parseSwarm(swarm({ f: 0, r: 6, aggregator: { rule: 'mean' } })).r, 6)
    // a rule that cannot run on the swarm at all says so
    assert.throws(() => parseSwarm(swarm({ f: 1, r: 1, members: ids(4).map((id) => ({ id })), aggregator: { rule: 'krum' } })), refused('r', /cannot run on n = 4 with f = 1/))
  })

  it('the largest r each rule allows', () => {
    assert.equal(ruleMaxR('nna', 7, 1), 4)
    assert.equal(ruleMaxR('cwtm', 26, 5), 15)
    assert.equal(ruleMaxR('krum', 7, 1), 2)
    assert.equal(ruleMaxR('mean', 7, 0), 6)
    assert.equal(ruleMaxR('nnm+cwtm', 7, 1), 4)
    assert.equal(ruleMaxR('no-such-rule', 7, 1), undefined)
  })
})

describe('r per membership epoch and for rushing attackers', () => {
  it('clamps r to f ≤ r < n and to the rule when n or f changes', () => {
    assert.equal(epochR(undefined, 7, 2), 2) // absent: the epoch's f
    assert.equal(epochR(3, 7, 1, 'nna'), 3)
    assert.equal(epochR(3, 4, 1, 'nna'), 1) // a member removed: n − r = 3 > 2f needs r ≤ 1
    assert.equal(epochR(3, 10, 3, 'nna'), 3) // f raised to 3: r stays ≥ f
    assert.equal(epochR(1, 10, 3, 'nna'), 3)
    assert.equal(epochR(9, 7, 0), 6)
    assert.equal(epochR(5, 7, 1, 'krum'), 2)
    assert.equal(epochR(2, 4, 1, 'krum'), 1) // the rule cannot run at n = 4: r falls back to f (the rule fails as before)
  })

  it('a rushing attacker waits for n − r − f honest models (n − 2f when r = f)', () => {
    assert.equal(rushingHonestMin(7, 3, 1), 3)
    assert.equal(rushingHonestMin(26, 5, 5), 16)
    assert.equal(rushingHonestMin(4, 3, 0), 1)
  })
})

describe('scenario file r', () => {
  const scenario = (o: Record<string, unknown> = {}): unknown => ({
    name: 'r-scenario',
    n: 7,
    f: 1,
    byzantine: [{ members: 6, behaviour: 'alie' }],
    ...o,
  })

  it('accepts r and a matrix axis of r; refuses an r or an (r, rule) cell the rule cannot run', () => {
    assert.equal(parseScenario(scenario({ r: 3 })).r, 3)
    assert.equal(parseScenario(scenario()).r, undefined)
    const m = parseScenario(scenario({ matrix: { rules: [{ rule: 'nna' }], behaviours: ['alie'], r: [1, 3] }, expect: { targetAccuracy: 0.8 } }))
    assert.deepEqual(m.matrix?.r, [1, 3])
    assert.equal(m.expect.targetAccuracy, 0.8)
    assert.throws(() => parseScenario(scenario({ r: 0 })), refused('r', /r = 0 is below f = 1/))
    assert.throws(() => parseScenario(scenario({ r: 7 })), refused('r', /use r < 7/))
    assert.throws(
      () => parseScenario(scenario({ matrix: { rules: [{ rule: 'nna' }, { rule: 'krum' }], behaviours: ['alie'], r: [1, 3] } })),
      refused('matrix.r.1', /r = 3 leaves k = n − r = 4 models a round, but krum needs k > 2f \+ 2/),
    )
    // the scenario's own r is checked against every matrix rule too
    assert.throws(() => parseScenario(scenario({ r: 3, matrix: { rules: [{ rule: 'krum' }], behaviours: ['alie'] } })), refused('r', /krum/))
  })
})

describe('the engine waits for n − r', () => {
  it('with r = 3 of n = 7 four running members complete every round with 4 models (with r = f they could not)', async () => {
    const members = memberIds(7)
    const hub = createMemoryHub({ membership: { swarmId: 'test', members, f: 1 } })
    for (const id of members.slice(4)) hub.port(id) // attached (they echo) but never run a round: stragglers
    const engines = members.slice(0, 4).map(
      (self) =>
        new RoundEngine({
          self,
          membership: hub.membership,
          r: 3,
          swarmSeed: 's',
          port: hub.port(self),
          learner: quadraticLearner({ dim: 4, initSeed: 's', dataSeed: self }),
          aggregator: simpleNna(1),
          rounds: 3,
          roundTimeoutMs: 10_000,
        }),
    )
    try {
      assert.deepEqual(
        engines.map((e) => [e.r, e.needed]),
        engines.map(() => [3, 4]),
      )
      const reports = (await Promise.all(engines.map((e) => e.run()))).flat()
      assert.equal(reports.length, 12)
      for (const r of reports) {
        assert.equal(r.needed, 4)
        assert.equal(r.r, 3)
        assert.equal(r.delivered, 4)
        assert.equal(r.stalled, false)
        assert.ok(typeof r.elapsedMs === 'number' && r.elapsedMs >= 0)
      }
      // an engine without r waits for n − f = 6 and reports no r
      const plain = new RoundEngine({
        self: members[0]!,
        membership: hub.membership,
        swarmSeed: 's',
        port: hub.port(members[0]!),
        learner: quadraticLearner({ dim: 4, initSeed: 's', dataSeed: 'x' }),
        aggregator: simpleNna(1),
        rounds: 1,
        roundTimeoutMs: 10_000,
      })
      assert.deepEqual([plain.r, plain.needed], [1, 6])
      plain.dispose()
    } finally {
      for (const e of engines) e.dispose()
    }
  })
})
