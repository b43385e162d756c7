/**
 * The libp2p node of a member: TCP + Noise + yamux, identify (gossipsub needs it), ping,
 * gossipsub (`services.pubsub`), bootstrap (a list of multiaddrs with /p2p/<id>) and mDNS
 * (LAN discovery; we dial what it finds). With a membership, a connection gater refuses
 * every non-member connection and a pubsub gate refuses (REJECT: not relayed) messages from or
 * relayed by non-members, every topic outside the swarm's namespace `/monna/<swarmId>/`, and
 * every topic of the namespace that no module validates (`topicValidators.set(topic, fn)`):
 * a topic nobody checks is not relayed. Gossipsub reads no RPC above `gossipLimits.maxRpcBytes`.
 */
import { createHash } from 'node:crypto'
import { yamux } from '@chainsafe/libp2p-yamux'
import { bootstrap } from '@libp2p/bootstrap'
import { type CircuitRelayService, circuitRelayServer, circuitRelayTransport } from '@libp2p/circuit-relay-v2'
import { type GossipSub, type GossipsubOpts, gossipsub, type TopicValidatorFn, TopicValidatorResult } from '@libp2p/gossipsub'
import { createTopicScoreParams, type PeerScoreParams, type TopicScoreParams } from '@libp2p/gossipsub/score'
import { type Identify, identify } from '@libp2p/identify'
import type { ComponentLogger, Libp2p, Logger as Libp2pLogger, Peer, PeerId, PrivateKey } from '@libp2p/interface'
import { mdns } from '@libp2p/mdns'
import { memory } from '@libp2p/memory'
import { type Ping, ping } from '@libp2p/ping'
import { plaintext } from '@libp2p/plaintext'
import { tcp } from '@libp2p/tcp'
import type { UPnPNAT, UPnPNATInit } from '@libp2p/upnp-nat'
import { multiaddr } from '@multiformats/multiaddr'
import { createLibp2p, type Libp2pOptions } from 'libp2p'
import { InvalidConfigError } from '../errors.ts'
import { type Logger, silentLogger } from '../logger.ts'
import { directIp } from './addr.ts'
import { HostThrottle, TARPIT_MS } from './host-throttle.ts'
import { type Membership, swarmTopicPrefix, validateMembership } from './membership.ts'
import { multicastProblem } from './multicast.ts'
import { guardMuxer } from './muxer-guard.ts'
import { noiseCrypto } from './noise-crypto.ts'
import { leanNoise } from './noise-stream.ts'
import { type HolePunch, type HolePunchInit, holePunch } from './punch.ts'
import { type ReachabilityInit, type ReachabilityService, reachability } from './reachability.ts'
import { type DirectUpgradeInit, startDirectUpgrade } from './upgrade.ts'

/**
 * Bounds on the swarm's gossip. Gossip carries only small messages — FINAL certificates
 * (≈ 100 bytes per signature, ≈ 31 KiB for Q of 256 members: `src/broadcast/wire.ts`), address
 * announcements (≤ 4 KiB, `src/node/addresses.ts`) and membership epoch lists (≤ 256 KiB,
 * `src/node/epoch-gossip.ts`); payloads travel on streams. One gossipsub RPC may bundle several
 * messages (an answer to IWANT), so the per-RPC bound is 1 MiB: 32 FINALs of a 256-member swarm
 * or 4 maximal epoch lists, a quarter of it-length-prefixed's 4 MiB default. A peer that sends a
 * larger RPC loses its gossipsub stream (gossipsub drops the peer's inbound stream with the RPC);
 * each topic's validator then bounds its own messages.
 */
/**
 * libp2p's own debug logging: libp2p creates loggers for every stream (the stream, its
 * multistream-select, its muxer scope), and each `debug` logger of its logging library asks
 * whether stderr is a terminal when it is created — ≈ 15 % of the CPU a short stream costs on the
 * memory transport (`npm run bench:streams`). Unless libp2p's debug output is asked for
 * (`DEBUG=libp2p:*`, or any DEBUG), every component gets one shared logger that does nothing.
 */
export function libp2pLogger(env: NodeJS.ProcessEnv = process.env): ComponentLogger | undefined {
  if (env.DEBUG !== undefined && env.DEBUG !== '') return undefined
  const quiet = Object.assign(() => {}, { error: () => {}, trace: () => {}, enabled: false, newScope: (): Libp2pLogger => quiet }) as Libp2pLogger
  return { forComponent: () => quiet }
}

