/**
 * A member's live page (`monna start --metrics-port`, GET / on the metrics endpoint): round and
 * epoch, peers and how each is connected, deliveries, rejections by reason, bans and cool-offs,
 * stalls and catch-ups, loss / accuracy / spread / ε curves. Fed by the node's events; bounded
 * in memory (the last `maxRounds` rounds, the last `maxEvents` events).
 */
import type { IncomingMessage, ServerResponse } from 'node:http'
import type { TopLevelSpec } from 'vega-lite'
import type { NodeStatus, RoundReport } from '../../src/node/index.ts'
import { liveScript, liveStyle } from './assets.ts'
import { escapeHtml, PlotCache, routeLive, SseHub } from './hub.ts'

const maxRounds = 5000
const maxEvents = 50
const maxBans = 50

interface Point {
  round: number
  loss: number
  accuracy?: number
  spread?: number
  epsilon?: number
  delivered: number
  needed: number
  rejected: Record<string, number>
}

export interface MemberLiveSource extends EventTarget {
  status(): NodeStatus
}

export interface MemberLive {
  handle(req: IncomingMessage, res: ServerResponse, path: string): boolean
  /** the node exists: subscribe to its events */
  attach(node: MemberLiveSource): void
  /** open event streams */
  clients(): number
  close(): void
}

const plotNames = ['accuracy', 'loss', 'deliveries', 'rejections', 'spread', 'epsilon'] as const

