/**
 * The live pages' push channel and plot cache, shared by a member's page (`monna start
 * --metrics-port`) and a topology run's page (`monna run --live`).
 *
 * - SseHub: server-sent events. Each change marks the state dirty; at most one `state` event per
 *   `minIntervalMs` goes out (a burst of rounds, rejections or connection changes is coalesced
 *   into one), carrying a small JSON summary (plots are separate SVGs). At most `maxClients`
 *   streams at once (the next gets 503); a client that does not read (more than
 *   `maxBufferedBytes` unsent) is disconnected, so nothing buffers without bound.
 * - PlotCache: SVGs rendered server-side with the project's plotting library (vega, as
 *   report.html), on demand, at most once per `minIntervalMs` per plot, one render in flight.
 */
import type { IncomingMessage, ServerResponse } from 'node:http'

export const liveDefaults = {
  maxClients: 8,
  /** at most 4 events a second per stream */
  minIntervalMs: 250,
  maxBufferedBytes: 256 * 1024,
  /** a comment line now and then keeps proxies from closing an idle stream */
  keepAliveMs: 15_000,
  /** a plot is re-rendered at most once a second */
  plotIntervalMs: 1000,
}

export class SseHub {
  private readonly clients = new Set<ServerResponse>()
  private timer: NodeJS.Timeout | undefined
  private last = 0
  private readonly keepAlive: NodeJS.Timeout
  private closed = false
  private readonly snapshot: () => unknown
  private readonly opts: { maxClients: number; minIntervalMs: number; maxBufferedBytes: number; keepAliveMs: number }

  constructor(snapshot: () => unknown, opts: { maxClients: number; minIntervalMs: number; maxBufferedBytes: number; keepAliveMs: number } = liveDefaults) {
    this.snapshot = snapshot
    this.opts = opts
    this.keepAlive = setInterval(() => {
      for (const res of this.clients) this.write(res, ': keep-alive\n\n')
    }, opts.keepAliveMs)
    this.keepAlive.unref()
  }

  get size(): number {
    return this.clients.size
  }

  accept(req: IncomingMessage, res: ServerResponse): void {
    if (this.closed || this.clients.size >= this.opts.maxClients) {
      res.writeHead(503, { 'content-type': 'text/plain', 'retry-after': '10' }).end(`too many live clients (at most ${this.opts.maxClients})\n`)
      return
    }
    res.writeHead(200, { 'content-type': 'text/event-stream; charset=utf-8', 'cache-control': 'no-store', 'x-content-type-options': 'nosniff' })
    this.clients.add(res)
    const drop = (): void => {
      this.clients.delete(res)
    }
    req.on('close', drop)
    res.on('close', drop)
    res.on('error', drop)
    // the browser's EventSource reconnects after this many ms if the stream ends
    this.write(res, `retry: 3000\nevent: state\ndata: ${JSON.stringify(this.snapshot())}\n\n`)
  }

  /** Something changed: one `state` event to every client within minIntervalMs. */
  changed(): void {
    if (this.closed || this.timer !== undefined || this.clients.size === 0) return
    const wait = Math.max(0, this.last + this.opts.minIntervalMs - Date.now())
    this.timer = setTimeout(() => {
      this.timer = undefined
      this.last = Date.now()
      if (this.clients.size === 0) return
      const frame = `event: state\ndata: ${JSON.stringify(this.snapshot())}\n\n`
      for (const res of this.clients) this.write(res, frame)
    }, wait)
    this.timer.unref()
  }

  private write(res: ServerResponse, frame: string): void {
    if (res.writableLength > this.opts.maxBufferedBytes) {
      // a client that stopped reading: cut it off rather than buffer for it
      this.clients.delete(res)
      res.destroy()
      return
    }
    res.write(frame)
  }

  close(): void {
    this.closed = true
    clearInterval(this.keepAlive)
    if (this.timer !== undefined) clearTimeout(this.timer)
    for (const res of this.clients) res.end()
    this.clients.clear()
  }
}

