/**
 * One member of a topology run in its own process, when the scenario has network conditions:
 * the same node config file `monna start` reads, plus a small sidecar (`<name>.network.json`)
 * telling the member its index, the member order and the scenario's network conditions, which
 * are applied by wrapping the member's broadcast port (`network.ts`). Everything else — key,
 * libp2p over TCP, signed echo broadcast, the Byzantine behaviour from the node config — is
 * exactly what `monna start` builds.
 */
import { readFile } from 'node:fs/promises'
import { z } from 'zod'
import { parseConfig } from '../config/schema.ts'
import type { Logger } from '../logger.ts'
import { loadOrCreateKey } from '../net/index.ts'
import { type BroadcastPort, createBehaviour, createSwarmNode, loadNodeConfigFile, loadSwarmFile, type SwarmNode } from '../node/index.ts'
import { Rng } from '../rng.ts'
import { conditionedPort } from './network.ts'
import { networkSchema } from './schema.ts'

export const memberNetworkSchema = z.strictObject({
  self: z.number().int().nonnegative(),
  members: z.array(z.string().min(1)).min(1),
  seed: z.union([z.number(), z.string()]),
  network: networkSchema,
})
export type MemberNetwork = z.output<typeof memberNetworkSchema>

/** Creates (does not run) a member from its node config and network sidecar. */
export async function createTopologyMember(opts: { config: string; network?: string; logger: Logger; signal?: AbortSignal }): Promise<SwarmNode> {
  const config = await loadNodeConfigFile(opts.config)
  const swarm = await loadSwarmFile(config.swarm)
  let net: MemberNetwork | undefined
  if (opts.network !== undefined) {
    net = parseConfig(memberNetworkSchema, JSON.parse(await readFile(opts.network, 'utf8')), opts.network)
  }
  const n = net
  return await createSwarmNode({
    swarm,
    privateKey: await loadOrCreateKey(config.key, { logger: opts.logger }),
    listen: config.listen,
    peers: config.peers,
    bootstrap: config.bootstrap,
    mdns: config.mdns,
    backend: config.backend,
    ...(config.threads === undefined ? {} : { threads: config.threads }),
    ...(config.dataDir === undefined ? {} : { dataDir: config.dataDir }),
    minRoundMs: config.minRoundMs,
    ...(config.byzantine === undefined ? {} : { behaviour: createBehaviour(config.byzantine) }),
    labelFlip: config.labelFlip,
    ...(n === undefined
      ? {}
      : {
          wrapBroadcast: (port: BroadcastPort) =>
            conditionedPort(port, { self: n.self, members: n.members, network: n.network, rng: new Rng(`${n.seed}/network/${n.self}`) }),
        }),
    logger: opts.logger,
    ...(opts.signal === undefined ? {} : { signal: opts.signal }),
  })
}
