import assert from 'node:assert/strict'
import { readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { describe, it } from 'node:test'
import { parse } from 'yaml'
import { renderPaperTable, withPaperTable } from '../../../scripts/paper-table.ts'
import { loadScenario, parseScenario } from '../../../src/topology/schema.ts'
import { runInProcess } from '../../support/in-process.ts'

const root = join(import.meta.dirname, '../../..')

async function readmeScenario(): Promise<unknown> {
  const readme = await readFile(join(root, 'README.md'), 'utf8')
  const section = readme.slice(readme.indexOf('<!-- section:topologies:start -->'), readme.indexOf('<!-- section:topologies:end -->'))
  const block = /```yaml\n([\s\S]*?)```/.exec(section)
  assert.ok(block !== null, 'the topologies section has a YAML example')
  return parse(block[1]!)
}

describe('README topologies section', () => {
  it('its scenario example is valid and is topologies/ci-smoke.yaml', async () => {
    const example = parseScenario(await readmeScenario(), 'README example')
    const file = await loadScenario(join(root, 'topologies/ci-smoke.yaml'))
    for (const key of ['n', 'f', 'task', 'aggregator', 'timing', 'byzantine', 'network', 'expect'] as const) {
      assert.deepEqual(example[key], file[key], `README example and ci-smoke.yaml differ in ${key}`)
    }
  })

  it('its scenario example runs and passes (in-process)', async () => {
    const report = await runInProcess(parseScenario(await readmeScenario()), 'monna-readme-')
    assert.equal(report.passed, true, JSON.stringify(report.expectations))
  })
})

describe('README full-scale table', () => {
  it('is what the committed reports under docs/paper-report say (`npm run paper-table -- --write` remakes it)', async () => {
    const readme = await readFile(join(root, 'README.md'), 'utf8')
    const table = await renderPaperTable(root)
    assert.ok(table.split('\n').length > 2, 'docs/paper-report holds reports')
    assert.equal(withPaperTable(readme, table), readme, 'README.md differs from `npm run paper-table`: run `npm run paper-table -- --write`')
  })
})
