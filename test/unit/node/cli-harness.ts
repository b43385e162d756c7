/**
 * Test harness for the `monna` program: runs commands, spawns `monna start` members and parses
 * their JSON progress (stdout) and JSON logs (stderr) into events tests can wait on.
 */
import { type ChildProcess, spawn } from 'node:child_process'
import { appendFileSync, mkdirSync } from 'node:fs'
import { createServer } from 'node:net'
import { fileURLToPath } from 'node:url'
import type { RoundReport } from '../../../src/node/index.ts'

export const repoRoot = fileURLToPath(new URL('../../../', import.meta.url))
export const monnaBin = fileURLToPath(new URL('../../../bin/monna.js', import.meta.url))

export interface RunResult {
  code: number | null
  stdout: string
  stderr: string
}

/** Runs `monna <args>` to completion. */
export function runMonna(args: string[], opts: { cwd?: string; timeoutMs?: number; wrap?: string[] } = {}): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    const command = [...(opts.wrap ?? []), process.execPath, monnaBin, ...args]
    const child = spawn(command[0]!, command.slice(1), { cwd: opts.cwd ?? repoRoot, stdio: ['ignore', 'pipe', 'pipe'] })
    let stdout = ''
    let stderr = ''
    child.stdout.on('data', (b: Buffer) => {
      stdout += b.toString()
    })
    child.stderr.on('data', (b: Buffer) => {
      stderr += b.toString()
    })
    const timer = setTimeout(() => {
      child.kill('SIGKILL')
      reject(new Error(`monna ${args.join(' ')} did not finish in ${opts.timeoutMs ?? 60_000} ms\n${stderr}`))
    }, opts.timeoutMs ?? 60_000)
    child.on('error', reject)
    child.on('close', (code) => {
      clearTimeout(timer)
      resolve({ code, stdout, stderr })
    })
  })
}

/** A base port such that base … base + count − 1 are free on 127.0.0.1 right now. */
export async function freePorts(count: number): Promise<number> {
  const isFree = (port: number): Promise<boolean> =>
    new Promise((resolve) => {
      const srv = createServer()
      srv.once('error', () => resolve(false))
      srv.listen(port, '127.0.0.1', () => srv.close(() => resolve(true)))
    })
  for (let attempt = 0; attempt < 50; attempt++) {
    // below the ephemeral range (32768–60999) that outgoing connections and port-0 listeners use
    const base = 20_000 + Math.floor(Math.random() * (12_768 - count))
    let ok = true
    for (let p = base; p < base + count && ok; p++) ok = await isFree(p)
    if (ok) return base
  }
  throw new Error('no free port range found')
}

type Line = { kind: 'report'; report: RoundReport } | { kind: 'event'; event: Record<string, unknown> } | { kind: 'log'; log: Record<string, unknown> }

/** One `monna start --progress json --log-format json` process. */
/**
 * Runs a documentation walk-through: `script` under bash (`set -euo pipefail`, `monna` bound to
 * this checkout's program) in its own process group, killed whole after `killAfterMs` so a hung
 * member can never outlive the test.
 */
export function runWalkthrough(script: string, cwd: string, killAfterMs = 200_000): Promise<{ code: number | null; out: string; err: string }> {
  const prelude = `set -euo pipefail\nmonna() { "${process.execPath}" "${monnaBin}" "$@"; }\n`
  return new Promise((resolve) => {
    const child = spawn('bash', ['-c', prelude + script], { cwd, stdio: ['ignore', 'pipe', 'pipe'], detached: true })
    let out = ''
    let err = ''
    child.stdout!.on('data', (b: Buffer) => {
      out += b.toString()
    })
    child.stderr!.on('data', (b: Buffer) => {
      err += b.toString()
    })
    const timer = setTimeout(() => {
      try {
        process.kill(-child.pid!, 'SIGKILL')
      } catch {}
    }, killAfterMs)
    child.on('close', (code) => {
      clearTimeout(timer)
      resolve({ code, out, err })
    })
  })
}

export class Member {
  readonly name: string
  readonly child: ChildProcess
  readonly reports: RoundReport[] = []
  readonly events: Record<string, unknown>[] = []
  readonly logs: Record<string, unknown>[] = []
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>
  private stderrTail: string[] = []
  private waiters: { pred: (l: Line) => boolean; resolve: (l: Line) => void }[] = []

