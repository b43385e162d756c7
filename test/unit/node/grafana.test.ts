/**
 * docs/grafana/monna.json cannot rot: it is valid JSON importable as it is (its Prometheus data
 * source is an input variable), and every metric its queries name exists, with the labels the
 * queries select on, in the registry of a real member (createSwarmNode over TCP on 127.0.0.1).
 */
import assert from 'node:assert/strict'
import { readFile } from 'node:fs/promises'
import { after, it } from 'node:test'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { Registry } from 'prom-client'
import { parseSwarm } from '../../../src/config/schema.ts'
import { peerIdOfKey } from '../../../src/net/index.ts'
import { createSwarmNode, type SwarmNode } from '../../../src/node/index.ts'

/** the data-source input the dashboard's panels and variables must use */
const input = ['$', '{DS_PROMETHEUS}'].join('')
const file = new URL('../../../docs/grafana/monna.json', import.meta.url)
let node: SwarmNode | undefined
after(async () => {
  await node?.stop()
})

interface Panel {
  type: string
  title: string
  datasource?: { uid: string }
  targets?: { expr: string; datasource?: { uid: string } }[]
}

it('the Grafana dashboard is valid JSON, imports with a data-source input, and queries only metrics a member registers', { timeout: 120_000 }, async () => {
  const dash = JSON.parse(await readFile(file, 'utf8')) as {
    __inputs: { name: string; type: string; pluginId: string }[]
    panels: Panel[]
    templating: { list: { query: { query: string } | string; datasource: { uid: string } }[] }
    uid: string
    title: string
  }
  assert.equal(typeof dash.uid, 'string')
  assert.deepEqual(
    dash.__inputs.map((i) => [i.name, i.type, i.pluginId]),
    [['DS_PROMETHEUS', 'datasource', 'prometheus']],
  )
  const exprs: string[] = []
  for (const p of dash.panels) {
    if (p.type === 'row') continue
    assert.equal(p.datasource?.uid, input, `panel "${p.title}" uses the input data source`)
    assert.ok((p.targets ?? []).length > 0, `panel "${p.title}" has a query`)
    for (const t of p.targets ?? []) {
      assert.equal(t.datasource?.uid, input)
      exprs.push(t.expr)
    }
  }
  for (const v of dash.templating.list) {
    assert.equal(v.datasource.uid, input)
    exprs.push(typeof v.query === 'string' ? v.query : v.query.query)
  }

  // a real member's registry: the node's, the broadcast's and the connection metrics
  const keys = await Promise.all([0, 1].map(() => generateKeyPair('Ed25519')))
  const swarm = parseSwarm({
    name: 'grafana',
    seed: 1,
    f: 0,
    members: keys.map((k, i) => ({ id: peerIdOfKey(k), name: `m${i}` })),
    task: { dataset: { kind: 'gaussian-mixture', classes: 2, dim: 4, trainSize: 64, testSize: 16, seed: 1 }, model: { kind: 'logreg' }, batchSize: 8, schedule: { kind: 'constant', lr: 0.1 }, beta: 0.9, rounds: 2 },
  })
  const registry = new Registry()
  node = await createSwarmNode({ swarm, privateKey: keys[0]!, listen: ['/ip4/127.0.0.1/tcp/0'], backend: 'cpu', registry })
  const labels = new Map<string, string[]>()
  for (const m of registry.getMetricsAsArray()) labels.set(m.name, (m as unknown as { labelNames?: string[] }).labelNames ?? [])

  const used = new Set<string>()
  for (const e of exprs) {
    for (const [, name, selector] of e.matchAll(/\b(monna_[a-z_]+)(\{[^}]*\})?/g)) {
      const base = name!.replace(/_(bucket|count|sum)$/, '')
      const known = labels.has(name!) ? name! : base
      assert.ok(labels.has(known), `${name} (in ${e}) is not registered by a member; registered: ${[...labels.keys()].filter((k) => k.startsWith('monna_')).join(', ')}`)
      used.add(known)
      for (const [, label] of (selector ?? '').matchAll(/([a-z_]+)\s*=~?/g)) {
        assert.ok(labels.get(known)!.includes(label!), `${known} has no label ${label} (in ${e})`)
      }
    }
  }
  // the board shows every monna metric a member registers
  const monna = [...labels.keys()].filter((k) => k.startsWith('monna_'))
  assert.deepEqual(monna.filter((k) => !used.has(k)), [], 'metrics missing from the dashboard')
})
