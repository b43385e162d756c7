import { mkdir, stat } from 'node:fs/promises'
import { dirname, resolve } from 'node:path'
import type { Command } from 'commander'
import { loadOrCreateKey, peerIdOfKey } from '../../src/net/index.ts'
import { UsageError } from '../errors.ts'

/** Creates a new Ed25519 key file (mode 0600) and prints its PeerId; never overwrites. */
export async function keygen(out: string): Promise<string> {
  const path = resolve(out)
  try {
    await stat(path)
    throw new UsageError(`--out ${out}: the file exists; choose another path (a key file is an identity: never overwrite one by accident)`)
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err
  }
  await mkdir(dirname(path), { recursive: true })
  return peerIdOfKey(await loadOrCreateKey(path))
}

export function registerKeygen(program: Command): void {
  program
    .command('keygen')
    .description('create a member identity: an Ed25519 key file (mode 0600); prints its PeerId')
    .requiredOption('-o, --out <file>', 'where to write the key (must not exist)')
    .addHelpText(
      'after',
      `
Examples:
  $ monna keygen --out ~/.monna/node.key
  12D3KooW...          (put this PeerId in the swarm file's members list)`,
    )
    .action(async (o: { out: string }) => {
      process.stdout.write(`${await keygen(o.out)}\n`)
    })
}
