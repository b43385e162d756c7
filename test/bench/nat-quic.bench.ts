/**
 * Would QUIC cross a NAT that TCP's hole punching does not? (issue 16; docs/nat.md, "QUIC,
 * measured"). In the namespaces of test/support/netns.ts, for the port-preserving (`cone`) and
 * the `symmetric` NAT, the two members behind NAT (priv1, priv2) try to open a direct connection
 * to each other, both sides at once, for 10 s each way:
 *
 * - QUIC, listen port: libp2p's QUIC transport (@chainsafe/libp2p-quic) dials the other's
 *   `<NAT ip>/udp/<listen port>/quic-v1` (the address it announces);
 * - QUIC, observed address (what DCUtR dials): each first connects to a public helper (pub1)
 *   over QUIC, which reports the address the connection came from (the NAT's mapping of the
 *   dialling socket); then each dials the other's observed address;
 * - TCP, simultaneous open (what src/net/punch.ts does): each connects from local port p to the
 *   other's `<NAT ip>:p`, retrying.
 *
 * Run as root: `node test/bench/nat-quic.bench.ts` (prints a table and one JSON line).
 * Needs `ip` and `nft` (as test/integration/nat.test.ts).
 */
import { type ChildProcess, spawn } from 'node:child_process'
import { connect } from 'node:net'
import { createInterface } from 'node:readline'
import { fileURLToPath } from 'node:url'

const ATTEMPT_MS = 10_000
const QUIC_PORT = 6001
const HELPER_PORT = 6000

type Msg = Record<string, unknown>

// ---- agent: one process inside a namespace, driven by JSON lines on stdin
async function agent(role: 'helper' | 'peer'): Promise<void> {
  const { createLibp2p } = await import('libp2p')
  const { quic } = await import('@chainsafe/libp2p-quic')
  const { identify } = await import('@libp2p/identify')
  const { multiaddr } = await import('@multiformats/multiaddr')
  const out = (m: Msg): void => void process.stdout.write(`${JSON.stringify(m)}\n`)
  const node = await createLibp2p({
    addresses: { listen: [`/ip4/0.0.0.0/udp/${role === 'helper' ? HELPER_PORT : QUIC_PORT}/quic-v1`] },
    transports: [quic()],
    // the lab's "public" range is public to libp2p; allow everything else too (a bench, not a member)
    connectionGater: { denyDialMultiaddr: () => false },
    connectionManager: { dialTimeout: 2000 },
    services: { identify: identify() },
  })
  node.addEventListener('connection:open', (e) => out({ event: 'connection', peer: e.detail.remotePeer.toString(), remote: e.detail.remoteAddr.toString(), direction: e.detail.direction }))
  out({ event: 'ready', peerId: node.peerId.toString() })
  for await (const line of createInterface({ input: process.stdin })) {
    const cmd = JSON.parse(line) as { op: string; to?: string; localPort?: number; ip?: string; port?: number }
    const deadline = Date.now() + ATTEMPT_MS
    if (cmd.op === 'dial') {
      const target = multiaddr(cmd.to!)
      let ok = false
      let error = ''
      const t0 = Date.now()
      while (!ok && Date.now() < deadline) {
        try {
          await node.dial(target, { force: true, signal: AbortSignal.timeout(Math.max(1, Math.min(1500, deadline - Date.now()))) })
          ok = true
        } catch (err) {
          error = String(err).slice(0, 120)
          await new Promise((r) => setTimeout(r, 200))
        }
      }
      out({ event: 'dialled', ok, ms: Date.now() - t0, ...(ok ? {} : { error }) })
    } else if (cmd.op === 'tcp') {
      let ok = false
      const t0 = Date.now()
      while (!ok && Date.now() < deadline) {
        ok = await new Promise<boolean>((resolve) => {
          const s = connect({ host: cmd.ip!, port: cmd.port!, localPort: cmd.localPort!, timeout: 1500 })
          s.once('connect', () => {
            s.destroy()
            resolve(true)
          })
          s.once('timeout', () => {
            s.destroy()
            resolve(false)
          })
          s.once('error', () => resolve(false))
        })
        if (!ok) await new Promise((r) => setTimeout(r, 200))
      }
      out({ event: 'tcp', ok, ms: Date.now() - t0 })
    } else if (cmd.op === 'stop') break
  }
  await node.stop()
  process.exit(0)
}

