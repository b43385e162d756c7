import { readFile, stat } from 'node:fs/promises'
import { resolve } from 'node:path'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import type { Command } from 'commander'
import { Registry } from 'prom-client'
import type { Logger } from '../../src/logger.ts'
import { loadOrCreateKey } from '../../src/net/index.ts'
import { type NodeConfig, parseNodeConfig } from '../../src/node/config.ts'
import {
  type ByzantineBehaviour,
  ByzantineCrashError,
  createBehaviour,
  createSwarmNode,
  loadNodeConfigFile,
  loadSwarmFile,
  type RoundReport,
  type SwarmNode,
} from '../../src/node/index.ts'
import { exitCodes, UsageError } from '../errors.ts'
import { createMemberLive, type MemberLive } from '../live/member.ts'
import { createCliLogger } from '../log.ts'
import { collectAfterAggregation } from '../memory.ts'
import { startMetricsServer } from '../metrics-server.ts'
import { attachProgress, type ProgressFormat } from '../progress.ts'

export interface StartFlags {
  config?: string
  swarm?: string
  key?: string
  listen?: string[]
  peer?: string[]
  bootstrap?: string[]
  mdns?: boolean
  upnp?: boolean
  dataDir?: string
  checkpointEvery?: string
  backend?: string
  threads?: string
  metricsPort?: string
  metricsHost?: string
  logFormat?: string
  logLevel?: string
  progress?: string
  minRoundMs?: string
  lingerMs?: string
  epoch?: string[]
  join?: boolean
}

/** Hard bound on a signal-triggered shutdown (checkpoint + closing); each component gets 5 s (defaultNodeOptions.closeTimeoutMs). */
const shutdownTimeoutMs = 30_000

const collect = (value: string, previous: string[] = []): string[] => [...previous, value]

function num(flag: string, v: string | undefined): number | undefined {
  if (v === undefined) return undefined
  const n = Number(v)
  if (!Number.isInteger(n) || n < 0) throw new UsageError(`${flag} ${v}: must be a non-negative integer`)
  return n
}

/** The node config from --config (if any) with the command-line flags applied on top, validated. */
export async function resolveNodeConfig(flags: StartFlags): Promise<NodeConfig> {
  let base: Record<string, unknown>
  if (flags.config !== undefined) {
    base = { ...(await loadNodeConfigFile(flags.config)) }
  } else {
    if (flags.swarm === undefined || flags.key === undefined) {
      throw new UsageError('give --config <node.yaml>, or both --swarm <swarm.yaml> and --key <key file> (see monna start --help)')
    }
    base = {}
  }
  const set = (k: string, v: unknown): void => {
    if (v !== undefined) base[k] = v
  }
  set('swarm', flags.swarm !== undefined ? resolve(flags.swarm) : undefined)
  set('key', flags.key !== undefined ? resolve(flags.key) : undefined)
  if (flags.listen !== undefined && flags.listen.length > 0) base.listen = flags.listen
  if (flags.peer !== undefined && flags.peer.length > 0) base.peers = [...((base.peers as string[] | undefined) ?? []), ...flags.peer]
  if (flags.bootstrap !== undefined && flags.bootstrap.length > 0) base.bootstrap = [...((base.bootstrap as string[] | undefined) ?? []), ...flags.bootstrap]
  set('mdns', flags.mdns)
  set('upnp', flags.upnp)
  set('dataDir', flags.dataDir !== undefined ? resolve(flags.dataDir) : undefined)
  set('checkpointEvery', num('--checkpoint-every', flags.checkpointEvery))
  set('backend', flags.backend)
  set('threads', num('--threads', flags.threads))
  set('metricsPort', num('--metrics-port', flags.metricsPort))
  set('metricsHost', flags.metricsHost)
  set('logFormat', flags.logFormat)
  set('logLevel', flags.logLevel)
  set('progress', flags.progress)
  set('minRoundMs', num('--min-round-ms', flags.minRoundMs))
  set('lingerMs', num('--linger-ms', flags.lingerMs))
  if (flags.epoch !== undefined && flags.epoch.length > 0) base.epochs = [...((base.epochs as string[] | undefined) ?? []), ...flags.epoch.map((f) => resolve(f))]
  set('join', flags.join)
  return parseNodeConfig(base, flags.config !== undefined ? `${flags.config} + command line` : 'command line')
}

async function loadBehaviour(spec: NonNullable<NodeConfig['byzantine']>, log: Logger): Promise<{ behaviour: ByzantineBehaviour; labelFlip: boolean }> {
  let labelFlip = false
  try {
    // the standard behaviours (src/topology/behaviours.ts) register themselves by name
    const mod = (await import('../../src/topology/behaviours.ts')) as {
      registerStandardBehaviours?: () => void
      needsLabelFlip?: (p: { behaviour: string }) => boolean
    }
    mod.registerStandardBehaviours?.()
    labelFlip = mod.needsLabelFlip?.(spec) ?? false
  } catch (err) {
    log.debug('standard behaviours not available', { error: String(err) })
  }
  return { behaviour: createBehaviour(spec), labelFlip }
}

