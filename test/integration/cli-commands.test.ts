/** The `monna` commands as a user meets them: help with examples, one-line errors with exit code 2, the files they write. */
import assert from 'node:assert/strict'
import { chmod, mkdir, mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises'
import { type AddressInfo, createServer } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { parse } from 'yaml'
import { parseSwarm, swarmId } from '../../src/config/schema.ts'
import { loadNodeConfigFile } from '../../src/node/files.ts'
import { chattr } from '../support/chattr.ts'
import { runMonna } from '../unit/node/cli-harness.ts'

let dir = ''
before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'monna-cli-'))
})
after(async () => {
  await rm(dir, { recursive: true, force: true })
})

function oneLineError(r: { code: number | null; stderr: string }, pattern: RegExp): void {
  assert.equal(r.code, 2, r.stderr)
  const lines = r.stderr.trim().split('\n')
  assert.equal(lines.length, 1, `expected one line, got:\n${r.stderr}`)
  assert.match(lines[0]!, /^monna: /)
  assert.match(lines[0]!, pattern)
}

describe('monna commands', () => {
  it('every command has --help with examples', async () => {
    for (const args of [[], ['swarm', 'init'], ['start']]) {
      const r = await runMonna([...args, '--help'])
      assert.equal(r.code, 0, `${args.join(' ')} --help: ${r.stderr}`)
      assert.match(r.stdout, /Examples:\n[\s\S]*?\$ monna /, `${args.join(' ')} --help lacks examples`)
    }
  })

  it('keygen writes a 0600 key, prints its PeerId and never overwrites one', async () => {
    const out = join(dir, 'keys', 'a.key')
    const r = await runMonna(['keygen', '--out', out])
    assert.equal(r.code, 0, r.stderr)
    assert.match(r.stdout.trim(), /^12D3KooW[1-9A-HJ-NP-Za-km-z]+$/)
    assert.equal((await stat(out)).mode & 0o777, 0o600)
    oneLineError(await runMonna(['keygen', '--out', out]), /exists; choose another path/)
  })

  it('swarm init writes keys, a valid swarm file with the members\' addresses and one node config each', async () => {
    const d = join(dir, 'lan')
    const r = await runMonna(['swarm', 'init', '--nodes', '4', '--f', '1', '--dir', d, '--base-port', '9700', '--rounds', '7', '--metrics-base-port', '9800'])
    assert.equal(r.code, 0, r.stderr)
    const swarm = parseSwarm(parse(await readFile(join(d, 'swarm.yaml'), 'utf8')))
    assert.equal(swarm.members.length, 4)
    assert.equal(swarm.f, 1)
    assert.equal(swarm.task.rounds, 7)
    assert.equal(swarm.aggregator.rule, 'nna')
    assert.ok(r.stdout.includes(swarmId(swarm)), 'prints the swarm id')
    for (const [i, m] of swarm.members.entries()) {
      assert.deepEqual(m.addresses, [`/ip4/127.0.0.1/tcp/${9700 + i}/p2p/${m.id}`])
      const cfg = await loadNodeConfigFile(join(d, `node-${i}.yaml`))
      assert.equal(cfg.key, join(d, `node-${i}.key`))
      assert.equal(cfg.swarm, join(d, 'swarm.yaml'))
      assert.deepEqual(cfg.listen, [`/ip4/127.0.0.1/tcp/${9700 + i}`])
      assert.equal(cfg.metricsPort, 9800 + i)
      assert.equal(cfg.dataDir, join(d, 'data', `node-${i}`))
      assert.equal((await stat(cfg.key)).mode & 0o777, 0o600)
    }
    oneLineError(await runMonna(['swarm', 'init', '--nodes', '4', '--f', '1', '--dir', d]), /already holds a swarm.yaml/)
    // --encoding goes into the swarm file (and so into the swarm id)
    const e = join(dir, 'lan-int8')
    const ri = await runMonna(['swarm', 'init', '--nodes', '4', '--f', '1', '--dir', e, '--base-port', '9700', '--rounds', '7', '--encoding', 'int8'])
    assert.equal(ri.code, 0, ri.stderr)
    const int8 = parseSwarm(parse(await readFile(join(e, 'swarm.yaml'), 'utf8')))
    assert.equal(int8.encoding, 'int8')
    assert.ok(ri.stdout.includes(swarmId(int8)))
    assert.notEqual(swarmId(int8), swarmId(swarm))
    // --r goes into the swarm file (docs/redundancy.md); status shows r and n − r
    const rd = join(dir, 'lan-r')
    const rr = await runMonna(['swarm', 'init', '--nodes', '7', '--f', '1', '--r', '3', '--dir', rd, '--base-port', '9710', '--rounds', '7'])
    assert.equal(rr.code, 0, rr.stderr)
    const withR = parseSwarm(parse(await readFile(join(rd, 'swarm.yaml'), 'utf8')))
    assert.equal(withR.r, 3)
    assert.ok(rr.stdout.includes(swarmId(withR)) && rr.stdout.includes('r = 3'), rr.stdout)
    const st = await runMonna(['status', '--config', join(rd, 'node-0.yaml')])
    assert.equal(st.code, 0, st.stderr)
    assert.match(st.stdout, /epoch {4}0 \(n = 7, f = 1, r = 3: a round waits for 4 models\)/)
    oneLineError(await runMonna(['swarm', 'init', '--nodes', '7', '--f', '1', '--r', '5', '--rule', 'krum', '--dir', join(dir, 'lan-r-krum')]), /r = 5 leaves k = n − r = 2 models a round, but krum needs k > 2f \+ 2 with f = 1; lower r to at most 2/)
  })

  it('swarm init refuses what cannot work, saying what to change', async () => {
    oneLineError(await runMonna(['swarm', 'init', '--nodes', '6', '--f', '2', '--dir', join(dir, 'x')]), /needs at least 7 nodes/)
    oneLineError(await runMonna(['swarm', 'init', '--nodes', '4', '--f', '1', '--dir', join(dir, 'x'), '--task', 'cifar']), /unknown preset; use one of gaussian/)
    oneLineError(await runMonna(['swarm', 'init', '--nodes', '4', '--f', '1', '--dir', join(dir, 'x'), '--encoding', 'fp8']), /--encoding fp8: use one of float32, float16, bfloat16, int8/)
  })

  it('start names the bad field or file and exits 2', async () => {
    const d = join(dir, 'lan')
    oneLineError(await runMonna(['start']), /give --config/)
    oneLineError(await runMonna(['start', '--config', join(dir, 'nope.yaml')]), /nope\.yaml: file not found/)
    oneLineError(await runMonna(['start', '--config', join(d, 'node-0.yaml'), '--listen', 'tcp:9000']), /listen\.0: not a multiaddr/)
    oneLineError(await runMonna(['start', '--config', join(d, 'node-0.yaml'), '--frobnicate']), /unknown option '--frobnicate'/)
    const stranger = join(dir, 'keys', 'a.key') // made by the keygen test: not a member of this swarm
    oneLineError(await runMonna(['start', '--swarm', join(d, 'swarm.yaml'), '--key', stranger]), /is not a member of swarm/)
    await writeFile(join(dir, 'bad-swarm.yaml'), 'name: x\nf: 1\nmembers: []\n')
    oneLineError(await runMonna(['start', '--swarm', join(dir, 'bad-swarm.yaml'), '--key', stranger]), /bad-swarm\.yaml: members/)
    // the data directory is checked before the member joins (it used to fail rounds later, at the first checkpoint, with a raw ENOTDIR / EACCES)
    const member = ['start', '--swarm', join(d, 'swarm.yaml'), '--key', join(d, 'node-0.key')]
    await writeFile(join(dir, 'not-a-dir'), 'x')
    oneLineError(await runMonna([...member, '--data-dir', join(dir, 'not-a-dir')]), /data directory \S*not-a-dir is a file, not a directory; move the file away or choose another data directory/)
    oneLineError(await runMonna([...member, '--data-dir', join(dir, 'not-a-dir', 'data')]), /cannot create data directory \S*not-a-dir\/data: \S*not-a-dir is a file/)
    // not writable, even by root: the immutable attribute (where chattr works)
    const locked = join(dir, 'locked')
    await mkdir(locked)
    if (chattr('+i', locked)) {
      try {
        oneLineError(await runMonna([...member, '--data-dir', locked]), /data directory \S*locked is not writable \(EPERM\); give this user write permission on it/)
      } finally {
        chattr('-i', locked)
      }
    }
  })

  it('start on a listen or metrics port another program holds exits 4 with one line naming the address (the topology runner retries on fresh ports)', async () => {
    const d = join(dir, 'lan')
    const srv = createServer()
    await new Promise<void>((res, rej) => {
      srv.once('error', rej)
      srv.listen(0, '127.0.0.1', () => res())
    })
    const port = (srv.address() as AddressInfo).port
    try {
      // --metrics-port 0: node-0.yaml's fixed metrics port (9800) may be held by another run on this machine
      const r = await runMonna(['start', '--config', join(d, 'node-0.yaml'), '--listen', `/ip4/127.0.0.1/tcp/${port}`, '--metrics-port', '0'])
      assert.equal(r.code, 4, r.stderr)
      const lines = r.stderr.trim().split('\n').filter((l) => l.startsWith('monna:'))
      assert.equal(lines.length, 1, r.stderr)
      assert.match(lines[0]!, new RegExp(`cannot listen on /ip4/127.0.0.1/tcp/${port}: another program holds that port`))
      // the metrics port taken: the same exit code, one line naming the field to change
      const m = await runMonna(['start', '--config', join(d, 'node-0.yaml'), '--listen', '/ip4/127.0.0.1/tcp/0', '--metrics-port', String(port)])
      assert.equal(m.code, 4, m.stderr)
      const mlines = m.stderr.trim().split('\n').filter((l) => l.startsWith('monna:'))
      assert.equal(mlines.length, 1, m.stderr)
      assert.match(mlines[0]!, new RegExp(`cannot serve metrics on 127.0.0.1:${port}: another program holds that port \\(EADDRINUSE\\); choose another \`metricsPort\``))
    } finally {
      srv.close()
    }
  })

  it('start and status warn about a key file that group or others can read, naming the chmod to run', async () => {
    const d = join(dir, 'lan')
    const key = join(d, 'node-1.key')
    await chmod(key, 0o644)
    const fix = `run \`chmod 600 ${key}\``
    // a data directory that is a file stops the member right after its key is read
    await writeFile(join(dir, 'not-a-dir'), 'x')
    const r = await runMonna(['start', '--swarm', join(d, 'swarm.yaml'), '--key', key, '--data-dir', join(dir, 'not-a-dir')])
    assert.equal(r.code, 2, r.stderr)
    const [warning, error] = r.stderr.trim().split('\n')
    assert.match(warning!, / WARN +key file \S+node-1\.key has mode 0644: group or others can read this member's identity/)
    assert.ok(warning!.includes(fix), warning)
    assert.match(error!, /^monna: data directory/)
    const status = await runMonna(['status', '--config', join(d, 'node-1.yaml')])
    assert.equal(status.code, 0, status.stderr)
    assert.equal(status.stderr.trim(), `monna: warning: key file ${key} has mode 0644: group or others can read this member's identity; ${fix}`)
    await chmod(key, 0o600)
    const quiet = await runMonna(['status', '--config', join(d, 'node-1.yaml')])
    assert.equal(quiet.stderr, '')
  })
})