/**
 * Protocols whose peer-store merges `skipKnownProtocolMerges` skips once recorded for a peer:
 * monna's own (the broadcast's `/monna/<swarmId>/…`, hole punching's `/monna/punch/…`) and
 * libp2p's ping. No libp2p topology watches these (topologies are registered for gossipsub's
 * `/meshsub/…`, the relay's hop and AutoNAT's dial request, whose merges all go through). Ping
 * matters by its count: the connection monitor pings every connection every 10 s, so a member of
 * a 26-member swarm opened or accepted 5 ping streams a second, each a full merge (478 of a
 * member's ≈ 800 real merges in a 3-round bench:round run, 26 processes; the peer store was
 * 3.6 % of a member's CPU in its rounds).
 */
export const SKIP_KNOWN_MERGES = /^\/monna\/|^\/ipfs\/ping\/1\.0\.0$/

/**
 * libp2p records, for every stream it opens or accepts, the stream's protocol in the peer store
 * (`peerStore.merge(peer, { protocols: [p] })`: a write lock, the peer's record read, decoded,
 * merged, compared): ≈ 35 % of the CPU a short stream costs on the memory transport (`npm run bench:streams`), for a
 * record that holds the protocol after the first stream. For `protocols` matching `ours` — which
 * no libp2p topology may watch (`SKIP_KNOWN_MERGES`) — a merge of a protocol already recorded for
 * the peer is skipped.
 * (identify may later replace the peer's protocol list: our protocols are then missing from the
 * peer store, which nothing reads; a member opens its streams by protocol id.)
 */
export function skipKnownProtocolMerges(peerStore: Libp2p['peerStore'], ours: RegExp, maxPeers = 4096): void {
  // per peer: its record as the first such merge returned it (libp2p's callers ignore the
  // result; a skipped merge returns that) and the protocols merged so far
  const known = new Map<string, { peer: Peer; protocols: Set<string> }>()
  const merge = peerStore.merge.bind(peerStore)
  peerStore.merge = async (id, data, options) => {
    const only = Object.keys(data).length === 1 && data.protocols?.length === 1 ? data.protocols[0]! : undefined
    if (only === undefined || !ours.test(only)) return merge(id, data, options)
    const key = id.toString()
    const entry = known.get(key)
    if (entry?.protocols.has(only) === true) return entry.peer
    const peer = await merge(id, data, options)
    if (entry === undefined && known.size >= maxPeers) known.clear()
    known.set(key, { peer, protocols: (entry?.protocols ?? new Set()).add(only) })
    return peer
  }
}

/**
 * Members of one process (an in-process swarm over the memory transport) each check gossipsub's
 * signature on every gossip message they receive: 26 members, 26 checks of the same bytes —
 * ≈ 6 % of an in-process round's CPU (libp2p also builds a key object for each). An Ed25519
 * verification is a function of the key, the data and the signature; after this, libp2p's
 * Ed25519 public keys in this process remember the result for those exact bytes (65,536 of
 * them at most), so the swarm checks each message once. Installed once per process, by the
 * first memory-transport node; nodes over TCP (one member per process) never need it.
 */
export function shareEd25519Checks(sample: PrivateKey['publicKey']): void {
  const proto = Object.getPrototypeOf(sample) as { verify: (data: unknown, sig: Uint8Array, options?: { signal?: AbortSignal }) => boolean | Promise<boolean>; [shared]?: true }
  if (sample.type !== 'Ed25519' || proto[shared] === true) return
  const verify = proto.verify
  const results = new Map<string, boolean>()
  proto.verify = function (this: { raw: Uint8Array }, data, sig, options) {
    if (!(data instanceof Uint8Array) || !(sig instanceof Uint8Array)) return verify.call(this, data, sig, options)
    options?.signal?.throwIfAborted()
    const key = `${b64(this.raw)}|${b64(sig)}|${b64(data)}`
    const known = results.get(key)
    if (known !== undefined) {
      sharedEd25519Stats.hits++
      return known
    }
    const ok = verify.call(this, data, sig, options)
    if (typeof ok !== 'boolean') return ok
    sharedEd25519Stats.misses++
    if (results.size >= 65_536) results.clear()
    results.set(key, ok)
    return ok
  }
  proto[shared] = true
}
const shared = Symbol('monna.sharedEd25519Checks')
/** Verifications `shareEd25519Checks` answered from memory (hits) and ran (misses) in this process. */
export const sharedEd25519Stats = { hits: 0, misses: 0 }
const b64 = (b: Uint8Array): string => Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString('base64')

export const gossipLimits = {
  maxRpcBytes: 1024 * 1024,
} as const