/** Runs a member until its last round (then lingers) or a signal; returns the exit code. */
export async function start(flags: StartFlags): Promise<number> {
  const cfg = await resolveNodeConfig(flags)
  const log = createCliLogger({ format: cfg.logFormat, level: cfg.logLevel })
  const swarm = await loadSwarmFile(cfg.swarm)
  try {
    await stat(cfg.key)
  } catch {
    throw new UsageError(`key file ${cfg.key} not found; create one with \`monna keygen --out ${cfg.key}\` and add its PeerId to the swarm file`)
  }
  const privateKey = await loadOrCreateKey(cfg.key, { logger: log })
  let behaviour: ByzantineBehaviour | undefined
  let labelFlip = cfg.labelFlip
  if (cfg.byzantine !== undefined) {
    const b = await loadBehaviour(cfg.byzantine, log)
    behaviour = b.behaviour
    labelFlip ||= b.labelFlip
    log.warn('this member is Byzantine (topology/test mode)', { behaviour: cfg.byzantine.behaviour, labelFlip })
  }

  const epochs: unknown[] = []
  for (const file of cfg.epochs) {
    try {
      epochs.push(JSON.parse(await readFile(file, 'utf8')))
    } catch (err) {
      throw new UsageError(`--epoch ${file}: ${(err as NodeJS.ErrnoException).code === 'ENOENT' ? 'file not found' : 'not a JSON epoch file'} (write one with monna swarm add-member)`)
    }
  }
  const registry = cfg.metricsPort !== undefined ? new Registry() : undefined
  const setup = new AbortController()
  let node: SwarmNode | undefined
  let stopping: Promise<void> | undefined
  let metricsServer: { url: string; base: string; close(): Promise<void> } | undefined
  let live: MemberLive | undefined
  const shutdown = (reason: string): Promise<void> => {
    stopping ??= (async () => {
      log.info('stopping: aborting the round and writing a checkpoint', { reason })
      setup.abort()
      await node?.stop()
      live?.close()
      await metricsServer?.close()
    })()
    return stopping
  }
  let signalled = false
  const onSignal = (sig: NodeJS.Signals): void => {
    if (signalled) {
      log.warn('second signal: exiting now without a checkpoint', { signal: sig })
      process.exit(130)
    }
    signalled = true
    // a shutdown that cannot finish (a component stuck closing) must not keep the process alive
    setTimeout(() => {
      log.error('shutdown did not finish in time; exiting', { timeoutMs: shutdownTimeoutMs })
      process.exit(exitCodes.failure)
    }, shutdownTimeoutMs).unref()
    shutdown(sig).then(
      () => process.exit(exitCodes.ok),
      (err: unknown) => {
        log.error('error while stopping', { error: String(err) })
        process.exit(exitCodes.failure)
      },
    )
  }
  process.on('SIGINT', onSignal)
  process.on('SIGTERM', onSignal)

  if (registry !== undefined) {
    const names = new Map(swarm.members.map((m, i) => [m.id, m.name ?? `member ${i}`]))
    const self = peerIdFromPrivateKey(privateKey).toString()
    live = createMemberLive({ rounds: swarm.task.rounds, names, name: names.get(self) ?? self })
    metricsServer = await startMetricsServer({
      live,
      registry,
      port: cfg.metricsPort!,
      host: cfg.metricsHost,
      routes: () =>
        node === undefined
          ? undefined
          : { status: () => node!.status(), epochs: () => node!.epochs(), submitEpoch: (body: unknown) => node!.submitEpoch(body) },
    })
    log.info('metrics endpoint', { url: metricsServer.url, status: `${metricsServer.base}/status`, live: `${metricsServer.base}/` })
  }
  node = await createSwarmNode({
    swarm,
    privateKey,
    listen: cfg.listen,
    peers: cfg.peers,
    bootstrap: cfg.bootstrap,
    mdns: cfg.mdns,
    ...(cfg.upnp ? { upnp: true } : {}),
    ...(cfg.dataDir !== undefined ? { dataDir: cfg.dataDir } : {}),
    checkpointEvery: cfg.checkpointEvery,
    minRoundMs: cfg.minRoundMs,
    backend: cfg.backend,
    ...(cfg.threads !== undefined ? { threads: cfg.threads } : {}),
    ...(behaviour !== undefined ? { behaviour } : {}),
    labelFlip,
    epochs,
    join: cfg.join,
    // the live page plots it
    ...(live !== undefined ? { measureSpread: true } : {}),
    logger: log,
    ...(registry !== undefined ? { registry } : {}),
    signal: setup.signal,
  })
  const name = node.status().name
  live?.attach(node)
  log.info('listening', { peerId: node.peerId, addrs: node.multiaddrs, resumeAt: node.resumedAt })
  attachProgress(node, { format: cfg.progress as ProgressFormat, rounds: swarm.task.rounds, name })
  // a full garbage collection after each round's aggregation that brought ≥ 16 MiB (node/memory.ts)
  collectAfterAggregation(node)
  node.addEventListener('removed', (e) => {
    log.warn('removed from the swarm by a membership epoch; stopping', { ...(e as CustomEvent<Record<string, unknown>>).detail })
  })

  let reports: RoundReport[]
  try {
    reports = await node.run()
  } catch (err) {
    if (err instanceof ByzantineCrashError) {
      log.warn('crashing on purpose (Byzantine behaviour)', { round: err.round })
      process.exit(exitCodes.crashed)
    }
    if (stopping !== undefined) {
      await stopping
      return exitCodes.ok
    }
    throw err
  }
  const last = reports.at(-1)
  log.info('all rounds done', {
    rounds: swarm.task.rounds,
    ...(last?.accuracy !== undefined ? { accuracy: last.accuracy } : {}),
    lingerMs: cfg.lingerMs,
  })
  // keep echoing for members still finishing their last rounds: each instance a slower member
  // broadcasts reaches this one as a 'late' delivery, which restarts the linger; leave after
  // lingerMs without any (or 30 × lingerMs in all), so a member that fell behind under load is
  // never left without the echoes and certified rounds it needs to finish
  if (cfg.lingerMs > 0 && stopping === undefined) {
    const running = node
    await new Promise<void>((resolveLinger) => {
      let idle = setTimeout(done, cfg.lingerMs)
      const cap = setTimeout(done, cfg.lingerMs * 30)
      function onLate(): void {
        clearTimeout(idle)
        idle = setTimeout(done, cfg.lingerMs)
      }
      function done(): void {
        clearTimeout(idle)
        clearTimeout(cap)
        running.removeEventListener('late', onLate)
        resolveLinger()
      }
      running.addEventListener('late', onLate)
      setup.signal.addEventListener('abort', done, { once: true })
    })
  }
  await shutdown('done')
  return exitCodes.ok
}

