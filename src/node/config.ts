/**
 * The node config file (`node-<i>.yaml`): what is local to one member — key, addresses, peers,
 * data directory, backend, observability — as opposed to the swarm file every member shares
 * (src/config/schema.ts). Paths inside it are relative to the config file's directory.
 */
import { multiaddr } from '@multiformats/multiaddr'
import { z } from 'zod'
import { parseConfig } from '../config/schema.ts'

const multiaddrString = z.string().refine(
  (s) => {
    try {
      multiaddr(s)
      return true
    } catch {
      return false
    }
  },
  { message: 'not a multiaddr; write e.g. /ip4/192.168.1.20/tcp/9000 (peers and bootstrap: ending in /p2p/<PeerId>)' },
)

export const backendSchema = z.enum(['auto', 'tensorflow', 'wasm', 'cpu'])

export const nodeConfigSchema = z.strictObject({
  /** the swarm file (YAML or JSON) */
  swarm: z.string().min(1),
  /** the member's Ed25519 key file (created by `monna keygen` / `monna swarm init`) */
  key: z.string().min(1),
  listen: z.array(multiaddrString).default(['/ip4/0.0.0.0/tcp/0']),
  /** multiaddrs dialled at start and redialled while disconnected (besides the members' addresses in the swarm file) */
  peers: z.array(multiaddrString).default([]),
  /** multiaddrs of any members to reach the swarm through */
  bootstrap: z.array(multiaddrString).default([]),
  mdns: z.boolean().default(false),
  /** map the listen port on the NAT gateway by UPnP (`monna start --upnp`; docs/nat.md): announced once AutoNAT confirms it */
  upnp: z.boolean().default(false),
  /** checkpoints; `monna start` resumes from here */
  dataDir: z.string().min(1).optional(),
  /**
   * Rounds between checkpoints. 10: a LeNet checkpoint is 3.4 MB, written in a few ms, so
   * losing at most 10 rounds of a member's progress on a crash is cheap insurance.
   */
  checkpointEvery: z.number().int().positive().default(10),
  backend: backendSchema.default('auto'),
  /** pace: every round lasts at least this long (demos and tests on one machine); 0 = as fast as possible */
  minRoundMs: z.number().int().nonnegative().default(0),
  /**
   * After its last round the member keeps echoing this long before it exits, so members still
   * finishing their last rounds keep a quorum (ALGORITHMS §2: their instances need Q echoes).
   */
  lingerMs: z.number().int().nonnegative().default(10_000),
  threads: z.number().int().positive().optional(),
  /** Prometheus endpoint port (0 = any free port); absent = no endpoint */
  metricsPort: z.number().int().min(0).max(65535).optional(),
  metricsHost: z.string().default('127.0.0.1'),
  logFormat: z.enum(['pretty', 'json']).default('pretty'),
  logLevel: z.enum(['debug', 'info', 'warn', 'error']).default('info'),
  progress: z.enum(['pretty', 'json', 'none']).default('pretty'),
  /** a Byzantine member (topologies and tests only): `{ behaviour: <registered name>, ...params }` */
  byzantine: z.object({ behaviour: z.string().min(1) }).catchall(z.unknown()).optional(),
  /** signed membership epoch files (from `monna swarm add-member` …): a member added by one needs it to start */
  epochs: z.array(z.string().min(1)).default([]),
  /** wait for the swarm's certified rounds and catch up before taking part (a member joining a running swarm) */
  join: z.boolean().default(false),
  /** train on labels y → K−1−y (label-flip attack) */
  labelFlip: z.boolean().default(false),
})

export type NodeConfig = z.infer<typeof nodeConfigSchema>

/** Validates a node config's content; errors name the field and what to write. */
export function parseNodeConfig(input: unknown, where = 'node config'): NodeConfig {
  return parseConfig(nodeConfigSchema, input, where)
}