/**
 * Data bytes per yamux frame: a frame (12-byte header + data) fills one Noise transport message
 * (at most 65 535 bytes, 16 of them the tag) exactly. yamux's default, 64 KiB of data, makes
 * every full frame 65 548 bytes: two Noise messages, the second of 29 bytes — two encryptions
 * and two decryptions per 64 KiB instead of one. (yamux 8.0.1 only validates this option: its
 * streams cut data frames at their send window, 256 KiB at first, and Noise cuts those into
 * messages of at most 65 535 bytes.)
 */
const YAMUX_FRAME_DATA_BYTES = 65_535 - 16 - 12

/**
 * yamux stream windows on the memory transport. A yamux stream sends frames of up to its send
 * window (256 KiB at first: ≈ 8 frames, each a chunk, a 'message' event and a window update
 * back, per 1.7 MB LeNet model). With 4 MiB windows a model is one frame and one chunk, and the
 * memory transport hands the receiver views of the sender's bytes, so the larger window costs no
 * memory: bench:inprocess (paper-mnist-none, 26 members) read 2,544 instead of 8,216–8,321 chunks
 * per round and the process used 2,061 and 2,086 instead of 2,345 and 2,255 CPU-ms per round
 * (alternated in one session; with the window kept at 4 MiB, the stream's read buffer limit, a
 * paused reader never holds more than that). (An earlier session measured 1 MiB frames with a
 * 2 MiB window 26 % slower at n = 26, when receivers still copied and hashed each payload.)
 * TCP connections keep yamux's defaults.
 */
const MEMORY_STREAM_WINDOW = 4 * 1024 * 1024

/**
 * Chunks of the in-memory transport: its default (64 KiB) would split each frame again; chunks
 * of a whole window carry a frame in one piece (each chunk is one hop through the transport's
 * async iterator and one event; a chunk is a view, never a copy).
 */
const MEMORY_CHUNK_BYTES = MEMORY_STREAM_WINDOW

/**
 * How long a connection monitor ping over TCP may take before libp2p aborts the connection
 * (libp2p's adaptive timeout starts at 5 s; see `connectionMonitor` below for why a minute), and
 * how often the monitor pings (libp2p's default).
 */
const PING_TIMEOUT_MS = 60_000
const PING_INTERVAL_MS = 10_000
/** Ping streams one connection may have open each way: every ping that can still be running, and spare. */
const PING_STREAMS = Math.ceil(PING_TIMEOUT_MS / PING_INTERVAL_MS) + 2

export interface NetNodeOptions {
  privateKey: PrivateKey
  /** Listen multiaddrs, e.g. `/ip4/127.0.0.1/tcp/0` (TCP) or `/memory/<name>` (memory). */
  listen: string[]
  /**
   * `tcp` (default) or `memory`: libp2p's in-memory transport, for swarms whose members all run
   * in one process — everything above the transport (Noise, yamux, gossipsub, the broadcast) is
   * the same stack as over TCP.
   */
  transport?: 'tcp' | 'memory'
  /**
   * Connection encryption of the memory transport: `plaintext` (default) — its bytes never leave
   * the process, so there is nobody to hide them from or who could alter them in transit; peer
   * ids are still exchanged and checked against the dialled id (libp2p's plaintext encrypter),
   * and everything the broadcast signs is signed and verified as over TCP — or `noise`, as over
   * TCP. TCP connections are always Noise.
   */
  memoryEncryption?: 'plaintext' | 'noise'
  /** Multiaddrs with `/p2p/<PeerId>` dialled at start (and kept). */
  bootstrap?: string[]
  /** LAN discovery by multicast DNS; discovered members are dialled. Default false. */
  mdns?: boolean
  /** When given: connections and pubsub messages from non-members are refused. */
  membership?: Membership
  logger?: Logger
  /** libp2p metrics implementation, e.g. `prometheusMetrics({ registry })` (optional). */
  metrics?: Libp2pOptions['metrics']
  /** yamux options (tests and benchmarks), e.g. `{ streamOptions: { maxReadBufferLength } }`. */
  yamux?: Parameters<typeof yamux>[0]
  /** Extra gossipsub options (tests and benchmarks); they override `gossipLimits`. */
  gossipsub?: Partial<GossipsubOpts>
  /**
   * Members behind NAT (TCP only; docs/nat.md). `serve`: relay connections between the swarm's
   * members (a member others can dial) — reservations and relayed connections of anyone else
   * are refused, and members' relayed connections are not limited (gossipsub does not run on
   * limited ones; what members send each other is bounded by the broadcast's own budgets).
   * `through`: relays to hold a reservation on, as multiaddrs ending in `/p2p/<relay>`: they are
   * dialled (and redialled) and the member listens on `<relay>/p2p-circuit` once its reservation
   * holds; others reach it there. Members connected
   * through a relay try to open a direct connection by hole punching (src/net/punch.ts).
   */
  relay?: { serve?: boolean; through?: string[] }
  /**
   * Default true: libp2p's per-stream overheads that do nothing for monna are cut — its debug
   * loggers (unless DEBUG is set: `libp2pLogger`) and the peer-store merge of a protocol already
   * recorded (`skipKnownProtocolMerges`). false: libp2p's defaults (bench:streams compares).
   */
  leanStreams?: boolean
  /**
   * Hole punching between members that meet through a relay (TCP; default on). Benchmarks turn
   * it off to measure the relay; an object turns it on with these timings and bounds (tests
   * shorten the timeouts). Who may take part is always the membership gate.
   */
  holePunch?: boolean | Omit<HolePunchInit, 'allows'>
  /**
   * Reachability by AutoNAT v2 (TCP; default on; src/net/reachability.ts): whether the others can
   * dial this member, per address; changes are logged. An object sets its timings (tests).
   */
  reachability?: boolean | Omit<ReachabilityInit, 'onChange'>
  /**
   * UPnP port mapping on the member's gateway (TCP; default off; `monna start --upnp`): the
   * listen port is mapped and the mapped public address announced once AutoNAT confirms it.
   * An object passes `@libp2p/upnp-nat` options (tests).
   */
  upnp?: boolean | UPnPNATInit
  /**
   * Dialling a member reached only through a relay at a public address it announces (TCP;
   * src/net/upgrade.ts): its timings and, for tests, the dial itself (which then sends nothing
   * beyond the machine). Who is dialled is always the membership gate.
   */
  directUpgrade?: Pick<DirectUpgradeInit, 'minGapMs' | 'identifyEveryMs' | 'dialTimeoutMs' | 'dial'>
}