// ---- parent: builds the lab, drives the agents
class Agent {
  readonly child: ChildProcess
  private readonly queue: Msg[] = []
  private waiters: { pred: (m: Msg) => boolean; resolve: (m: Msg) => void }[] = []
  constructor(wrap: string[], role: string) {
    this.child = spawn(wrap[0]!, [...wrap.slice(1), process.execPath, fileURLToPath(import.meta.url), 'agent', role], { stdio: ['pipe', 'pipe', 'inherit'] })
    createInterface({ input: this.child.stdout! }).on('line', (l) => {
      let m: Msg
      try {
        m = JSON.parse(l) as Msg
      } catch {
        return
      }
      const w = this.waiters.find((x) => x.pred(m))
      if (w !== undefined) {
        this.waiters.splice(this.waiters.indexOf(w), 1)
        w.resolve(m)
      } else this.queue.push(m)
    })
  }
  next(pred: (m: Msg) => boolean, timeoutMs = 60_000): Promise<Msg> {
    const i = this.queue.findIndex(pred)
    if (i >= 0) return Promise.resolve(this.queue.splice(i, 1)[0]!)
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error('agent timed out')), timeoutMs)
      this.waiters.push({
        pred,
        resolve: (m) => {
          clearTimeout(timer)
          resolve(m)
        },
      })
    })
  }
  send(m: Msg): void {
    this.child.stdin!.write(`${JSON.stringify(m)}\n`)
  }
}

async function measure(kind: 'cone' | 'symmetric'): Promise<Record<string, string>> {
  const { createNatLab } = await import('../support/netns.ts')
  const lab = await createNatLab(kind)
  const agents: Agent[] = []
  try {
    const helper = new Agent(lab.exec('pub1'), 'helper')
    const a = new Agent(lab.exec('priv1'), 'peer')
    const b = new Agent(lab.exec('priv2'), 'peer')
    agents.push(helper, a, b)
    const [h, pa, pb] = (await Promise.all(agents.map((x) => x.next((m) => m.event === 'ready')))).map((m) => String(m.peerId))
    const both = async (ma: Msg, mb: Msg, ev: string): Promise<string> => {
      a.send(ma)
      b.send(mb)
      const [ra, rb] = await Promise.all([a.next((m) => m.event === ev, ATTEMPT_MS + 30_000), b.next((m) => m.event === ev, ATTEMPT_MS + 30_000)])
      return ra!.ok === true || rb!.ok === true ? `direct (${Math.min(...[ra, rb].filter((r) => r!.ok === true).map((r) => Number(r!.ms)))} ms)` : `failed (${String(ra!.error ?? '')})`
    }
    const results: Record<string, string> = {}
    results['QUIC, listen port'] = await both(
      { op: 'dial', to: `/ip4/${lab.ip.nat2}/udp/${QUIC_PORT}/quic-v1/p2p/${pb}` },
      { op: 'dial', to: `/ip4/${lab.ip.nat1}/udp/${QUIC_PORT}/quic-v1/p2p/${pa}` },
      'dialled',
    )
    // the addresses the helper sees: the NAT's mapping of each side's dialling socket
    const observed = new Map<string, string>()
    for (const [x, id] of [
      [a, pa],
      [b, pb],
    ] as const) {
      x.send({ op: 'dial', to: `/ip4/${lab.ip.pub1}/udp/${HELPER_PORT}/quic-v1/p2p/${h}` })
      const r = await x.next((m) => m.event === 'dialled', ATTEMPT_MS + 30_000)
      if (r.ok !== true) throw new Error(`could not reach the helper: ${String(r.error)}`)
      const seen = await helper.next((m) => m.event === 'connection' && m.peer === id)
      observed.set(id!, String(seen.remote).replace(/\/p2p\/.*$/, ''))
    }
    results['QUIC, observed address (DCUtR)'] = await both({ op: 'dial', to: `${observed.get(pb!)}/p2p/${pb}` }, { op: 'dial', to: `${observed.get(pa!)}/p2p/${pa}` }, 'dialled')
    results['observed addresses'] = `${observed.get(pa!)}, ${observed.get(pb!)}`
    results['TCP, simultaneous open'] = await both({ op: 'tcp', localPort: 7001, ip: lab.ip.nat2, port: 7002 }, { op: 'tcp', localPort: 7002, ip: lab.ip.nat1, port: 7001 }, 'tcp')
    return results
  } finally {
    for (const x of agents) {
      x.send({ op: 'stop' })
      x.child.kill('SIGKILL')
    }
    await lab.teardown()
  }
}

if (process.argv[2] === 'agent') {
  await agent(process.argv[3] as 'helper' | 'peer')
} else {
  const { natLabUnavailable } = await import('../support/netns.ts')
  const why = await natLabUnavailable()
  if (why !== undefined) {
    console.error(`nat-quic bench cannot run here: ${why}`)
    process.exit(1)
  }
  const all: Record<string, Record<string, string>> = {}
  for (const kind of ['cone', 'symmetric'] as const) {
    all[kind] = await measure(kind)
    console.log(`\n${kind} NAT (each side tries for ${ATTEMPT_MS / 1000} s, both at once)`)
    for (const [k, v] of Object.entries(all[kind]!)) console.log(`  ${k.padEnd(32)} ${v}`)
  }
  console.log(JSON.stringify(all))
}
