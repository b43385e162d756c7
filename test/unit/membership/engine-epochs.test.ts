/** The round engine under membership epochs and in join mode (memory hub, quadratic learner). */
import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { type EpochEvent, type EpochView, RoundEngine, type RoundReport } from '../../../src/node/engine.ts'
import type { Membership } from '../../../src/node/port.ts'
import { createMemoryHub } from '../../support/memory-hub.ts'
import { memberIds, once, quadraticLearner, simpleNna } from '../node/helpers.ts'

const DIM = 6

describe('round engine with membership epochs', () => {
  it('switches n, f and n − f at the activation round on every member; a removed member stops there', async () => {
    const ids = memberIds(7)
    const m0: Membership = { swarmId: 's', members: ids, f: 2 }
    const hub = createMemoryHub({ membership: m0 })
    const epochs: { activation: number; membership: Membership }[] = [
      { activation: 0, membership: m0 },
      { activation: 3, membership: { swarmId: 's', members: ids, f: 1 } }, // set-f
      { activation: 5, membership: { swarmId: 's', members: ids.slice(0, 6), f: 1 } }, // remove member-6
    ]
    const engines = ids.map((id) => {
      const views = epochs.map((e, i): EpochView => ({ epoch: i, membership: e.membership, aggregator: simpleNna(e.membership.f) }))
      return new RoundEngine({
        self: id,
        membership: m0,
        swarmSeed: 's',
        port: hub.port(id),
        learner: quadraticLearner({ dim: DIM, initSeed: 's', dataSeed: id }),
        aggregator: views[0]!.aggregator,
        membershipAt: (round) => views[epochs.filter((e) => e.activation <= round).length - 1]!,
        rounds: 8,
        roundTimeoutMs: 10_000,
      })
    })
    const switches = engines.map((e) => {
      const seen: EpochEvent[] = []
      e.addEventListener('epoch', (ev) => seen.push((ev as CustomEvent<EpochEvent>).detail))
      return seen
    })
    const removed = once<{ epoch: number; round: number }>(engines[6]!, 'removed')
    const reports = await Promise.all(engines.map((e) => e.run()))
    for (let i = 0; i < 6; i++) {
      const rs = reports[i]!
      assert.equal(rs.length, 8)
      assert.deepEqual(
        rs.map((r: RoundReport) => [r.round, r.epoch, r.needed]),
        [[0, 0, 5], [1, 0, 5], [2, 0, 5], [3, 1, 6], [4, 1, 6], [5, 2, 5], [6, 2, 5], [7, 2, 5]],
      )
      assert.deepEqual(switches[i]!.map((s) => [s.epoch, s.round, s.n, s.f]), [[1, 3, 7, 1], [2, 5, 6, 1]])
      for (const r of rs.filter((x) => x.round >= 5)) assert.ok(!r.senders!.includes(ids[6]!), 'the removed member is never aggregated after its removal')
    }
    assert.deepEqual(reports[6]!.map((r) => r.round), [0, 1, 2, 3, 4])
    assert.deepEqual(await removed, { epoch: 2, round: 5 })
    for (const e of engines) e.dispose()
  })

  it('hands the broadcast an epoch of later rounds as soon as it is received, before the boundary (knowEpoch)', async () => {
    // without it, a member before the boundary cannot judge certificates of rounds past it and
    // never sees the swarm move on: a newcomer catching up to the round before a removal waited
    // forever for a model of the removed member (CI, membership-change)
    const ids = memberIds(4)
    const m0: Membership = { swarmId: 's', members: ids, f: 1 }
    const m1: Membership = { swarmId: 's', members: ids, f: 0 }
    const hub = createMemoryHub({ membership: m0 })
    let received = false
    const known: Array<{ member: string; at: number; epoch: number; from: number; f: number }> = []
    const engines: RoundEngine[] = ids.map((id) => {
      const v0: EpochView = { epoch: 0, membership: m0, aggregator: simpleNna(1) }
      const v1: EpochView = { epoch: 1, from: 6, membership: m1, aggregator: simpleNna(0) }
      const port = Object.assign(hub.port(id), {
        knowEpoch: (m: Membership, from: number, epoch: number) => known.push({ member: id, at: engine.round, epoch, from, f: m.f }),
      })
      // epoch 1 (from round 6) is "received" once member 0 has finished round 1
      const engine: RoundEngine = new RoundEngine({
        self: id,
        membership: m0,
        swarmSeed: 's',
        port,
        learner: quadraticLearner({ dim: DIM, initSeed: 's', dataSeed: id, stepDelayMs: 2 }),
        aggregator: v0.aggregator,
        membershipAt: (round) => (received && round >= 6 ? v1 : v0),
        rounds: 9,
        roundTimeoutMs: 10_000,
      })
      return engine
    })
    engines[0]!.addEventListener('round', (e) => {
      if ((e as CustomEvent<RoundReport>).detail.round >= 1) received = true
    })
    const reports = await Promise.all(engines.map((e) => e.run()))
    for (const [i, id] of ids.entries()) {
      const mine = known.filter((k) => k.member === id)
      assert.equal(mine.length, 1, `${id} was handed epoch 1 once`)
      assert.deepEqual([mine[0]!.epoch, mine[0]!.from, mine[0]!.f], [1, 6, 0])
      assert.ok(mine[0]!.at < 6, `${id} knew epoch 1 at round ${mine[0]!.at}, before its boundary`)
      assert.deepEqual(reports[i]!.map((r) => r.epoch), [0, 0, 0, 0, 0, 0, 1, 1, 1])
    }
    for (const e of engines) e.dispose()
  })

  it('a joining member does not step before it caught up, and its momentum restarts at zero', async () => {
    const ids = memberIds(4)
    const m: Membership = { swarmId: 's', members: ids, f: 1 }
    const hub = createMemoryHub({ membership: m })
    const make = (id: string, join: boolean) => {
      const learner = quadraticLearner({ dim: DIM, initSeed: 's', dataSeed: id, stepDelayMs: 3 })
      const engine = new RoundEngine({ self: id, membership: m, swarmSeed: 's', port: hub.port(id), learner, aggregator: simpleNna(1), rounds: 25, roundTimeoutMs: 10_000, join })
      return { engine, learner }
    }
    const early = ids.slice(0, 3).map((id) => make(id, false))
    const runs = early.map((x) => x.engine.run())
    await once<RoundReport>(early[0]!.engine, 'round', (r) => r.round >= 6)
    const joiner = make(ids[3]!, true)
    // give it a non-zero momentum, as a member returning from an old checkpoint would have
    joiner.learner.setMomentum(new Float32Array(DIM).fill(5))
    let stepsAtCatchUp = -1
    let momentumAtCatchUp: Float32Array | undefined
    joiner.engine.addEventListener('catch-up', () => {
      stepsAtCatchUp = joiner.learner.steps
      momentumAtCatchUp = joiner.learner.getMomentum()
    })
    const reports = await joiner.engine.run()
    await Promise.all(runs)
    assert.equal(stepsAtCatchUp, 0, 'no local step before catching up')
    assert.deepEqual(Array.from(momentumAtCatchUp!), new Array(DIM).fill(0))
    assert.ok(reports[0]!.round >= 6 && reports[0]!.caughtUpFrom === 0)
    assert.equal(reports.at(-1)!.round, 24)
    for (const x of [...early, joiner]) x.engine.dispose()
  })

  it('catch-up aggregates with the configured rule when it needs no own vector (catchUpWithRule)', async () => {
    const ids = memberIds(4)
    const m: Membership = { swarmId: 's', members: ids, f: 1 }
    const hub = createMemoryHub({ membership: m })
    const early = ids.slice(0, 3).map((id) =>
      new RoundEngine({ self: id, membership: m, swarmSeed: 's', port: hub.port(id), learner: quadraticLearner({ dim: DIM, initSeed: 's', dataSeed: id, stepDelayMs: 3 }), aggregator: simpleNna(1), rounds: 20, roundTimeoutMs: 10_000 }),
    )
    const runs = early.map((e) => e.run())
    await once<RoundReport>(early[0]!, 'round', (r) => r.round >= 5)
    const calls: { k: number; context: unknown }[] = []
    const mean = {
      aggregate(inputs: Float32Array[], context?: unknown) {
        calls.push({ k: inputs.length, context })
        const out = new Float32Array(DIM)
        for (const x of inputs) for (let j = 0; j < DIM; j++) out[j]! += x[j]! / inputs.length
        return out
      },
    }
    const learner = quadraticLearner({ dim: DIM, initSeed: 's', dataSeed: ids[3]!, stepDelayMs: 3 })
    const late = new RoundEngine({ self: ids[3]!, membership: m, swarmSeed: 's', port: hub.port(ids[3]!), learner, aggregator: mean, rounds: 20, roundTimeoutMs: 10_000, join: true, catchUpWithRule: true })
    const caught = once<{ to: number; delivered: number }>(late, 'catch-up')
    let paramsAtCatchUp: Float32Array | undefined
    late.addEventListener('catch-up', () => {
      paramsAtCatchUp = learner.getParams()
    })
    await late.run()
    await Promise.all(runs)
    const ev = await caught
    assert.deepEqual(calls[0], { k: ev.delivered, context: undefined }, 'the first aggregation is the catch-up, without an own vector')
    assert.ok(ev.delivered >= 3)
    assert.ok(paramsAtCatchUp !== undefined)
    for (const e of [...early, late]) e.dispose()
  })
})
