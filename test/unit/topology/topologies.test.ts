import assert from 'node:assert/strict'
import { readdir } from 'node:fs/promises'
import { join } from 'node:path'
import { describe, it } from 'node:test'
import { matrixMarkdown } from '../../../src/topology/matrix.ts'
import { byzantineByMember, loadScenario } from '../../../src/topology/schema.ts'

const dir = join(import.meta.dirname, '../../../topologies')

describe('standard topologies', () => {
  it('every file in topologies/ is a valid scenario', async () => {
    const files = (await readdir(dir)).filter((f) => /\.(ya?ml|json)$/.test(f))
    assert.ok(files.length >= 6)
    for (const f of files) {
      const s = await loadScenario(join(dir, f))
      // every standard topology attacks its swarm, except the no-attack baseline paper-mnist-none
      assert.equal(s.byzantine.length > 0, !f.endsWith('-none.yaml'), `${f}: Byzantine members ${s.byzantine.length}`)
      assert.ok(Object.keys(s.expect).length > 0, `${f} states expectations`)
    }
  })

  it('paper-mnist-* follow ALGORITHMS §7', async () => {
    for (const attack of ['alie', 'foe', 'sign-flip', 'label-flip']) {
      const s = await loadScenario(join(dir, `paper-mnist-${attack}.yaml`))
      assert.equal(s.n, 26)
      assert.equal(s.f, 5)
      assert.equal(s.task.rounds, 600)
      assert.deepEqual(s.task.model, { kind: 'lenet' })
      assert.deepEqual(s.task.partition, { scheme: 'dirichlet', alpha: 1 })
      assert.equal(byzantineByMember(s).filter((b) => b?.behaviour === attack).length, 5)
      assert.deepEqual(s.matrix!.rules.map((r) => r.rule).sort(), ['cc', 'cwtm', 'gm', 'mean', 'nna', 'nna'])
    }
  })

  it('paper-mnist-none is the §7 swarm without attack', async () => {
    const none = await loadScenario(join(dir, 'paper-mnist-none.yaml'))
    const alie = await loadScenario(join(dir, 'paper-mnist-alie.yaml'))
    assert.deepEqual(none.task, alie.task)
    assert.equal(none.n, 26)
    assert.equal(none.f, 5)
    assert.deepEqual(none.aggregator, alie.aggregator)
    assert.equal(none.byzantine.length, 0)
  })

  it('scale-100 is a 100-member swarm, f/n = 1/5, one ALIE member; the bench:scale swarms validate', async () => {
    const s = await loadScenario(join(dir, 'scale-100.yaml'))
    assert.equal(s.n, 100)
    assert.equal(s.f, 20)
    assert.deepEqual(s.task.model, { kind: 'logreg' })
    assert.deepEqual(
      byzantineByMember(s).flatMap((b, i) => (b === undefined ? [] : [[i, b.behaviour]])),
      [[99, 'alie']],
    )
    assert.ok(s.expect.minHonestAccuracy !== undefined && s.expect.minHonestAccuracy >= 0.5)
    const { scaleScenario } = await import('../../bench/scale.bench.ts')
    for (const n of [26, 50, 100, 200]) {
      const b = scaleScenario(n, 6)
      assert.equal(b.f, Math.floor(n / 5))
      assert.equal(b.byzantine.length, 1)
    }
  })

  it('formats a matrix table', () => {
    const md = matrixMarkdown({
      scenario: 'x',
      cells: [
        { rule: 'nna', behaviour: 'alie', minHonestAccuracy: 0.9, medianHonestAccuracy: 0.95, passed: true, report: '' },
        { rule: 'mean', behaviour: 'alie', minHonestAccuracy: 0.1, medianHonestAccuracy: null, passed: false, report: '' },
      ],
    })
    assert.match(md, /\| nna \| 90\.0 \/ 95\.0 \|/)
    assert.match(md, /\| mean \| 10\.0 \/ — \|/)
  })
})