export type NetServices = {
  pubsub: GossipSub
  identify: Identify
  ping: Ping
  /** TCP nodes: direct connections between members that met through a relay */
  punch?: HolePunch
  /** a member serving as relay */
  relay?: CircuitRelayService
  /** TCP nodes: whether the others can dial this member (AutoNAT v2) */
  reachability?: ReachabilityService
  /** `upnp: true`: the listen port mapped on the gateway */
  upnp?: UPnPNAT
}

export type NetNode = Libp2p<NetServices>

/** Live membership of a node created here (updated by `setNetMembership`). */
interface Gate {
  membership: Membership | undefined
  members: Set<string>
  /** peers refused until the given time (ms since the epoch), whatever the membership */
  banned: Map<string, number>
  /** the IPs each banned peer was connected from (throttled before the handshake while it is banned) */
  bannedIps: Map<string, string[]>
  throttle: HostThrottle
  /** inbound connections refused by the gater after their handshake */
  refusedEncrypted: number
}

const gates = new WeakMap<object, Gate>()

function gateAllows(gate: Gate, peer: PeerId | string): boolean {
  const id = peer.toString()
  const until = gate.banned.get(id)
  if (until !== undefined) {
    if (Date.now() < until) return false
    gate.banned.delete(id)
  }
  return gate.membership === undefined || gate.members.has(id)
}

/**
 * Gossipsub looks up `topicValidators.get(topic)` for every received message; this map wraps
 * whatever validator a module registers with the membership and namespace checks. With a
 * membership, a topic without a registered validator is REJECTed (gossipsub would Accept it
 * and relay whatever arrives on it to the whole swarm).
 */
class GatedValidators extends Map<string, TopicValidatorFn> {
  readonly gate: Gate
  constructor(gate: Gate) {
    super()
    this.gate = gate
  }
  override get(topic: string): TopicValidatorFn | undefined {
    const inner = super.get(topic)
    const gate = this.gate
    if (gate.membership === undefined) return inner
    return async (peer, msg) => {
      if (!topic.startsWith(swarmTopicPrefix(gate.membership!.swarmId))) return TopicValidatorResult.Reject
      if (!gateAllows(gate, peer)) return TopicValidatorResult.Reject
      if (msg.type === 'signed' && !gateAllows(gate, msg.from)) return TopicValidatorResult.Reject
      return inner === undefined ? TopicValidatorResult.Reject : inner(peer, msg)
    }
  }
}

