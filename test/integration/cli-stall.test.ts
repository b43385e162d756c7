/**
 * With more than f members silent, a `monna start` member reports a stall — in its progress
 * output, its logs and its Prometheus metrics — instead of hanging silently, and recovers on
 * its own when they return. Then SIGTERM: checkpoint and exit code 0.
 */
import assert from 'node:assert/strict'
import { mkdtemp, readdir, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, it } from 'node:test'
import { freePorts, Member, runMonna } from '../unit/node/cli-harness.ts'

const members: Member[] = []
let dir = ''
after(async () => {
  for (const m of members) {
    m.kill('SIGCONT')
    m.kill('SIGKILL')
  }
  if (dir !== '') await rm(dir, { recursive: true, force: true })
})

async function metric(url: string, name: string, member: string): Promise<number | undefined> {
  const text = await (await fetch(url)).text()
  const line = text.split('\n').find((l) => l.startsWith(`${name}{`) && l.includes(`member="${member}"`))
  return line === undefined ? undefined : Number(line.split(' ').at(-1))
}

it('reports a stall when more than f members are silent, and recovers when they return', { timeout: 240_000 }, async () => {
  dir = await mkdtemp(join(tmpdir(), 'monna-cli-stall-'))
  const base = await freePorts(4)
  const init = await runMonna([
    'swarm', 'init', '--nodes', '4', '--f', '1', '--dir', dir, '--base-port', String(base),
    '--rounds', '200', '--min-round-ms', '300', '--round-timeout-ms', '2500', '--checkpoint-every', '5',
  ])
  assert.equal(init.code, 0, init.stderr)
  for (let i = 0; i < 4; i++) {
    members.push(new Member(`node-${i}`, join(dir, `node-${i}.yaml`), ['--backend', 'cpu', ...(i === 0 ? ['--metrics-port', '0'] : [])]))
  }
  const [watcher, , s1, s2] = members as [Member, Member, Member, Member]
  const endpoint = await watcher.waitFor((l) => l.kind === 'log' && l.log.msg === 'metrics endpoint', 'metrics endpoint log', 60_000)
  const url = String((endpoint as unknown as { log: { url: string } }).log.url)
  await watcher.waitForRound(2)
  assert.notEqual(await metric(url, 'monna_stalled', 'node-0'), undefined)

  // two of four members (more than f = 1) go silent: no instance can gather Q = 3 echoes
  s1.kill('SIGSTOP')
  s2.kill('SIGSTOP')
  const open = watcher.reports.at(-1)!.round + 1 // a loaded machine may have stalled briefly before: look from here on
  const stallLine = await watcher.waitFor((l) => l.kind === 'event' && l.event.event === 'stall' && Number(l.event.round) >= open, 'stall progress line', 30_000)
  const stall = (stallLine as unknown as { event: { round: number; delivered: number; needed: number } }).event
  assert.equal(stall.needed, 3)
  assert.ok(stall.delivered < 3)
  const stallLog = await watcher.waitFor(
    (l) => l.kind === 'log' && l.log.level === 'warn' && String(l.log.msg).startsWith('round stalled') && l.log.round === stall.round,
    'stall log',
    5_000,
  )
  assert.equal((stallLog as unknown as { log: { round: number } }).log.round, stall.round)
  assert.equal(await metric(url, 'monna_stalled', 'node-0'), 1)
  assert.ok((await metric(url, 'monna_stalls_total', 'node-0'))! >= 1)

  // they come back: the member recovers by itself and goes on
  s1.kill('SIGCONT')
  s2.kill('SIGCONT')
  const recoverLine = await watcher.waitFor((l) => l.kind === 'event' && l.event.event === 'recover' && l.event.round === stall.round, 'recover progress line', 40_000)
  assert.equal((recoverLine as unknown as { event: { round: number } }).event.round, stall.round)
  const stalledReport = await watcher.waitForRound(stall.round)
  assert.equal(stalledReport.stalled, true)
  // rounds after the recovery run normally (just-resumed processes may make one or two rounds slow on a loaded machine)
  const normal = await watcher.waitFor((l) => l.kind === 'report' && l.report.round > stall.round && !l.report.stalled, 'a normal round after the recovery', 60_000)
  assert.ok(normal.kind === 'report' && !normal.report.stalled)
  const text = await (await fetch(url)).text()
  for (const name of ['monna_round', 'monna_deliveries_total', 'monna_aggregation_seconds_bucket', 'monna_echo_latency_seconds_bucket', 'monna_broadcast_deliveries_total']) {
    assert.ok(text.includes(name), `metrics lack ${name}`)
  }

  // SIGTERM: abort the round, write a checkpoint, exit 0
  for (const m of members) m.kill('SIGTERM')
  const exits = await Promise.all(members.map((m) => m.exited))
  for (const [i, e] of exits.entries()) assert.equal(e.code, 0, `node-${i}: ${JSON.stringify(e)}\n${members[i]!.stderr()}`)
  assert.ok(watcher.logs.some((l) => l.msg === 'checkpoint written at shutdown'))
  assert.ok((await readdir(join(dir, 'data', 'node-0'))).some((f) => f.endsWith('.ckpt')))
})
