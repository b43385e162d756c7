import { mkdir, stat, writeFile } from 'node:fs/promises'
import { join, resolve } from 'node:path'
import type { Command } from 'commander'
import { stringify } from 'yaml'
import { parseSwarm, swarmId } from '../../src/config/schema.ts'
import { loadOrCreateKey, peerIdOfKey } from '../../src/net/index.ts'
import { parseNodeConfig } from '../../src/node/config.ts'
import { modelEncodings } from '../../src/node/payload.ts'
import { UsageError } from '../errors.ts'
import { createCommandLogger } from '../log.ts'

/**
 * Task presets for `swarm init --task`. `gaussian` needs no download and trains in seconds (a
 * LAN smoke test); `mnist` is the MLP baseline; `mnist-lenet` is the reference experiment of
 * ALGORITHMS §7 (LeNet, batch 25, γ_t = 0.75/(1+⌊t/50⌋), β = 0.99, Dirichlet α = 1, 600 rounds).
 */
export const taskPresets: Record<string, Record<string, unknown>> = {
  gaussian: {
    dataset: { kind: 'gaussian-mixture', classes: 4, dim: 20, trainSize: 4000, testSize: 1000, seed: 1 },
    partition: { scheme: 'iid' },
    model: { kind: 'mlp', hidden: [32] },
    batchSize: 32,
    schedule: { kind: 'constant', lr: 0.1 },
    beta: 0.9,
    rounds: 60,
    evalEvery: 10,
    evalExamples: 1000,
  },
  mnist: {
    dataset: { kind: 'mnist' },
    partition: { scheme: 'iid' },
    model: { kind: 'mlp', hidden: [128] },
    batchSize: 25,
    schedule: { kind: 'hyperbolic', lr0: 0.75, tau: 50, delta: 50 },
    beta: 0.99,
    rounds: 300,
    evalEvery: 25,
  },
  'mnist-lenet': {
    dataset: { kind: 'mnist' },
    partition: { scheme: 'dirichlet', alpha: 1 },
    model: { kind: 'lenet' },
    batchSize: 25,
    schedule: { kind: 'hyperbolic', lr0: 0.75, tau: 50, delta: 50 },
    beta: 0.99,
    rounds: 600,
    evalEvery: 50,
  },
  'fashion-mnist': {
    dataset: { kind: 'fashion-mnist' },
    partition: { scheme: 'iid' },
    model: { kind: 'mlp', hidden: [128] },
    batchSize: 25,
    schedule: { kind: 'hyperbolic', lr0: 0.5, tau: 50, delta: 50 },
    beta: 0.99,
    rounds: 300,
    evalEvery: 25,
  },
}

export interface SwarmInitOptions {
  nodes: number
  f: number
  /** members a round may go without (f ≤ r < n; absent = f; docs/redundancy.md) */
  r?: number
  dir: string
  basePort: number
  /** one host for every member, or one per member */
  hosts: string[]
  task: string
  rounds?: number
  name: string
  seed: number | string
  rule: string
  /** the models' wire encoding (omitted: float32, docs/encodings.md) */
  encoding?: string
  roundTimeoutMs?: number
  metricsBasePort?: number
  checkpointEvery?: number
  minRoundMs?: number
  lingerMs?: number
  force?: boolean
  /** the swarm admin's key file (created when absent): its PeerId goes into the swarm file as `admin` */
  adminKey?: string
  /** members (indices) that relay connections for the others (docs/nat.md) */
  relays?: number[]
  /** members (indices) behind NAT: the swarm file lists no address for them; they are reached through the relays */
  behindNat?: number[]
}

/** Parses a comma-separated list of member indices in 0..n−1 (`--relay 0,2`). */
export function indexList(flag: string, value: string, n: number): number[] {
  const out = value.split(',').map((x) => x.trim()).filter((x) => x !== '').map((x) => intArg(flag, x, 0, n - 1))
  if (out.length === 0) throw new UsageError(`${flag} ${value}: give member indices, e.g. ${flag} 0,1`)
  return [...new Set(out)]
}