/** Creates and starts a member's libp2p node. */
export async function createNetNode(opts: NetNodeOptions): Promise<NetNode> {
  const logger = (opts.logger ?? silentLogger).child('net')
  if (!Array.isArray(opts.listen)) throw new InvalidConfigError('listen', 'must be a list of multiaddrs')
  if (opts.privateKey?.type !== 'Ed25519') throw new InvalidConfigError('privateKey', 'must be an Ed25519 libp2p private key (see loadOrCreateKey)')
  if (opts.membership !== undefined) validateMembership(opts.membership, logger)
  if (opts.memoryEncryption !== undefined && (opts.transport !== 'memory' || !['plaintext', 'noise'].includes(opts.memoryEncryption))) {
    throw new InvalidConfigError('memoryEncryption', `must be "plaintext" or "noise", with the memory transport only (got ${JSON.stringify(opts.memoryEncryption)} on ${opts.transport ?? 'tcp'})`)
  }
  const gate: Gate = { membership: undefined, members: new Set(), banned: new Map(), bannedIps: new Map(), throttle: new HostThrottle(), refusedEncrypted: 0 }
  setGate(gate, opts.membership)

  const peerDiscovery: NonNullable<Libp2pOptions['peerDiscovery']> = []
  if (opts.bootstrap !== undefined && opts.bootstrap.length > 0) peerDiscovery.push(bootstrap({ list: opts.bootstrap, timeout: 0 }) )
  if (opts.mdns === true) peerDiscovery.push(mdns({ serviceTag: opts.membership !== undefined ? `monna-${opts.membership.swarmId}` : 'monna' }))

  const deny = (peer: PeerId): boolean => !gateAllows(gate, peer)
  const overTcp = opts.transport !== 'memory'
  const through = opts.relay?.through ?? []
  const upnpOn = opts.upnp !== undefined && opts.upnp !== false
  if (upnpOn && !overTcp) throw new InvalidConfigError('upnp', 'UPnP port mapping works over TCP only, not the memory transport')
  // a mapped address is announced only once AutoNAT confirms it (upnp-nat depends on it)
  if (upnpOn && opts.reachability === false) throw new InvalidConfigError('upnp', 'UPnP needs reachability (AutoNAT) on: a mapped address is announced once a member dialled it back')
  if (!overTcp && (opts.relay?.serve === true || through.length > 0)) throw new InvalidConfigError('relay', 'relays work over TCP only, not the memory transport')
  for (const a of through) {
    if (!/\/p2p\/[^/]+$/.test(a) || a.includes('/p2p-circuit')) throw new InvalidConfigError('relay.through', `${a} is not a relay's multiaddr ending in /p2p/<PeerId>`)
  }
  const lean = opts.leanStreams !== false
  if (!overTcp && lean) shareEd25519Checks(opts.privateKey.publicKey)
  const componentLogger = lean ? libp2pLogger() : undefined
  const node = await createLibp2p({
    privateKey: opts.privateKey,
    ...(componentLogger !== undefined ? { logger: componentLogger } : {}),
    // `/p2p-circuit`: hold reservations on relays among the connected members (found as they
    // connect, retried as they come and go — a relay that starts after us is found when it does);
    // `through` lists the relays we dial for it
    addresses: { listen: [...opts.listen, ...(through.length > 0 ? ['/p2p-circuit'] : [])] },
    transports: overTcp ? [tcp(), circuitRelayTransport({ reservationCompletionTimeout: 30_000 })] : [memory({ maxMessageSize: MEMORY_CHUNK_BYTES })],
    connectionEncrypters: [opts.transport === 'memory' && (opts.memoryEncryption ?? 'plaintext') === 'plaintext' ? plaintext() : leanNoise({ crypto: noiseCrypto })],
    streamMuxers: [
      guardMuxer(
        yamux({
          maxMessageSize: YAMUX_FRAME_DATA_BYTES,
          ...(overTcp ? {} : { streamOptions: { initialStreamWindowSize: MEMORY_STREAM_WINDOW, maxStreamWindowSize: MEMORY_STREAM_WINDOW } }),
          ...opts.yamux,
        }),
      ),
    ],
    peerDiscovery,
    ...(opts.metrics !== undefined ? { metrics: opts.metrics } : {}),
    connectionManager: {
      // libp2p's default (5 inbound connections per second per IP) refuses a swarm whose
      // members share one host (loopback tests, one machine running several members); the
      // gater already limits who may connect at all.
      inboundConnectionThreshold: 1000,
      maxIncomingPendingConnections: 256,
      // libp2p's defaults (6 s per address, 10 s per dial and per inbound upgrade) fail Noise
      // handshakes of a member whose CPU is busy training, or of many members sharing a machine:
      // 45 concurrent handshakes of a 10-member swarm on a loaded 2-core machine timed out at 6 s
      // (EncryptionFailedError) in a CI rehearsal. A member that is merely slow is not dead.
      dialTimeout: 30_000,
      addressDialTimeout: 20_000,
      inboundUpgradeTimeout: 30_000,
    },
    // libp2p pings every connection every 10 s and aborts it when a ping takes longer than ≈ 5 s.
    // In one process a ping waits behind the event loop (every member's training, aggregation and
    // model transfers share it): at n = 16 in-process, 379 SEND pushes died with their aborted
    // connections (TimeoutError) and were pushed again from byte 0, which loads the loop more. An
    // in-memory connection cannot die silently — it ends only when one side closes it — so its
    // pings measure the loop, not the link. Nor do they find anything: the monitor pings every
    // connection every 10 s, n(n − 1) ping streams per 10 s in one process — at n = 100 about
    // 1 000 streams a second, more than the broadcast itself opens (scale.bench.ts). Off in memory
    // mode (the ping service still answers).
    //
    // Over TCP the pings stay (they find connections that died silently: a NAT that forgot the
    // mapping, a peer whose machine went away), but a ping shares its connection with the model
    // transfers: its 32 bytes queue behind whatever payload bytes are ahead of it in yamux, TCP and
    // the receiver's event loop. With libp2p's 5 s floor, 26 member processes on a 2-core machine
    // (22 s rounds, a 1.7 MB SEND crossing each connection at ≈ 100 KB/s) lost connections to
    // ping timeouts all the time: per member and run, 57 reconnections, 860 SEND pushes cut
    // (TimeoutError) and re-sent from byte 0, payloads fetched again — 42 % more bytes than the
    // floor, load that made the next pings later still. A connection carrying a model may take a
    // minute to answer; one that stays silent longer is still dropped.
    connectionMonitor:
      opts.transport === 'memory' ? { enabled: false } : { pingInterval: PING_INTERVAL_MS, pingTimeout: { minTimeout: PING_TIMEOUT_MS, maxTimeout: PING_TIMEOUT_MS } },
    connectionGater: {
      denyDialPeer: deny,
      // before the handshake only the address is known: see src/net/host-throttle.ts
      denyInboundConnection: async (maConn) => {
        const ip = directIp(maConn.remoteAddr)
        if (ip === undefined || gate.throttle.admit(ip)) return false
        if (gate.throttle.tarpit(ip)) {
          try {
            await new Promise((resolve) => setTimeout(resolve, TARPIT_MS).unref())
          } finally {
            gate.throttle.untarpit(ip)
          }
        }
        return true
      },
      denyInboundEncryptedConnection: (peer, maConn) => {
        const denied = deny(peer)
        if (!denied) return false
        gate.refusedEncrypted++
        // a banned peer found dialling from an IP not seen at its ban: throttle that one too
        const until = gate.banned.get(peer.toString())
        const ip = directIp(maConn.remoteAddr)
        if (until !== undefined && ip !== undefined) noteBannedIp(gate, peer.toString(), ip, until)
        return true
      },
      denyOutboundEncryptedConnection: deny,
      // relays: reservations and relayed connections for members only, both ends
      denyInboundRelayReservation: deny,
      denyOutboundRelayedConnection: (src, dst) => deny(src) || deny(dst),
      denyInboundRelayedConnection: (relay, remote) => deny(relay) || deny(remote),
    },
    services: {
      ...(overTcp && opts.reachability !== false
        ? {
            reachability: reachability({
              // with UPnP the gateway's mapping is the address to test (an observed-IP candidate for
              // the same address would take the one answer its network gives first)
              ...(upnpOn ? { observedCandidates: false } : {}),
              ...(typeof opts.reachability === 'object' ? opts.reachability : {}),
              onChange: (st, before) =>
                logger.info(`reachability: ${st.reachability} (was ${before})`, { reachability: st.reachability, addresses: st.addresses.map((a) => `${a.address} ${a.state}`) }),
            }),
          }
        : {}),
      // loaded only when asked for: the package and what it brings (UPnP, SSDP, XML) are ≈ 7 MB
      // resident in every member process that imports it
      ...(overTcp && upnpOn ? { upnp: (await import('@libp2p/upnp-nat')).uPnPNAT({ portMappingDescription: 'monna', ...(typeof opts.upnp === 'object' ? opts.upnp : {}) }) } : {}),
      ...(overTcp && opts.holePunch !== false ? { punch: holePunch({ ...(typeof opts.holePunch === 'object' ? opts.holePunch : {}), allows: (p) => !deny(p) }) } : {}),
      ...(opts.relay?.serve === true
        ? {
            relay: circuitRelayServer({
              // every member may hold a reservation; a relayed connection between two members is
              // not limited (a limited one carries no gossipsub, and a model would not fit in it)
              reservations: { maxReservations: 1024, applyDefaultLimit: false },
            }),
          }
        : {}),
      identify: identify(),
      // the connection monitor's pings use this protocol: a ping may take up to a minute (see
      // `connectionMonitor`) and one starts every 10 s, so several are open at once on a busy
      // connection — with libp2p's limits (1 outbound, 2 inbound) the second failed, and the
      // monitor aborted the connection over it
      ping: ping({ maxOutboundStreams: PING_STREAMS, maxInboundStreams: 2 * PING_STREAMS }),
      pubsub: gossipsub({
        // our own small messages only; payloads travel on streams (see src/broadcast/README.md)
        allowPublishToZeroTopicPeers: true,
        emitSelf: false,
        maxInboundDataLength: gossipLimits.maxRpcBytes,
        fastMsgIdFn: fastMessageId,
        // IHAVE gossip to Dlazy (6) non-mesh peers per heartbeat, not to a quarter of them (the
        // default 0.25: ≈ 48 peers at n = 200, a fan-out growing with the swarm). Members are the
        // only peers (the gate), so there are no sybils for the larger fan-out to outnumber; the
        // mesh still floods every message. Identical below ≈ 30 members; at n = 140 in one process
        // creating and connecting the swarm took 94 and 92 s with the default, 68 and 67 s without
        // (docs/scale.md)
        gossipFactor: 0,
        ...(opts.membership !== undefined ? { scoreParams: swarmScoreParams(opts.membership.swarmId) } : {}),
        ...opts.gossipsub,
      }),
    },
  })
  const validators = new GatedValidators(gate)
  for (const [topic, fn] of node.services.pubsub.topicValidators) validators.set(topic, fn)
  node.services.pubsub.topicValidators = validators
  gates.set(node, gate)
  if (lean) skipKnownProtocolMerges(node.peerStore, SKIP_KNOWN_MERGES)

  if (overTcp) {
    // a member reached only through a relay that announces a public address (UPnP, a forwarded
    // port) is dialled there directly (src/net/upgrade.ts)
    const stopUpgrade = startDirectUpgrade(node, {
      ...opts.directUpgrade,
      allows: (p) => !deny(p),
      identify: (c, signal) => node.services.identify.identify(c, { signal }),
      onUpgrade: (peer, address) => logger.info('direct connection to a member reached through a relay until now', { peer, address }),
      onFailure: (peer, error) => logger.debug('could not dial a relayed member at its public address', { peer, error }),
    })
    node.addEventListener('stop', stopUpgrade, { once: true })
  }
  // the relays to reserve on (redialled by the member's own redial loop when they are members)
  for (const a of through) node.dial(multiaddr(a)).catch((err: unknown) => logger.debug('could not dial a relay yet', { relay: a, error: String(err) }))

  if (opts.mdns === true) {
    const problem = await multicastProblem()
    if (problem !== undefined) {
      logger.warn(`mDNS cannot send on this host (${problem}: no route for multicast 224.0.0.251): members will not be found on the LAN; give them with --bootstrap or the swarm file's addresses`, { problem })
    }
    node.addEventListener('peer:discovery', (evt) => {
      const id = evt.detail.id
      if (!gateAllows(gate, id) || node.getConnections(id).length > 0) return
      node.dial(id).catch((err: unknown) => {
        logger.debug('could not dial discovered peer', { peer: id.toString(), error: String(err) })
      })
    })
  }
  logger.info('libp2p node started', { peerId: node.peerId.toString(), addrs: node.getMultiaddrs().map(String) })
  return node
}

