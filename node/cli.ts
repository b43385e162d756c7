/**
 * The `monna` program: turns the command line into validated library options (src/), prints
 * progress and logs, serves metrics and handles signals. Bad input → one line saying what to
 * fix, exit code 2; a failure at run time → exit code 1.
 */
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { Command, CommanderError } from 'commander'
import { packageRoot } from '../src/package-root.ts'
import { registerKeygen } from './commands/keygen.ts'
import { registerMembership } from './commands/membership.ts'
import { registerStart } from './commands/start.ts'
import { registerSwarm } from './commands/swarm-init.ts'
import { addressInUse, exitCodes, isUsageError } from './errors.ts'

const pkg = JSON.parse(readFileSync(join(packageRoot(), 'package.json'), 'utf8')) as { version: string }

export async function buildProgram(argv: string[] = process.argv): Promise<Command> {
  const program = new Command('monna')
    .description('Decentralized Byzantine-robust peer-to-peer learning (MoNNA) on libp2p')
    .version(pkg.version)
    .showSuggestionAfterError()
    .exitOverride()
    .configureOutput({ outputError: (str, write) => write(`monna: ${str.replace(/^error: /, '').trim()}\n`) })
    .addHelpText(
      'after',
      `
Examples:
  $ monna swarm init --nodes 7 --f 2 --dir ./lan     # keys + swarm.yaml + node-<i>.yaml
  $ monna start --config ./lan/node-0.yaml           # one member (run one per node config)
  $ monna keygen --out node.key                      # a new identity; prints its PeerId
  $ monna swarm add-member --swarm ./lan/swarm.yaml --admin-key ./lan/admin.key --id 12D3KooW... --via http://127.0.0.1:9464
  $ monna status --url http://127.0.0.1:9464         # membership epoch, round, peers of a running member`,
    )
  registerKeygen(program)
  registerSwarm(program)
  registerStart(program)
  registerMembership(program)
  // `monna run` and the hidden `topology-member` (src/topology, node/commands/run.ts); loaded
  // unless the command is one of ours, so a member starts without the topology modules
  const first = argv.slice(2).find((a) => !a.startsWith('-'))
  if (first === undefined || !['start', 'keygen', 'swarm', 'status'].includes(first)) {
    const { registerRunCommand } = await import('./commands/run.ts')
    registerRunCommand(program)
  }
  for (const c of program.commands) {
    c.exitOverride()
    for (const sub of c.commands) sub.exitOverride()
  }
  return program
}

async function main(argv: string[]): Promise<number> {
  const program = await buildProgram(argv)
  try {
    await program.parseAsync(argv)
    return typeof process.exitCode === 'number' ? process.exitCode : exitCodes.ok
  } catch (err) {
    if (err instanceof CommanderError) {
      if (err.code === 'commander.helpDisplayed' || err.code === 'commander.version' || err.code === 'commander.help') return exitCodes.ok
      return err.exitCode === 0 ? exitCodes.ok : exitCodes.usage // commander already printed the one-line error
    }
    const message = err instanceof Error ? err.message : String(err)
    const taken = addressInUse(err)
    if (taken !== undefined) {
      process.stderr.write(`monna: cannot listen on ${taken}: another program holds that port (EADDRINUSE); choose another port in \`listen\`\n`)
      return exitCodes.addressInUse
    }
    if (err instanceof Error && err.name === 'MetricsPortInUseError') {
      process.stderr.write(`monna: ${message}\n`)
      return exitCodes.addressInUse
    }
    if (isUsageError(err)) {
      process.stderr.write(`monna: ${message}\n`)
      return exitCodes.usage
    }
    process.stderr.write(`monna: ${err instanceof Error ? `${err.name}: ` : ''}${message}\n`)
    if (process.env.MONNA_DEBUG !== undefined && err instanceof Error) process.stderr.write(`${err.stack}\n`)
    return exitCodes.failure
  }
}

process.exit(await main(process.argv))