function intArg(flag: string, value: string, min: number, max = Number.MAX_SAFE_INTEGER): number {
  const n = Number(value)
  if (!Number.isInteger(n) || n < min || n > max) throw new UsageError(`${flag} ${value}: must be an integer in ${min}..${max}`)
  return n
}

/** Writes N keys, swarm.yaml and node-<i>.yaml into `dir`; returns what it wrote. */
export async function swarmInit(o: SwarmInitOptions): Promise<{ swarmFile: string; nodeConfigs: string[]; peerIds: string[]; swarmId: string }> {
  const dir = resolve(o.dir)
  const preset = taskPresets[o.task]
  if (preset === undefined) throw new UsageError(`--task ${o.task}: unknown preset; use one of ${Object.keys(taskPresets).join(', ')}`)
  if (o.encoding !== undefined && !(modelEncodings as readonly string[]).includes(o.encoding)) throw new UsageError(`--encoding ${o.encoding}: use one of ${modelEncodings.join(', ')}`)
  if (o.hosts.length !== 1 && o.hosts.length !== o.nodes) {
    throw new UsageError(`--hosts lists ${o.hosts.length} hosts for ${o.nodes} nodes; give one host per node, or a single --host`)
  }
  const relays = new Set(o.relays ?? [])
  const behindNat = new Set(o.behindNat ?? [])
  for (const i of [...relays, ...behindNat]) if (!Number.isInteger(i) || i < 0 || i >= o.nodes) throw new UsageError(`member index ${i} is not in 0..${o.nodes - 1}`)
  for (const i of relays) if (behindNat.has(i)) throw new UsageError(`--relay ${i} and --behind-nat ${i}: a relay needs an address the others can dial; it cannot be behind NAT`)
  if (behindNat.size > 0 && relays.size === 0) throw new UsageError('--behind-nat needs --relay: members behind NAT are reached through a relay; name one with --relay <index>')
  if (o.basePort + o.nodes - 1 > 65535) throw new UsageError(`--base-port ${o.basePort}: ports up to ${o.basePort + o.nodes - 1} do not fit below 65536`)
  if (o.nodes < 3 * o.f + 1) {
    throw new UsageError(`--f ${o.f} needs at least ${3 * o.f + 1} nodes (n ≥ 3f + 1 for the signed echo broadcast); lower --f or raise --nodes`)
  }
  const swarmFile = join(dir, 'swarm.yaml')
  if (o.force !== true) {
    try {
      await stat(swarmFile)
      throw new UsageError(`--dir ${o.dir}: already holds a swarm.yaml; choose an empty directory (or --force to overwrite the configs; keys are kept)`)
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err
    }
  }
  await mkdir(dir, { recursive: true })
  const warnings = createCommandLogger()
  const peerIds: string[] = []
  for (let i = 0; i < o.nodes; i++) peerIds.push(peerIdOfKey(await loadOrCreateKey(join(dir, `node-${i}.key`), { logger: warnings })))
  const hostOf = (i: number): string => (o.hosts.length === 1 ? o.hosts[0]! : o.hosts[i]!)
  const ipProto = (h: string): string => (h.includes(':') ? 'ip6' : /^[\d.]+$/.test(h) ? 'ip4' : 'dns4')
  const address = (i: number): string => `/${ipProto(hostOf(i))}/${hostOf(i)}/tcp/${o.basePort + i}/p2p/${peerIds[i]}`
  const admin = o.adminKey !== undefined ? peerIdOfKey(await loadOrCreateKey(resolve(o.adminKey), { logger: warnings })) : undefined
  const swarmInput = {
    version: 1,
    name: o.name,
    seed: o.seed,
    ...(admin !== undefined ? { admin } : {}),
    f: o.f,
    ...(o.r !== undefined ? { r: o.r } : {}),
    members: peerIds.map((id, i) => ({ id, name: `node-${i}`, addresses: behindNat.has(i) ? [] : [address(i)], ...(relays.has(i) ? { relay: true } : {}) })),
    task: { ...preset, ...(o.rounds !== undefined ? { rounds: o.rounds } : {}) },
    aggregator: { rule: o.rule },
    ...(o.encoding !== undefined ? { encoding: o.encoding } : {}),
    timing: { roundTimeoutMs: o.roundTimeoutMs ?? 30_000, roundWindow: 8 },
  }
  const swarm = parseSwarm(swarmInput, 'generated swarm file') // same validation as `monna start`
  await writeFile(swarmFile, `# monna swarm file: identical on every member (its hash is the swarm id).\n${stringify(swarmInput)}`)
  const nodeConfigs: string[] = []
  for (let i = 0; i < o.nodes; i++) {
    const h = hostOf(i)
    const loopback = h === '127.0.0.1' || h === '::1' || h === 'localhost'
    const listenHost = loopback ? h : h.includes(':') ? '::' : '0.0.0.0'
    const cfg = {
      swarm: './swarm.yaml',
      key: `./node-${i}.key`,
      listen: [`/${h.includes(':') ? 'ip6' : 'ip4'}/${listenHost === 'localhost' ? '127.0.0.1' : listenHost}/tcp/${o.basePort + i}`],
      dataDir: `./data/node-${i}`,
      ...(o.checkpointEvery !== undefined ? { checkpointEvery: o.checkpointEvery } : {}),
      ...(o.metricsBasePort !== undefined ? { metricsPort: o.metricsBasePort + i } : {}),
      ...(o.minRoundMs !== undefined ? { minRoundMs: o.minRoundMs } : {}),
      ...(o.lingerMs !== undefined ? { lingerMs: o.lingerMs } : {}),
      mdns: false,
    }
    parseNodeConfig(cfg, `node-${i}.yaml`)
    const file = join(dir, `node-${i}.yaml`)
    await writeFile(file, `# monna node config of node-${i} (${peerIds[i]}); start it with: monna start --config ${file}\n${stringify(cfg)}`)
    nodeConfigs.push(file)
  }
  return { swarmFile, nodeConfigs, peerIds, swarmId: swarmId(swarm) }
}