export function registerStart(program: Command): void {
  program
    .command('start')
    .description('run one member of a swarm until the task\'s last round (resumes from its data directory)')
    .option('-c, --config <file>', 'node config (as written by `monna swarm init`); flags below override it')
    .option('--swarm <file>', 'swarm file (YAML or JSON), when not using --config')
    .option('--key <file>', 'this member\'s key file, when not using --config')
    .option('--listen <multiaddr>', 'listen address (repeatable), e.g. /ip4/0.0.0.0/tcp/9000', collect)
    .option('--peer <multiaddr>', 'a member to dial, ending in /p2p/<PeerId> (repeatable)', collect)
    .option('--bootstrap <multiaddr>', 'reach the swarm through any one member (repeatable)', collect)
    .option('--mdns', 'discover members on the LAN by multicast DNS')
    .option('--no-mdns', 'no multicast DNS')
    .option('--upnp', 'behind NAT: map the listen port on the gateway by UPnP and announce the mapped address once a member dialled it back (docs/nat.md)')
    .option('--data-dir <dir>', 'checkpoints; resume from here')
    .option('--checkpoint-every <k>', 'rounds between checkpoints')
    .option('--backend <name>', 'tfjs backend: auto, tensorflow, wasm or cpu')
    .option('--threads <n>', 'compute threads: the native kernels\' matrix product, or the wasm convolutions (default 1; 2 threads measured 0.9–1.16× on the 2-core dev machine: check npm run bench:train first)')
    .option('--metrics-port <port>', 'serve Prometheus metrics on http://<metrics-host>:<port>/metrics and this member\'s live page on http://<metrics-host>:<port>/ (0 = any free port)')
    .option('--metrics-host <host>', 'address of the metrics endpoint (default 127.0.0.1)')
    .option('--log-format <format>', 'pretty or json (logs go to stderr)')
    .option('--log-level <level>', 'debug, info, warn or error')
    .option('--progress <format>', 'per-round progress on stdout: pretty, json (one RoundReport per line) or none')
    .option('--min-round-ms <ms>', 'pace: rounds start on a grid of this step of the wall clock (every member together), so they last at least about this long')
    .option('--linger-ms <ms>', 'after the last round, keep echoing until no slower member has broadcast for this long (default 10000; at most 30×)')
    .option('--epoch <file>', 'a signed membership epoch (monna swarm add-member …); needed by a member the epoch adds (repeatable)', collect)
    .option('--join', 'join a running swarm: wait for its certified rounds and catch up before taking part')
    .addHelpText(
      'after',
      `
Examples:
  $ monna start --config ./lan/node-0.yaml
  $ monna start --config ./lan/node-3.yaml --progress json --log-format json --metrics-port 9464
  $ monna start --swarm swarm.yaml --key node.key --listen /ip4/0.0.0.0/tcp/9000 \\
      --bootstrap /ip4/192.168.1.10/tcp/9000/p2p/12D3KooW... --data-dir ./data
  # a member added to a running swarm (see docs/join.md)
  $ monna start --swarm swarm.yaml --key new.key --epoch epoch-1.json --join \\
      --bootstrap /ip4/192.168.1.10/tcp/9000/p2p/12D3KooW...

SIGINT/SIGTERM abort the current round, write a checkpoint and exit 0; a second signal exits at once.`,
    )
    .action(async (flags: StartFlags) => {
      process.exitCode = await start(flags)
    })
}
