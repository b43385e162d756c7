/**
 * The live pages' stylesheet and script (served as /live.css and /live.js by monna itself: no
 * CDN, nothing inline, so the pages work offline and under a strict Content-Security-Policy).
 * The script subscribes to /events (server-sent events) and fills the page with textContent
 * only (names and reasons come from the network and config files: never parsed as HTML); plots
 * are SVG images rendered by the server, reloaded when their version changes.
 */

export const liveStyle = `
:root{color-scheme:light}
body{font-family:system-ui,sans-serif;margin:1.5em auto;max-width:1200px;padding:0 1em;color:#1a1a1a;background:#fff;line-height:1.4}
h1{font-size:1.5em;margin:.2em 0}h2{font-size:1.15em;margin:1.2em 0 .4em;border-bottom:1px solid #bbb}
.round{font-size:1.3em;font-weight:600;margin:.3em 0}
.stream{color:#444}.stream.down{color:#a00000;font-weight:600}
table{border-collapse:collapse;margin:.4em 0}th,td{border:1px solid #999;padding:.2em .6em;text-align:left}
#peers td:nth-child(2),#peers td:nth-child(5){overflow-wrap:anywhere;font-family:ui-monospace,monospace;font-size:.9em}
th{background:#eee}caption{text-align:left;font-weight:600;padding:.2em 0}
dl.now{display:grid;grid-template-columns:max-content auto;gap:.1em 1em}dt{font-weight:600}dd{margin:0}
.byz{background:#fde8e6}.ok{color:#0a5c1f;font-weight:600}.bad{color:#a00000;font-weight:600}.pending{color:#444}
.grid{display:flex;flex-wrap:wrap;gap:1em}figure{margin:.4em 0}figure img{max-width:100%;height:auto;border:1px solid #ccc}
figcaption{font-size:.9em;color:#333}
ul.events{max-height:18em;overflow:auto;border:1px solid #ccc;padding:.3em 1.5em;margin:.3em 0}
a{color:#0645ad}a:focus,button:focus,[tabindex]:focus{outline:3px solid #1a5fb4;outline-offset:2px}
.muted{color:#444}
`

