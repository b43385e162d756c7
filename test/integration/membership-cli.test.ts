/** `monna swarm add-member | remove-member | set-f`: signed epoch files, and refusals with exit code 2. */
import assert from 'node:assert/strict'
import { once } from 'node:events'
import { mkdir, mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises'
import { createServer } from 'node:http'
import type { AddressInfo } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, it } from 'node:test'
import { parse } from 'yaml'
import { parseSwarm } from '../../src/config/schema.ts'
import { verifyEpoch } from '../../src/membership/index.ts'
import { runMonna } from '../unit/node/cli-harness.ts'

let dir = ''
after(async () => {
  if (dir !== '') await rm(dir, { recursive: true, force: true })
})

it('membership commands write verifiable epochs and refuse changes that break n ≥ 3f + 1', { timeout: 240_000 }, async () => {
  dir = await mkdtemp(join(tmpdir(), 'monna-membership-cli-'))
  const init = await runMonna(['swarm', 'init', '--nodes', '4', '--f', '1', '--dir', join(dir, 'lan'), '--admin-key', join(dir, 'admin.key')])
  assert.equal(init.code, 0, init.stderr)
  const plain = await runMonna(['swarm', 'init', '--nodes', '4', '--f', '1', '--dir', join(dir, 'plain')])
  assert.equal(plain.code, 0, plain.stderr)
  const swarmFile = join(dir, 'lan', 'swarm.yaml')
  const swarm = parseSwarm(parse(await readFile(swarmFile, 'utf8')))
  assert.match(swarm.admin ?? '', /^12D3KooW/)
  const ids = swarm.members.map((m) => m.id)
  const newKey = await runMonna(['keygen', '--out', join(dir, 'new.key')])
  const newId = newKey.stdout.trim()
  const common = ['--swarm', swarmFile, '--admin-key', join(dir, 'admin.key')]

  const add = await runMonna(['swarm', 'add-member', ...common, '--id', newId, '--activation', '20', '--out', join(dir, 'e1.json')])
  assert.equal(add.code, 0, add.stderr)
  assert.match(add.stdout, /epoch 1 of swarm .*: n = 5, f = 1, activates at round 20/)
  const e1 = await verifyEpoch(JSON.parse(await readFile(join(dir, 'e1.json'), 'utf8')), swarm)
  assert.deepEqual(e1.members.map((m) => m.id), [...ids, newId])

  const refusals: [string[], RegExp][] = [
    [['swarm', 'add-member', ...common, '--id', newId, '--f', '2', '--activation', '20'], /n = 5 members cannot tolerate f = 2.*n ≥ 3f \+ 1/],
    [['swarm', 'remove-member', ...common, '--id', ids[0]!, '--activation', '20'], /n = 3 members cannot tolerate f = 1/],
    [['swarm', 'set-f', ...common, '--from', join(dir, 'e1.json'), '--f', '2', '--activation', '30'], /n = 5 members cannot tolerate f = 2/],
    [['swarm', 'set-f', ...common, '--from', join(dir, 'e1.json'), '--f', '0', '--activation', '10'], /activation: must be a round after the current epoch's activation \(20\)/],
    [['swarm', 'add-member', ...common, '--id', ids[1]!, '--activation', '20'], /already a member/],
    [['swarm', 'set-f', '--swarm', swarmFile, '--admin-key', join(dir, 'lan', 'node-0.key'), '--f', '0', '--activation', '5'], /is not the swarm's admin/],
    [['swarm', 'set-f', '--swarm', join(dir, 'plain', 'swarm.yaml'), '--admin-key', join(dir, 'admin.key'), '--f', '0', '--activation', '5'], /names no admin/],
  ]
  for (const [args, message] of refusals) {
    const r = await runMonna(args)
    assert.equal(r.code, 2, `${args.join(' ')}\n${r.stdout}${r.stderr}`)
    assert.match(r.stderr, message)
  }
  // a valid two-step change: lower f first, then remove
  const down = await runMonna(['swarm', 'set-f', ...common, '--from', join(dir, 'e1.json'), '--f', '0', '--activation', '30', '--out', join(dir, 'e2.json')])
  assert.equal(down.code, 0, down.stderr)
  const rm2 = await runMonna(['swarm', 'remove-member', ...common, '--from', join(dir, 'e1.json'), '--from', join(dir, 'e2.json'), '--id', ids[0]!, '--activation', '40', '--out', join(dir, 'e3.json')])
  assert.equal(rm2.code, 0, rm2.stderr)
  assert.match(rm2.stdout, /epoch 3 .*n = 4, f = 0, activates at round 40/)

  // ---- against a running member (a stand-in for its HTTP endpoint, at round 15): an activation at
  // or below its round is refused before anything is signed, written or published
  const posted: unknown[] = []
  const member = createServer((req, res) => {
    const reply = (body: unknown): void => {
      res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(body))
    }
    if (req.method === 'GET' && req.url === '/status') reply({ round: 15, epoch: 0 })
    else if (req.method === 'GET' && req.url === '/epochs') reply([])
    else if (req.method === 'POST' && req.url === '/epoch') {
      let body = ''
      req.on('data', (b: Buffer) => {
        body += b.toString()
      })
      req.on('end', () => {
        const e = JSON.parse(body) as { epoch: number; activation: number }
        posted.push(e)
        reply({ epoch: e.epoch, activation: e.activation, added: true })
      })
    } else res.writeHead(404).end()
  })
  member.listen(0, '127.0.0.1')
  await once(member, 'listening')
  try {
    const url = `http://127.0.0.1:${(member.address() as AddressInfo).port}`
    const out = join(dir, 'stale.json')
    const stale = (activation: number) => new RegExp(`^monna: epoch 1 activates at round ${activation} but the member at ${url.replaceAll('.', '\\.')} is already at round 15; choose --activation ≥ 16`)
    for (const [args, activation] of [
      [['--via', url, '--activation', '12'], 12],
      [['--via', url, '--in', '0'], 15],
      [['--publish', url, '--activation', '15'], 15],
      [['--via', url, '--publish', url, '--activation', '3'], 3],
    ] as const) {
      const r = await runMonna(['swarm', 'add-member', ...common, '--id', newId, ...args, '--out', out])
      assert.equal(r.code, 2, `${args.join(' ')}\n${r.stdout}${r.stderr}`)
      assert.equal(r.stderr.trim().split('\n').length, 1, r.stderr)
      assert.match(r.stderr, stale(activation))
    }
    await assert.rejects(stat(out), { code: 'ENOENT' }, 'nothing written')
    assert.deepEqual(posted, [], 'nothing published')
    const ok = await runMonna(['swarm', 'add-member', ...common, '--id', newId, '--publish', url, '--activation', '16', '--out', out])
    assert.equal(ok.code, 0, ok.stderr)
    assert.match(ok.stdout, /activates at round 16/)
    assert.equal(posted.length, 1)
    const lead = await runMonna(['swarm', 'add-member', ...common, '--id', newId, '--via', url, '--out', out])
    assert.equal(lead.code, 0, lead.stderr)
    assert.match(lead.stdout, /activates at round 25/, 'its round + 10 by default')
  } finally {
    member.close()
  }

  // ---- against a member of this machine that is not running (--config): the newest checkpoint
  // of its data directory says round 25; without any member to check, a warning says so
  const data = join(dir, 'lan', 'data', 'node-0')
  await mkdir(data, { recursive: true })
  await writeFile(join(data, `checkpoint-${'25'.padStart(10, '0')}.ckpt`), 'not read: the round is in the name')
  const offline = await runMonna(['swarm', 'add-member', ...common, '--id', newId, '--config', join(dir, 'lan', 'node-0.yaml'), '--activation', '20', '--out', join(dir, 'offline.json')])
  assert.equal(offline.code, 2, offline.stdout + offline.stderr)
  assert.equal(offline.stderr.trim().split('\n').length, 1, offline.stderr)
  assert.match(offline.stderr, /^monna: epoch 1 activates at round 20 but the member of .*node-0\.yaml \(data directory \(not running\)\) is already at round 25; choose --activation ≥ 26/)
  const unchecked = await runMonna(['swarm', 'add-member', ...common, '--id', newId, '--activation', '20', '--out', join(dir, 'offline.json')])
  assert.equal(unchecked.code, 0, unchecked.stderr)
  assert.match(unchecked.stderr, /^warning: the activation round is not checked against any member/)
})
