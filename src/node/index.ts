/**
 * The composition root of a MoNNA member (contract §5): wires the learning core (its shard of
 * the task's data set, θ₀ from the swarm seed), the aggregation rule, the privacy accountant,
 * the broadcast (libp2p signed echo broadcast, or an in-process MemoryHub) and checkpoints into
 * one `RoundEngine`, and closes them in reverse on `stop()`.
 */

import { mkdir, readdir, readFile, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import type { PrivateKey } from '@libp2p/interface'
import { peerIdFromString } from '@libp2p/peer-id'
import { multiaddr } from '@multiformats/multiaddr'
import type { Registry } from 'prom-client'
import { createAggregator } from '../aggregation/index.ts'
import { type SwarmConfig, swarmId } from '../config/schema.ts'
import { AbortError, InvalidConfigError } from '../errors.ts'
import type { Dataset } from '../learning/index.ts'
import { type Logger, silentLogger } from '../logger.ts'
import { checkActivation, EpochBook, genesisEpoch, type MembershipEpoch, type SignedEpoch, verifyEpoch } from '../membership/index.ts'
import type { ReachabilityStatus } from '../net/reachability.ts'
import { addressExchangeDefaults, startAddressExchange } from './addresses.ts'
import type { ByzantineBehaviour } from './behaviour.ts'
import { loadLatestCheckpoint, writeCheckpoint } from './checkpoint.ts'
import { checkDataDir } from './data-dir.ts'
import { type AccountantPort, type AggregatorPort, type EngineSnapshot, type EpochView, RoundEngine, type RoundReport } from './engine.ts'
import { startEpochGossip } from './epoch-gossip.ts'
import { exactAggregator, exactLearner } from './exact.ts'
import { createNodeMetrics, type NodeMetrics } from './metrics.ts'
import { type DecodedModel, encodedBytes, type ModelEncoding } from './payload.ts'
import type { BroadcastPort, Membership, PortProvider } from './port.ts'
import { epochR } from './redundancy.ts'
import { connectionKindsOf, type PeerConnection, registerConnectionMetrics, relayedAddresses, relayPlan } from './relays.ts'

export type { ReachabilityStatus } from '../net/reachability.ts'
export type { BehaviourFactory, BehaviourSpec, ByzantineBehaviour, ByzantineContext } from './behaviour.ts'
export { ByzantineCrashError, behaviourNames, createBehaviour, registerBehaviour } from './behaviour.ts'
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
export { checkDataDir, DataDirError, type DataDirFs } from './data-dir.ts'
export type {
  AccountantPort,
  AggregatorPort,
  CatchUpEvent,
  EngineSnapshot,
  EpochEvent,
  EpochView,
  LearnerPort,
  RecoverEvent,
  RoundEngineOptions,
  RoundPhases,
  RoundReport,
  StallEvent,
} from './engine.ts'
export { defaultEngineOptions, ModelDivergedError, nearestToMedianMean, RoundEngine, sketchOf } from './engine.ts'
export { loadNodeConfigFile, loadSwarmFile, readConfigFile } from './files.ts'
export { createNodeMetrics, type NodeMetrics } from './metrics.ts'
export { createDecodeCache, type DecodedModel, decodeModel, encodedBytes, encodeModel, INT8_BLOCK, type ModelEncoding, modelEncodings } from './payload.ts'
export type { BroadcastPort, BroadcastStats, Delivery, PortProvider, Rejection, SendSeen } from './port.ts'
export { checkRedundancy, declaredR, epochR, quorumOf, ruleMaxR, rushingHonestMin } from './redundancy.ts'
export type { ConnectionKind, PeerConnection } from './relays.ts'

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
  /** Membership epoch, round and peers, for `monna status`. */
  status(): NodeStatus
  /**
   * Hands this member a signed membership epoch (from the admin's CLI): verified against the
   * swarm's admin key, stored, applied at its activation round and relayed to the other members.
   * A new epoch whose activation ≤ this member's round is refused (EpochRejectedError 'stale').
   */
  submitEpoch(input: unknown): Promise<{ epoch: number; activation: number; added: boolean }>
  /** The signed membership epochs this member knows (oldest first). */
  epochs(): SignedEpoch[]
}

