/**
 * The composition root of a MoNNA member (contract §5): wires the learning core (its shard of
 * the task's data set, θ₀ from the swarm seed), the aggregation rule, the privacy accountant,
 * the broadcast (libp2p signed echo broadcast, or an in-process MemoryHub) and checkpoints into
 * one `RoundEngine`, and closes them in reverse on `stop()`.
 */
import type { PrivateKey } from '@libp2p/interface'
import { peerIdFromString } from '@libp2p/peer-id'
import { multiaddr } from '@multiformats/multiaddr'
import type { Registry } from 'prom-client'
import { createAggregator } from '../aggregation/index.ts'
import { type SwarmConfig, swarmId } from '../config/schema.ts'
import { AbortError, InvalidConfigError } from '../errors.ts'
import type { Dataset } from '../learning/index.ts'
import { type Logger, silentLogger } from '../logger.ts'
import { startAddressExchange } from './addresses.ts'
import type { ByzantineBehaviour } from './behaviour.ts'
import { loadLatestCheckpoint, writeCheckpoint } from './checkpoint.ts'
import { type AccountantPort, type EngineSnapshot, RoundEngine, type RoundReport } from './engine.ts'
import type { MemoryHub } from './memory-hub.ts'
import { createNodeMetrics } from './metrics.ts'
import type { BroadcastPort, Membership } from './port.ts'

export type { BehaviourFactory, BehaviourSpec, ByzantineAction, ByzantineBehaviour, ByzantineContext } from './behaviour.ts'
export { behaviourNames, createBehaviour, registerBehaviour } from './behaviour.ts'
export {
  CheckpointMismatchError,
  CorruptCheckpointError,
  decodeCheckpoint,
  encodeCheckpoint,
  listCheckpoints,
  loadLatestCheckpoint,
  writeCheckpoint,
} from './checkpoint.ts'
export { type NodeConfig, nodeConfigSchema, parseNodeConfig } from './config.ts'
export type {
  AccountantPort,
  AggregatorPort,
  CatchUpEvent,
  EngineSnapshot,
  LearnerPort,
  RecoverEvent,
  RoundEngineOptions,
  RoundReport,
  StallEvent,
} from './engine.ts'
export { ByzantineCrashError, defaultEngineOptions, nearestToMedianMean, RoundEngine, sketchOf } from './engine.ts'
export { loadNodeConfigFile, loadSwarmFile, readConfigFile } from './files.ts'
export { createMemoryHub, type MemoryHub, type MemoryHubOptions, PortStoppedError } from './memory-hub.ts'
export { createNodeMetrics, type NodeMetrics } from './metrics.ts'
export { decodeModel, encodeModel } from './payload.ts'
export type { BroadcastPort, BroadcastStats, Delivery, Rejection, SendSeen } from './port.ts'

export interface SwarmNode extends EventTarget {
  readonly peerId: string
  readonly multiaddrs: string[]
  /** Member index (position in swarm.members). */
  readonly index: number
  /** Runs the task's rounds (or what is left after a resume); resolves with this run's reports. */
  run(opts?: { signal?: AbortSignal }): Promise<RoundReport[]>
  /** Aborts the round, writes a checkpoint (when a data directory is set) and closes everything. */
  stop(): Promise<void>
  /** The round the node resumed at (0 when it started fresh). */
  readonly resumedAt: number
  /** State after the last completed round. */
  snapshot(): EngineSnapshot
}

export interface NodeOptions {
  swarm: SwarmConfig
  /** libp2p Ed25519 identity; must be one of swarm.members */
  privateKey: PrivateKey
  listen?: string[]
  peers?: string[]
  bootstrap?: string[]
  mdns?: boolean
  /** checkpoints; resume when present */
  dataDir?: string
  /** rounds between checkpoints (default 10, see nodeConfigSchema) */
  checkpointEvery?: number
  /** pace: every round lasts at least this long (default 0) */
  minRoundMs?: number
  backend?: 'auto' | 'tensorflow' | 'wasm' | 'cpu'
  threads?: number
  behaviour?: ByzantineBehaviour
  labelFlip?: boolean
  transport?: { kind: 'libp2p' } | { kind: 'memory'; hub: MemoryHub }
  wrapBroadcast?: (port: BroadcastPort) => BroadcastPort
  logger?: Logger
  registry?: Registry
  /** display name (default: the member's `name` in the swarm file) */
  name?: string
  /** pre-loaded train/test sets (in-process swarms may share them) */
  datasets?: { train: Dataset; test: Dataset }
  /** aborts the setup (data loading, connecting) */
  signal?: AbortSignal
}

