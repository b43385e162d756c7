/**
 * Shared by bench:inprocess and bench:round: the machine line, a scenario cut to a number of
 * rounds (and members), and one topology run measured by its rounds — seconds per round once
 * running and the median honest member's per-phase time.
 */
import { cpus, loadavg, totalmem } from 'node:os'
import type { RoundPhases, RoundReport } from '../../src/node/index.ts'
import { type RunTopologyOptions, runTopology, type TopologyRun } from '../../src/topology/runner.ts'
import { byzantineByMember, loadScenario, memberName, parseScenario, type Scenario } from '../../src/topology/schema.ts'

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
  /** rounds some honest member reported */
  rounds: number
  /** from the end of round 0 to the end of round R − 2 (a round ends when its last honest report arrives), per round */
  secondsPerRound: number
  /** the window of secondsPerRound (performance.now() of the ends of round 0 and round R − 2) */
  roundsWindow?: { from: number; to: number }
  /** the end of each round 0 … R − 2 (performance.now()), as long as every one of them ended */
  roundEnds?: number[]
  wallSeconds: number
  /** per round the median over the honest members' reports, then the mean over rounds 1 … R − 2 */
  phasesMs: Record<(typeof phaseKeys)[number], number | null>
  /** the last round (with every member's evaluation on the whole test set), median honest member */
  lastRoundPhasesMs: Record<(typeof phaseKeys)[number], number | null>
  /** process mode: what members ran — monna's bundle (src/topology/member-program.ts) or the sources, and why */
  memberProgram?: { program: string; bundled: boolean; reason?: string }
}

const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b)
  const m = s.length >> 1
  return s.length % 2 === 1 ? s[m]! : (s[m - 1]! + s[m]!) / 2
}

/**
 * Runs the scenario and measures its rounds from every honest member's reports as they arrive
 * (not from the runner's progress events, which wait for every honest member's report of a
 * round: a member that started late and caught up never reports the rounds it skipped).
 */
export async function measureRun(s: Scenario, opts: RunTopologyOptions): Promise<MeasuredRun> {
  const byz = byzantineByMember(s)
  const honest = new Set(Array.from({ length: s.n }, (_, i) => i).filter((i) => byz[i] === undefined).map(memberName))
  const ends = new Map<number, number>()
  const reports = new Map<number, RoundReport[]>()
  const started = performance.now()
  let memberProgram: MeasuredRun['memberProgram']
  const run = await runTopology(s, {
    ...opts,
    onProgress: (e) => {
      opts.onProgress?.(e)
      if (e.kind === 'program') memberProgram = { program: e.program, bundled: e.bundled, ...(e.reason === undefined ? {} : { reason: e.reason }) }
    },
    onRound: (r) => {
      opts.onRound?.(r)
      // reports name their member (memberName); without names, only a swarm without Byzantine members is measured
      if (r.name !== undefined ? !honest.has(r.name) : honest.size < s.n) return
      ends.set(r.round, performance.now())
      const list = reports.get(r.round) ?? []
      list.push(r)
      reports.set(r.round, list)
    },
  })
  const last = s.task.rounds - 1
  // the last round ends with every member's evaluation on the whole test set (in one process, one
  // member after the other): it is not a round's cost
  const e0 = ends.get(0)
  const eLast = ends.get(last - 1)
  const roundEnds = Array.from({ length: Math.max(0, last) }, (_, r) => ends.get(r))
  const secondsPerRound = e0 !== undefined && eLast !== undefined && last >= 2 ? (eLast - e0) / 1000 / (last - 1) : Number.NaN
  const phasesOf = (round: number): Partial<RoundPhases> | undefined => {
    const list = (reports.get(round) ?? []).flatMap((r) => (r.phases === undefined ? [] : [r.phases]))
    if (list.length === 0) return undefined
    return Object.fromEntries(phaseKeys.map((k) => [k, median(list.map((p) => p[k]))]))
  }
  const middle = Array.from({ length: Math.max(0, last - 1) }, (_, i) => phasesOf(i + 1)).filter((p) => p !== undefined)
  const lastPhases = phasesOf(last)
  const round1 = (x: number): number => Number(x.toFixed(1))
  return {
    ...run,
    rounds: reports.size,
    secondsPerRound,
    ...(e0 !== undefined && eLast !== undefined && last >= 2 ? { roundsWindow: { from: e0, to: eLast } } : {}),
    ...(roundEnds.every((e) => e !== undefined) ? { roundEnds: roundEnds as number[] } : {}),
    wallSeconds: (performance.now() - started) / 1000,
    phasesMs: Object.fromEntries(phaseKeys.map((k) => [k, middle.length === 0 ? null : round1(middle.reduce((a, p) => a + p[k]!, 0) / middle.length)])) as MeasuredRun['phasesMs'],
    lastRoundPhasesMs: Object.fromEntries(phaseKeys.map((k) => [k, lastPhases === undefined ? null : round1(lastPhases[k]!)])) as MeasuredRun['lastRoundPhasesMs'],
    ...(memberProgram === undefined ? {} : { memberProgram }),
  }
}