export interface NodeStatus {
  member: string
  name: string
  swarmId: string
  /** next round to run */
  round: number
  /** epoch in force and its membership */
  epoch: number
  n: number
  f: number
  /** members a round may go without (f ≤ r < n; docs/redundancy.md) */
  r: number
  /** certified models a round waits for, own included: n − r */
  needed: number
  members: string[]
  /** newest epoch known (may activate later) */
  latestEpoch: number
  latestActivation: number
  /** PeerIds of open connections */
  peers: string[]
  /** each open connection: peer and kind (direct, relayed, hole-punched); docs/nat.md */
  connections: PeerConnection[]
  /** whether the others can dial this member (AutoNAT v2; docs/nat.md), per address; absent without libp2p over TCP */
  reachability?: ReachabilityStatus
  multiaddrs: string[]
  /** frames refused so far, by reason (README: which are normal in an honest swarm and which blame a member) */
  rejected: Record<string, number>
}

export interface NodeOptions {
  /** report each round's `spread` (the member's live page shows it; costs one pass over the round's models) */
  measureSpread?: boolean
  /** payload decoder shared by in-process members (`createDecodeCache()`); default: decode per member */
  decode?: (bytes: Uint8Array, dim: number, key?: string, encoding?: ModelEncoding, view?: boolean) => DecodedModel
  swarm: SwarmConfig
  /** libp2p Ed25519 identity; must be one of swarm.members */
  privateKey: PrivateKey
  listen?: string[]
  peers?: string[]
  bootstrap?: string[]
  mdns?: boolean
  /** map the listen port on the NAT gateway by UPnP (TCP; docs/nat.md) */
  upnp?: boolean
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
  /**
   * `libp2p` (default): a libp2p node over TCP, or over libp2p's in-memory transport with
   * `network: 'memory'` (members of one process: the same stack, the transport aside);
   * `port`: a broadcast port of the caller's, no network (test doubles of the broadcast, for
   * tests of the node around it).
   */
  transport?: { kind: 'libp2p'; network?: 'tcp' | 'memory' } | { kind: 'port'; ports: PortProvider }
  wrapBroadcast?: (port: BroadcastPort) => BroadcastPort
  logger?: Logger
  registry?: Registry
  /** display name (default: the member's `name` in the swarm file) */
  name?: string
  /** pre-loaded train/test sets (in-process swarms may share them) */
  datasets?: { train: Dataset; test: Dataset }
  /** aborts the setup (data loading, connecting) */
  signal?: AbortSignal
  /** signed membership epochs (parsed JSON of `monna swarm add-member` files); verified here */
  epochs?: unknown[]
  /** wait for the swarm's certified rounds and catch up before taking part (a late joiner) */
  join?: boolean
}

export const defaultNodeOptions = {
  checkpointEvery: 10,
  // Redial members we know addresses of but are not connected to (after a restart of theirs).
  redialMs: 2000,
  // Relay the known signed epochs this often, so members that were away learn them (same period
  // as the address exchange). Both periods grow with the swarm past `gossipScaleMembers` (see gossipPeriodMs).
  epochGossipMs: 3000,
  gossipScaleMembers: 8,
  // Bound on closing one component at shutdown (a libp2p stop waiting on dead peers must not hang the exit).
  closeTimeoutMs: 5000,
} as const

/**
 * The period of a member's periodic gossip — its address announcement and its relay of the signed
 * epochs — in a swarm of n members: `base` up to `gossipScaleMembers` members, then ∝ n. Every
 * member receives each member's announcements (and gossipsub relays each to it up to D times), so
 * at a fixed period a member handles ∝ n messages a second and a swarm in one process ∝ n²; that
 * alone saturated 2 cores at n = 100 in one process (scale.bench.ts: gossipsub's handling and
 * signature checks of these messages took most of the time, and no round completed in 9 min). With
 * the period ∝ n each member handles about as many a second whatever the swarm's size. New
 * epochs are still published at once, and a member announces itself at start.
 */
export function gossipPeriodMs(base: number, members: number): number {
  return Math.round(base * Math.max(1, members / defaultNodeOptions.gossipScaleMembers))
}

/** The swarm's membership as the broadcast sees it. */
export function membershipOf(swarm: SwarmConfig): Membership {
  return { swarmId: swarmId(swarm), members: swarm.members.map((m) => m.id), f: swarm.f }
}

/** The broadcast's view of one epoch. */
export function membershipOfEpoch(e: MembershipEpoch): Membership {
  return { swarmId: e.swarmId, members: e.members.map((m) => m.id), f: e.f }
}

