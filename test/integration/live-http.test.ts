/**
 * The member's live page on the metrics endpoint against hostile and odd HTTP: unknown paths
 * 404, wrong methods 405 with Allow, bounded SSE clients (the next gets 503), a burst of node
 * events coalesced into one pushed state, plot names checked before use.
 */
import assert from 'node:assert/strict'
import { request } from 'node:http'
import { after, it } from 'node:test'
import { Registry } from 'prom-client'
import { liveDefaults, SseHub } from '../../node/live/hub.ts'
import { createMemberLive } from '../../node/live/member.ts'
import { startMetricsServer } from '../../node/metrics-server.ts'
import type { NodeStatus, RoundReport } from '../../src/node/index.ts'

const self = '12D3KooWself'
const other = '12D3KooWother'
const status = (round: number): NodeStatus => ({
  member: self,
  name: 'm0',
  swarmId: 'test-0',
  round,
  epoch: 0,
  n: 2,
  f: 0,
  r: 0,
  needed: 2,
  members: [self, other],
  latestEpoch: 0,
  latestActivation: 0,
  peers: [other],
  connections: [{ peer: other, kind: 'direct', direction: 'outbound', address: '/ip4/127.0.0.1/tcp/1' }],
  multiaddrs: [],
  rejected: {},
})
class FakeNode extends EventTarget {
  round = 0
  status(): NodeStatus {
    return status(this.round)
  }
}
const node = new FakeNode()
const live = createMemberLive({ rounds: 100, names: new Map([[self, 'm0'], [other, '<b>m1</b>']]), name: 'm0' })
live.attach(node)
const server = await startMetricsServer({ registry: new Registry(), port: 0, host: '127.0.0.1', live })
after(async () => {
  live.close()
  await server.close()
})

function report(round: number): RoundReport {
  return { member: self, name: 'm0', round, loss: 1 / (round + 1), accuracy: round / 100, delivered: 2, needed: 2, rejected: { 'out-of-window': round }, roundMs: 5, bytesSent: 0, bytesReceived: 0, stalled: false, spread: 0.5 }
}

function raw(method: string, path: string): Promise<{ status: number; headers: Record<string, unknown>; body: string }> {
  return new Promise((resolve, reject) => {
    // host, port and path apart: the path goes out as written (a URL would normalise '..')
    const u = new URL(server.base)
    const req = request({ host: u.hostname, port: u.port, path, method }, (res) => {
      let body = ''
      res.on('data', (c: Buffer) => {
        body += c.toString()
      })
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body }))
    })
    req.on('error', reject)
    req.end()
  })
}

/** An SSE stream: every `state` event's data, and a way to wait for one matching a predicate. */
function stream(): Promise<{ states: Record<string, unknown>[]; status: number; next(pred: (s: Record<string, unknown>) => boolean): Promise<Record<string, unknown>>; close(): void }> {
  return new Promise((resolve, reject) => {
    const states: Record<string, unknown>[] = []
    let waiters: { pred: (s: Record<string, unknown>) => boolean; done: (s: Record<string, unknown>) => void }[] = []
    const req = request(`${server.base}/events`, (res) => {
      let buf = ''
      res.on('data', (c: Buffer) => {
        buf += c.toString()
        let i = buf.indexOf('\n\n')
        while (i >= 0) {
          const frame = buf.slice(0, i)
          buf = buf.slice(i + 2)
          const data = frame.split('\n').find((l) => l.startsWith('data: '))
          if (frame.includes('event: state') && data !== undefined) {
            const s = JSON.parse(data.slice(6)) as Record<string, unknown>
            states.push(s)
            for (const w of [...waiters]) if (w.pred(s)) w.done(s)
            waiters = waiters.filter((w) => !w.pred(s))
          }
          i = buf.indexOf('\n\n')
        }
      })
      resolve({
        states,
        status: res.statusCode ?? 0,
        next: (pred) => {
          const hit = states.find(pred)
          if (hit !== undefined) return Promise.resolve(hit)
          return new Promise((done, fail) => {
            const t = setTimeout(() => fail(new Error('no matching state event within 30 s')), 30_000)
            waiters.push({
              pred,
              done: (s) => {
                clearTimeout(t)
                done(s)
              },
            })
          })
        },
        close: () => req.destroy(),
      })
    })
    req.on('error', reject)
    req.end()
  })
}