/**
 * Gossipsub peer scoring for a swarm: only invalid messages count (P4, −(count)² per topic,
 * the count keeping 90 % of itself each second). A member relaying about nine REJECTed messages within a few
 * seconds falls below the graylist threshold (−80) and its gossip is ignored until it decays.
 * Every other component is off: members are admitted by the membership gate, not by their
 * gossip record, and several members on one IP (one machine, loopback tests) are normal — the
 * default IP-colocation penalty (−5 · (members on the IP − 10)²) would graylist a 26-member swarm
 * on one host outright.
 */
function swarmScoreParams(swarmId: string): Partial<PeerScoreParams> {
  const topic = createTopicScoreParams({
    topicWeight: 1,
    timeInMeshWeight: 0,
    firstMessageDeliveriesWeight: 0,
    meshMessageDeliveriesWeight: 0,
    meshFailurePenaltyWeight: 0,
    invalidMessageDeliveriesWeight: -1,
    invalidMessageDeliveriesDecay: 0.9,
  })
  const topics: Record<string, TopicScoreParams> = {}
  for (const [name, version] of [
    ['final', 2],
    ['addresses', 1],
    ['membership', 1],
  ] as const) {
    topics[`${swarmTopicPrefix(swarmId)}${name}/${version}`] = topic
  }
  return { topics, IPColocationFactorWeight: 0, topicScoreCap: 100 }
}