async function readStoredEpochs(dataDir: string | undefined): Promise<unknown[]> {
  if (dataDir === undefined) return []
  let names: string[]
  try {
    names = (await readdir(join(dataDir, 'epochs'))).filter((f) => /^epoch-\d+\.json$/.test(f))
  } catch {
    return []
  }
  const out: unknown[] = []
  for (const f of names) {
    try {
      out.push(JSON.parse(await readFile(join(dataDir, 'epochs', f), 'utf8')))
    } catch {
      // a torn file: the epoch comes back through the swarm's gossip
    }
  }
  return out
}

export async function createSwarmNode(opts: NodeOptions): Promise<SwarmNode> {
  const { swarm } = opts
  const { peerIdOfKey, createNetNode, validateMembership } = await import('../net/index.ts')
  const self = peerIdOfKey(opts.privateKey)
  // ---- the data directory: usable before anything else (not rounds later, at the first checkpoint)
  if (opts.dataDir !== undefined) await checkDataDir(opts.dataDir)
  // ---- membership epochs: the swarm file (epoch 0), epochs given, epochs stored in the data directory
  const book = new EpochBook(genesisEpoch(swarm))
  const given = [...(opts.epochs ?? [])]
  for (const raw of [...given, ...(await readStoredEpochs(opts.dataDir))]) {
    const e = await verifyEpoch(raw, swarm).catch((err: unknown) => {
      if (given.includes(raw)) throw err
      return undefined
    })
    if (e !== undefined) book.add(e)
  }
  const firstEpoch = book.firstWith(self)
  if (firstEpoch === undefined) {
    throw new InvalidConfigError('key', `this key's PeerId ${self} is not a member of swarm "${swarm.name}"; add it to members (or to a membership epoch: monna swarm add-member) or use a member's key`)
  }
  const startEpoch = book.at(0).members.some((m) => m.id === self) ? book.at(0) : firstEpoch
  const index = startEpoch.members.findIndex((m) => m.id === self)
  const membership = membershipOfEpoch(startEpoch)
  const name = opts.name ?? startEpoch.members[index]!.name ?? `member-${index}`
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
    // tfjs and its wasm module only if a model needs them (not where the native kernels compute it)
    const backend = await learning.initBackend({ backend: opts.backend ?? 'auto', deferLoading: true, ...(opts.threads !== undefined ? { threads: opts.threads } : {}) })
    log.debug('backend ready', { backend: backend.name })
    // a member's shard: its index among the members of the epoch it joined in (the swarm file for founders)
    const pick = (labels: Int32Array, numClasses: number): Int32Array =>
      learning.partition(labels, numClasses, startEpoch.members.length, task.partition, swarm.seed)[index]!
    // pre-loaded sets are shared (in-process swarms); alone, a member keeps only its shard of the
    // train split, and of the test split the examples its evaluations between the last read (the
    // final one reads the whole split again, part by part: `testChunks`)
    const shared = opts.datasets
    const loaded =
      shared === undefined
        ? await learning.loadShard(task.dataset, pick, { signal, testRows: task.evalExamples })
        : { shard: learning.subset(shared.train, pick(shared.train.y, shared.train.numClasses)), test: shared.test, testChunks: learning.wholeTestChunks(shared.test) }
    const test = loaded.test
    let shard = loaded.shard
    if (opts.labelFlip === true) shard = learning.flipLabels(shard)
    signal?.throwIfAborted()

    let privacyHook: { clipNorm: number; noiseStd: number } | undefined
    let accountant: AccountantPort | undefined
    let privacyDelta = 0
    if (task.privacy !== undefined) {
      // Whole-run (ε, δ) target or σ → noise, and the RDP accountant over this member's steps
      // (one local step per round, sampling rate b/N); see the privacySchema comment.
      const p = task.privacy
      const privacy = await import('../privacy/index.ts')
      const run = { batchSize: task.batchSize, datasetSize: shard.n, steps: task.rounds }
      let noiseMultiplier = p.noiseMultiplier
      if (p.stepEpsilon !== undefined) {
        const step = { clipNorm: p.clipNorm, batchSize: Math.min(task.batchSize, shard.n), epsilon: p.stepEpsilon, delta: p.delta }
        const noiseStd = p.stepEpsilon <= 1 ? privacy.gaussianNoiseStd(step) : privacy.analyticGaussianNoiseStd(step)
        noiseMultiplier = privacy.noiseMultiplierFromStd({ noiseStd, clipNorm: p.clipNorm, batchSize: step.batchSize })
      }
      const resolved = privacy.resolvePrivacy(
        { clipNorm: p.clipNorm, delta: p.delta, ...(noiseMultiplier === undefined ? { epsilon: p.epsilon! } : { noiseMultiplier }) },
        run,
        'task.privacy',
      )
      privacyHook = resolved.hook
      privacyDelta = resolved.delta
      accountant = resolved.createAccountant()
      log.info('differential privacy on', {
        clipNorm: p.clipNorm,
        noiseStd: resolved.hook.noiseStd,
        noiseMultiplier: resolved.noiseMultiplier,
        samplingRate: resolved.samplingRate,
        delta: resolved.delta,
        plannedEpsilon: resolved.plannedEpsilon,
      })
    }

    const learner = await learning.createLearner({
      model: task.model,
      inputShape: shard.exampleShape,
      numClasses: shard.numClasses,
      train: shard,
      batchSize: task.batchSize,
      beta: task.beta,
      lambda: task.lambda,
      schedule: task.schedule,
      initSeed: swarm.seed,
      dataSeed: `${swarm.seed}/${self}`,
      ...(privacyHook !== undefined ? { privacy: privacyHook } : {}),
      ...(task.precondition !== undefined ? { precondition: task.precondition } : {}),
      logger: log.child('learning'),
    })
    closer('learner', () => learner.dispose())
    const { rule, ...ruleParams } = swarm.aggregator
    // the exact mechanism (docs/exact.md): payload [θ, γ·g], θ by the rule, the steps by CGE
    const exact = task.exact === true
    const aggregator = exact ? exactAggregator(createAggregator({ ...ruleParams, rule, f: startEpoch.f }), startEpoch.f) : createAggregator({ ...ruleParams, rule, f: startEpoch.f })
    // r per epoch: the swarm's r clamped to the epoch's n and f and to the rule (docs/redundancy.md)
    // (with the exact mechanism also to CGE's k > 2f on the steps: the tighter of the two clamps)
    const rOf = (n: number, f: number): number => (exact ? Math.min(epochR(swarm.r, n, f, rule), epochR(swarm.r, n, f, 'cge')) : epochR(swarm.r, n, f, rule))
    const views = new Map<number, EpochView>([[startEpoch.epoch, { epoch: startEpoch.epoch, membership, aggregator, r: rOf(membership.members.length, startEpoch.f) }]])
    const membershipAt = (round: number): EpochView => {
      const e = book.at(round)
      let v = views.get(e.epoch)
      if (v === undefined) {
        const plain = createAggregator({ ...ruleParams, rule, f: e.f })
        const agg: AggregatorPort = exact ? exactAggregator(plain, e.f) : plain
        v = { epoch: e.epoch, from: e.activation, membership: membershipOfEpoch(e), aggregator: agg, r: rOf(e.members.length, e.f) }
        views.set(e.epoch, v)
      }
      return v
    }

    // ---- checkpoint to resume from
    let resume: EngineSnapshot | undefined
    if (opts.dataDir !== undefined) {
      const found = await loadLatestCheckpoint(opts.dataDir, { swarmId: membership.swarmId, member: self, dim: exact ? 2 * learner.dim : learner.dim }, log)
      if (found !== undefined) {
        resume = found.snapshot
        log.info('resuming from checkpoint', { path: found.path, round: found.snapshot.round })
      }
    }

    // ---- metrics
    let libp2pMetrics: unknown
    if (opts.registry !== undefined && opts.transport?.kind !== 'port') {
      const { prometheusMetrics } = await import('@libp2p/prometheus-metrics')
      libp2pMetrics = prometheusMetrics({ registry: opts.registry, preserveExistingMetrics: true, collectDefaultMetrics: false })
    }
    const metrics = opts.registry !== undefined ? createNodeMetrics({ registry: opts.registry, member: name }) : undefined

    // ---- transport
    let port: BroadcastPort
    let adversary: import('../adversary/index.ts').Adversary | undefined
    let multiaddrs = (): string[] => []
    let connectedPeers = (): string[] => []
    let connectionKinds = (): PeerConnection[] => []
    /** the broadcast's 'ban', 'cool-off', 'reject' and 'deliver' and libp2p's connection changes ('connection'), re-emitted by the SwarmNode (live page) */
    const side = new EventTarget()
    let reachabilityNow = (): ReachabilityStatus | undefined => undefined
    let publishEpochs = (): void => {}
    /** Admits the members of epochs not yet in force to the connection gate (set once libp2p runs). */
    let admitPending = (_force?: boolean): void => {}
    let roundNow = (): number => resume?.round ?? 0
    const storeEpoch = async (e: SignedEpoch): Promise<void> => {
      if (opts.dataDir === undefined) return
      await mkdir(join(opts.dataDir, 'epochs'), { recursive: true })
      await writeFile(join(opts.dataDir, 'epochs', `epoch-${e.epoch}.json`), `${JSON.stringify(e, null, 2)}\n`)
    }
    let onNewEpoch = (_e: SignedEpoch): void => {}
    /**
     * The newest round this member ran itself: its 'round' reports (a resumed member ran the one
     * before its checkpoint). A report follows the round's aggregation after that round's
     * evaluation and checkpoint, if any: an epoch for that very round relayed in between is still
     * taken, and applied from the next round.
     */
    let lastRun = (resume?.round ?? 0) - 1
    /**
     * Verifies and records a signed epoch handed over by the admin (CLI, POST /epoch) or relayed
     * by a member (gossip); returns whether it was new. A new epoch whose activation round has
     * come here is refused with EpochRejectedError 'stale' (checkActivation states when).
     */
    const learnEpoch = async (raw: unknown, from: string, source: 'admin' | 'relay' = 'relay'): Promise<{ epoch: SignedEpoch; added: boolean }> => {
      const e = await verifyEpoch(raw, swarm)
      if (!book.has(e)) checkActivation(e, source === 'admin' ? { source, round: roundNow() } : { source, lastRun })
      const added = book.add(e)
      if (added) {
        log.info('membership epoch received', { epoch: e.epoch, activation: e.activation, n: e.members.length, f: e.f, from })
        await storeEpoch(e).catch((err: unknown) => log.warn('could not store the epoch', { error: String(err) }))
        onNewEpoch(e)
      }
      return { epoch: e, added }
    }
    for (const e of book.signed()) await storeEpoch(e).catch(() => {})
    if (opts.transport?.kind === 'port') {
      port = opts.transport.ports.port(self, { roundWindow: swarm.timing.roundWindow })
      closer('broadcast port', () => port.stop())
    } else {
      const { createEchoBroadcast, createFileJournal, verifyCacheFor } = await import('../broadcast/index.ts')
      const inMemory = opts.transport?.kind === 'libp2p' && opts.transport.network === 'memory'
      // members of one process check the same certificates; a member over TCP checks each once
      verifyCacheFor(inMemory ? 'shared' : 'member')
      const node = await createNetNode({
        privateKey: opts.privateKey,
        ...(inMemory ? { transport: 'memory' as const } : {}),
        listen: opts.listen ?? (inMemory ? [`/memory/${self}`] : ['/ip4/0.0.0.0/tcp/0']),
        ...(inMemory ? {} : { relay: relayPlan(swarm, self) }),
        bootstrap: opts.bootstrap ?? [],
        mdns: opts.mdns ?? false,
        ...(opts.upnp === true ? { upnp: true } : {}),
        membership,
        logger: log,
        ...(libp2pMetrics !== undefined ? { metrics: libp2pMetrics as never } : {}),
      })
      closer('libp2p', () => node.stop())
      multiaddrs = () => node.getMultiaddrs().map(String)
      connectedPeers = () => [...new Set(node.getConnections().map((c) => c.remotePeer.toString()))]
      connectionKinds = () => connectionKindsOf(node)
      reachabilityNow = () => node.services.reachability?.status()
      if (opts.registry !== undefined) closer('connection metrics', registerConnectionMetrics(opts.registry, name, node))
      const broadcast = await createEchoBroadcast({
        node,
        privateKey: opts.privateKey,
        membership,
        epoch: startEpoch.epoch,
        epochFrom: startEpoch.activation,
        roundWindow: swarm.timing.roundWindow,
        // the model's exact encoded size in the swarm's encoding: nothing larger is ever an honest payload
        maxPayloadBytes: Math.min(swarm.limits.maxPayloadBytes, encodedBytes(exact ? 2 * learner.dim : learner.dim, swarm.encoding ?? 'float32')),
        ...(opts.dataDir !== undefined ? { journal: createFileJournal(join(opts.dataDir, `echo-journal-${membership.swarmId.replace(/[^A-Za-z0-9_-]/g, '_').slice(0, 64)}.jsonl`)) } : {}),
        logger: log.child('broadcast'),
        ...(opts.registry !== undefined ? { registry: opts.registry } : {}),
      })
      port = broadcast
      closer('broadcast', () => broadcast.stop())
      for (const type of ['ban', 'cool-off', 'reject'] as const) {
        broadcast.addEventListener(type, (e) => side.dispatchEvent(new CustomEvent(type, { detail: (e as CustomEvent).detail })))
      }
      broadcast.addEventListener('deliver', (e) => {
        const d = (e as CustomEvent<{ round: number; sender: string }>).detail
        side.dispatchEvent(new CustomEvent('deliver', { detail: { round: d.round, sender: d.sender } }))
      })
      for (const type of ['connection:open', 'connection:close'] as const) {
        node.addEventListener(type, (e) => side.dispatchEvent(new CustomEvent('connection', { detail: { open: type === 'connection:open', peer: e.detail.remotePeer.toString() } })))
      }
      if (opts.behaviour !== undefined) {
        // a Byzantine member plays protocol-level attacks (and equivocates) with the adversary toolkit
        const { createAdversary } = await import('../adversary/index.ts')
        adversary = createAdversary({ node, privateKey: opts.privateKey, membership, epoch: startEpoch.epoch })
      }
      // members' addresses (swarm file) and --peer multiaddrs: known to the peer store, dialled, redialled
      const known = new Map<string, string[]>()
      const remember = (addr: string): void => {
        const ma = multiaddr(addr)
        // the last /p2p/: a relayed address names the relay first, then the member
        const id = ma.getComponents().findLast((c) => c.name === 'p2p')?.value
        if (id === undefined || id === self) return
        const list = known.get(id) ?? []
        list.push(addr)
        known.set(id, list)
      }
      for (const m of swarm.members) if (m.id !== self) for (const a of m.addresses) remember(a.includes('/p2p/') ? a : `${a}/p2p/${m.id}`)
      // members without addresses (behind NAT) are reached through the swarm's relays
      if (!inMemory) for (const a of relayedAddresses(swarm, self)) remember(a)
      for (const a of opts.peers ?? []) {
        if (!a.includes('/p2p/')) throw new InvalidConfigError('peers', `${a} has no /p2p/<PeerId>; append the member's PeerId`)
        remember(a)
      }
      // bootstrap members are dialled and redialled like peers; the others are learnt from their announcements
      for (const a of opts.bootstrap ?? []) if (a.includes('/p2p/')) remember(a)
      const { swarmTopic } = await import('../net/index.ts')
      const stopExchange = startAddressExchange({
        node,
        topic: swarmTopic(membership.swarmId, 'addresses'),
        self,
        members: membership.members,
        log: log.child('addresses'),
        intervalMs: gossipPeriodMs(addressExchangeDefaults.intervalMs, membership.members.length),
      })
      closer('address exchange', stopExchange)
      for (const [id, addrs] of known) {
        await node.peerStore.merge(peerIdFromString(id), { multiaddrs: addrs.map((a) => multiaddr(a).decapsulateCode(421)) })
      }
      // ---- membership epochs over the swarm's pubsub namespace: relayed periodically, verified by every receiver (epoch-gossip.ts)
      const epochGossip = startEpochGossip({
        pubsub: node.services.pubsub,
        topic: swarmTopic(membership.swarmId, 'membership'),
        learn: learnEpoch,
        signed: () => book.signed(),
        log,
        intervalMs: gossipPeriodMs(defaultNodeOptions.epochGossipMs, membership.members.length),
      })
      publishEpochs = epochGossip.publish
      closer('epoch gossip', epochGossip.stop)
      // members added by epochs: their addresses are dialled like the swarm file's
      const rememberEpochMembers = async (e: MembershipEpoch): Promise<void> => {
        for (const m of e.members) {
          if (m.id === self || known.has(m.id)) continue
          const addrs = m.addresses.map((a) => (a.includes('/p2p/') ? a : `${a}/p2p/${m.id}`))
          if (addrs.length === 0) continue
          known.set(m.id, addrs)
          await node.peerStore.merge(peerIdFromString(m.id), { multiaddrs: addrs.map((a) => multiaddr(a).decapsulateCode(421)) }).catch(() => {})
        }
      }
      for (const e of book.all()) await rememberEpochMembers(e)
      // Members of epochs not yet in force may connect already (the broadcast still refuses their
      // messages until the activation round), so a newcomer is connected when its epoch starts.
      const { setNetMembership } = await import('../net/index.ts')
      let admitted = ''
      admitPending = (force = false) => {
        const round = Math.max(roundNow(), startEpoch.activation)
        const inForce = book.at(round)
        const ids = new Set(inForce.members.map((m) => m.id))
        for (const e of book.all()) if (e.activation > round) for (const m of e.members) ids.add(m.id)
        const key = [...ids].sort().join(',')
        if (!force && key === admitted) return
        admitted = key
        setNetMembership(node, { swarmId: membership.swarmId, members: [...ids], f: inForce.f }).catch((err: unknown) =>
          log.debug('could not update the connection gate', { error: String(err) }),
        )
      }
      onNewEpoch = (e) => {
        rememberEpochMembers(e).catch(() => {})
        publishEpochs()
        admitPending()
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
      ...(opts.decode !== undefined ? { decode: opts.decode } : {}),
      encoding: swarm.encoding ?? 'float32',
      self,
      name,
      membership,
      r: rOf(membership.members.length, startEpoch.f),
      epoch: startEpoch.epoch,
      membershipAt,
      // rules built around the member's own vector (nna, ce) cannot aggregate without one: catch-up then uses the median-referenced mean
      catchUpWithRule: !/(^|\+)(nna|ce)$/.test(rule),
      ...(startEpoch.activation > 0 ? { joinFrom: startEpoch.activation } : {}),
      ...(opts.join === true && resume === undefined ? { join: true } : {}),
      swarmSeed: swarm.seed,
      ...(opts.measureSpread === true ? { measureSpread: true } : {}),
      port,
      learner: exact ? exactLearner(learner) : learner,
      aggregator,
      rounds: task.rounds,
      ...(resume !== undefined ? { resume } : {}),
      roundTimeoutMs: swarm.timing.roundTimeoutMs,
      ...(swarm.timing.waitAllMs !== undefined ? { waitAllMs: swarm.timing.waitAllMs } : {}),
      roundWindow: swarm.timing.roundWindow,
      evalEvery: task.evalEvery,
      // the final evaluation on the whole test split, read again part by part (a member holds its first evalExamples only)
      evaluate: async ({ final }) => {
        const o = signal === undefined ? {} : { signal }
        return final ? learning.evaluateChunks(learner, loaded.testChunks(o), o) : learner.evaluate(test, { maxExamples: task.evalExamples })
      },
      ...(opts.behaviour !== undefined ? { behaviour: opts.behaviour } : {}),
      ...(adversary !== undefined ? { adversary } : {}),
      ...(accountant !== undefined ? { privacy: { accountant, delta: privacyDelta } } : {}),
      checkpointEvery: opts.checkpointEvery ?? defaultNodeOptions.checkpointEvery,
      ...(opts.minRoundMs !== undefined ? { minRoundMs: opts.minRoundMs } : {}),
      ...(opts.dataDir !== undefined
        ? {
            // a checkpoint that cannot be written (disk full, directory removed or made read-only) is
            // reported and counted, and the next checkpoint round (or the final one) tries again: the
            // run goes on; only a resume would start further back
            checkpoint: async (s: EngineSnapshot) => {
              try {
                const path = await writeCheckpoint(opts.dataDir!, { swarmId: membership.swarmId, member: self }, s)
                log.debug('checkpoint written', { path, round: s.round })
              } catch (err) {
                metrics?.checkpointFailure?.()
                log.warn('could not write the checkpoint; trying again at the next checkpoint round', checkpointFailure(opts.dataDir!, s.round, err))
              }
            },
          }
        : {}),
      ...(metrics !== undefined ? { metrics } : {}),
      logger: log,
    })
    closer('engine', () => engine.dispose())
    roundNow = () => engine.round
    engine.addEventListener('round', (e) => {
      lastRun = Math.max(lastRun, (e as CustomEvent<RoundReport>).detail.round)
    })
    // after a switch the broadcast gates on the new epoch's members: admit the next epochs' again
    engine.addEventListener('epoch', () => admitPending(true))
    admitPending()
    log.info('member ready', {
      peerId: self,
      index,
      swarm: membership.swarmId,
      n: swarm.members.length,
      f: swarm.f,
      ...(engine.r !== engine.f ? { r: engine.r, waitsFor: engine.needed } : {}),
      d: learner.dim,
      rule,
      shard: shard.n,
      round: engine.round,
      epoch: startEpoch.epoch,
      ...(startEpoch.activation > 0 ? { joinsAt: startEpoch.activation } : {}),
    })
    const status = (): NodeStatus => {
      const latest = book.latest()
      return {
        member: self,
        name,
        swarmId: membership.swarmId,
        round: engine.round,
        epoch: engine.epoch,
        n: engine.n,
        f: engine.f,
        r: engine.r,
        needed: engine.needed,
        members: membershipAt(Math.max(engine.round, startEpoch.activation)).membership.members,
        latestEpoch: latest.epoch,
        latestActivation: latest.activation,
        peers: connectedPeers(),
        connections: connectionKinds(),
        ...((r) => (r !== undefined ? { reachability: r } : {}))(reachabilityNow()),
        multiaddrs: multiaddrs(),
        rejected: engine.rejections(),
      }
    }
    const submitEpoch = async (raw: unknown): Promise<{ epoch: number; activation: number; added: boolean }> => {
      const { epoch, added } = await learnEpoch(raw, 'local', 'admin')
      return { epoch: epoch.epoch, activation: epoch.activation, added }
    }
    return new SwarmNodeImpl({
      self,
      index,
      engine,
      multiaddrs,
      closeAll,
      log,
      dataDir: opts.dataDir,
      metrics,
      swarmId: membership.swarmId,
      resumedAt: resume?.round ?? 0,
      status,
      submitEpoch,
      epochs: () => book.signed(),
      side,
    })
  } catch (err) {
    await closeAll()
    throw err
  }
}

