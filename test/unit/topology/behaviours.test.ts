import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { InvalidConfigError } from '../../../src/errors.ts'
import type { ByzantineContext } from '../../../src/node/behaviour.ts'
import { ByzantineCrashError, createBehaviour } from '../../../src/node/behaviour.ts'
import { Rng } from '../../../src/rng.ts'
import { createTopologyBehaviour, needsLabelFlip, registerStandardBehaviours } from '../../../src/topology/behaviours.ts'
import { behaviourNames } from '../../../src/topology/schema.ts'

const members = ['a', 'b', 'c', 'd', 'e', 'f', 'g']
const honestModels = [Float32Array.of(1, 2, 3), Float32Array.of(1.2, 2, 2.8), Float32Array.of(0.8, 2, 3.2)]

function context(round = 3): ByzantineContext & { waited: { min?: number }[] } {
  const waited: { min?: number }[] = []
  return {
    round,
    self: 'g',
    members,
    f: 2,
    swarmSeed: 1,
    ownHalfStep: Float32Array.of(1, 2, 3),
    rng: new Rng(7),
    waited,
    broadcast: () => {},
    honest: async (o) => {
      waited.push(o ?? {})
      return honestModels.map((m) => Float32Array.from(m))
    },
  }
}

describe('Byzantine behaviours', () => {
  it('sign-flip is rushing and sends −μ of what it saw (with its own step)', async () => {
    const ctx = context()
    const a = await createTopologyBehaviour({ behaviour: 'sign-flip' }).decide(ctx)
    assert.equal(a.kind, 'send')
    assert.equal(ctx.waited.length, 1)
    if (a.kind !== 'send') return
    assert.deepEqual(Array.from(a.model).map((x) => Math.round(x * 1e5) / 1e5), [-1, -2, -3])
  })

  it('a Byzantine member whose own half step diverged still attacks, from the others\' models alone (optimal-alie against the mean: its own training breaks first)', async () => {
    const ctx = { ...context(), ownHalfStep: Float32Array.of(1, Number.NEGATIVE_INFINITY, 3) }
    const a = await createTopologyBehaviour({ behaviour: 'optimal-alie', aggregator: { rule: 'mean' } }).decide(ctx)
    assert.equal(a.kind, 'send')
    if (a.kind === 'send') for (const x of a.model) assert.ok(Number.isFinite(x), `crafted ${Array.from(a.model)}`)
    const s = await createTopologyBehaviour({ behaviour: 'sign-flip' }).decide({ ...context(), ownHalfStep: Float32Array.of(Number.NaN, 2, 3) })
    if (s.kind === 'send') assert.deepEqual(Array.from(s.model).map((x) => Math.round(x * 1e5) / 1e5), [-1, -2, -3])
  })

  it('alie moves against σ; foe scales μ by −ε; waitFor is passed to the rushing wait', async () => {
    const ctx = context()
    const alie = await createTopologyBehaviour({ behaviour: 'alie', z: 1, waitFor: 2 }).decide(ctx)
    assert.deepEqual(ctx.waited[0], { min: 2 })
    assert.equal(alie.kind, 'send')
    if (alie.kind === 'send') {
      assert.ok(alie.model[0]! < 1)
      assert.ok(Math.abs(alie.model[1]! - 2) < 1e-6)
    }
    const foe = await createTopologyBehaviour({ behaviour: 'foe', epsilon: 0.5 }).decide(context())
    if (foe.kind !== 'send') assert.fail('foe sends')
    assert.ok(Math.abs(foe.model[1]! + 1) < 1e-6)
  })

  it('mimic copies another member, gaussian is noise, non-finite is non-finite', async () => {
    const m = await createTopologyBehaviour({ behaviour: 'mimic' }).decide(context())
    if (m.kind !== 'send') assert.fail('mimic sends')
    assert.deepEqual(Array.from(m.model), Array.from(honestModels[0]!))
    const g = await createTopologyBehaviour({ behaviour: 'gaussian', std: 100 }).decide(context())
    if (g.kind !== 'send') assert.fail('gaussian sends')
    assert.ok(g.model.some((x) => Math.abs(x) > 10))
    const nf = await createTopologyBehaviour({ behaviour: 'non-finite' }).decide(context())
    if (nf.kind !== 'send') assert.fail('non-finite sends')
    assert.ok(nf.model.some((x) => !Number.isFinite(x)))
  })

  it('protocol behaviours: label-flip, silent, crash, late, replay, malformed, equivocate', async () => {
    assert.equal(needsLabelFlip({ behaviour: 'label-flip' }), true)
    const lf = await createTopologyBehaviour({ behaviour: 'label-flip' }).decide(context())
    assert.equal(lf.kind, 'send')
    assert.deepEqual(await createTopologyBehaviour({ behaviour: 'silent' }).decide(context()), { kind: 'silent' })
    const crash = createTopologyBehaviour({ behaviour: 'crash', atRound: 3 })
    assert.equal((await crash.decide(context(2))).kind, 'send')
    assert.equal((await crash.decide(context(3))).kind, 'crash')
    const late = await createTopologyBehaviour({ behaviour: 'late', delayMs: 500 }).decide(context())
    assert.equal(late.kind === 'send' && late.delayMs, 500)
    assert.deepEqual(await createTopologyBehaviour({ behaviour: 'replay', lag: 2 }).decide(context(5)), { kind: 'replay', fromRound: 3 })
    assert.equal((await createTopologyBehaviour({ behaviour: 'replay' }).decide(context(0))).kind, 'send')
    const mal = await createTopologyBehaviour({ behaviour: 'malformed', bytes: 5 }).decide(context())
    assert.equal(mal.kind === 'send-raw' && mal.payload.byteLength, 5)
    const eq = await createTopologyBehaviour({ behaviour: 'equivocate' }).decide(context())
    if (eq.kind !== 'equivocate') assert.fail('equivocates')
    assert.equal(eq.models.size, members.length - 1)
    assert.equal(eq.models.has('g'), false)
    const versions = new Set([...eq.models.values()].map((m) => m.join(',')))
    assert.equal(versions.size, 2)
    // `crafted` names who gets the crafted version (member indices); everyone else the half step
    const to = await createTopologyBehaviour({ behaviour: 'equivocate', crafted: [0, 1] }).decide(context())
    if (to.kind !== 'equivocate') assert.fail('equivocates')
    const half = Array.from(context().ownHalfStep).join(',')
    assert.deepEqual(
      members.filter((m) => m !== 'g').map((m) => to.models.get(m)!.join(',') !== half),
      [true, true, false, false, false, false],
    )
    assert.throws(() => createTopologyBehaviour({ behaviour: 'equivocate', crafted: [0, -1] }), /crafted/)
    assert.throws(() => createTopologyBehaviour({ behaviour: 'equivocate', crafted: 'a' }), /crafted/)
  })

  it('rejects unknown behaviours and bad parameters', () => {
    assert.throws(() => createTopologyBehaviour({ behaviour: 'nope' }), InvalidConfigError)
    assert.throws(() => createTopologyBehaviour({ behaviour: 'crash', atRound: 'x' }), /atRound/)
    assert.throws(() => createTopologyBehaviour({ behaviour: 'alie', zz: 1 }), /zz/)
  })

  it('registers every behaviour with the node registry', async () => {
    registerStandardBehaviours()
    for (const name of behaviourNames) assert.equal(createBehaviour({ behaviour: name }).name, name)
    const b = createBehaviour({ behaviour: 'crash', atRound: 0 })
    await assert.rejects(b.act(context(0)), ByzantineCrashError)
  })
})