/**
 * Gossipsub checks a message's signature before it looks at its id, so without a fast id every
 * copy a member receives (one per mesh peer that relays it: about D = 6) costs an Ed25519
 * verification before it is found to be a duplicate. A SHA-256 of all the message's fields
 * identifies its exact bytes: a copy of a message whose signature already verified is dropped
 * as a duplicate at once — what gossipsub concludes anyway after verifying it again.
 */
export function fastMessageId(msg: { from?: Uint8Array; data?: Uint8Array; seqno?: Uint8Array; topic: string; signature?: Uint8Array; key?: Uint8Array }): string {
  const h = createHash('sha256')
  const len = Buffer.alloc(4)
  for (const field of [msg.from, msg.seqno, msg.signature, msg.key, msg.data]) {
    len.writeUInt32BE(field === undefined ? 0xffff_ffff : field.byteLength)
    h.update(len)
    if (field !== undefined) h.update(field)
  }
  h.update(msg.topic)
  return h.digest('base64')
}

function setGate(gate: Gate, m: Membership | undefined): void {
  gate.membership = m === undefined ? undefined : { ...m, members: [...m.members] }
  gate.members = new Set(m?.members ?? [])
}

/**
 * Refuses `peer` for `ms` on a node created by `createNetNode` — connections both ways and the
 * pubsub messages it sends or relays, member or not — and aborts its open connections: what it
 * still had in flight is discarded, not read (a graceful close would go on delivering its queued
 * frames and gossip to us). A later ban replaces an earlier one; `ms = 0` lifts a ban and leaves
 * connections alone. No-op for other nodes.
 */