export const defaultNodeOptions = {
  checkpointEvery: 10,
  // Redial members we know addresses of but are not connected to (after a restart of theirs).
  redialMs: 2000,
  // Bound on closing one component at shutdown (a libp2p stop waiting on dead peers must not hang the exit).
  closeTimeoutMs: 5000,
} as const

/** The swarm's membership as the broadcast sees it. */
export function membershipOf(swarm: SwarmConfig): Membership {
  return { swarmId: swarmId(swarm), members: swarm.members.map((m) => m.id), f: swarm.f }
}

export async function createSwarmNode(opts: NodeOptions): Promise<SwarmNode> {
  const { swarm } = opts
  const { peerIdOfKey, createNetNode, validateMembership } = await import('../net/index.ts')
  const self = peerIdOfKey(opts.privateKey)
  const index = swarm.members.findIndex((m) => m.id === self)
  if (index < 0) {
    throw new InvalidConfigError('key', `this key's PeerId ${self} is not a member of swarm "${swarm.name}"; add it to members or use a member's key`)
  }
  const membership = membershipOf(swarm)
  const name = opts.name ?? swarm.members[index]!.name ?? `member-${index}`
  const log = (opts.logger ?? silentLogger).child(name)
  validateMembership(membership, log)
  const task = swarm.task
  const signal = opts.signal
  const closers: { what: string; close: () => Promise<void> | void }[] = []
  const closer = (what: string, close: () => Promise<void> | void): void => {
    closers.push({ what, close })
  }
  const closeAll = async (): Promise<void> => {
    for (const { what, close } of closers.reverse()) {
      let timer: ReturnType<typeof setTimeout> | undefined
      try {
        const timedOut = new Promise<'timeout'>((resolve) => {
          timer = setTimeout(() => resolve('timeout'), defaultNodeOptions.closeTimeoutMs)
        })
        if ((await Promise.race([Promise.resolve(close()), timedOut])) === 'timeout') {
          log.warn('closing took too long; moving on', { what, timeoutMs: defaultNodeOptions.closeTimeoutMs })
        }
      } catch (err) {
        log.debug('error while closing', { what, error: String(err) })
      } finally {
        clearTimeout(timer)
      }
    }
    closers.length = 0
  }

  try {
    // ---- learning: backend, data shard, learner (θ₀ from the swarm seed)
    const learning = await import('../learning/index.ts')
    const backend = await learning.initBackend({ backend: opts.backend ?? 'auto', ...(opts.threads !== undefined ? { threads: opts.threads } : {}) })
    log.debug('backend ready', { backend: backend.name })
    const train = opts.datasets?.train ?? (await learning.loadDataset(task.dataset, 'train', { signal }))
    const test = opts.datasets?.test ?? (await learning.loadDataset(task.dataset, 'test', { signal }))
    const shards = learning.partition(train.y, train.numClasses, swarm.members.length, task.partition, swarm.seed)
    let shard = learning.subset(train, shards[index]!)
    if (opts.labelFlip === true) shard = learning.flipLabels(shard)
    signal?.throwIfAborted()

    let privacyHook: { clipNorm: number; noiseStd: number } | undefined
    let accountant: AccountantPort | undefined
    let privacyDelta = 0
    if (task.privacy !== undefined) {
      const p = task.privacy
      const privacy = await import('../privacy/index.ts')
      let noiseStd: number
      if (p.epsilon !== undefined) {
        // the per-step target of ALGORITHMS §6; above ε = 1 the classic bound does not hold, use the exact (analytic) one
        noiseStd =
          p.epsilon <= 1
            ? privacy.gaussianNoiseStd({ clipNorm: p.clipNorm, batchSize: task.batchSize, epsilon: p.epsilon, delta: p.delta })
            : privacy.analyticGaussianNoiseStd({ clipNorm: p.clipNorm, batchSize: task.batchSize, epsilon: p.epsilon, delta: p.delta })
      } else {
        noiseStd = privacy.noiseStdFromMultiplier({ noiseMultiplier: p.noiseMultiplier!, clipNorm: p.clipNorm, batchSize: task.batchSize })
      }
      privacyHook = { clipNorm: p.clipNorm, noiseStd }
      privacyDelta = p.delta
      accountant = privacy.createRdpAccountant({
        samplingRate: Math.min(1, task.batchSize / shard.n),
        noiseMultiplier: privacy.noiseMultiplierFromStd({ noiseStd, clipNorm: p.clipNorm, batchSize: task.batchSize }),
      })
      log.info('differential privacy on', { clipNorm: p.clipNorm, noiseStd, delta: p.delta, samplingRate: task.batchSize / shard.n })
    }

    const learner = await learning.createLearner({
      model: task.model,
      inputShape: train.exampleShape,
      numClasses: train.numClasses,
      train: shard,
      batchSize: task.batchSize,
      beta: task.beta,
      lambda: task.lambda,
      schedule: task.schedule,
      initSeed: swarm.seed,
      dataSeed: `${swarm.seed}/${self}`,
      ...(privacyHook !== undefined ? { privacy: privacyHook } : {}),
      logger: log.child('learning'),
    })
    closer('learner', () => learner.dispose())
    const { rule, ...ruleParams } = swarm.aggregator
    const aggregator = createAggregator({ ...ruleParams, rule, f: swarm.f })

    // ---- checkpoint to resume from
    let resume: EngineSnapshot | undefined
    if (opts.dataDir !== undefined) {
      const found = await loadLatestCheckpoint(opts.dataDir, { swarmId: membership.swarmId, member: self, dim: learner.dim }, log)
      if (found !== undefined) {
        resume = found.snapshot
        log.info('resuming from checkpoint', { path: found.path, round: found.snapshot.round })
      }
    }

    // ---- metrics
    let libp2pMetrics: unknown
    if (opts.registry !== undefined && opts.transport?.kind !== 'memory') {
      const { prometheusMetrics } = await import('@libp2p/prometheus-metrics')
      libp2pMetrics = prometheusMetrics({ registry: opts.registry, preserveExistingMetrics: true, collectDefaultMetrics: false })
    }
    const metrics = opts.registry !== undefined ? createNodeMetrics({ registry: opts.registry, member: name }) : undefined

    // ---- transport
    let port: BroadcastPort
    let multiaddrs = (): string[] => []
    if (opts.transport?.kind === 'memory') {
      port = opts.transport.hub.port(self, { roundWindow: swarm.timing.roundWindow })
      closer('memory port', () => port.stop())
    } else {
      const { createEchoBroadcast } = await import('../broadcast/index.ts')
      const node = await createNetNode({
        privateKey: opts.privateKey,
        listen: opts.listen ?? ['/ip4/0.0.0.0/tcp/0'],
        bootstrap: opts.bootstrap ?? [],
        mdns: opts.mdns ?? false,
        membership,
        logger: log,
        ...(libp2pMetrics !== undefined ? { metrics: libp2pMetrics as never } : {}),
      })
      closer('libp2p', () => node.stop())
      multiaddrs = () => node.getMultiaddrs().map(String)
      const broadcast = await createEchoBroadcast({
        node,
        privateKey: opts.privateKey,
        membership,
        roundWindow: swarm.timing.roundWindow,
        maxPayloadBytes: swarm.limits.maxPayloadBytes,
        logger: log.child('broadcast'),
        ...(opts.registry !== undefined ? { registry: opts.registry } : {}),
      })
      port = broadcast
      closer('broadcast', () => broadcast.stop())
      // members' addresses (swarm file) and --peer multiaddrs: known to the peer store, dialled, redialled
      const known = new Map<string, string[]>()
      const remember = (addr: string): void => {
        const ma = multiaddr(addr)
        const id = ma.getComponents().find((c) => c.name === 'p2p')?.value
        if (id === undefined || id === self) return
        const list = known.get(id) ?? []
        list.push(addr)
        known.set(id, list)
      }
      for (const m of swarm.members) if (m.id !== self) for (const a of m.addresses) remember(a.includes('/p2p/') ? a : `${a}/p2p/${m.id}`)
      for (const a of opts.peers ?? []) {
        if (!a.includes('/p2p/')) throw new InvalidConfigError('peers', `${a} has no /p2p/<PeerId>; append the member's PeerId`)
        remember(a)
      }
      // bootstrap members are dialled and redialled like peers; the others are learnt from their announcements
      for (const a of opts.bootstrap ?? []) if (a.includes('/p2p/')) remember(a)
      const { swarmTopic } = await import('../net/index.ts')
      const stopExchange = startAddressExchange({ node, topic: swarmTopic(membership.swarmId, 'addresses'), self, members: membership.members, log: log.child('addresses') })
      closer('address exchange', stopExchange)
      for (const [id, addrs] of known) {
        await node.peerStore.merge(peerIdFromString(id), { multiaddrs: addrs.map((a) => multiaddr(a).decapsulateCode(421)) })
      }
      const redial = (): void => {
        for (const id of known.keys()) {
          const pid = peerIdFromString(id)
          if (node.getConnections(pid).length > 0) continue
          node.dial(pid, { signal: AbortSignal.timeout(defaultNodeOptions.redialMs * 2) }).catch((err: unknown) => {
            log.debug('could not reach member', { peer: id, error: String(err) })
          })
        }
      }
      redial()
      const timer = setInterval(redial, defaultNodeOptions.redialMs)
      closer('redial timer', () => clearInterval(timer))
    }
    if (opts.wrapBroadcast !== undefined) port = opts.wrapBroadcast(port)

    const engine = new RoundEngine({
      self,
      name,
      membership,
      swarmSeed: swarm.seed,
      port,
      learner,
      aggregator,
      rounds: task.rounds,
      ...(resume !== undefined ? { resume } : {}),
      roundTimeoutMs: swarm.timing.roundTimeoutMs,
      roundWindow: swarm.timing.roundWindow,
      evalEvery: task.evalEvery,
      evaluate: async ({ final }) => learner.evaluate(test, final ? {} : { maxExamples: task.evalExamples }),
      ...(opts.behaviour !== undefined ? { behaviour: opts.behaviour } : {}),
      ...(accountant !== undefined ? { privacy: { accountant, delta: privacyDelta } } : {}),
      checkpointEvery: opts.checkpointEvery ?? defaultNodeOptions.checkpointEvery,
      ...(opts.minRoundMs !== undefined ? { minRoundMs: opts.minRoundMs } : {}),
      ...(opts.dataDir !== undefined
        ? {
            checkpoint: async (s: EngineSnapshot) => {
              const path = await writeCheckpoint(opts.dataDir!, { swarmId: membership.swarmId, member: self }, s)
              log.debug('checkpoint written', { path, round: s.round })
            },
          }
        : {}),
      ...(metrics !== undefined ? { metrics } : {}),
      logger: log,
    })
    closer('engine', () => engine.dispose())
    log.info('member ready', {
      peerId: self,
      index,
      swarm: membership.swarmId,
      n: swarm.members.length,
      f: swarm.f,
      d: learner.dim,
      rule,
      shard: shard.n,
      round: engine.round,
    })
    return new SwarmNodeImpl({ self, index, engine, multiaddrs, closeAll, log, dataDir: opts.dataDir, swarmId: membership.swarmId, resumedAt: resume?.round ?? 0 })
  } catch (err) {
    await closeAll()
    throw err
  }
}