export function createMemberLive(opts: { rounds: number; names: Map<string, string>; name: string }): MemberLive {
  const points: Point[] = []
  const events: { at: number; text: string }[] = []
  const bans: { at: number; peer: string; name: string; what: string }[] = []
  let node: MemberLiveSource | undefined
  let stalled = false
  let stalls = 0
  let catchUps = 0
  let coolOffs = 0
  /** certified instances the broadcast delivered, and of which round the newest */
  let delivered = 0
  let deliveredRound: number | null = null
  /** refusals since the last round report (which carries the cumulative counts) */
  const rejectedSince: Record<string, number> = {}
  let plotVersion = 0
  const nameOf = (peer: string): string => opts.names.get(peer) ?? `${peer.slice(0, 12)}…`
  const event = (text: string): void => {
    events.push({ at: Date.now(), text })
    if (events.length > maxEvents) events.shift()
  }

  const snapshot = (): unknown => {
    const st = node?.status()
    const last = points.at(-1)
    const rejected: Record<string, number> = { ...(last?.rejected ?? {}) }
    for (const [k, v] of Object.entries(rejectedSince)) rejected[k] = (rejected[k] ?? 0) + v
    const connected = new Map((st?.connections ?? []).map((c) => [c.peer, c]))
    const peers = (st?.members ?? [])
      .filter((m) => m !== st?.member)
      .map((m) => {
        const c = connected.get(m)
        return { peer: m, name: nameOf(m), kind: c?.kind ?? '—', state: c === undefined ? 'not connected' : 'connected', address: c?.address ?? '—' }
      })
    // connections to peers that are not members (relays, late joiners)
    for (const c of st?.connections ?? []) {
      if (!(st?.members ?? []).includes(c.peer)) peers.push({ peer: c.peer, name: nameOf(c.peer), kind: c.kind, state: 'connected (not a member)', address: c.address })
    }
    const evaluated = points.findLast((p) => p.accuracy !== undefined)
    return {
      kind: 'member',
      evaluated: evaluated === undefined ? null : { round: evaluated.round + 1, accuracy: evaluated.accuracy },
      name: opts.name,
      member: st?.member ?? '',
      swarmId: st?.swarmId ?? '',
      rounds: opts.rounds,
      lastRound: last?.round ?? null,
      epoch: st?.epoch ?? 0,
      n: st?.n ?? 0,
      f: st?.f ?? 0,
      needed: st?.needed ?? 0,
      stalled,
      stalls,
      catchUps,
      coolOffs,
      delivered,
      deliveredRound,
      last: last === undefined ? {} : { ...last, rejected: undefined, roundMs: lastRoundMs },
      peers,
      rejected,
      bans,
      events,
      plotVersion,
      plots: plotNames.filter((p) => available(p)),
    }
  }
  let lastRoundMs: number | undefined
  const hub = new SseHub(snapshot)

  const available = (p: (typeof plotNames)[number]): boolean => {
    if (points.length === 0) return false
    if (p === 'accuracy') return points.some((x) => x.accuracy !== undefined)
    if (p === 'spread') return points.some((x) => x.spread !== undefined)
    if (p === 'epsilon') return points.some((x) => x.epsilon !== undefined)
    if (p === 'rejections') return points.some((x) => Object.keys(x.rejected).length > 0)
    return true
  }
  const base = { $schema: 'https://vega.github.io/schema/vega-lite/v6.json', width: 520, height: 200, background: 'white' } as const
  const x = { field: 'round', type: 'quantitative', title: 'round' } as const
  const spec = (p: (typeof plotNames)[number]): TopLevelSpec => {
    const rows = points.map((q) => ({ ...q, round: q.round + 1 }))
    switch (p) {
      case 'accuracy':
        return { ...base, title: 'test accuracy', data: { values: rows.filter((r) => r.accuracy !== undefined) }, mark: { type: 'line', point: true }, encoding: { x, y: { field: 'accuracy', type: 'quantitative', title: 'test accuracy', scale: { domain: [0, 1] } } } }
      case 'loss':
        return { ...base, title: 'local mini-batch loss', data: { values: rows }, mark: 'line', encoding: { x, y: { field: 'loss', type: 'quantitative', title: 'loss' } } }
      case 'deliveries':
        return {
          ...base,
          title: 'certified models aggregated per round (dashed: needed, n − r)',
          data: { values: rows },
          layer: [
            { mark: { type: 'line', interpolate: 'step-after' }, encoding: { x, y: { field: 'delivered', type: 'quantitative', title: 'models' } } },
            { mark: { type: 'line', strokeDash: [4, 3], color: '#666' }, encoding: { x, y: { field: 'needed', type: 'quantitative' } } },
          ],
        } as TopLevelSpec
      case 'rejections': {
        const long = rows.flatMap((r) => Object.entries(r.rejected).map(([reason, count]) => ({ round: r.round, reason, count })))
        return { ...base, title: 'frames and models refused so far, by reason', data: { values: long }, mark: { type: 'line', interpolate: 'step-after' }, encoding: { x, y: { field: 'count', type: 'quantitative', title: 'refused (cumulative)' }, color: { field: 'reason', type: 'nominal', title: 'reason', legend: { labelLimit: 300 } } } }
      }
      case 'spread':
        return { ...base, title: "spread: largest distance from this member's model to another it aggregated", data: { values: rows.filter((r) => r.spread !== undefined) }, mark: 'line', encoding: { x, y: { field: 'spread', type: 'quantitative', title: 'L2 distance' } } }
      case 'epsilon':
        return { ...base, title: 'privacy spent (ε)', data: { values: rows.filter((r) => r.epsilon !== undefined) }, mark: 'line', encoding: { x, y: { field: 'epsilon', type: 'quantitative', title: 'ε' } } }
    }
  }
  const plots = new PlotCache(
    (name) => {
      const p = plotNames.find((q) => q === name)
      if (p === undefined || !available(p)) return undefined
      return () => import('../../src/topology/report.ts').then((m) => m.renderSvg(spec(p)))
    },
    () => plotVersion,
  )

  const page = (): string => `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1">
<title>monna member ${escapeHtml(opts.name)}</title><link rel="icon" href="data:,"><link rel="stylesheet" href="live.css"></head>
<body data-kind="member">
<header><h1 id="title">monna member ${escapeHtml(opts.name)}</h1>
<p id="round" class="round" role="status" aria-live="polite" aria-atomic="true" data-round="0">Connecting…</p>
<p id="swarm" class="muted"></p><p id="stream" class="stream" aria-live="off">connecting to monna…</p></header>
<main>
<section aria-labelledby="h-now"><h2 id="h-now">Last round</h2><dl id="now" class="now"></dl></section>
<section aria-labelledby="h-peers"><h2 id="h-peers">Peers</h2>
<table aria-labelledby="h-peers"><thead><tr><th scope="col">member</th><th scope="col">PeerId</th><th scope="col">connection</th><th scope="col">state</th><th scope="col">address</th></tr></thead><tbody id="peers"></tbody></table></section>
<section aria-labelledby="h-rej"><h2 id="h-rej">Rejections by reason (so far)</h2>
<p class="muted">An honest swarm refuses a few frames without blame (out of a lagging member's window, budgets met under load); bans follow only penalised reasons.</p>
<table aria-labelledby="h-rej"><thead><tr><th scope="col">reason</th><th scope="col">count</th></tr></thead><tbody id="rejections"></tbody></table></section>
<section aria-labelledby="h-bans"><h2 id="h-bans">Bans and cool-offs</h2><ul id="bans"></ul></section>
<section aria-labelledby="h-events"><h2 id="h-events">Stalls, catch-ups, epochs and connections (newest first)</h2><ul id="events" class="events" tabindex="0" aria-label="events, newest first"></ul></section>
<section aria-labelledby="h-plots"><h2 id="h-plots">Plots</h2><div class="grid">
${plotNames.map((p) => `<figure hidden><img data-plot="${p}" alt="${plotAlt[p]}" width="620" height="260"><figcaption>${plotAlt[p]}</figcaption></figure>`).join('\n')}
</div></section>
</main>
<script src="live.js"></script>
</body></html>
`

  return {
    handle: (req, res, path) => routeLive(req, res, path, { page, script: liveScript, style: liveStyle, hub, plots }),
    attach(n) {
      node = n
      n.addEventListener('round', (e) => {
        const r = (e as CustomEvent<RoundReport>).detail
        points.push({
          round: r.round,
          loss: r.loss,
          ...(r.accuracy !== undefined ? { accuracy: r.accuracy } : {}),
          ...(r.spread !== undefined ? { spread: r.spread } : {}),
          ...(r.epsilon !== undefined ? { epsilon: r.epsilon } : {}),
          delivered: r.delivered,
          needed: r.needed,
          rejected: Object.fromEntries(Object.entries(r.rejected).filter(([, v]) => v > 0)),
        })
        if (points.length > maxRounds) points.shift()
        for (const k of Object.keys(rejectedSince)) delete rejectedSince[k]
        lastRoundMs = r.roundMs
        stalled = false
        if (r.caughtUpFrom !== undefined) event(`caught up from round ${r.caughtUpFrom + 1} to ${r.round + 1}`)
        plotVersion++
        hub.changed()
      })
      n.addEventListener('stall', (e) => {
        const s = (e as CustomEvent<{ round: number; delivered: number; needed: number }>).detail
        stalled = true
        stalls++
        event(`round ${s.round + 1} stalled: ${s.delivered} of ${s.needed} models`)
        hub.changed()
      })
      n.addEventListener('recover', (e) => {
        const s = (e as CustomEvent<{ round: number; stalledMs: number }>).detail
        stalled = false
        event(`round ${s.round + 1} recovered after ${(s.stalledMs / 1000).toFixed(1)} s stalled`)
        hub.changed()
      })
      n.addEventListener('catch-up', (e) => {
        const s = (e as CustomEvent<{ from: number; to: number }>).detail
        catchUps++
        event(`behind the swarm: catching up from round ${s.from + 1} to ${s.to + 1}`)
        hub.changed()
      })
      n.addEventListener('epoch', (e) => {
        const s = (e as CustomEvent<{ epoch: number; n: number; f: number; round: number }>).detail
        event(`membership epoch ${s.epoch} from round ${s.round + 1}: n = ${s.n}, f = ${s.f}`)
        hub.changed()
      })
      n.addEventListener('reject', (e) => {
        const r = (e as CustomEvent<{ reason: string }>).detail
        // reasons are the broadcast's own fixed names; bound the key anyway
        const reason = String(r.reason).slice(0, 64)
        if (reason in rejectedSince || Object.keys(rejectedSince).length < 64) rejectedSince[reason] = (rejectedSince[reason] ?? 0) + 1
        hub.changed()
      })
      n.addEventListener('deliver', (e) => {
        const d = (e as CustomEvent<{ round: number }>).detail
        delivered++
        deliveredRound = deliveredRound === null ? d.round + 1 : Math.max(deliveredRound, d.round + 1)
        hub.changed()
      })
      n.addEventListener('ban', (e) => {
        const b = (e as CustomEvent<{ peer: string; reasons: Record<string, number>; until: number }>).detail
        bans.push({ at: Date.now(), peer: b.peer, name: nameOf(b.peer), what: `banned until ${new Date(b.until).toLocaleTimeString()} (${Object.entries(b.reasons).map(([k, v]) => `${k} ${v}`).join(', ')})` })
        if (bans.length > maxBans) bans.shift()
        event(`${nameOf(b.peer)} banned`)
        hub.changed()
      })
      n.addEventListener('cool-off', (e) => {
        const c = (e as CustomEvent<{ peer: string; ms?: number }>).detail
        coolOffs++
        bans.push({ at: Date.now(), peer: c.peer, name: nameOf(c.peer), what: 'cut off for a while (a flood of refused frames)' })
        if (bans.length > maxBans) bans.shift()
        hub.changed()
      })
      n.addEventListener('connection', (e) => {
        const c = (e as CustomEvent<{ open: boolean; peer: string }>).detail
        event(`${c.open ? 'connected to' : 'disconnected from'} ${nameOf(c.peer)}`)
        hub.changed()
      })
      hub.changed()
    },
    clients: () => hub.size,
    close: () => hub.close(),
  }
}

const plotAlt: Record<(typeof plotNames)[number], string> = {
  accuracy: 'Test accuracy of this member at each evaluation round',
  loss: 'Local mini-batch loss per round',
  deliveries: 'Certified models aggregated per round, and the number needed',
  rejections: 'Frames and models refused so far, by reason',
  spread: "Largest distance from this member's model to another model it aggregated, per round",
  epsilon: 'Differential-privacy ε spent so far',
}
