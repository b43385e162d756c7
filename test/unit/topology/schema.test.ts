import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { InvalidConfigError } from '../../../src/errors.ts'
import { Rng } from '../../../src/rng.ts'
import { isIdealNetwork, linkConditions, messageFate } from '../../../src/topology/network.ts'
import { applyOverrides, byzantineByMember, parseScenario, withVariant } from '../../../src/topology/schema.ts'

const base = {
  name: 't',
  n: 7,
  f: 2,
  task: { dataset: { kind: 'gaussian-mixture' }, model: { kind: 'logreg' }, rounds: 20 },
  byzantine: [{ members: [5, 6], behaviour: 'alie', z: 1.5 }],
  network: { members: [{ members: [3, 4], latencyMs: 300 }], links: [{ from: 3, to: 0, loss: 1 }] },
  expect: { minHonestAccuracy: 0.8 },
}

describe('scenario schema', () => {
  it('parses a scenario with defaults and keeps behaviour parameters', () => {
    const s = parseScenario(base)
    assert.equal(s.aggregator.rule, 'nna')
    assert.equal(s.task.rounds, 20)
    assert.equal(s.byzantine[0]!.z, 1.5)
    assert.deepEqual(s.byzantine[0]!.members, [5, 6])
    const byMember = byzantineByMember(s)
    assert.equal(byMember[0], undefined)
    assert.equal(byMember[6]!.behaviour, 'alie')
  })

  it('applies --set overrides before validation: dot paths, list indexes, YAML values, null removes', () => {
    const withMatrix = { ...base, matrix: { rules: [{ rule: 'nna' }, { rule: 'mean' }], behaviours: ['alie'] } }
    const data = applyOverrides(withMatrix, ['aggregator={rule: mean}', 'task.rounds=50', 'byzantine.0.behaviour=foe', 'matrix=null', 'expect.targetAccuracy=0.5'], 'x.yaml')
    const s = parseScenario(data)
    assert.equal(s.aggregator.rule, 'mean')
    assert.equal(s.task.rounds, 50)
    assert.equal(s.byzantine[0]!.behaviour, 'foe')
    assert.equal(s.matrix, undefined)
    assert.equal(s.expect.targetAccuracy, 0.5)
    assert.equal(withMatrix.task.rounds, 20, 'the input is not changed')
    assert.equal(parseScenario(applyOverrides(base, ['aggregator.rule=cwtm'], 'x.yaml')).aggregator.rule, 'cwtm', 'a missing mapping on the path is created')
    const bad = (o: string, re: RegExp): void => assert.throws(() => applyOverrides(base, [o], 'x.yaml'), (e: Error) => e instanceof InvalidConfigError && re.test(e.message))
    bad('task.rounds', /^x\.yaml: --set task\.rounds: give path=value/)
    bad('=3', /give path=value/)
    bad('task..rounds=3', /give path=value/)
    bad('name.x=1', /--set name\.x=1: name is "t", not a mapping or list/)
    bad('byzantine.first=1', /byzantine is a list; index it with a number/)
    bad('__proto__.polluted=1', /is not a scenario field/)
    bad('task={a: [1', /the value is not valid YAML/)
    assert.equal(({} as Record<string, unknown>).polluted, undefined)
    // a value of the wrong kind is the schema's to name
    assert.throws(() => parseScenario(applyOverrides(base, ['task.rounds=many'], 'x.yaml'), 'x.yaml'), /task\.rounds/)
  })

  it('names the bad field', () => {
    assert.throws(() => parseScenario({ ...base, byzantine: [{ members: 1, behaviour: 'nope' }] }), (e: unknown) => {
      assert.ok(e instanceof InvalidConfigError)
      assert.match(e.path, /byzantine\.0\.behaviour/)
      return true
    })
    assert.throws(() => parseScenario({ ...base, f: 3 }), /n ≥ 10/)
    assert.throws(() => parseScenario({ ...base, byzantine: [{ members: [4, 5, 6], behaviour: 'silent' }] }), /f = 2/)
    assert.throws(() => parseScenario({ ...base, byzantine: [{ members: [9], behaviour: 'silent' }] }), /member 9 does not exist/)
    assert.throws(() => parseScenario({ ...base, byzantine: [{ members: [1], behaviour: 'equivocate', crafted: [0, 8] }] }), /byzantine\.0\.crafted: member 8 does not exist/)
    assert.throws(() => parseScenario({ ...base, network: { links: [{ from: 0, to: 8 }] } }), /network\.links\.0\.to/)
    // an unknown rule is refused at load, naming the rules (it used to fail only when the run started)
    assert.throws(() => parseScenario({ ...base, aggregator: { rule: 'median' } }, 'x.yaml'), /aggregator\.rule: unknown rule 'median'; use one of mean, cwmed, .*nnm\+nna/)
    assert.throws(() => parseScenario({ ...base, matrix: { rules: [{ rule: 'nna' }, { rule: 'krumm' }], behaviours: ['alie'] } }, 'x.yaml'), /matrix\.rules\.1\.rule: unknown rule 'krumm'/)
    assert.equal(parseScenario({ ...base, aggregator: { rule: 'nnm+cwtm' } }).aggregator.rule, 'nnm+cwtm')
  })


  it('builds matrix variants', () => {
    const s = parseScenario(base)
    const v = withVariant(s, { aggregator: { rule: 'mean' }, behaviour: { behaviour: 'sign-flip' } })
    assert.equal(v.aggregator.rule, 'mean')
    assert.equal(v.byzantine[0]!.behaviour, 'sign-flip')
    assert.deepEqual(v.byzantine[0]!.members, [5, 6])
    assert.equal(s.aggregator.rule, 'nna')
  })
})

describe('network conditions', () => {
  it('resolves default < member egress < link', () => {
    const s = parseScenario(base)
    assert.equal(linkConditions(s.network, 0, 1).latencyMs, 0)
    assert.equal(linkConditions(s.network, 3, 1).latencyMs, 300)
    assert.equal(linkConditions(s.network, 1, 3).latencyMs, 0)
    assert.equal(linkConditions(s.network, 3, 0).loss, 1)
    assert.equal(linkConditions(s.network, 3, 0).latencyMs, 300)
    assert.equal(isIdealNetwork(s.network, s.n), false)
    assert.equal(isIdealNetwork(parseScenario({ ...base, network: undefined }).network, 7), true)
  })

  it('draws delays and losses from the link', () => {
    const rng = new Rng(1)
    assert.equal(messageFate({ latencyMs: 10, jitterMs: 0, loss: 1 }, 100, rng), null)
    assert.equal(messageFate({ latencyMs: 10, jitterMs: 0, loss: 0, bandwidthBytesPerSec: 1000 }, 500, rng), 510)
    const ds = Array.from({ length: 200 }, () => messageFate({ latencyMs: 5, jitterMs: 10, loss: 0.5 }, 0, rng))
    const lost = ds.filter((d) => d === null).length
    assert.ok(lost > 60 && lost < 140, `lost ${lost}`)
    for (const d of ds) if (d !== null) assert.ok(d >= 5 && d <= 15)
  })
})
