/**
 * Shared by bench:inprocess and bench:round: the machine line, a scenario cut to a number of
 * rounds (and members), and one topology run measured by its rounds — seconds per round once
 * running and the median honest member's per-phase time.
 */
import { cpus, loadavg, totalmem } from 'node:os'
import type { RoundPhases } from '../../src/node/index.ts'
import { type RunTopologyOptions, runTopology, type TopologyRun } from '../../src/topology/runner.ts'
import { loadScenario, parseScenario, type Scenario } from '../../src/topology/schema.ts'

export const machine = (): Record<string, unknown> => ({
  cpu: cpus()[0]?.model,
  cores: cpus().length,
  memoryGB: Math.round(totalmem() / 2 ** 30),
  node: process.version,
  load: loadavg().map((x) => Number(x.toFixed(1))),
})

/**
 * The scenario file cut to `rounds` rounds with only the final evaluation; with `members`, that
 * many members with the same task (f scaled down to ⌊(members − 1)/3⌋ when the file's f needs more).
 */
export async function benchScenario(file: string, rounds: number, members?: number): Promise<Scenario> {
  let s = await loadScenario(file)
  if (members !== undefined && members !== s.n) s = parseScenario({ ...s, n: members, f: Math.min(s.f, Math.floor((members - 1) / 3)) }, file)
  s.task.rounds = rounds
  s.task.evalEvery = 1_000_000 // only the final evaluation
  return s
}

const phaseKeys = ['trainMs', 'waitMs', 'aggregateMs', 'evaluateMs', 'checkpointMs'] as const

export interface MeasuredRun extends TopologyRun {
  rounds: number
  /** from the end of round 0 to the end of the one before the last, per round */
  secondsPerRound: number
  wallSeconds: number
  /** median honest member, mean over rounds 1 … R − 2 */
  phasesMs: Record<(typeof phaseKeys)[number], number | null>
  /** the last round (with every member's evaluation on the whole test set) */
  lastRoundPhasesMs: RoundPhases | null
}

/** Runs the scenario and measures its rounds. */
export async function measureRun(s: Scenario, opts: RunTopologyOptions): Promise<MeasuredRun> {
  const roundEnds: number[] = []
  const phases: RoundPhases[] = []
  let last: RoundPhases | null = null
  const started = performance.now()
  const run = await runTopology(s, {
    ...opts,
    onProgress: (e) => {
      opts.onProgress?.(e)
      if (e.kind !== 'round') return
      roundEnds.push(performance.now())
      if (e.phases !== undefined && e.round >= 1 && e.round < e.rounds - 1) phases.push(e.phases)
      if (e.phases !== undefined && e.round === e.rounds - 1) last = e.phases
    },
  })
  // seconds per round once running: from the end of round 0 to the end of the one before the
  // last (the last round ends with every member's evaluation on the whole test set, which in one
  // process runs one member after the other: it is not a round's cost)
  const secondsPerRound = roundEnds.length >= 3 ? (roundEnds.at(-2)! - roundEnds[0]!) / 1000 / (roundEnds.length - 2) : Number.NaN
  const phasesMs = Object.fromEntries(
    phaseKeys.map((k) => [k, phases.length === 0 ? null : Number((phases.reduce((a, p) => a + p[k], 0) / phases.length).toFixed(1))]),
  ) as MeasuredRun['phasesMs']
  return { ...run, rounds: roundEnds.length, secondsPerRound, wallSeconds: (performance.now() - started) / 1000, phasesMs, lastRoundPhasesMs: last }
}
