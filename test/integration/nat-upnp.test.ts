/**
 * UPnP port mapping across real kernel NAT (docs/nat.md, "UPnP"): Linux network namespaces
 * (test/support/netns.ts) with symmetric NAT routers — hole punching cannot work there — and
 * miniupnpd (nftables backend) on node-2's router. node-2 runs behind it; its router also drops
 * node-2's own connections to node-1, so node-1 reaches node-2 only through the relay (node-0) —
 * or, once node-2 mapped its listen port, by dialling it there.
 *
 * - `monna start --upnp` on node-2: it maps its listen port on the gateway, AutoNAT confirms the
 *   mapped address (node-2 reports itself `public`), and node-1 — a public member — then holds a
 *   direct connection it opened itself to node-2's mapped address (read off node-1's own
 *   connection list, `GET /status`);
 * - control, no `--upnp`: node-2 reports itself `private`, and node-1 reaches it through the relay
 *   only, for as long as the test watches (until node-1 ran three more rounds).
 *
 * Needs root, `ip`, `nft` and `miniupnpd` (`.ci/run` installs miniupnpd-nftables); where they are
 * missing the test fails with one line saying why: it never passes without having run.
 */
import assert from 'node:assert/strict'
import { mkdtemp, readFile, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { it, type TestContext } from 'node:test'
import { parse } from 'yaml'
import { type LabHost, natStatus } from '../support/nat-status.ts'
import { createNatLab, type NatLab, natLabUnavailable, upnpUnavailable } from '../support/netns.ts'
import { Member, runMonna } from '../unit/node/cli-harness.ts'


interface Status {
  round: number
  connections: { peer: string; kind: string; address: string; direction: string }[]
  reachability?: { reachability: string; addresses: { address: string; type: string; state: string }[] }
}

const hosts: LabHost[] = ['pub1', 'pub2', 'priv1', 'priv2']
const METRICS = 9564

async function lab(t: TestContext, upnp: boolean): Promise<{ lab: NatLab; members: Member[]; ids: string[]; mark: (s: string) => void }> {
  const unavailable = (await natLabUnavailable()) ?? (await upnpUnavailable())
  if (unavailable !== undefined) assert.fail(`the UPnP test cannot run here: ${unavailable}`)
  // each test's namespaces, members and files go when it ends, passed or failed (the next test
  // builds namespaces of the same names)
  const cleanups: (() => Promise<void>)[] = []
  t.after(async () => {
    for (const c of cleanups.reverse()) await c().catch(() => {})
  })
  const l = await createNatLab('symmetric')
  cleanups.push(l.teardown)
  await l.startUpnp('nat1')
  // node-2 cannot dial node-1: node-1 reaches it through the relay, or at its mapped address
  await l.blockOutbound('nat1', l.ip.pub2)
  const dir = await mkdtemp(join(tmpdir(), 'monna-nat-upnp-'))
  cleanups.push(() => rm(dir, { recursive: true, force: true }))
  const init = await runMonna([
    'swarm', 'init', '--nodes', '4', '--f', '1', '--dir', dir, '--relay', '0', '--behind-nat', '2,3',
    '--hosts', [l.ip.pub1, l.ip.pub2, l.ip.priv1, l.ip.priv2].join(','),
    '--base-port', '4001', '--metrics-base-port', String(METRICS), '--name', `nat-upnp-${upnp}`,
    // long enough that nobody exits while the test watches (it stops the members)
    '--rounds', '10000', '--min-round-ms', '1000',
  ])
  assert.equal(init.code, 0, init.stderr)
  const ids = (parse(await readFile(join(dir, 'swarm.yaml'), 'utf8')) as { members: { id: string }[] }).members.map((m) => m.id)
  const members = hosts.map((h, i) => new Member(`node-${i}`, join(dir, `node-${i}.yaml`), ['--backend', 'cpu', ...(upnp && i === 2 ? ['--upnp'] : [])], { wrap: l.exec(h) }))
  cleanups.push(async () => {
    for (const m of members) m.kill('SIGKILL')
    await Promise.all(members.map((m) => m.exited))
  })
  const t0 = performance.now()
  return { lab: l, members, ids, mark: (s) => t.diagnostic(`${((performance.now() - t0) / 1000).toFixed(1)} s: ${s}`) }
}

/** Polls until `done` holds for node-1's and node-2's statuses (the test's timeout is the hang guard). */
async function watch(l: NatLab, members: Member[], done: (s1: Status, s2: Status) => boolean): Promise<{ s1: Status; s2: Status }> {
  for (;;) {
    const s1 = await natStatus<Status>(l, 'pub2', METRICS + 1)
    const s2 = await natStatus<Status>(l, 'priv1', METRICS + 2)
    if (s1 !== undefined && s2 !== undefined && done(s1, s2)) return { s1, s2 }
    for (const m of members) assert.equal(m.child.exitCode, null, `${m.name} exited early`)
    await new Promise((r) => setTimeout(r, 1000))
  }
}

it('monna start --upnp behind a symmetric NAT with a UPnP gateway: the mapped address is confirmed and a public member dials it directly', { timeout: 300_000 }, async (t) => {
  const { lab: l, members, ids, mark } = await lab(t, true)
  const mapped = (s: Status) => s.reachability?.addresses.find((a) => a.type === 'ip-mapping' && a.state === 'reachable' && a.address.startsWith(`/ip4/${l.ip.nat1}/tcp/`))
  const direct = (s: Status) => s.connections.find((c) => c.peer === ids[2] && c.kind === 'direct' && c.direction === 'outbound' && c.address.startsWith(`/ip4/${l.ip.nat1}/tcp/`))
  const { s1, s2 } = await watch(l, members, (s1, s2) => mapped(s2) !== undefined && direct(s1) !== undefined)
  mark(`node-2: ${JSON.stringify(s2.reachability)}; node-1's connection to node-2: ${JSON.stringify(direct(s1))}`)
  assert.equal(s2.reachability!.reachability, 'public')
  // node-1 dialled exactly the address the gateway mapped (not a port node-2 dialled out from)
  assert.ok(direct(s1)!.address.startsWith(mapped(s2)!.address), `${direct(s1)!.address} is node-2's mapped address ${mapped(s2)!.address}`)
})

it('control: the same without --upnp — node-2 is private and node-1 reaches it through the relay only', { timeout: 300_000 }, async (t) => {
  const { lab: l, members, ids, mark } = await lab(t, false)
  const { s1, s2 } = await watch(l, members, (s1, s2) => s2.reachability?.reachability === 'private' && s1.connections.some((c) => c.peer === ids[2] && c.kind === 'relayed'))
  mark(`node-2: ${JSON.stringify(s2.reachability)}; node-1 reaches node-2 through the relay`)
  // keep watching while node-1 runs three more rounds: never a direct connection to node-2
  const until = s1.round + 3
  const kinds = new Set<string>()
  for (;;) {
    const s = await natStatus<Status>(l, 'pub2', METRICS + 1)
    for (const c of s?.connections ?? []) if (c.peer === ids[2]) kinds.add(c.kind)
    if ((s?.round ?? 0) >= until) break
    assert.equal(members[1]!.child.exitCode, null, 'node-1 exited early')
    await new Promise((r) => setTimeout(r, 1000))
  }
  mark(`node-1's connections to node-2 until round ${until}: ${[...kinds].join(', ')}`)
  assert.deepEqual([...kinds], ['relayed'])
})
