/**
 * Issue 9 (2): membership changes while the swarm runs. Six `monna start` processes on
 * 127.0.0.1 (n = 6, f = 1, an admin key in the swarm file). While they learn, the admin adds a
 * seventh member (`monna swarm add-member --via/--publish` through node-0's endpoint; the new
 * member starts with `--epoch … --join --bootstrap node-0`), then removes node-5. No honest
 * member stalls, every member switches epoch at the same round, the removed one stops there.
 */
import assert from 'node:assert/strict'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, it } from 'node:test'
import { stringify } from 'yaml'
import { freePorts, Member, runMonna } from '../unit/node/cli-harness.ts'

/** more rounds than the test runs: members are stopped (SIGTERM: checkpoint, exit 0) once epoch 2 has run a few rounds */
const ROUNDS = 1000
const members: Member[] = []
let dir = ''
after(async () => {
  for (const m of members) m.kill('SIGKILL')
  if (dir !== '') await rm(dir, { recursive: true, force: true })
})

it('adds a member to a running 6-member swarm and removes one: no stall, every member switches at the same round', { timeout: 240_000 }, async (t) => {
  const t0 = performance.now()
  const mark = (what: string) => t.diagnostic(`${((performance.now() - t0) / 1000).toFixed(1)} s: ${what}`)
  dir = await mkdtemp(join(tmpdir(), 'monna-membership-'))
  const base = await freePorts(8)
  const metricsPort = base + 7
  const init = await runMonna([
    'swarm', 'init', '--nodes', '6', '--f', '1', '--dir', dir, '--base-port', String(base), '--admin-key', join(dir, 'admin.key'),
    '--rounds', String(ROUNDS), '--min-round-ms', '300', '--linger-ms', '6000', '--round-timeout-ms', '8000',
  ])
  assert.equal(init.code, 0, init.stderr)
  const ids = [...init.stdout.matchAll(/\((12D3KooW\w+)\)/g)].map((m) => m[1]!)
  assert.equal(ids.length, 6)
  const node0 = `/ip4/127.0.0.1/tcp/${base}/p2p/${ids[0]}`
  const url = `http://127.0.0.1:${metricsPort}`
  for (let i = 0; i < 6; i++) members.push(new Member(`node-${i}`, join(dir, `node-${i}.yaml`), ['--backend', 'cpu', ...(i === 0 ? ['--metrics-port', String(metricsPort)] : [])]))
  const keygen = await runMonna(['keygen', '--out', join(dir, 'new.key')])
  assert.equal(keygen.code, 0, keygen.stderr)
  await members[0]!.waitForRound(2, 150_000)
  mark('founders running')

  // ---- add a member
  const newId = keygen.stdout.trim()
  const e1 = join(dir, 'epoch-1.json')
  const swarmArgs = ['--swarm', join(dir, 'swarm.yaml'), '--admin-key', join(dir, 'admin.key'), '--via', url, '--publish', url]
  const add = await runMonna(['swarm', 'add-member', ...swarmArgs, '--id', newId, '--name', 'newcomer', '--address', `/ip4/127.0.0.1/tcp/${base + 6}`, '--in', '10', '--out', e1])
  assert.equal(add.code, 0, add.stderr)
  const a1 = Number(/activates at round (\d+)/.exec(add.stdout)![1])
  assert.match(add.stdout, /n = 7, f = 1/)
  assert.match(add.stdout, /"added":true/)
  mark(`epoch 1 (add ${newId.slice(-6)}) activates at round ${a1}`)
  const cfg = join(dir, 'new.yaml')
  await writeFile(
    cfg,
    stringify({ swarm: './swarm.yaml', key: './new.key', listen: [`/ip4/127.0.0.1/tcp/${base + 6}`], bootstrap: [node0], epochs: ['./epoch-1.json'], join: true, minRoundMs: 300, lingerMs: 6000 }),
  )
  const newcomer = new Member('newcomer', cfg, ['--backend', 'cpu'])
  members.push(newcomer)

  // ---- remove node-5 (the CLI reads epoch 1 from node-0's endpoint; activation ≥ epoch 1's + 8)
  const remove = await runMonna(['swarm', 'remove-member', ...swarmArgs, '--id', ids[5]!, '--in', '8', '--out', join(dir, 'epoch-2.json')])
  assert.equal(remove.code, 0, remove.stderr)
  const a2 = Number(/activates at round (\d+)/.exec(remove.stdout)![1])
  assert.match(remove.stdout, /epoch 2 .*n = 6, f = 1/)
  mark(`epoch 2 (remove node-5) activates at round ${a2}`)
  await newcomer.waitFor((l) => l.kind === 'event' && l.event.event === 'catch-up', 'newcomer catch-up', 150_000)
  mark('newcomer caught up')
  await Promise.all([...members.slice(0, 5).map((m) => m.waitForRound(a2 + 4, 150_000)), newcomer.waitForRound(a2 + 2, 150_000)])
  // the newcomer's model competes with the founders' for the first n − f places: under load it can
  // lose that race for a few rounds, so keep running until some founder has aggregated it
  await Promise.any(
    members.slice(0, 5).map((m) => m.waitFor((l) => l.kind === 'report' && l.report.round >= a1 && (l.report.senders?.includes(newId) ?? false), "a round that aggregates the newcomer's model", 120_000)),
  ).catch(() => {
    // what the newcomer and a founder were doing: behind and catching up, stopped, or refused (rejections by reason)
    const brief = (m: Member) => m.reports.slice(-6).map((r) => ({ round: r.round, epoch: r.epoch, caughtUpFrom: r.caughtUpFrom, senders: r.senders?.length, rejected: Object.fromEntries(Object.entries(r.rejected ?? {}).filter(([, v]) => v > 0)) }))
    t.diagnostic(`newcomer: exited ${newcomer.child.exitCode ?? newcomer.child.signalCode ?? 'no'}, last reports ${JSON.stringify(brief(newcomer))}, events ${JSON.stringify(newcomer.events.slice(-6))}\n${newcomer.stderr().slice(-3000)}`)
    t.diagnostic(`node-0: last reports ${JSON.stringify(brief(members[0]!))}\n${members[0]!.stderr().slice(-3000)}`)
    assert.fail("no founder aggregated the newcomer's model within 120 s")
  })
  mark("a founder aggregated the newcomer's model")
  const status = await runMonna(['status', '--url', url, '--json'])
  assert.equal(status.code, 0, status.stderr)
  const st = JSON.parse(status.stdout) as { epoch: number; n: number; f: number; round: number; peers: string[] }
  assert.equal(st.epoch, 2)
  assert.equal(st.n, 6)
  assert.ok(st.peers.includes(newId), 'node-0 is connected to the newcomer')
  assert.ok(!st.peers.includes(ids[5]!), 'node-0 closed its connection to the removed member')

  for (const m of members) if (m !== members[5]) m.kill('SIGTERM')
  const exits = await Promise.all(members.map((m) => m.exited))
  mark('all stopped')
  for (const [i, e] of exits.entries()) assert.equal(e.code, 0, `${members[i]!.name} exited with ${JSON.stringify(e)}\n${members[i]!.stderr()}`)

  // Every member runs each round under the epoch that round belongs to: the switch happens at the
  // same round everywhere. A founder that falls 2 rounds behind on a loaded machine catches up
  // and skips rounds (the others make n − f without it) — the engine doing its job, so skipped
  // rounds are allowed when a catch-up covers them, and a switch may then happen at the round it
  // caught up to, never at another epoch's round.
  const epochOfRound = (r: number): number => (r < a1 ? 0 : r < a2 ? 1 : 2)
  for (const m of members.slice(0, 5)) {
    for (const [i, r] of m.reports.entries()) {
      const prev = i === 0 ? -1 : m.reports[i - 1]!.round
      assert.ok(r.round === prev + 1 || (r.round > prev + 1 && r.caughtUpFrom !== undefined), `${m.name} went from round ${prev} to ${r.round} without catching up`)
      assert.equal(r.epoch ?? 0, epochOfRound(r.round), `${m.name} ran round ${r.round} under epoch ${r.epoch}`)
    }
    assert.ok(m.reports.some((r) => r.epoch === 1) && m.reports.some((r) => r.epoch === 2), `${m.name} ran rounds of both new epochs`)
    const switches = m.events.filter((e) => e.event === 'epoch').map((e) => [e.epoch as number, e.round as number])
    assert.deepEqual(switches.map(([e]) => e), [1, 2], `${m.name} epoch events`)
    for (const [e, r] of switches) assert.equal(epochOfRound(r!), e, `${m.name} switched to epoch ${e} at round ${r}`)
    if (m.reports.some((r) => r.round === a1)) assert.deepEqual(switches[0], [1, a1])
    if (m.reports.some((r) => r.round === a2)) assert.deepEqual(switches[1], [2, a2])
    for (const r of m.reports) {
      // from a few rounds before the first change on (round 0 waits for six processes to start,
      // which under load may take longer than the round timeout: a stall there is not the change's)
      if (r.round >= a1 - 4) assert.equal(r.stalled, false, `${m.name} stalled at round ${r.round}`)
      assert.equal(r.needed, (r.epoch ?? 0) === 1 ? 6 : 5, `${m.name} round ${r.round} needs n − f`)
    }
    assert.equal(m.events.filter((e) => e.event === 'stall' && (e.round as number) >= a1 - 4).length, 0, `${m.name} reported a stall`)
  }
  // the removed member ran epoch 0 and 1 and stopped at the activation round of epoch 2
  const removed = members[5]!
  const stoppedAt = removed.events.find((e) => e.event === 'removed')?.round as number | undefined
  assert.ok(stoppedAt !== undefined && stoppedAt >= a2, `node-5 removed at round ${stoppedAt}`)
  assert.ok(removed.reports.at(-1)!.round <= a2 - 1 && removed.reports.every((r) => (r.epoch ?? 0) === epochOfRound(r.round)))
  // it ran a2 − 1 unless it had fallen behind then (a catch-up past a2 finds it removed)
  if (removed.reports.at(-1)!.round === a2 - 1) assert.equal(stoppedAt, a2)
  // the newcomer ran only rounds of epochs ≥ 1, switched to epoch 2 at a2 too, and finished
  assert.ok(newcomer.reports.length >= 3)
  assert.ok(newcomer.reports.every((r) => r.round > a1 && r.epoch === (r.round < a2 ? 1 : 2)), 'the newcomer runs rounds of epochs 1 and 2 only, switching at a2')
  assert.ok(newcomer.reports.every((r) => !r.stalled))
  const joined = newcomer.reports[0]!.round
  const used = members.slice(0, 5).flatMap((m) => m.reports).filter((r) => r.round >= joined && r.senders?.includes(newId)).length
  mark(`founders' reports since the newcomer's first round that aggregated its model: ${used}`)
  assert.ok(used > 0, "no founder aggregated the newcomer's model")
  assert.ok(members.slice(0, 5).flatMap((m) => m.reports).every((r) => r.round < a2 || !r.senders?.includes(ids[5]!)), 'the removed member is not aggregated after its removal')
})
