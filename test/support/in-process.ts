/** Running a scenario in tests: every member in this process, its report and files in a temporary directory. */
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { TopologyReport } from '../../src/topology/report.ts'
import { runTopology } from '../../src/topology/runner.ts'
import type { Scenario } from '../../src/topology/schema.ts'

/** Runs `s` with every member in this process, in a temporary directory (`prefix` + random) removed afterwards. */
export async function runInProcess(s: Scenario, prefix: string): Promise<TopologyReport> {
  const dir = await mkdtemp(join(tmpdir(), prefix))
  try {
    return (await runTopology(s, { outDir: dir, mode: 'in-process' })).report
  } finally {
    await rm(dir, { recursive: true, force: true })
  }
}
