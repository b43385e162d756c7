/**
 * Issue 9 (1): a member started 30 rounds late with only `--bootstrap <one member>` catches up
 * from certified deliveries and, within 10 rounds, its model is as close to the honest
 * members' average as they are to each other, or as a member 3 rounds behind the swarm would be
 * (compared on RoundReport.sketch, the same 64-dim random projection on every member, evaluated
 * every round here).
 *
 * Four `monna start` processes on 127.0.0.1 (n = 4, f = 1); the swarm file lists no addresses:
 * every member reaches the others through node-0 (`--bootstrap`) and the address exchange.
 */
import assert from 'node:assert/strict'
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, it } from 'node:test'
import { parse, stringify } from 'yaml'
import type { RoundReport } from '../../src/node/index.ts'
import { assertNearHonest, averageOf, closeness, dist, summary } from '../support/closeness.ts'
import { freePorts, Member, runMonna } from '../unit/node/cli-harness.ts'

/** more rounds than the test runs: members are stopped (SIGTERM: checkpoint, exit 0) once the window is reported */
const ROUNDS = 1000
/** the run goes on at least this many rounds after the catch-up (and until MIN_COMPARED rounds can be compared) */
const WINDOW = 24
const LATE_BY = 30
/** rounds with the newcomer's own model compared, at least */
const MIN_COMPARED = 8
/** a member this many rounds behind the swarm is still in step (the engine catches up from 2 rounds behind) */
const BEHIND = 3

const members: Member[] = []
let dir = ''
after(async () => {
  for (const m of members) m.kill('SIGKILL')
  if (dir !== '') await rm(dir, { recursive: true, force: true })
})

