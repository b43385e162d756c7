/**
 * Starts one libp2p node with mDNS on (127.0.0.1), stops it, and prints as JSON what
 * `multicastProblem` found and the warnings logged — run by test/integration/mdns-warning.test.ts
 * inside a network namespace.
 */
import { generateKeyPair } from '@libp2p/crypto/keys'
import { memoryLogger } from '../../src/logger.ts'
import { createNetNode } from '../../src/net/index.ts'
import { multicastProblem } from '../../src/net/multicast.ts'

const log = memoryLogger()
const node = await createNetNode({ privateKey: await generateKeyPair('Ed25519'), listen: ['/ip4/127.0.0.1/tcp/0'], mdns: true, logger: log })
await node.stop()
console.log(JSON.stringify({ problem: (await multicastProblem()) ?? null, warnings: log.records.filter((r) => r.level === 'warn').map((r) => r.msg) }))
