/**
 * Membership changes of a running swarm (see src/membership for the trust model):
 * `monna swarm add-member | remove-member | set-f` produce the next membership epoch signed by
 * the swarm admin's key, write it to a file and optionally hand it to a running member
 * (`--publish <url>`: POST /epoch on its HTTP endpoint), which verifies it and relays it to
 * the others; `monna status` shows a member's epoch, round and peers. With `--via` or
 * `--publish` the command knows a running member's round and refuses, before signing, an
 * activation at or below it (the member would refuse the epoch too); `--config <node.yaml>` does
 * the same with a member of this machine (its endpoint, else the newest checkpoint of its data
 * directory). With none of them it warns that only the members check (an epoch file signed
 * offline is refused when handed to a member too late).
 */
import { readFile, writeFile } from 'node:fs/promises'
import { join, resolve } from 'node:path'
import type { Command } from 'commander'
import { type MemberConfig, swarmId } from '../../src/config/schema.ts'
import { checkActivation, EpochBook, genesisEpoch, type MembershipChange, type MembershipEpoch, proposeEpoch, type SignedEpoch, signEpoch, verifyEpoch } from '../../src/membership/index.ts'
import { loadOrCreateKey, peerIdOfKey } from '../../src/net/index.ts'
import { listCheckpoints, loadNodeConfigFile, loadSwarmFile } from '../../src/node/index.ts'
import { epochR } from '../../src/node/redundancy.ts'
import { UsageError } from '../errors.ts'
import { createCommandLogger } from '../log.ts'
import { rejectedText } from '../progress.ts'

const collect = (value: string, previous: string[] = []): string[] => [...previous, value]

/** Default lead time of `--in`: the epoch must reach every member before its activation round (gossip relays every 3 s). */
const DEFAULT_LEAD_ROUNDS = 10

interface ChangeFlags {
  swarm: string
  adminKey: string
  from?: string[]
  via?: string
  activation?: string
  in?: string
  out?: string
  publish?: string
  config?: string
}

function intFlag(flag: string, v: string): number {
  const n = Number(v)
  if (!Number.isInteger(n) || n < 0) throw new UsageError(`${flag} ${v}: must be a non-negative integer`)
  return n
}

async function httpJson(url: string, init?: RequestInit): Promise<unknown> {
  let res: Response
  try {
    res = await fetch(url, { ...init, signal: AbortSignal.timeout(10_000) })
  } catch (err) {
    throw new UsageError(`${url}: cannot reach the member (${(err as Error).message}); is it running with --metrics-port?`)
  }
  const body = (await res.json().catch(() => ({}))) as Record<string, unknown>
  if (!res.ok) throw new UsageError(`${url}: ${String(body.error ?? res.statusText)}`)
  return body
}

const baseUrl = (u: string): string => u.replace(/\/(metrics|status|epochs?)?\/?$/, '')

/** Builds, signs, writes (and publishes) the next epoch. */
export async function changeMembership(flags: ChangeFlags, change: Omit<MembershipChange, 'activation'>): Promise<{ epoch: SignedEpoch; file: string; published?: unknown }> {
  const swarm = await loadSwarmFile(resolve(flags.swarm))
  if (swarm.admin === undefined) throw new UsageError(`${flags.swarm} names no admin: its membership is fixed (create swarms with monna swarm init --admin-key)`)
  const key = await loadOrCreateKey(resolve(flags.adminKey), { logger: createCommandLogger() })
  if (peerIdOfKey(key) !== swarm.admin) throw new UsageError(`--admin-key ${flags.adminKey} is not the swarm's admin (${swarm.admin})`)
  const book = new EpochBook(genesisEpoch(swarm))
  const known: unknown[] = []
  for (const f of flags.from ?? []) known.push(JSON.parse(await readFile(resolve(f), 'utf8')))
  // the round of a running member (--via, else the one it is published to): an epoch must activate after it
  let round: number | undefined
  const roundFrom = flags.via ?? flags.publish
  if (flags.via !== undefined) known.push(...((await httpJson(`${baseUrl(flags.via)}/epochs`)) as unknown[]))
  if (roundFrom !== undefined) round = ((await httpJson(`${baseUrl(roundFrom)}/status`)) as { round: number }).round
  let who = roundFrom !== undefined ? `the member at ${baseUrl(roundFrom)}` : undefined
  if (round === undefined && flags.config !== undefined) {
    // a member of this machine: its running endpoint, else the newest checkpoint in its data directory
    const st = await memberStatus({ config: flags.config })
    round = Number(st.round)
    who = `the member of ${flags.config} (${String(st.source)})`
  }
  if (round === undefined) {
    process.stderr.write(
      'warning: the activation round is not checked against any member (no --via, --publish or --config): a member refuses the epoch if its activation round has come when it receives it\n',
    )
  }
  for (const raw of known) book.add(await verifyEpoch(raw, swarm))
  const current: MembershipEpoch = book.latest()
  let activation: number
  if (flags.activation !== undefined) activation = intFlag('--activation', flags.activation)
  else if (flags.via !== undefined && round !== undefined) activation = Math.max(round, current.activation) + (flags.in !== undefined ? intFlag('--in', flags.in) : DEFAULT_LEAD_ROUNDS)
  else throw new UsageError('give --activation <round>, or --via <member url> (its current round + --in rounds)')
  const next = proposeEpoch(current, { ...change, activation })
  if (round !== undefined) checkActivation(next, { source: 'admin', round, ...(who !== undefined ? { who } : {}) })
  const signed = await signEpoch(next, key)
  const file = resolve(flags.out ?? join(process.cwd(), `epoch-${signed.epoch}.json`))
  await writeFile(file, `${JSON.stringify(signed, null, 2)}\n`)
  const published = flags.publish !== undefined ? await httpJson(`${baseUrl(flags.publish)}/epoch`, { method: 'POST', body: JSON.stringify(signed), headers: { 'content-type': 'application/json' } }) : undefined
  return { epoch: signed, file, ...(published !== undefined ? { published } : {}) }
}

