import assert from 'node:assert/strict'
import { once } from 'node:events'
import { describe, it } from 'node:test'
import type { Delivery } from '../../../src/node/port.ts'
import { Rng } from '../../../src/rng.ts'
import { conditionedPort } from '../../../src/topology/network.ts'
import { parseScenario } from '../../../src/topology/schema.ts'
import { createMemoryHub } from '../../support/memory-hub.ts'

const members = ['p0', 'p1', 'p2', 'p3']

describe('conditioned broadcast port', () => {
  it('delays what a slow member sends and loses what a lossy link carries', async () => {
    const { network } = parseScenario({
      name: 'net',
      n: 4,
      f: 1,
      network: { members: [{ members: 0, latencyMs: 150 }], links: [{ from: 0, to: 2, loss: 1 }] },
    })
    const hub = createMemoryHub({ membership: { swarmId: 's', members, f: 1 } })
    const ports = members.map((m, i) => conditionedPort(hub.port(m), { self: i, members, network, rng: new Rng(i) }))
    try {
      const arrivals: Record<string, number>[] = ports.map(() => ({}))
      const start = Date.now()
      for (const [i, p] of ports.entries()) {
        p.addEventListener('deliver', (e) => {
          arrivals[i]![(e as CustomEvent<Delivery>).detail.sender] = Date.now() - start
        })
      }
      const p1sees0 = once(ports[1]!, 'deliver', {}) // first delivery at p1
      await Promise.all([ports[0]!.broadcast(0, Uint8Array.of(1)), ports[3]!.broadcast(0, Uint8Array.of(3))])
      await p1sees0
      // p1 sees p3 first (no delay); p0 only after its 150 ms latency
      while (arrivals[1]!.p0 === undefined) await once(ports[1]!, 'deliver')
      assert.ok(arrivals[1]!.p0! >= 140, `p0 → p1 after ${arrivals[1]!.p0} ms`)
      assert.ok(arrivals[1]!.p3! < arrivals[1]!.p0!)
      assert.deepEqual(ports[1]!.delivered(0).map((d) => d.sender).sort(), ['p0', 'p3'])
      // own instance is never delayed
      assert.ok(ports[0]!.delivered(0).some((d) => d.sender === 'p0'))
      // p2 never sees p0, not even through catch-up
      while (arrivals[2]!.p3 === undefined) await once(ports[2]!, 'deliver')
      assert.deepEqual(ports[2]!.delivered(0).map((d) => d.sender), ['p3'])
      assert.deepEqual((await ports[2]!.fetchRound(0)).map((d) => d.sender), ['p3'])
    } finally {
      await Promise.all(ports.map((p) => p.stop()))
    }
  })
})
