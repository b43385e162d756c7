/**
 * `npm run screenshots`: screenshots of the live pages from real runs, into docs/screenshots/.
 * - member.png: node-0's page (`monna start --metrics-port 0`) of a 4-member swarm (f = 1) made
 *   by `monna swarm init` on 127.0.0.1, the gaussian task, after round 30;
 * - run.png: the page of `monna run --in-process --live` with 12 members, 2 of them Byzantine
 *   (the honest members' band), after round 40 of 80.
 * Needs Debian's chromium (apt-get install -y chromium) or CHROMIUM_PATH.
 */
import { type ChildProcess, spawn } from 'node:child_process'
import { existsSync } from 'node:fs'
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { chromium, type Page } from 'playwright-core'

/** The little of the browser's DOM the page function below uses (it runs in chromium). */
declare const document: {
  getElementById(id: string): { dataset: Record<string, string | undefined> } | null
  querySelectorAll(selector: string): Iterable<{ complete: boolean; naturalWidth: number }>
}

const root = fileURLToPath(new URL('../', import.meta.url))
const bin = join(root, 'bin', 'monna.js')
const out = join(root, 'docs', 'screenshots')
const children: ChildProcess[] = []

/** `read`: its stderr is read (else ignored: an unread pipe would fill and block the member) */
function monna(args: string[], read = false): ChildProcess {
  const c = spawn(process.execPath, [bin, ...args], { cwd: root, stdio: ['ignore', 'ignore', read ? 'pipe' : 'ignore'] })
  children.push(c)
  return c
}

/** Resolves with the first match of `re` in the child's stderr. */
function fromStderr(c: ChildProcess, re: RegExp, what: string, timeoutMs = 120_000): Promise<string> {
  return new Promise((resolve, reject) => {
    let text = ''
    const timer = setTimeout(() => reject(new Error(`no ${what} within ${timeoutMs} ms:\n${text.slice(-2000)}`)), timeoutMs)
    c.stderr!.on('data', (b: Buffer) => {
      text += b.toString()
      const m = re.exec(text)
      if (m !== null) {
        clearTimeout(timer)
        resolve(m[1]!)
      }
    })
    c.on('exit', (code) => reject(new Error(`exited (${code}) before ${what}:\n${text.slice(-2000)}`)))
  })
}

async function shoot(page: Page, url: string, round: number, file: string): Promise<void> {
  await page.setViewportSize({ width: 1280, height: 900 })
  await page.goto(url)
  await page.waitForFunction((r) => Number(document.getElementById('round')?.dataset.round ?? '0') >= r, round, { timeout: 180_000 })
  // the plots of that round loaded (the state event that showed the round also set their new src)
  await page.waitForFunction(() => [...document.querySelectorAll('figure:not([hidden]) img')].every((i) => i.complete && i.naturalWidth > 0), null, { timeout: 60_000 })
  await page.screenshot({ path: file, fullPage: true })
  process.stderr.write(`wrote ${file}\n`)
}

const exe = process.env.CHROMIUM_PATH || ['/usr/bin/chromium', '/usr/bin/chromium-browser'].find((p) => existsSync(p))
if (exe === undefined || !existsSync(exe)) {
  process.stderr.write('screenshots: no chromium executable found: apt-get install -y chromium (or set CHROMIUM_PATH)\n')
  process.exit(1)
}
const dir = await mkdtemp(join(tmpdir(), 'monna-screenshots-'))
const browser = await chromium.launch({ executablePath: exe, args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage'] })
try {
  await mkdir(out, { recursive: true })
  const page = await browser.newPage()

  // a member of a 4-member swarm
  const init = monna(['swarm', 'init', '--nodes', '4', '--f', '1', '--dir', join(dir, 'swarm'), '--base-port', '19700', '--rounds', '200', '--min-round-ms', '400', '--linger-ms', '1000'])
  await new Promise((res) => init.on('exit', res))
  const members = [0, 1, 2, 3].map((i) => monna(['start', '--config', join(dir, 'swarm', `node-${i}.yaml`), '--backend', 'cpu', '--progress', 'none', '--log-format', 'json', ...(i === 0 ? ['--metrics-port', '0'] : [])], i === 0))
  const memberUrl = await fromStderr(members[0]!, /"live":"(http:[^"]+)"/, 'the live page address')
  await shoot(page, memberUrl, 30, join(out, 'member.png'))
  for (const m of members) m.kill('SIGTERM')

  // a topology run of 12 members, 2 Byzantine
  const scenario = join(dir, 'live-12.yaml')
  await writeFile(
    scenario,
    `name: live-12
description: 12 members, 2 Byzantine (ALIE, sign flip), MoNNA; the live page's screenshot
n: 12
f: 2
task:
  dataset: { kind: gaussian-mixture, classes: 10, dim: 32, trainSize: 6000, testSize: 1000, seed: 1 }
  partition: { scheme: iid }
  model: { kind: logreg }
  batchSize: 25
  schedule: { kind: constant, lr: 1 }
  beta: 0.99
  rounds: 80
  evalEvery: 5
  evalExamples: 1000
aggregator: { rule: nna }
byzantine:
  - { members: [10], behaviour: alie }
  - { members: [11], behaviour: sign-flip }
expect:
  minHonestAccuracy: 0.8
runtime: { backend: cpu, minRoundMs: 300, timeoutMs: 600000 }
`,
  )
  const run = monna(['run', scenario, '--in-process', '--live', '--quiet', '--out', join(dir, 'run')], true)
  const runUrl = await fromStderr(run, /live page: (http:\S+)/, 'the live page address')
  await shoot(page, runUrl, 40, join(out, 'run.png'))
  run.kill('SIGINT')
} finally {
  await browser.close()
  for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL')
  await rm(dir, { recursive: true, force: true })
}