function commonOptions(c: Command): Command {
  return c
    .requiredOption('--swarm <file>', 'the swarm file (names the admin)')
    .requiredOption('--admin-key <file>', "the swarm admin's key file")
    .option('--from <epoch file>', 'epochs signed before (repeatable); the change applies to the newest', collect)
    .option('--via <url>', "a running member's endpoint (http://host:<metrics port>): its known epochs and current round")
    .option('--activation <round>', "first round run with the new membership: after the swarm's current round, with a few rounds for the epoch to spread (checked against the member of --via / --publish)")
    .option('--in <rounds>', `with --via: activate this many rounds after the member's current round (default ${DEFAULT_LEAD_ROUNDS})`)
    .option('-o, --out <file>', 'where to write the signed epoch (default ./epoch-<k>.json)')
    .option('--publish <url>', "hand the epoch to a running member (POST <url>/epoch); it relays it to the swarm")
    .option('-c, --config <file>', "a member's node config, to check --activation against its round (its endpoint if running, else its newest checkpoint)")
}

function report(r: { epoch: SignedEpoch; file: string; published?: unknown }): void {
  const e = r.epoch
  process.stdout.write(`epoch ${e.epoch} of swarm ${e.swarmId}: n = ${e.members.length}, f = ${e.f}, activates at round ${e.activation}\n  ${r.file}\n`)
  if (r.published !== undefined) process.stdout.write(`published: ${JSON.stringify(r.published)}\n`)
}

