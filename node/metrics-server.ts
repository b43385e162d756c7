/**
 * The HTTP endpoint of `monna start --metrics-port`: GET /metrics (Prometheus), and when the
 * node gives them, GET /status (membership epoch, round, peers: `monna status`), GET /epochs
 * (the signed membership epochs it knows) and POST /epoch (hand it a signed epoch, which it
 * verifies against the swarm's admin key and relays). With `live`, also the member's live page:
 * GET / (HTML), /live.js, /live.css, /events (server-sent events), /plots/<name>.svg
 * (node/live). It binds to 127.0.0.1 unless told otherwise; submitting an epoch needs no secret
 * because only admin-signed epochs are accepted. A known path with the wrong method gets 405
 * (with Allow), anything else 404.
 */
import type { IncomingMessage, Server, ServerResponse } from 'node:http'
import { createRequire } from 'node:module'
import type { AddressInfo } from 'node:net'
import type { Registry } from 'prom-client'
import { MonnaError } from '../src/errors.ts'

// node:http through require, not an ESM import: importing a built-in module as ESM reads each of
// its exports, and node:http's WebSocket, CloseEvent and MessageEvent are getters that load
// undici (Node's fetch and WebSocket), which member processes never use: 13.5 MB of resident
// memory and 2.4 MB of V8 heap in a bare process, 1–2 MB at a 26-process member's peak
// (docs/memory.md, session 33).
const { createServer } = createRequire(import.meta.url)('node:http') as typeof import('node:http')

/** The metrics port is taken by another program (EADDRINUSE): nothing ran; another port will do. */
export class MetricsPortInUseError extends MonnaError {
  override name = 'MetricsPortInUseError'
  readonly address: string
  constructor(host: string, port: number) {
    super(`cannot serve metrics on ${host}:${port}: another program holds that port (EADDRINUSE); choose another \`metricsPort\` (or --metrics-port)`)
    this.address = `${host}:${port}`
  }
}

export interface NodeRoutes {
  status(): unknown
  epochs(): unknown
  submitEpoch(body: unknown): Promise<unknown>
}

/** Largest POST body: a signed epoch of 1024 members is well below this. */
const MAX_BODY_BYTES = 1024 * 1024

function json(res: ServerResponse, code: number, body: unknown): void {
  res.writeHead(code, { 'content-type': 'application/json' }).end(`${JSON.stringify(body)}\n`)
}

function readBody(req: IncomingMessage): Promise<string> {
  return new Promise((resolve, reject) => {
    let size = 0
    const chunks: Buffer[] = []
    req.on('data', (c: Buffer) => {
      size += c.length
      if (size > MAX_BODY_BYTES) {
        reject(new Error(`body above ${MAX_BODY_BYTES} bytes`))
        req.destroy()
        return
      }
      chunks.push(c)
    })
    req.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')))
    req.on('error', reject)
  })
}

export async function startMetricsServer(opts: {
  registry: Registry
  port: number
  host: string
  /** set once the node exists (503 before) */
  routes?: () => NodeRoutes | undefined
  /** the member's live page (node/live/member.ts): true when it answered the request */
  live?: { handle(req: IncomingMessage, res: ServerResponse, path: string): boolean }
}): Promise<{ url: string; base: string; close(): Promise<void> }> {
  const server: Server = createServer((req, res) => {
    const routes = opts.routes?.()
    const url = (req.url ?? '/').split('?')[0]!
    if (opts.live?.handle(req, res, url) === true) return
    const allowed: Record<string, string> = { '/metrics': 'GET', ...(opts.live === undefined ? { '/': 'GET' } : {}), ...(opts.routes !== undefined ? { '/status': 'GET', '/epochs': 'GET', '/epoch': 'POST' } : {}) }
    const allow = allowed[url]
    if (allow === undefined) {
      res.writeHead(404, { 'content-type': 'text/plain' }).end(`not found: ${opts.live !== undefined ? 'GET / (live page), ' : ''}GET /metrics, GET /status, GET /epochs, POST /epoch\n`)
      return
    }
    if (req.method !== allow && !(allow === 'GET' && req.method === 'HEAD')) {
      res.writeHead(405, { 'content-type': 'text/plain', allow: allow === 'GET' ? 'GET, HEAD' : allow }).end(`method not allowed: ${allow} ${url}\n`)
      return
    }
    if (url === '/metrics' || url === '/') {
      opts.registry.metrics().then(
        (text) => res.writeHead(200, { 'content-type': opts.registry.contentType }).end(text),
        (err: unknown) => res.writeHead(500, { 'content-type': 'text/plain' }).end(`${String(err)}\n`),
      )
      return
    }
    if (routes === undefined) return json(res, 503, { error: 'the node is still starting' })
    if (url === '/status') return json(res, 200, routes.status())
    if (url === '/epochs') return json(res, 200, routes.epochs())
    readBody(req)
      .then((text) => routes.submitEpoch(JSON.parse(text)))
      .then(
        (r) => json(res, 200, r),
        (err: unknown) => json(res, 400, { error: err instanceof Error ? err.message : String(err), name: (err as Error).name, reason: (err as { reason?: string }).reason }),
      )
  })
  await new Promise<void>((resolve, reject) => {
    server.once('error', (err: NodeJS.ErrnoException) => reject(err.code === 'EADDRINUSE' ? new MetricsPortInUseError(opts.host, opts.port) : err))
    server.listen(opts.port, opts.host, () => resolve())
  })
  const addr = server.address() as AddressInfo
  const host = addr.family === 'IPv6' ? `[${addr.address}]` : addr.address
  return {
    url: `http://${host}:${addr.port}/metrics`,
    base: `http://${host}:${addr.port}`,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections()
        server.close(() => resolve())
      }),
  }
}
