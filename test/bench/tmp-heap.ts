import { mkdtemp } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { writeHeapSnapshot } from 'node:v8'
import { runTopology } from '../../src/topology/runner.ts'
import { loadScenario } from '../../src/topology/schema.ts'
const s = await loadScenario(join(import.meta.dirname, '../../topologies/paper-mnist-none.yaml'))
s.task.rounds = 32
s.task.evalEvery = 1_000_000
const dir = await mkdtemp(join(tmpdir(), 'heap-'))
await runTopology(s, {
  outDir: dir,
  mode: 'in-process',
  onProgress: (e) => {
    if (e.kind !== 'round') return
    if (e.round === 8 || e.round === 28) {
      global.gc?.()
      console.log('snapshot', e.round, writeHeapSnapshot(`/tmp/heap-${e.round}.heapsnapshot`))
    }
  },
})