  /** `wrap`: a command the member runs under, e.g. `['ip', 'netns', 'exec', 'ns1']` (test/support/netns.ts) */
  constructor(name: string, config: string, extra: string[] = [], opts: { wrap?: string[] } = {}) {
    this.name = name
    // MONNA_TEST_LOG_LEVEL=debug makes the members log more (with MONNA_TEST_LOG_DIR)
    const level = process.env.MONNA_TEST_LOG_LEVEL
    const levelArgs = level !== undefined && level !== '' ? ['--log-level', level] : []
    const argv = [process.execPath, monnaBin, 'start', '--config', config, '--progress', 'json', '--log-format', 'json', ...levelArgs, ...extra]
    const command = [...(opts.wrap ?? []), ...argv]
    this.child = spawn(command[0]!, command.slice(1), {
      cwd: repoRoot,
      stdio: ['ignore', 'pipe', 'pipe'],
    })
    this.exited = new Promise((resolve) => this.child.on('exit', (code, signal) => resolve({ code, signal })))
    // MONNA_TEST_LOG_DIR=<dir> keeps every member's whole output (progress and logs) there (diagnosing a failed run)
    const logDir = process.env.MONNA_TEST_LOG_DIR
    const logFile = logDir !== undefined && logDir !== '' ? `${logDir}/${name.replace(/[^\w.-]+/g, '_')}-${process.pid}.log` : undefined
    if (logDir !== undefined && logDir !== '') mkdirSync(logDir, { recursive: true })
    this.lines(this.child.stdout!, (text) => {
      if (logFile !== undefined) appendFileSync(logFile, `${text}\n`)
      const o = JSON.parse(text) as Record<string, unknown>
      if (typeof o.event === 'string') {
        this.events.push(o)
        this.emit({ kind: 'event', event: o })
      } else {
        this.reports.push(o as unknown as RoundReport)
        this.emit({ kind: 'report', report: o as unknown as RoundReport })
      }
    })
    this.lines(this.child.stderr!, (text) => {
      if (logFile !== undefined) appendFileSync(logFile, `${text}\n`)
      this.stderrTail.push(text)
      if (this.stderrTail.length > 30) this.stderrTail.shift()
      let o: Record<string, unknown>
      try {
        o = JSON.parse(text) as Record<string, unknown>
      } catch {
        return
      }
      this.logs.push(o)
      this.emit({ kind: 'log', log: o })
    })
  }

  private lines(stream: NodeJS.ReadableStream, onLine: (text: string) => void): void {
    let buf = ''
    stream.on('data', (b: Buffer) => {
      buf += b.toString()
      let i = buf.indexOf('\n')
      while (i >= 0) {
        const line = buf.slice(0, i).trim()
        buf = buf.slice(i + 1)
        if (line !== '') onLine(line)
        i = buf.indexOf('\n')
      }
    })
  }

  private emit(l: Line): void {
    for (const w of [...this.waiters]) {
      if (w.pred(l)) {
        this.waiters.splice(this.waiters.indexOf(w), 1)
        w.resolve(l)
      }
    }
  }

  /** Resolves on the first line (past or future) matching `pred`; rejects after `timeoutMs` with the process's last stderr lines. */
  waitFor(pred: (l: Line) => boolean, what: string, timeoutMs = 60_000): Promise<Line> {
    const past: Line[] = [
      ...this.reports.map((report) => ({ kind: 'report', report }) as Line),
      ...this.events.map((event) => ({ kind: 'event', event }) as Line),
      ...this.logs.map((log) => ({ kind: 'log', log }) as Line),
    ]
    const hit = past.find(pred)
    if (hit !== undefined) return Promise.resolve(hit)
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.waiters = this.waiters.filter((w) => w.resolve !== done)
        reject(new Error(`${this.name}: timed out after ${timeoutMs} ms waiting for ${what}; last stderr:\n${this.stderrTail.join('\n')}`))
      }, timeoutMs)
      const done = (l: Line): void => {
        clearTimeout(timer)
        resolve(l)
      }
      this.waiters.push({ pred, resolve: done })
    })
  }

  waitForRound(minRound: number, timeoutMs?: number): Promise<RoundReport> {
    return this.waitFor((l) => l.kind === 'report' && l.report.round >= minRound, `round ${minRound}`, timeoutMs).then((l) => (l as { report: RoundReport }).report)
  }

  kill(signal: NodeJS.Signals): void {
    if (this.child.exitCode === null && this.child.signalCode === null) this.child.kill(signal)
  }

  stderr(): string {
    return this.stderrTail.join('\n')
  }
}