it('a member started 30 rounds late with only --bootstrap catches up and, within 10 rounds, is as close to the honest average as the others or as a member 3 rounds behind', { timeout: 240_000 }, async (t) => {
  const t0 = performance.now()
  const mark = (what: string) => t.diagnostic(`${((performance.now() - t0) / 1000).toFixed(1)} s: ${what}`)
  dir = await mkdtemp(join(tmpdir(), 'monna-join-late-'))
  const base = await freePorts(4)
  const init = await runMonna(['swarm', 'init', '--nodes', '4', '--f', '1', '--dir', dir, '--base-port', String(base), '--rounds', String(ROUNDS), '--min-round-ms', '250', '--linger-ms', '6000', '--round-timeout-ms', '8000'])
  assert.equal(init.code, 0, init.stderr)
  // no addresses in the swarm file: --bootstrap through node-0 is all a member knows
  const swarmFile = join(dir, 'swarm.yaml')
  const swarm = parse(await readFile(swarmFile, 'utf8')) as { members: { id: string; addresses: string[] }[]; task: Record<string, unknown> }
  const node0 = `/ip4/127.0.0.1/tcp/${base}/p2p/${swarm.members[0]!.id}`
  for (const m of swarm.members) m.addresses = []
  swarm.task.evalEvery = 1
  swarm.task.evalExamples = 200
  await writeFile(swarmFile, stringify(swarm))
  const config = async (i: number): Promise<string> => {
    const file = join(dir, `node-${i}.yaml`)
    const cfg = parse(await readFile(file, 'utf8')) as Record<string, unknown>
    if (i > 0) cfg.bootstrap = [node0]
    await writeFile(file, stringify(cfg))
    return file
  }
  for (let i = 0; i < 3; i++) members.push(new Member(`node-${i}`, await config(i), ['--backend', 'cpu']))
  await members[0]!.waitForRound(LATE_BY, 150_000)
  mark(`founders at round ${LATE_BY}; starting node-3`)
  const late = new Member('node-3', await config(3), ['--backend', 'cpu'])
  members.push(late)
  const caught = await late.waitFor((l) => l.kind === 'event' && l.event.event === 'catch-up', 'catch-up', 40_000)
  const ev = (caught as unknown as { event: { from: number; to: number; delivered: number } }).event
  mark(`node-3 caught up from round ${ev.from} to ${ev.to} with ${ev.delivered} certified models`)
  assert.ok(ev.to >= LATE_BY - 1, `caught up to round ${ev.to}`)
  assert.ok(ev.delivered >= 3, 'aggregated at least n − f certified models')

  // Compare at least MIN_COMPARED rounds the newcomer ran itself from 10 rounds after its first:
  // a later catch-up (below) skips rounds, so wait for them rather than for a fixed round.
  const firstOwn = (await late.waitFor((l) => l.kind === 'report' && l.report.round > ev.to, 'its first own round', 60_000)) as { report: RoundReport }
  const enough = (): boolean => late.reports.filter((r) => r.round >= firstOwn.report.round + 10 && r.sketch !== undefined).length >= MIN_COMPARED
  await late.waitFor(() => enough(), `${MIN_COMPARED} rounds to compare`, 150_000)
  const last = Math.max(ev.to + WINDOW, ...late.reports.map((r) => r.round))
  await Promise.all(members.map((m) => m.waitForRound(last, 150_000)))
  for (const m of members) m.kill('SIGTERM')
  const exits = await Promise.all(members.map((m) => m.exited))
  mark('all stopped')
  for (const [i, e] of exits.entries()) assert.equal(e.code, 0, `${members[i]!.name} exited with ${JSON.stringify(e)}\n${members[i]!.stderr()}`)

  // Until the address exchange tells it where node-1 and node-2 are, node-3 reaches only node-0:
  // its own model cannot be certified (Q = 3), so a round where one founder's model is missing
  // too cannot complete, and once the founders have moved 2 rounds on it catches up again
  // (seen in CI: 11 rounds skipped). That is the engine doing its job; what must hold is that it
  // keeps taking part and stays in the honest cluster (below).
  const own = late.reports.filter((r) => r.round > ev.to && r.round <= last)
  const again = late.reports.filter((r) => r.round > ev.to + 1 && r.caughtUpFrom !== undefined).length
  mark(`node-3 ran ${own.length} of the ${last - ev.to} rounds after catching up (${again} catch-ups since)`)
  // (how many it skipped depends on the machine's load; that it keeps running rounds is what was waited for above)
  assert.ok(own.length >= MIN_COMPARED, `node-3 ran ${own.length} of ${last - ev.to} rounds after catching up`)
  assert.equal(own[0]!.caughtUpFrom, ev.from)
  for (const r of own) assert.ok(r.delivered >= 3)
  const byRound = (m: Member): Map<number, RoundReport> => new Map(m.reports.filter((r) => r.sketch !== undefined).map((r) => [r.round, r]))
  const founders = members.slice(0, 3).map(byRound)
  const mine = byRound(late)
  const first = own[0]!.round
  const avgAt = (r: number): number[] | undefined => averageOf(founders.map((f) => f.get(r)?.sketch))
  // From 10 rounds after its first round on, the newcomer against the founders
  // (test/support/closeness.ts: within the larger of their diameter and how far their average
  // moved in the last BEHIND rounds, on average; never beyond 1.5× it)
  const c = closeness(
    (r) => founders.map((f) => f.get(r)?.sketch),
    [...mine.values()].filter((r) => r.round >= first + 10 && r.round <= last).map((r) => ({ round: r.round, sketch: r.sketch! })),
    BEHIND,
  )
  mark(c.rows.join('\n'))
  assert.ok(c.ds.length >= MIN_COMPARED, `compared ${c.ds.length} rounds`)
  mark(`window: ${summary(c, BEHIND)}`)
  // what the criterion would see for a member that had not caught up: the founders' average
  // against their own average LATE_BY rounds earlier
  const now = avgAt(last)
  const before = avgAt(last - LATE_BY)
  if (now !== undefined && before !== undefined) {
    const stale = dist(now, before)
    mark(`a model ${LATE_BY} rounds stale would be ${stale.toExponential(2)} from the average`)
    assert.ok(Math.max(...c.ds) < stale, 'the newcomer is closer than a stale model would be')
  }
  assertNearHonest(c)
})