it('serves the page, its script and style; unknown paths 404, wrong methods 405 with Allow', async () => {
  const page = await raw('GET', '/')
  assert.equal(page.status, 200)
  assert.match(String(page.headers['content-type']), /text\/html/)
  assert.match(String(page.headers['content-security-policy']), /default-src 'self'/)
  assert.match(page.body, /aria-live="polite"/)
  assert.doesNotMatch(page.body, /https?:\/\/(?!127)/, 'no asset from elsewhere')
  assert.equal((await raw('GET', '/live.js')).status, 200)
  assert.equal((await raw('GET', '/live.css')).status, 200)
  assert.equal((await raw('GET', '/metrics')).status, 200)
  for (const p of ['/nope', '/plots/%2e%2e/metrics', '/plots/none.svg', '/plots/accuracy.png', '/%2e%2e/etc/passwd', '/live.js/x']) {
    assert.equal((await raw('GET', p)).status, 404, p)
  }
  for (const [m, p] of [['POST', '/'], ['PUT', '/events'], ['DELETE', '/live.js'], ['POST', '/metrics'], ['POST', '/plots/loss.svg']] as const) {
    const r = await raw(m, p)
    assert.equal(r.status, 405, `${m} ${p}`)
    assert.match(String(r.headers.allow), /GET/)
  }
  assert.equal((await raw('HEAD', '/')).status, 200)
})

it('pushes a burst of node events as one state, and renders the plots it names', async () => {
  const s = await stream()
  assert.equal(s.status, 200)
  await s.next(() => true)
  const before = s.states.length
  for (let r = 0; r < 100; r++) {
    node.round = r + 1
    node.dispatchEvent(new CustomEvent('round', { detail: report(r) }))
    node.dispatchEvent(new CustomEvent('reject', { detail: { reason: 'out-of-window', penalise: false, detail: '' } }))
  }
  const last = await s.next((x) => (x.lastRound as number) === 99)
  // 200 events dispatched in one go: coalesced into a single pushed state
  assert.equal(s.states.length - before, 1)
  assert.deepEqual(last.rejected, { 'out-of-window': 100 })
  const peers = last.peers as { name: string; kind: string; state: string }[]
  assert.deepEqual(peers.map((p) => [p.name, p.kind, p.state]), [['<b>m1</b>', 'direct', 'connected']])
  assert.deepEqual(last.plots, ['accuracy', 'loss', 'deliveries', 'rejections', 'spread'])
  for (const p of last.plots as string[]) {
    const svg = await raw('GET', `/plots/${p}.svg`)
    assert.equal(svg.status, 200, p)
    assert.match(svg.body, /^<svg/)
  }
  assert.equal((await raw('GET', '/plots/epsilon.svg')).status, 404, 'no ε without privacy')
  s.close()
})

