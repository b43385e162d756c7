/**
 * A matrix with an encodings axis reports what each encoding saves: the MB the median honest
 * member sent per round, as a column of matrix.md and the x axis of matrix.svg (accuracy against
 * bytes), redrawn from the cells alone by writeMatrix.
 */
import assert from 'node:assert/strict'
import { mkdtemp, readFile, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { test } from 'node:test'
import { type MatrixCell, writeMatrix } from '../../../src/topology/matrix.ts'

test('an encodings matrix: MB sent per member and round in the table, accuracy against bytes in the plot', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'monna-matrix-enc-'))
  try {
    const cell = (behaviour: string, encoding: string, mb: number, acc: number): MatrixCell => ({
      rule: 'nna',
      behaviour,
      encoding,
      batchSize: 25,
      privacy: 'none',
      r: 5,
      minHonestAccuracy: acc - 0.01,
      medianHonestAccuracy: acc,
      mbSentPerRound: mb,
      passed: true,
      report: 'x/report.html',
    })
    const cells = [cell('alie', 'float32', 43.1, 0.938), cell('alie', 'int8', 11.0, 0.937), cell('foe', 'float16', 21.6, 0.941)]
    const { files } = await writeMatrix({ scenario: 'enc', axes: { batchSizes: false, privacy: false, encodings: true }, cells }, dir)
    const md = await readFile(files.markdown, 'utf8')
    assert.match(md, /\| MB sent \/ member \/ round \|/)
    const rows = md.split('\n').filter((l) => l.startsWith('| alie') || l.startsWith('| foe'))
    assert.deepEqual(
      rows.map((r) => r.split('|').map((x) => x.trim())[5]),
      ['43.1', '11.0', '21.6'],
      md,
    )
    const svg = await readFile(files.svg, 'utf8')
    assert.match(svg, /MB sent per honest member per round/)
    assert.match(svg, /int8/)
    const json = JSON.parse(await readFile(files.json, 'utf8')) as { cells: MatrixCell[] }
    assert.deepEqual(
      json.cells.map((c) => c.mbSentPerRound),
      [43.1, 11.0, 21.6],
    )
    // without the bytes (a matrix.json of an older run) the plot falls back to the grouped bars
    const old = await writeMatrix({ scenario: 'enc', axes: { batchSizes: false, privacy: false, encodings: true }, cells: cells.map(({ mbSentPerRound, ...c }) => c) }, join(dir, 'old'))
    assert.doesNotMatch(await readFile(old.files.svg, 'utf8'), /MB sent per honest member per round/)
    assert.match(await readFile(old.files.markdown, 'utf8'), /\| — \|/)
  } finally {
    await rm(dir, { recursive: true, force: true })
  }
})
