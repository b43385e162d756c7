import { mkdtemp } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { runTopology } from '../../src/topology/runner.ts'
import { loadScenario } from '../../src/topology/schema.ts'
const s = await loadScenario(join(import.meta.dirname, '../../topologies/paper-mnist-none.yaml'))
s.task.rounds = Number(process.env.R ?? 40)
s.task.evalEvery = 1_000_000
const dir = await mkdtemp(join(tmpdir(), 'trend-'))
let last = performance.now()
let cpu = process.cpuUsage()
await runTopology(s, {
  outDir: dir,
  mode: 'in-process',
  onProgress: (e) => {
    if (e.kind !== 'round') return
    const now = performance.now()
    const c = process.cpuUsage(cpu)
    cpu = process.cpuUsage()
    const m = process.memoryUsage()
    console.log(`round ${e.round} wall ${((now - last) / 1000).toFixed(2)} s cpu ${((c.user + c.system) / 1e6).toFixed(2)} s rss ${(m.rss / 2 ** 20).toFixed(0)} heap ${(m.heapUsed / 2 ** 20).toFixed(0)} ext ${(m.external / 2 ** 20).toFixed(0)}`)
    last = now
  },
})
