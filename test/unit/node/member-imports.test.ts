import assert from 'node:assert/strict'
import { spawnSync } from 'node:child_process'
import { test } from 'node:test'
import { fileURLToPath } from 'node:url'

const root = fileURLToPath(new URL('../../../', import.meta.url))

// A child process loads what `monna start` loads (its command module and the metrics endpoint),
// serves GET /metrics on 127.0.0.1 and asks it once through node:http's client (taken with
// require, as the endpoint takes its server), then prints which of Node's own modules it loaded.
const child = `
import { createRequire } from 'node:module'
await import('./node/commands/start.ts')
const { startMetricsServer } = await import('./node/metrics-server.ts')
const { Registry } = await import('prom-client')
const server = await startMetricsServer({ registry: new Registry(), port: 0, host: '127.0.0.1' })
const http = createRequire(import.meta.url)('node:http')
const status = await new Promise((resolve, reject) => {
  http.get(server.url, (res) => { res.resume(); res.on('end', () => resolve(res.statusCode)) }).on('error', reject)
})
await server.close()
const builtins = process.moduleLoadList.filter((m) => m.startsWith('NativeModule ')).map((m) => m.slice(13))
console.log(JSON.stringify({ status, builtins }))
`

test("a member process does not load undici (Node's fetch and WebSocket: 13.5 MB resident in a bare process) and still serves its metrics over node:http", { timeout: 60_000 }, () => {
  const r = spawnSync(process.execPath, ['--input-type=module', '-e', child], { cwd: root, encoding: 'utf8', timeout: 50_000 })
  assert.equal(r.status, 0, r.stderr)
  const { status, builtins } = JSON.parse(r.stdout.trim().split('\n').at(-1)!) as { status: number; builtins: string[] }
  assert.equal(status, 200)
  assert.ok(builtins.includes('http') && builtins.includes('_http_server'), `node:http not loaded: ${builtins.join(' ')}`)
  assert.deepEqual(
    builtins.filter((m) => m.includes('undici')),
    [],
    'undici was loaded (an ESM import of node:http reads its WebSocket getter)',
  )
})