export function registerSwarm(program: Command): void {
  const swarm = program.command('swarm').description('create and inspect swarm files')
  swarm
    .command('init')
    .description('create N member keys, a swarm file listing them with their addresses, and one node config per member')
    .requiredOption('--nodes <n>', 'number of members n')
    .requiredOption('--f <f>', 'Byzantine members tolerated (n ≥ 3f + 1)')
    .option('--r <r>', 'members a round may go without, slow or Byzantine (f ≤ r < n; default f): rounds wait for n − r models (docs/redundancy.md)')
    .requiredOption('--dir <dir>', 'directory to write keys and configs into')
    .option('--base-port <port>', 'TCP port of node-0; node-i listens on base + i', '9000')
    .option('--host <host>', 'address every member is reached at (one machine)', '127.0.0.1')
    .option('--hosts <list>', 'comma-separated address of each member (a LAN: one per machine, in order)')
    .option('--task <preset>', `task preset: ${Object.keys(taskPresets).join(', ')}`, 'gaussian')
    .option('--rounds <n>', 'rounds to run (default: the preset\'s)')
    .option('--name <name>', 'swarm name', 'lan')
    .option('--seed <seed>', 'swarm seed (θ₀, data split)', '1')
    .option('--rule <rule>', 'aggregation rule (nna = MoNNA)', 'nna')
    .option('--encoding <encoding>', `models on the wire: ${modelEncodings.join(', ')} (float32 by default; docs/encodings.md)`)
    .option('--round-timeout-ms <ms>', 'report a stall after this long without n − r deliveries (r = f unless --r)')
    .option('--metrics-base-port <port>', 'give node-i a Prometheus endpoint on this port + i')
    .option('--checkpoint-every <k>', 'rounds between checkpoints')
    .option('--min-round-ms <ms>', 'pace: rounds start on a grid of this step of the wall clock (every member together), so they last at least about this long')
    .option('--linger-ms <ms>', 'keep echoing this long after the last round before exiting')
    .option('--force', 'overwrite existing configs in --dir (existing keys are kept)')
    .option('--relay <indices>', 'members that relay connections for members behind NAT, e.g. 0 or 0,3 (docs/nat.md)')
    .option('--behind-nat <indices>', 'members without an address others can dial: reached through the relays, then directly by hole punching')
    .option('--admin-key <file>', 'swarm admin key (created if absent): may add/remove members later (monna swarm add-member); keep it off the members')
    .addHelpText(
      'after',
      `
Examples:
  # 7 members on this machine (ports 9000-9006), tolerating f = 2
  $ monna swarm init --nodes 7 --f 2 --dir ./lan
  # 4 machines on a LAN, one member each
  $ monna swarm init --nodes 4 --f 1 --dir ./lan --hosts 192.168.1.10,192.168.1.11,192.168.1.12,192.168.1.13
  # then, on each machine i (copy ./lan there; only node-i.key must stay private):
  $ monna start --config ./lan/node-0.yaml`,
    )
    .action(async (o: Record<string, string | boolean | undefined>) => {
      const nodes = intArg('--nodes', String(o.nodes), 1, 1000)
      const f = intArg('--f', String(o.f), 0, 1000)
      const seed = /^\d+$/.test(String(o.seed)) ? Number(o.seed) : String(o.seed)
      const res = await swarmInit({
        nodes,
        f,
        ...(o.r !== undefined ? { r: intArg('--r', String(o.r), 0, 1000) } : {}),
        dir: String(o.dir),
        basePort: intArg('--base-port', String(o.basePort), 1, 65535),
        hosts: typeof o.hosts === 'string' ? o.hosts.split(',').map((h) => h.trim()).filter((h) => h !== '') : [String(o.host)],
        task: String(o.task),
        ...(o.rounds !== undefined ? { rounds: intArg('--rounds', String(o.rounds), 1) } : {}),
        name: String(o.name),
        seed,
        rule: String(o.rule),
        ...(typeof o.encoding === 'string' ? { encoding: o.encoding } : {}),
        ...(o.roundTimeoutMs !== undefined ? { roundTimeoutMs: intArg('--round-timeout-ms', String(o.roundTimeoutMs), 1) } : {}),
        ...(o.metricsBasePort !== undefined ? { metricsBasePort: intArg('--metrics-base-port', String(o.metricsBasePort), 0, 65535) } : {}),
        ...(o.checkpointEvery !== undefined ? { checkpointEvery: intArg('--checkpoint-every', String(o.checkpointEvery), 1) } : {}),
        ...(o.minRoundMs !== undefined ? { minRoundMs: intArg('--min-round-ms', String(o.minRoundMs), 0) } : {}),
        ...(o.lingerMs !== undefined ? { lingerMs: intArg('--linger-ms', String(o.lingerMs), 0) } : {}),
        force: o.force === true,
        ...(typeof o.relay === 'string' ? { relays: indexList('--relay', o.relay, nodes) } : {}),
        ...(typeof o.behindNat === 'string' ? { behindNat: indexList('--behind-nat', o.behindNat, nodes) } : {}),
        ...(typeof o.adminKey === 'string' ? { adminKey: o.adminKey } : {}),
      })
      const out = process.stdout
      out.write(`swarm ${res.swarmId}: ${nodes} members, f = ${f}${o.r !== undefined ? `, r = ${String(o.r)}` : ''}\n`)
      out.write(`  ${res.swarmFile}\n`)
      for (const [i, c] of res.nodeConfigs.entries()) out.write(`  ${c}  (${res.peerIds[i]})\n`)
      out.write('start each member with:\n')
      for (const c of res.nodeConfigs) out.write(`  monna start --config ${c}\n`)
    })
}