export const liveScript = `
'use strict'
const $ = (id) => document.getElementById(id)
function cells(tr, values, tag) {
  for (const v of values) {
    const c = document.createElement(tag || 'td')
    if (v !== null && typeof v === 'object' && v.href !== undefined) {
      const a = document.createElement('a')
      a.href = v.href
      a.textContent = v.text
      c.append(a)
    } else if (v !== null && typeof v === 'object') {
      c.textContent = v.text
      if (v.cls) c.className = v.cls
    } else c.textContent = v === undefined || v === null ? '—' : String(v)
    tr.append(c)
  }
  return tr
}
function fillTable(id, rows, empty, rowClass) {
  const body = $(id)
  if (body === null) return
  body.replaceChildren()
  if (rows.length === 0) {
    const tr = document.createElement('tr')
    const td = document.createElement('td')
    td.colSpan = body.parentElement.querySelectorAll('thead th').length || 1
    td.textContent = empty
    td.className = 'muted'
    tr.append(td)
    body.append(tr)
    return
  }
  rows.forEach((r, i) => {
    const tr = cells(document.createElement('tr'), r)
    if (rowClass) tr.className = rowClass(i) || ''
    body.append(tr)
  })
}
function fillList(id, items, empty) {
  const ul = $(id)
  if (ul === null) return
  ul.replaceChildren()
  for (const t of items.length === 0 ? [empty] : items) {
    const li = document.createElement('li')
    li.textContent = t
    ul.append(li)
  }
}
const pct = (x) => (x === undefined || x === null ? '—' : (100 * x).toFixed(1) + ' %')
const num = (x, d) => (x === undefined || x === null ? '—' : Number(x).toFixed(d))
const time = (ms) => new Date(ms).toLocaleTimeString()
let plotVersion = -1
function plots(s) {
  if (s.plotVersion === plotVersion) return
  plotVersion = s.plotVersion
  for (const img of document.querySelectorAll('img[data-plot]')) {
    const name = img.dataset.plot
    const fig = img.closest('figure')
    const shown = s.plots.includes(name)
    fig.hidden = !shown
    if (shown) img.src = 'plots/' + name + '.svg?v=' + s.plotVersion
  }
}
function member(s) {
  $('title').textContent = 'monna member ' + s.name
  $('round').textContent = s.lastRound === null
    ? 'Starting: no round completed yet (' + s.rounds + ' rounds to run)'
    : 'Round ' + (s.lastRound + 1) + ' of ' + s.rounds + ' completed' + (s.stalled ? ' — STALLED, waiting for models' : '') + ' · membership epoch ' + s.epoch
  $('round').dataset.round = s.lastRound === null ? '0' : String(s.lastRound + 1)
  $('swarm').textContent = 'swarm ' + s.swarmId + ' · n = ' + s.n + ', f = ' + s.f + ', a round waits for ' + s.needed + ' models · PeerId ' + s.member
  const l = s.last || {}
  const now = [
    ['loss', num(l.loss, 4)], ['test accuracy' + (s.evaluated ? ' (round ' + s.evaluated.round + ')' : ''), s.evaluated ? pct(s.evaluated.accuracy) : 'not evaluated yet'], ['delivered last round', l.delivered === undefined ? '—' : l.delivered + ' of ' + l.needed],
    ['spread to the other members\\' models', num(l.spread, 4)], ['round time', l.roundMs === undefined ? '—' : l.roundMs + ' ms'],
    ['certified deliveries so far', s.delivered + (s.deliveredRound === null ? '' : ' (newest of round ' + s.deliveredRound + ')')],
    ['stalls', String(s.stalls)], ['catch-ups', String(s.catchUps)], ['cool-offs', String(s.coolOffs)],
  ]
  if (l.epsilon !== undefined) now.push(['privacy spent (ε)', num(l.epsilon, 3)])
  const dl = $('now')
  dl.replaceChildren()
  for (const [k, v] of now) {
    const dt = document.createElement('dt'); dt.textContent = k
    const dd = document.createElement('dd'); dd.textContent = v
    dl.append(dt, dd)
  }
  fillTable('peers', s.peers.map((p) => [p.name, p.peer, p.kind, p.state, p.address]), 'no other member known')
  fillTable('rejections', Object.entries(s.rejected).sort((a, b) => b[1] - a[1]).map(([k, v]) => [k, v]), 'none: no frame or model refused')
  fillList('bans', s.bans.map((b) => time(b.at) + ': ' + b.name + ' ' + b.what), 'no member banned or cut off')
  fillList('events', s.events.slice().reverse().map((e) => time(e.at) + ': ' + e.text), 'nothing yet')
  plots(s)
}
function run(s) {
  $('title').textContent = 'monna run: ' + s.scenario
  $('round').textContent = s.round === null
    ? 'Starting ' + s.n + ' members (' + s.mode + '): no round completed yet'
    : 'Round ' + s.round + ' of ' + s.rounds + ' completed by every honest member' + (s.done ? ' — run finished' : '')
  $('round').dataset.round = s.round === null ? '0' : String(s.round)
  $('swarm').textContent = s.n + ' members (' + s.byzantine + ' Byzantine), ' + s.mode + ', rule ' + s.rule + ', output in ' + s.outDir
  fillTable('members', s.members.map((m) => [m.name, m.byzantine ? 'Byzantine: ' + m.behaviour : 'honest', m.round === null ? '—' : m.round, pct(m.accuracy), m.state]), 'no member yet', (i) => (s.members[i].byzantine ? 'byz' : ''))
  fillTable('expectations', s.expectations.map((e) => [e.name, { text: s.done ? (e.passed ? 'pass' : 'FAIL') : (e.passed ? 'holds so far' : 'not met yet'), cls: e.passed ? 'ok' : s.done ? 'bad' : 'pending' }, e.value === null ? '—' : Number(e.value).toFixed(4), e.threshold, e.detail]), 'the scenario states no expectation')
  const rep = $('report')
  rep.replaceChildren()
  if (s.report) {
    const a = document.createElement('a')
    a.href = 'report.html'
    a.textContent = 'report.html (' + s.verdict + ')'
    rep.append('Run finished: ', a)
  } else rep.textContent = s.error ? 'The run failed: ' + s.error : 'report.html is written when the run ends.'
  plots(s)
}
const es = new EventSource('events')
es.addEventListener('state', (e) => {
  const s = JSON.parse(e.data)
  $('stream').textContent = 'live: updated ' + new Date().toLocaleTimeString()
  $('stream').className = 'stream'
  if (s.kind === 'member') member(s)
  else run(s)
})
es.addEventListener('error', () => {
  $('stream').textContent = 'not connected to monna (it may have stopped); retrying'
  $('stream').className = 'stream down'
})
`