it('shows bans, cool-offs, stalls, catch-ups, epochs, deliveries and ε as the node reports them', async () => {
  const s = await stream()
  await s.next(() => true)
  node.dispatchEvent(new CustomEvent('stall', { detail: { round: 100, delivered: 1, needed: 2, waitedMs: 9000 } }))
  const stalled = await s.next((x) => x.stalled === true)
  assert.equal(stalled.stalls, 1)
  node.dispatchEvent(new CustomEvent('recover', { detail: { round: 100, delivered: 2, needed: 2, stalledMs: 1500 } }))
  node.dispatchEvent(new CustomEvent('catch-up', { detail: { from: 100, to: 104, delivered: 2 } }))
  node.dispatchEvent(new CustomEvent('epoch', { detail: { epoch: 1, n: 2, f: 0, round: 105 } }))
  node.dispatchEvent(new CustomEvent('ban', { detail: { peer: other, reasons: { 'bad-signature': 3 }, until: Date.now() + 60_000 } }))
  node.dispatchEvent(new CustomEvent('cool-off', { detail: { peer: other } }))
  node.dispatchEvent(new CustomEvent('deliver', { detail: { round: 105, sender: other } }))
  node.dispatchEvent(new CustomEvent('round', { detail: { ...report(105), epsilon: 1.5 } }))
  const after = await s.next((x) => (x.lastRound as number) === 105)
  assert.equal(after.stalled, false)
  assert.equal(after.catchUps, 1)
  assert.equal(after.coolOffs, 1)
  assert.equal(after.delivered, 1)
  assert.equal(after.deliveredRound, 106)
  const bans = after.bans as { name: string; what: string }[]
  assert.deepEqual(bans.map((b) => b.name), ['<b>m1</b>', '<b>m1</b>'])
  assert.match(bans[0]!.what, /banned until .*bad-signature 3/)
  const texts = (after.events as { text: string }[]).map((e) => e.text)
  for (const re of [/round 101 stalled: 1 of 2/, /round 101 recovered/, /catching up from round 101 to 105/, /membership epoch 1 from round 106/, /<b>m1<\/b> banned/]) {
    assert.ok(texts.some((t) => re.test(t)), `${re} in ${JSON.stringify(texts)}`)
  }
  assert.ok((after.plots as string[]).includes('epsilon'))
  const eps = await raw('GET', '/plots/epsilon.svg')
  assert.equal(eps.status, 200)
  s.close()
})

it(`accepts at most ${liveDefaults.maxClients} event streams at once; the next gets 503`, async () => {
  // the previous test's stream: gone on the server's side first
  const guard = Date.now() + 30_000
  while (live.clients() > 0) {
    assert.ok(Date.now() < guard, 'a closed stream was never dropped by the server')
    await new Promise((r) => setTimeout(r, 10))
  }
  const open = []
  for (let i = 0; i < liveDefaults.maxClients; i++) {
    const s = await stream()
    await s.next(() => true)
    open.push(s)
  }
  const extra = await raw('GET', '/events')
  assert.equal(extra.status, 503)
  assert.ok(extra.headers['retry-after'] !== undefined)
  for (const s of open) s.close()
})

it('cuts off an event stream that stops reading instead of buffering for it', async () => {
  // a fake response whose unsent bytes we control: the hub must destroy it past the bound
  const { EventEmitter } = await import('node:events')
  const req = new EventEmitter()
  let destroyed = false
  const written: string[] = []
  /** resolves at the hub's next write or destroy */
  let acted: () => void = () => {}
  const next = (): Promise<void> => new Promise((r) => {
    acted = r
  })
  const res = Object.assign(new EventEmitter(), {
    writableLength: 0,
    writeHead() {
      return res
    },
    write(chunk: string) {
      written.push(chunk)
      acted()
      return true
    },
    end() {},
    destroy() {
      destroyed = true
      acted()
    },
  })
  let state = 0
  const hub = new SseHub(() => ({ state }), { ...liveDefaults, minIntervalMs: 0 })
  try {
    hub.accept(req as never, res as never)
    assert.equal(hub.size, 1)
    assert.equal(written.length, 1)
    // the client reads: pushed
    state = 1
    let step = next()
    hub.changed()
    await step
    assert.equal(written.length, 2)
    assert.match(written[1]!, /"state":1/)
    // the client stopped reading: more than maxBufferedBytes unsent
    res.writableLength = liveDefaults.maxBufferedBytes + 1
    state = 2
    step = next()
    hub.changed()
    await step
    assert.equal(destroyed, true)
    assert.equal(hub.size, 0)
    assert.equal(written.length, 2, 'nothing more written to it')
  } finally {
    hub.close()
  }
})