/** Log fields of a failed checkpoint write: where, which round, the errno code and the message. */
function checkpointFailure(dataDir: string, round: number, err: unknown): Record<string, unknown> {
  const code = (err as NodeJS.ErrnoException | null)?.code
  return { dataDir, round, ...(code !== undefined ? { code } : {}), error: err instanceof Error ? err.message : String(err) }
}

/** events of the broadcast and libp2p a SwarmNode re-emits (none over an injected port): 'ban', 'cool-off', 'reject', 'deliver' ({ round, sender }), 'connection' ({ open, peer }) */
const sideEvents = ['ban', 'cool-off', 'reject', 'deliver', 'connection'] as const

const forwarded = ['round', 'aggregated', 'stall', 'recover', 'catch-up', 'late', 'epoch', 'removed'] as const

class SwarmNodeImpl extends EventTarget implements SwarmNode {
  readonly peerId: string
  readonly index: number
  readonly resumedAt: number
  private readonly engine: RoundEngine
  private readonly addrs: () => string[]
  private readonly closeAll: () => Promise<void>
  private readonly log: Logger
  private readonly dataDir: string | undefined
  private readonly metrics: NodeMetrics | undefined
  private readonly swarmId: string
  private readonly abort = new AbortController()
  readonly status: () => NodeStatus
  readonly submitEpoch: (raw: unknown) => Promise<{ epoch: number; activation: number; added: boolean }>
  readonly epochs: () => SignedEpoch[]
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
    metrics: NodeMetrics | undefined
    swarmId: string
    resumedAt: number
    status: () => NodeStatus
    submitEpoch: (raw: unknown) => Promise<{ epoch: number; activation: number; added: boolean }>
    epochs: () => SignedEpoch[]
    side: EventTarget
  }) {
    super()
    this.peerId = o.self
    this.index = o.index
    this.engine = o.engine
    this.addrs = o.multiaddrs
    this.closeAll = o.closeAll
    this.log = o.log
    this.dataDir = o.dataDir
    this.metrics = o.metrics
    this.swarmId = o.swarmId
    this.resumedAt = o.resumedAt
    this.status = o.status
    this.submitEpoch = o.submitEpoch
    this.epochs = o.epochs
    for (const type of forwarded) {
      this.engine.addEventListener(type, (e) => this.dispatchEvent(new CustomEvent(type, { detail: (e as CustomEvent).detail })))
    }
    for (const type of sideEvents) {
      o.side.addEventListener(type, (e) => this.dispatchEvent(new CustomEvent(type, { detail: (e as CustomEvent).detail })))
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
          this.metrics?.checkpointFailure?.()
          this.log.error('could not write the shutdown checkpoint', checkpointFailure(this.dataDir, s.round, err))
        }
      }
      await this.closeAll()
    })()
    return this.stopped
  }
}
