/**
 * Reachability across real kernel NAT (docs/nat.md, "Reachability"): four `monna start` processes
 * in Linux network namespaces (test/support/netns.ts) — node-0 public and serving as relay,
 * node-1 public, node-2 and node-3 each behind its own NAT router. Each member learns by itself,
 * with AutoNAT v2, whether the others can dial it: the public node-0 reports `public` (a member
 * dialled its listen address back) and the NATed node-2 reports `private` (a member tried its public
 * IP with its listen port and the NAT dropped the dial), both read off their own `GET /status`.
 *
 * How many answers that takes (node_modules/@libp2p/autonat-v2/src/client.ts): one successful
 * dial-back confirms a listen or mapped address; libp2p counts one answer per /8 network of the
 * answering member, and every host here is in 100.0.0.0/8, so one answer per address is all
 * there is — one other member suffices, and four are running.
 *
 * Needs root, `ip` and `nft`; where namespaces cannot be built the test fails with one line
 * saying why: it never passes without having run.
 */
import assert from 'node:assert/strict'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, it } from 'node:test'
import { type LabHost, natFetch, natStatus } from '../support/nat-status.ts'
import { createNatLab, natLabUnavailable } from '../support/netns.ts'
import { Member, runMonna } from '../unit/node/cli-harness.ts'

const cleanups: (() => Promise<void>)[] = []
after(async () => {
  for (const c of cleanups.reverse()) await c().catch(() => {})
})

interface Reach {
  reachability: string
  addresses: { address: string; state: string }[]
}

it('AutoNAT v2 across real NAT: the public member reports itself public, the member behind NAT private (GET /status)', { timeout: 300_000 }, async (t) => {
  const unavailable = await natLabUnavailable()
  if (unavailable !== undefined) assert.fail(`the NAT test cannot run here: ${unavailable}`)
  const lab = await createNatLab('cone')
  cleanups.push(lab.teardown)
  const dir = await mkdtemp(join(tmpdir(), 'monna-nat-reach-'))
  cleanups.push(() => rm(dir, { recursive: true, force: true }))
  const init = await runMonna([
    'swarm', 'init', '--nodes', '4', '--f', '1', '--dir', dir, '--relay', '0', '--behind-nat', '2,3',
    '--hosts', [lab.ip.pub1, lab.ip.pub2, lab.ip.priv1, lab.ip.priv2].join(','),
    '--base-port', '4001', '--metrics-base-port', '9464', '--name', 'nat-reach',
    // long enough that nobody exits before the answers are in (the test stops the members)
    '--rounds', '10000', '--min-round-ms', '1000',
  ])
  assert.equal(init.code, 0, init.stderr)
  const hosts: LabHost[] = ['pub1', 'pub2', 'priv1', 'priv2']
  const members = hosts.map((h, i) => new Member(`node-${i}`, join(dir, `node-${i}.yaml`), ['--backend', 'cpu'], { wrap: lab.exec(h) }))
  cleanups.push(async () => {
    for (const m of members) m.kill('SIGKILL')
    await Promise.all(members.map((m) => m.exited))
  })
  const want = new Map<number, string>([
    [0, 'public'],
    [2, 'private'],
  ])
  const seen = new Map<number, Reach>()
  const t0 = performance.now()
  // poll each member's own view until both show what they should (the test's timeout is the hang guard)
  while ([...want].some(([i, r]) => seen.get(i)?.reachability !== r)) {
    for (const [i] of want) {
      const s = await natStatus<{ reachability?: Reach }>(lab, hosts[i]!, 9464 + i)
      if (s?.reachability !== undefined) seen.set(i, s.reachability)
    }
    for (const m of members) assert.equal(m.child.exitCode, null, `${m.name} exited early`)
    await new Promise((r) => setTimeout(r, 1000))
  }
  t.diagnostic(`${((performance.now() - t0) / 1000).toFixed(1)} s: node-0 ${JSON.stringify(seen.get(0))}; node-2 ${JSON.stringify(seen.get(2))}`)
  // node-0: its listen address on the lab's internet, dialled back
  assert.ok(seen.get(0)!.addresses.some((a) => a.state === 'reachable' && a.address.startsWith(`/ip4/${lab.ip.pub1}/tcp/4001`)), JSON.stringify(seen.get(0)))
  // node-2: its NAT's public IP with its listen port was tried and not reachable; nothing of it reachable
  assert.ok(seen.get(2)!.addresses.some((a) => a.state === 'unreachable' && a.address.startsWith(`/ip4/${lab.ip.nat1}/tcp/4003`)), JSON.stringify(seen.get(2)))
  assert.ok(!seen.get(2)!.addresses.some((a) => a.state === 'reachable'), JSON.stringify(seen.get(2)))
  // the README's `monna status` prints it too
  const out = await runMonna(['status', '--url', 'http://127.0.0.1:9466'], { wrap: lab.exec('priv1') })
  assert.equal(out.code, 0, out.stderr)
  assert.match(out.stdout, /^reachability private$/m, out.stdout)
  // Prometheus: monna_reachability{member, reachability} is 1 for the member's reachability
  for (const [i, r] of want) {
    const metrics = (await natFetch(lab, hosts[i]!, 9464 + i, '/metrics')) ?? ''
    assert.match(metrics, new RegExp(`^monna_reachability\\{member="node-${i}",reachability="${r}"\\} 1$`, 'm'), `node-${i}'s metrics`)
    assert.match(metrics, new RegExp(`^monna_reachability\\{member="node-${i}",reachability="unknown"\\} 0$`, 'm'), `node-${i}'s metrics`)
  }
  // and each member logged the change once
  for (const [i, r] of want) {
    const logged = members[i]!.logs.filter((l) => typeof l.msg === 'string' && (l.msg as string).startsWith('reachability:'))
    assert.equal(logged.filter((l) => (l.msg as string).startsWith(`reachability: ${r} `)).length, 1, `node-${i} logged ${JSON.stringify(logged)}`)
  }
})