const forwarded = ['round', 'stall', 'recover', 'catch-up', 'late'] as const

class SwarmNodeImpl extends EventTarget implements SwarmNode {
  readonly peerId: string
  readonly index: number
  readonly resumedAt: number
  private readonly engine: RoundEngine
  private readonly addrs: () => string[]
  private readonly closeAll: () => Promise<void>
  private readonly log: Logger
  private readonly dataDir: string | undefined
  private readonly swarmId: string
  private readonly abort = new AbortController()
  private running: Promise<unknown> | undefined
  private stopped: Promise<void> | undefined

  constructor(o: {
    self: string
    index: number
    engine: RoundEngine
    multiaddrs: () => string[]
    closeAll: () => Promise<void>
    log: Logger
    dataDir: string | undefined
    swarmId: string
    resumedAt: number
  }) {
    super()
    this.peerId = o.self
    this.index = o.index
    this.engine = o.engine
    this.addrs = o.multiaddrs
    this.closeAll = o.closeAll
    this.log = o.log
    this.dataDir = o.dataDir
    this.swarmId = o.swarmId
    this.resumedAt = o.resumedAt
    for (const type of forwarded) {
      this.engine.addEventListener(type, (e) => this.dispatchEvent(new CustomEvent(type, { detail: (e as CustomEvent).detail })))
    }
  }

  get multiaddrs(): string[] {
    return this.addrs()
  }

  snapshot(): EngineSnapshot {
    return this.engine.snapshot()
  }

  async run(opts: { signal?: AbortSignal } = {}): Promise<RoundReport[]> {
    if (this.stopped !== undefined) throw new AbortError('the node is stopped')
    const signal = opts.signal !== undefined ? AbortSignal.any([opts.signal, this.abort.signal]) : this.abort.signal
    const p = this.engine.run({ signal })
    this.running = p.catch(() => {})
    const reports = await p
    this.dispatchEvent(new CustomEvent('done', { detail: { reports: reports.length, round: this.engine.round } }))
    return reports
  }

  stop(): Promise<void> {
    this.stopped ??= (async () => {
      this.abort.abort()
      await this.running
      if (this.dataDir !== undefined) {
        const s = this.engine.snapshot()
        try {
          const path = await writeCheckpoint(this.dataDir, { swarmId: this.swarmId, member: this.peerId }, s)
          this.log.info('checkpoint written at shutdown', { path, round: s.round })
        } catch (err) {
          this.log.error('could not write the shutdown checkpoint', { error: String(err) })
        }
      }
      await this.closeAll()
    })()
    return this.stopped
  }
}
