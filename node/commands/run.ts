/**
 * `monna run <topology> [--out <dir>] [--in-process] [--matrix]`: runs a whole swarm described
 * by a scenario file (src/topology), shows progress, writes the report and exits 0 only when
 * every expectation holds (1 when one fails, 2 when the scenario or the run is broken).
 *
 * Importing this module also registers the topology behaviours with the node's behaviour
 * registry, so `monna start` can run a Byzantine member (`byzantine: { behaviour: … }`).
 */
import { resolve } from 'node:path'
import type { Command } from 'commander'
import type { RoundReport } from '../../src/node/index.ts'
import { registerStandardBehaviours } from '../../src/topology/behaviours.ts'
import type { ProgressEvent, runTopology } from '../../src/topology/runner.ts'
import { addressInUse, exitCodes } from '../errors.ts'
import type { RunLive } from '../live/run.ts'
import { createCliLogger } from '../log.ts'
import { collectAfterAggregation } from '../memory.ts'

registerStandardBehaviours()

// The runner, the matrix, reports and the live page are loaded by `monna run` only: every member
// of a process-mode run is a `monna topology-member` process, and each of them would otherwise
// carry that code (170 → 159 MB resident for a topology-member process after loading, three starts each).

export interface RunFlags {
  out?: string
  inProcess?: boolean
  matrix?: boolean
  quiet?: boolean
  live?: boolean
  livePort?: string
  set?: string[]
}

function pct(x: number): string {
  return `${(x * 100).toFixed(1)}%`
}

/** One human line per progress event (stderr keeps stdout clean for the final lines). */
export function formatProgress(e: ProgressEvent): string | undefined {
  switch (e.kind) {
    case 'start':
      return `running ${e.scenario}: ${e.n} members, ${e.mode === 'process' ? 'one process each on 127.0.0.1' : 'in one process'}; output in ${e.outDir}`
    case 'round': {
      const width = String(e.rounds).length
      const acc = e.accuracy === undefined ? '' : `  honest accuracy min ${pct(e.accuracy.min)} median ${pct(e.accuracy.median)}`
      const eps = e.epsilon === undefined ? '' : `  ε ${e.epsilon.toFixed(3)}`
      return `round ${String(e.round + 1).padStart(width)}/${e.rounds}  ${Math.round(e.roundMs)} ms${acc}${eps}`
    }
    case 'member-exit':
      if (e.code === 0) return undefined
      return `${e.name}${e.byzantine ? ' (Byzantine)' : ''} stopped: ${e.error ?? `exit code ${e.code}`}`
    case 'ended':
      return `ending the run early: ${e.reason}`
    case 'program':
      // the bundle is the usual case; the sources are said, with why (src/topology/member-program.ts)
      return e.bundled ? undefined : `members run from monna's sources, module by module (≈ 15–30 MB more each): ${e.reason ?? 'no bundle'}`
  }
}

export async function runCommand(topology: string, flags: RunFlags): Promise<number> {
  let livePort: number | undefined
  if (flags.livePort !== undefined) {
    livePort = Number(flags.livePort)
    if (!Number.isInteger(livePort) || livePort < 0 || livePort > 65535) throw new Error(`--live-port ${flags.livePort}: give a port number from 0 to 65535 (0 = any free port)`)
    if (flags.live !== true) throw new Error('--live-port needs --live')
  }
  if (flags.live === true && flags.matrix === true) throw new Error('--live shows one run: leave out --matrix')
  const [{ loadScenario }, { runTopology }, { runMatrix }, { verdict }, { startRunLive }] = await Promise.all([
    import('../../src/topology/schema.ts'),
    import('../../src/topology/runner.ts'),
    import('../../src/topology/matrix.ts'),
    import('../../src/topology/report.ts'),
    import('../live/run.ts'),
  ])
  const scenario = await loadScenario(topology, { overrides: flags.set ?? [] })
  const outDir = resolve(flags.out ?? `runs/${scenario.name}`)
  const mode = flags.inProcess === true ? 'in-process' : 'process'
  const ac = new AbortController()
  const onSignal = (): void => ac.abort()
  process.once('SIGINT', onSignal)
  process.once('SIGTERM', onSignal)
  let live: RunLive | undefined
  if (flags.live === true) {
    try {
      live = await startRunLive({ scenario, mode, outDir, port: livePort ?? 0 })
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'EADDRINUSE') throw new Error(`--live-port ${livePort}: the port is in use; pick another, or leave --live-port out for any free port`)
      throw err
    }
    process.stderr.write(`live page: ${live.url}\n`)
  }
  const onProgress = (e: ProgressEvent): void => {
    live?.onProgress(e)
    if (flags.quiet === true) return
    const line = formatProgress(e)
    if (line !== undefined) process.stderr.write(`${line}\n`)
  }
  try {
    if (flags.matrix === true) {
      const { matrix, files } = await runMatrix(scenario, {
        outDir,
        mode,
        signal: ac.signal,
        onProgress,
        onCell: (c) =>
          process.stderr.write(
            `cell ${c.rule} × ${c.behaviour}${c.batchSize === undefined ? '' : ` × b=${c.batchSize}`}${c.privacy === undefined ? '' : ` × ${c.privacy}${c.epsilon === null || c.epsilon === undefined ? '' : ` (ε ${c.epsilon.toFixed(3)} spent)`}`}${c.encoding === undefined || c.encoding === 'float32' ? '' : ` × ${c.encoding}`}${c.r === undefined ? '' : ` × r=${c.r}`}${c.partition === undefined ? '' : ` × ${c.partition}`}${c.timeToTargetMs === undefined ? '' : c.timeToTargetMs === null ? `: never reached ${pct(c.targetAccuracy ?? 0)}` : `: ${pct(c.targetAccuracy ?? 0)} after ${(c.timeToTargetMs / 1000).toFixed(1)} s (round ${c.roundsToTarget})`}: honest accuracy min ${c.minHonestAccuracy === null ? 'n/a' : pct(c.minHonestAccuracy)} median ${c.medianHonestAccuracy === null ? 'n/a' : pct(c.medianHonestAccuracy)}\n`,
          ),
      })
      process.stdout.write(`matrix: ${files.markdown}\nplot: ${files.html}\n`)
      return matrix.cells.length > 0 ? 0 : 1
    }
    let run: Awaited<ReturnType<typeof runTopology>>
    try {
      run = await runTopology(scenario, { outDir, mode, signal: ac.signal, onProgress, ...(live !== undefined ? { onRound: (r) => live!.onRound(r) } : {}) })
    } catch (err) {
      live?.failed(err)
      throw err
    }
    const { report, files } = run
    process.stdout.write(`report: ${files.html}\n        ${files.json}\n${verdict(report)}\n`)
    if (live !== undefined) {
      live.finished(report, files)
      // the page links report.html: it stays up until Ctrl-C (or SIGTERM)
      if (!ac.signal.aborted) {
        process.stderr.write(`live page with the report: ${live.url} (Ctrl-C to exit)\n`)
        await new Promise((res) => ac.signal.addEventListener('abort', res, { once: true }))
      }
    }
    return report.passed ? 0 : 1
  } finally {
    process.off('SIGINT', onSignal)
    process.off('SIGTERM', onSignal)
    await live?.close()
  }
}