export async function banPeer(node: Libp2p, peer: string, ms: number): Promise<void> {
  const gate = gates.get(node)
  if (gate === undefined) return
  if (!Number.isFinite(ms) || ms < 0) throw new InvalidConfigError('ms', `must be a non-negative number of milliseconds, got ${ms}`)
  const now = Date.now()
  gate.banned.set(peer, now + ms)
  if (gate.banned.size > 4096) {
    for (const [p, until] of gate.banned) {
      if (until > now) continue
      gate.banned.delete(p)
      gate.bannedIps.delete(p)
    }
  }
  if (ms === 0) {
    // lift the throttle of its IPs unless another peer banned now was connected from them too
    const ips = gate.bannedIps.get(peer) ?? []
    gate.bannedIps.delete(peer)
    const stillBanned = new Set([...gate.bannedIps].filter(([p]) => (gate.banned.get(p) ?? 0) > now).flatMap(([, a]) => a))
    for (const ip of ips) if (!stillBanned.has(ip)) gate.throttle.clear(ip)
    return
  }
  for (const ip of gate.bannedIps.get(peer) ?? []) gate.throttle.mark(ip, now + ms, now)
  for (const c of node.getConnections()) {
    if (c.remotePeer.toString() !== peer) continue
    const ip = directIp(c.remoteAddr)
    if (ip !== undefined) noteBannedIp(gate, peer, ip, now + ms)
    c.abort(new Error(`peer ${peer} banned for ${ms} ms`))
  }
}

/** Throttles inbound connections from `ip` until `until`: banned `peer` was connected from it (at most 8 IPs a peer). */
function noteBannedIp(gate: Gate, peer: string, ip: string, until: number): void {
  const ips = gate.bannedIps.get(peer) ?? []
  if (!ips.includes(ip)) {
    if (ips.length >= 8) return
    gate.bannedIps.set(peer, [...ips, ip])
  }
  gate.throttle.mark(ip, until)
}

/**
 * Inbound connections `node` refused: before their handshake, from the IP of a banned peer
 * (`throttled`, see src/net/host-throttle.ts), and after it, by the peer's id (`afterHandshake`).
 */
export function gateStats(node: Libp2p): { throttled: number; afterHandshake: number } {
  const gate = gates.get(node)
  return { throttled: gate?.throttle.refused ?? 0, afterHandshake: gate?.refusedEncrypted ?? 0 }
}


/** Whether `peer` is banned on `node` now (see `banPeer`). */
export function isBanned(node: Libp2p, peer: string): boolean {
  const gate = gates.get(node)
  if (gate === undefined) return false
  const until = gate.banned.get(peer)
  return until !== undefined && Date.now() < until
}

/**
 * Replaces the membership a node created by `createNetNode` gates on (membership epochs) and
 * closes connections to peers that are no longer members. No-op for other nodes.
 */
export async function setNetMembership(node: Libp2p, m: Membership): Promise<void> {
  const gate = gates.get(node)
  if (gate === undefined) return
  validateMembership(m)
  setGate(gate, m)
  await Promise.all(
    node
      .getConnections()
      .filter((c) => !gate.members.has(c.remotePeer.toString()))
      .map((c) => c.close().catch(() => {})),
  )
}