export function registerMembership(program: Command): void {
  const swarm = program.commands.find((c) => c.name() === 'swarm')
  if (swarm === undefined) throw new Error('register the swarm command first')
  commonOptions(swarm.command('add-member').description('sign the next membership epoch with a member added (keeps n ≥ 3f + 1)'))
    .requiredOption('--id <PeerId>', "the new member's PeerId (monna keygen prints it)")
    .option('--name <name>', 'display name')
    .option('--address <multiaddr>', 'where members can dial it (repeatable)', collect)
    .option('--f <f>', 'also change f')
    .addHelpText(
      'after',
      `
Examples:
  $ monna swarm add-member --swarm lan/swarm.yaml --admin-key lan/admin.key --id 12D3KooW... \\
      --address /ip4/192.168.1.14/tcp/9000 --via http://127.0.0.1:9464 --publish http://127.0.0.1:9464
  then on the new machine: monna start --swarm swarm.yaml --key new.key --epoch epoch-1.json --join --bootstrap <a member>`,
    )
    .action(async (o: ChangeFlags & { id: string; name?: string; address?: string[]; f?: string }) => {
      const member: MemberConfig = { id: o.id, ...(o.name !== undefined ? { name: o.name } : {}), addresses: o.address ?? [] }
      report(await changeMembership(o, { add: [member], ...(o.f !== undefined ? { f: intFlag('--f', o.f) } : {}) }))
    })
  commonOptions(swarm.command('remove-member').description('sign the next membership epoch with a member removed (refused if n ≥ 3f + 1 would break)'))
    .requiredOption('--id <PeerId>', 'the member to remove')
    .option('--f <f>', 'also change f')
    .action(async (o: ChangeFlags & { id: string; f?: string }) => {
      report(await changeMembership(o, { remove: [o.id], ...(o.f !== undefined ? { f: intFlag('--f', o.f) } : {}) }))
    })
  commonOptions(swarm.command('set-f').description('sign the next membership epoch with another f (refused if n ≥ 3f + 1 would break)'))
    .requiredOption('--f <f>', 'the new bound on Byzantine members')
    .action(async (o: ChangeFlags & { f: string }) => {
      report(await changeMembership(o, { f: intFlag('--f', o.f) }))
    })

  program
    .command('status')
    .description("a member's membership epoch, round and peers (from its running endpoint, else from its data directory)")
    .option('--url <url>', "the member's endpoint, http://host:<metrics port>")
    .option('-c, --config <file>', 'node config: its metricsHost/metricsPort, or its dataDir when not running')
    .option('--json', 'print JSON')
    .action(async (o: { url?: string; config?: string; json?: boolean }) => {
      const out = await memberStatus(o)
      if (o.json === true) {
        process.stdout.write(`${JSON.stringify(out)}\n`)
        return
      }
      const s = out as Record<string, unknown>
      const lines = [
        `member   ${[s.name, s.member].filter((x) => x !== undefined).join(' ')}`,
        `swarm    ${String(s.swarmId)}`,
        `source   ${String(s.source)}`,
        `epoch    ${String(s.epoch)} (n = ${String(s.n)}, f = ${String(s.f)}${s.r !== undefined && Number(s.r) !== Number(s.f) ? `, r = ${String(s.r)}: a round waits for ${String(s.needed ?? Number(s.n) - Number(s.r))} models` : ''})${s.latestEpoch !== undefined && s.latestEpoch !== s.epoch ? `; epoch ${String(s.latestEpoch)} activates at round ${String(s.latestActivation)}` : ''}`,
        `round    ${String(s.round)}`,
      ]
      if (Array.isArray(s.peers)) lines.push(`peers    ${s.peers.length} connected${s.peers.length > 0 ? `: ${s.peers.join(', ')}` : ''}`)
      if (Array.isArray(s.connections)) {
        // direct, relayed (through a member serving as relay) or hole-punched (docs/nat.md)
        for (const c of s.connections as { peer: string; kind: string; address: string }[]) lines.push(`  ${c.kind.padEnd(12)} ${c.peer} ${c.address}`)
      }
      if (s.rejected !== null && typeof s.rejected === 'object') lines.push(`rejected ${rejectedText(s.rejected as Record<string, number>)}`)
      const reach = s.reachability as { reachability: string; addresses: { address: string; state: string }[] } | undefined
      if (reach !== undefined) {
        // whether the others can dial this member (AutoNAT v2; docs/nat.md)
        lines.push(`reachability ${reach.reachability}`)
        for (const a of reach.addresses) lines.push(`  ${a.state.padEnd(12)} ${a.address}`)
      }
      process.stdout.write(`${lines.join('\n')}\n`)
    })
}

/** Status from a running member's endpoint, or (not running) from its data directory. */
export async function memberStatus(o: { url?: string; config?: string }): Promise<Record<string, unknown>> {
  if (o.url !== undefined) return { source: 'running', ...((await httpJson(`${baseUrl(o.url)}/status`)) as Record<string, unknown>) }
  if (o.config === undefined) throw new UsageError('give --url <member endpoint> or --config <node.yaml>')
  const cfg = await loadNodeConfigFile(o.config)
  if (cfg.metricsPort !== undefined && cfg.metricsPort > 0) {
    try {
      return { source: 'running', ...((await httpJson(`http://${cfg.metricsHost}:${cfg.metricsPort}/status`)) as Record<string, unknown>) }
    } catch {
      // not running: read the data directory
    }
  }
  const swarm = await loadSwarmFile(cfg.swarm)
  const book = new EpochBook(genesisEpoch(swarm))
  let round = 0
  if (cfg.dataDir !== undefined) {
    const newest = (await listCheckpoints(cfg.dataDir).catch(() => [] as string[]))[0]
    const m = newest !== undefined ? /checkpoint-(\d+)\.ckpt$/.exec(newest) : null
    if (m !== null) round = Number(m[1])
    const { readdir } = await import('node:fs/promises')
    const files = await readdir(join(cfg.dataDir, 'epochs')).catch(() => [] as string[])
    for (const f of files) {
      try {
        book.add(await verifyEpoch(JSON.parse(await readFile(join(cfg.dataDir, 'epochs', f), 'utf8')), swarm))
      } catch {
        // unreadable or not verifying: ignored, as the node does
      }
    }
  }
  const e = book.at(round)
  const r = epochR(swarm.r, e.members.length, e.f, swarm.aggregator.rule)
  const self = peerIdOfKey(await loadOrCreateKey(cfg.key, { logger: createCommandLogger() }))
  return {
    source: 'data directory (not running)',
    member: self,
    swarmId: swarmId(swarm),
    round,
    epoch: e.epoch,
    n: e.members.length,
    f: e.f,
    r,
    needed: e.members.length - r,
    latestEpoch: book.latest().epoch,
    latestActivation: book.latest().activation,
  }
}