/**
 * `monna topology-member --config <node.yaml> --network <net.json>` (hidden): one member of a
 * topology run whose scenario has network conditions — `monna start` plus the network
 * wrapper. Prints one JSON RoundReport per line, keeps serving after its last round until
 * SIGTERM/SIGINT (so slower members can finish), exits 3 when a "crash" behaviour stops it.
 */
async function topologyMemberCommand(flags: { config: string; network?: string }): Promise<number> {
  const logger = createCliLogger({ format: 'json', level: 'info' })
  const ac = new AbortController()
  const onSignal = (): void => {
    // a second signal while stopping: leave now
    if (ac.signal.aborted) process.exit(130)
    ac.abort()
  }
  process.on('SIGINT', onSignal)
  process.on('SIGTERM', onSignal)
  const { createTopologyMember } = await import('../../src/topology/member.ts')
  const node = await createTopologyMember({ config: flags.config, ...(flags.network === undefined ? {} : { network: flags.network }), logger, signal: ac.signal })
  collectAfterAggregation(node)
  node.addEventListener('round', (e) => {
    process.stdout.write(`${JSON.stringify((e as CustomEvent<RoundReport>).detail)}\n`)
  })
  try {
    await node.run({ signal: ac.signal })
    if (!ac.signal.aborted) await new Promise((res) => ac.signal.addEventListener('abort', res, { once: true }))
    return 0
  } catch (err) {
    if ((err as Error).name === 'ByzantineCrashError') return 3
    if (ac.signal.aborted) return 0
    throw err
  } finally {
    await node.stop()
  }
}

/** Adds the `run` command (and the hidden `topology-member`) to the program. */
export function registerRunCommand(program: Command): void {
  program
    .command('run')
    .description('run a whole swarm from a scenario file (topologies/*.yaml), write report.json + report.html, exit 0 only if every expectation holds')
    .argument('<topology>', 'scenario file (.yaml, .yml or .json)')
    .option('--out <dir>', 'output directory (default runs/<scenario name>)')
    .option('--in-process', 'run every member in this process: the same member stack (libp2p, signed echo broadcast, round engine) over libp2p\'s in-memory transport (for large n)')
    .option('--matrix', "run the scenario's matrix (rules × behaviours, and its optional axes) and write a comparison table and plot")
    .option('--quiet', 'no progress lines')
    .option('--live', 'serve a live page of the run on 127.0.0.1 (its address is printed at start); it stays up after the run, linking report.html, until Ctrl-C')
    .option('--live-port <port>', 'port of the live page (default: any free port)')
    .option('--set <path=value>', 'override a field of the scenario file, repeatable: a dot path and a YAML value (aggregator.rule=mean, task.rounds=50, byzantine.0.behaviour=foe); null removes the field (matrix=null)', (v: string, acc: string[] = []) => [...acc, v])
    .action(async (topology: string, flags: RunFlags) => {
      try {
        process.exitCode = await runCommand(topology, flags)
      } catch (err) {
        const e = err as Error
        process.stderr.write(`monna run: ${e.name === 'InvalidConfigError' ? '' : `${e.name}: `}${e.message}\n`)
        process.exitCode = 2
      }
    })
  program
    .command('topology-member', { hidden: true })
    .description('one member of a topology run with network conditions (used by `monna run`)')
    .requiredOption('--config <file>', 'node config (as for monna start)')
    .option('--network <file>', 'network-conditions sidecar written by monna run')
    .action(async (flags: { config: string; network?: string }) => {
      try {
        process.exitCode = await topologyMemberCommand(flags)
      } catch (err) {
        const e = err as Error
        process.stderr.write(`monna topology-member: ${e.name}: ${e.message}\n`)
        // a port taken between the runner's pick and this bind: the runner retries on other ports
        process.exitCode = addressInUse(e) !== undefined ? exitCodes.addressInUse : e.name === 'InvalidConfigError' ? 2 : 1
      }
    })
}