export class PlotCache {
  private readonly cache = new Map<string, { svg: string; at: number; version: number }>()
  private readonly inFlight = new Map<string, Promise<string>>()
  private readonly render: (name: string) => (() => Promise<string>) | undefined
  private readonly version: () => number
  private readonly intervalMs: number

  /** `render(name)`: undefined when there is no such plot now, else a function that renders it */
  constructor(render: (name: string) => (() => Promise<string>) | undefined, version: () => number, intervalMs = liveDefaults.plotIntervalMs) {
    this.render = render
    this.version = version
    this.intervalMs = intervalMs
  }

  /**
   * The plot's SVG as of now, or undefined when there is no such plot. A plot rendered less than
   * `intervalMs` ago whose data changed since is rendered again once that interval is over (the
   * request waits): never more than one render per plot per interval, one at a time.
   */
  get(name: string): Promise<string> | undefined {
    const hit = this.cache.get(name)
    if (hit !== undefined && hit.version === this.version()) return Promise.resolve(hit.svg)
    const running = this.inFlight.get(name)
    if (running !== undefined) return running
    const draw = this.render(name)
    if (draw === undefined) return undefined
    const wait = hit === undefined ? 0 : Math.max(0, hit.at + this.intervalMs - Date.now())
    const job = new Promise<void>((res) => (wait === 0 ? res() : setTimeout(res, wait).unref()))
      .then(async () => {
        const v = this.version()
        return { v, svg: await draw() }
      })
      .then(({ v, svg }) => {
        this.cache.set(name, { svg, at: Date.now(), version: v })
        return svg
      })
    const done = (): void => {
      this.inFlight.delete(name)
    }
    job.then(done, done)
    this.inFlight.set(name, job)
    return job
  }
}

/** Plain-text error response. */
export function text(res: ServerResponse, code: number, body: string, headers: Record<string, string> = {}): void {
  res.writeHead(code, { 'content-type': 'text/plain; charset=utf-8', ...headers }).end(body)
}

/** Security headers of the live pages: everything from this origin, nothing inline but styles. */
export const pageHeaders = {
  'content-security-policy': "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; connect-src 'self'; frame-ancestors 'none'",
  'x-content-type-options': 'nosniff',
  'cache-control': 'no-store',
  'referrer-policy': 'no-referrer',
}

export function escapeHtml(s: string): string {
  return s.replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]!)
}

/**
 * Routes of a live page: GET (and HEAD) only; a known path with another method gets 405 with
 * Allow, an unknown path 404. Request bodies are never read. Returns false when the path is not
 * one of the live page's (the caller may try its own routes).
 */
export function routeLive(
  req: IncomingMessage,
  res: ServerResponse,
  path: string,
  routes: { page: () => string; script: string; style: string; hub: SseHub; plots: PlotCache },
): boolean {
  const known = path === '/' || path === '/live.js' || path === '/live.css' || path === '/events' || path.startsWith('/plots/')
  if (!known) return false
  if (req.method !== 'GET' && req.method !== 'HEAD') {
    text(res, 405, 'method not allowed: GET only\n', { allow: 'GET, HEAD' })
    return true
  }
  if (path === '/') {
    res.writeHead(200, { 'content-type': 'text/html; charset=utf-8', ...pageHeaders }).end(routes.page())
    return true
  }
  if (path === '/live.js') {
    res.writeHead(200, { 'content-type': 'text/javascript; charset=utf-8', ...pageHeaders }).end(routes.script)
    return true
  }
  if (path === '/live.css') {
    res.writeHead(200, { 'content-type': 'text/css; charset=utf-8', ...pageHeaders }).end(routes.style)
    return true
  }
  if (path === '/events') {
    routes.hub.accept(req, res)
    return true
  }
  const m = /^\/plots\/([a-z-]{1,32})\.svg$/.exec(path)
  const svg = m === null ? undefined : routes.plots.get(m[1]!)
  if (svg === undefined) {
    text(res, 404, 'no such plot\n')
    return true
  }
  svg.then(
    (body) => res.writeHead(200, { 'content-type': 'image/svg+xml', ...pageHeaders }).end(body),
    (err: unknown) => text(res, 500, `plot failed: ${err instanceof Error ? err.message : String(err)}\n`),
  )
  return true
}
