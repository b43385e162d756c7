/**
 * A topology run's live page (`monna run <file> --live [--live-port N]`): every member's
 * accuracy on one plot as rounds complete (the report's own accuracy plot: one line per member
 * up to 10 members, the honest min–median–max band with faint members beyond, Byzantine members
 * apart), the members' state, the expectations evaluated on the rounds so far, and a link to
 * report.html once it is written. Served on 127.0.0.1 by its own small HTTP server.
 */
import { readFile } from 'node:fs/promises'
import { createServer, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { buildReport, type MemberInfo, type MemberRound, renderSvg, reportPlots, type TopologyReport, verdict } from '../../src/topology/report.ts'
import type { ProgressEvent } from '../../src/topology/runner.ts'
import type { Scenario } from '../../src/topology/schema.ts'
import { liveScript, liveStyle } from './assets.ts'
import { escapeHtml, PlotCache, pageHeaders, routeLive, SseHub, text } from './hub.ts'

export interface RunLive {
  url: string
  onProgress(e: ProgressEvent): void
  onRound(r: MemberRound): void
  finished(report: TopologyReport, files: { html: string }): void
  failed(err: unknown): void
  close(): Promise<void>
}

export async function startRunLive(opts: { scenario: Scenario; mode: 'process' | 'in-process'; outDir: string; port: number; host?: string }): Promise<RunLive> {
  const { scenario } = opts
  let members: MemberInfo[] = []
  const rounds: MemberRound[] = []
  const startedAt = new Date()
  let completed: number | null = null
  let report: TopologyReport | undefined
  let reportFile: string | undefined
  let error: string | undefined
  const exited = new Map<string, string>()
  let version = 0
  let cached: { version: number; report: TopologyReport } | undefined

  /** the report over the rounds so far (expectations "so far"), rebuilt at most once per version */
  const partial = (): TopologyReport => {
    if (report !== undefined) return report
    if (cached?.version === version) return cached.report
    const r = buildReport({ scenario, mode: opts.mode, members, rounds, startedAt, durationMs: Date.now() - startedAt.getTime() })
    cached = { version, report: r }
    return r
  }
  const snapshot = (): unknown => {
    const r = partial()
    const latest = new Map<string, MemberRound>()
    const lastAcc = new Map<string, number>()
    for (const x of rounds) {
      const l = latest.get(x.member)
      if (l === undefined || x.round >= l.round) latest.set(x.member, x)
      if (x.accuracy !== undefined) lastAcc.set(x.member, x.accuracy)
    }
    return {
      kind: 'run',
      scenario: scenario.name,
      mode: opts.mode,
      n: scenario.n,
      byzantine: members.filter((m) => m.byzantine).length,
      rule: r.rule,
      rounds: scenario.task.rounds,
      outDir: opts.outDir,
      round: completed,
      done: report !== undefined,
      members: members.map((m) => {
        const l = latest.get(m.id)
        return {
          name: m.name,
          byzantine: m.byzantine,
          behaviour: m.behaviour,
          round: l === undefined ? null : l.round + 1,
          accuracy: lastAcc.get(m.id) ?? null,
          state: exited.get(m.id) ?? (l === undefined ? 'starting' : l.final === true ? 'done' : l.stalled ? 'stalled' : 'running'),
        }
      }),
      expectations: r.expectations,
      report: report !== undefined,
      ...(report !== undefined ? { verdict: verdict(report) } : {}),
      ...(error !== undefined ? { error } : {}),
      plotVersion: version,
      plots: rounds.some((x) => x.accuracy !== undefined) ? ['accuracy'] : [],
    }
  }
  const hub = new SseHub(snapshot)
  const plots = new PlotCache(
    (name) => (name === 'accuracy' && rounds.some((x) => x.accuracy !== undefined) ? () => renderSvg(reportPlots(partial()).accuracy!) : undefined),
    () => version,
  )
  const page = (): string => `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1">
<title>monna run: ${escapeHtml(scenario.name)}</title><link rel="icon" href="data:,"><link rel="stylesheet" href="live.css"></head>
<body data-kind="run">
<header><h1 id="title">monna run: ${escapeHtml(scenario.name)}</h1>
<p id="round" class="round" role="status" aria-live="polite" aria-atomic="true" data-round="0">Connecting…</p>
<p id="swarm" class="muted"></p><p id="stream" class="stream">connecting to monna…</p>
<p id="report">report.html is written when the run ends.</p></header>
<main>
<section aria-labelledby="h-plots"><h2 id="h-plots">Accuracy</h2>
<figure hidden><img data-plot="accuracy" alt="Test accuracy of every member per evaluation round; Byzantine members dashed" width="760" height="300"><figcaption>Test accuracy per member (Byzantine members dashed; beyond 10 members, the honest members' median, min–max band and each member faint)</figcaption></figure></section>
<section aria-labelledby="h-exp"><h2 id="h-exp">Expectations (on the rounds so far)</h2>
<table aria-labelledby="h-exp"><thead><tr><th scope="col">expectation</th><th scope="col">state</th><th scope="col">value</th><th scope="col">threshold</th><th scope="col">detail</th></tr></thead><tbody id="expectations"></tbody></table></section>
<section aria-labelledby="h-members"><h2 id="h-members">Members</h2>
<table aria-labelledby="h-members"><thead><tr><th scope="col">member</th><th scope="col">role</th><th scope="col">last round</th><th scope="col">accuracy</th><th scope="col">state</th></tr></thead><tbody id="members"></tbody></table></section>
</main>
<script src="live.js"></script>
</body></html>
`
  const server: Server = createServer((req, res) => {
    const path = (req.url ?? '/').split('?')[0]!
    if (routeLive(req, res, path, { page, script: liveScript, style: liveStyle, hub, plots })) return
    if (path === '/report.html') {
      if (req.method !== 'GET' && req.method !== 'HEAD') return text(res, 405, 'method not allowed: GET only\n', { allow: 'GET, HEAD' })
      if (reportFile === undefined) return text(res, 404, 'report.html is written when the run ends\n')
      readFile(reportFile).then(
        // report.html is self-contained: inline styles and SVG, no script
        (body) => res.writeHead(200, { 'content-type': 'text/html; charset=utf-8', ...pageHeaders, 'content-security-policy': "default-src 'none'; style-src 'unsafe-inline'; img-src data:; frame-ancestors 'none'" }).end(body),
        (err: unknown) => text(res, 500, `${String(err)}\n`),
      )
      return
    }
    text(res, 404, 'not found: GET / (live page), /events, /report.html\n')
  })
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    server.listen(opts.port, opts.host ?? '127.0.0.1', () => resolve())
  })
  const addr = server.address() as AddressInfo
  const host = addr.family === 'IPv6' ? `[${addr.address}]` : addr.address
  const bump = (): void => {
    version++
    hub.changed()
  }
  return {
    url: `http://${host}:${addr.port}/`,
    onProgress(e) {
      if (e.kind === 'start') members = e.members
      else if (e.kind === 'round') completed = e.round + 1
      else if (e.kind === 'member-exit') exited.set(members.find((m) => m.name === e.name)?.id ?? e.name, e.code === 0 ? 'exited' : `stopped: ${e.error ?? `exit code ${e.code}`}`)
      bump()
    },
    onRound(r) {
      // as the report keeps them: no sketches or sender lists, beyond what the plot and expectations need
      rounds.push(r)
      bump()
    },
    finished(r, files) {
      report = r
      reportFile = files.html
      bump()
    },
    failed(err) {
      error = err instanceof Error ? err.message : String(err)
      bump()
    },
    close: () =>
      new Promise<void>((resolve) => {
        hub.close()
        server.closeAllConnections()
        server.close(() => resolve())
      }),
  }
}
