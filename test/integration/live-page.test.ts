/**
 * The live pages in a real headless browser (Debian's chromium through playwright-core):
 * - three `monna start` processes on 127.0.0.1: a member's page shows the round advancing, its
 *   two peers connected, plots, and logs no console error;
 * - `monna run <tiny scenario> --live`, in one process and with a process per member: the run's page shows the round advancing,
 *   every member (the Byzantine one marked), the expectations, the accuracy plot, then the link
 *   to report.html, which opens; no console error.
 * No chromium: the test fails with one line saying so (never skipped).
 */
import assert from 'node:assert/strict'
import { type ChildProcess, spawn } from 'node:child_process'
import { existsSync } from 'node:fs'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, it } from 'node:test'
import { type Browser, chromium, type Page } from 'playwright-core'
import { freePorts, Member, monnaBin, repoRoot, runMonna } from '../unit/node/cli-harness.ts'

/** The little of the browser's DOM the page functions below use (they run in chromium; this project's types have no DOM lib). */
declare const document: {
  getElementById(id: string): { dataset: Record<string, string | undefined> } | null
  querySelector(selector: string): { closest(selector: string): { hidden: boolean } | null; complete: boolean; naturalWidth: number } | null
  querySelectorAll(selector: string): Iterable<{ textContent: string | null }>
}

/** CHROMIUM_PATH when set (and only it), else Debian's chromium (apt-get install chromium). */
function findChromium(): string | undefined {
  const env = process.env.CHROMIUM_PATH
  const candidates = env !== undefined && env !== '' ? [env] : ['/usr/bin/chromium', '/usr/bin/chromium-browser', '/usr/lib/chromium/chromium']
  return candidates.find((p) => existsSync(p))
}

const members: Member[] = []
const children: ChildProcess[] = []
let browser: Browser | undefined
let dir = ''
before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'monna-live-page-'))
})
after(async () => {
  await browser?.close()
  for (const m of members) m.kill('SIGKILL')
  for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL')
  if (dir !== '') await rm(dir, { recursive: true, force: true })
})

async function openBrowser(): Promise<Browser> {
  const exe = findChromium()
  if (exe === undefined) assert.fail(`no chromium executable found (${process.env.CHROMIUM_PATH ? `CHROMIUM_PATH=${process.env.CHROMIUM_PATH}` : '/usr/bin/chromium, /usr/bin/chromium-browser'}): install Debian's chromium, apt-get install -y chromium`)
  browser ??= await chromium.launch({ executablePath: exe, args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage'] })
  return browser
}

/** A page that records console errors and uncaught exceptions. */
async function watchedPage(b: Browser): Promise<{ page: Page; errors: string[] }> {
  const page = await b.newPage()
  const errors: string[] = []
  page.on('console', (m) => {
    if (m.type() === 'error') errors.push(m.text())
  })
  page.on('pageerror', (e) => errors.push(String(e)))
  return { page, errors }
}

const roundShown = (page: Page): Promise<number> => page.locator('#round').getAttribute('data-round').then((v) => Number(v))

/** Waits (on DOM changes, no sleep) until the round shown is above `than`. */
async function roundAbove(page: Page, than: number, timeout: number): Promise<number> {
  await page.waitForFunction((t) => Number(document.getElementById('round')?.dataset.round ?? '0') > t, than, { timeout })
  return await roundShown(page)
}

/** A plot image that loaded (its SVG decoded to a non-empty picture). */
async function plotLoaded(page: Page, name: string, timeout: number): Promise<void> {
  await page.waitForFunction(
    (n) => {
      const img = document.querySelector(`img[data-plot="${n}"]`)
      return img !== null && img.closest('figure')?.hidden === false && img.complete && img.naturalWidth > 0
    },
    name,
    { timeout, polling: 200 },
  )
}

it("a member's live page in chromium: the round advances, its peers and plots are shown, no console error", { timeout: 300_000 }, async (t) => {
  const b = await openBrowser()
  const base = await freePorts(3)
  const init = await runMonna(['swarm', 'init', '--nodes', '3', '--f', '0', '--dir', join(dir, 'swarm'), '--base-port', String(base), '--rounds', '400', '--min-round-ms', '300', '--linger-ms', '1000', '--round-timeout-ms', '8000'])
  assert.equal(init.code, 0, init.stderr)
  for (let i = 0; i < 3; i++) members.push(new Member(`node-${i}`, join(dir, 'swarm', `node-${i}.yaml`), ['--backend', 'cpu', '--metrics-port', '0']))
  const line = await members[0]!.waitFor((l) => l.kind === 'log' && l.log.msg === 'metrics endpoint', 'metrics endpoint log', 60_000)
  const url = (line as unknown as { log: { live: string } }).log.live
  assert.match(url, /^http:\/\/127\.0\.0\.1:\d+\/$/)
  await members[0]!.waitForRound(0, 120_000)
  t.diagnostic(`page ${url}`)

  const { page, errors } = await watchedPage(b)
  await page.goto(url)
  assert.equal(await page.locator('h1').textContent(), 'monna member node-0')
  assert.equal(await page.locator('#round').getAttribute('aria-live'), 'polite')
  const first = await roundAbove(page, 0, 120_000)
  const later = await roundAbove(page, first, 120_000)
  t.diagnostic(`round shown ${first}, then ${later}`)
  assert.ok(later > first)
  // both other members listed, connected directly
  await page.waitForFunction(() => {
    const rows = [...document.querySelectorAll('#peers tr')]
    return rows.length === 2 && rows.every((r) => r.textContent?.includes('connected') === true && r.textContent.includes('direct'))
  }, null, { timeout: 60_000 })
  const names = await page.locator('#peers tr td:first-child').allTextContents()
  assert.deepEqual(names.sort(), ['node-1', 'node-2'])
  await plotLoaded(page, 'loss', 60_000)
  await plotLoaded(page, 'deliveries', 60_000)
  // labelled plots, headings, keyboard-reachable event list
  assert.ok((await page.locator('img[data-plot="loss"]').getAttribute('alt'))!.length > 10)
  assert.ok((await page.locator('h2').count()) >= 5)
  assert.equal(await page.locator('#events').getAttribute('tabindex'), '0')
  assert.match((await page.locator('#stream').textContent())!, /^live/)
  await page.close()
  assert.deepEqual(errors, [], 'console errors on the member page')
  for (const m of members) m.kill('SIGTERM')
  await Promise.all(members.map((m) => m.exited))
})

for (const mode of ['in-process', 'process'] as const) {
  it(`a topology run's live page in chromium (${mode}): rounds advance, members and expectations shown, then report.html`, { timeout: 300_000 }, async (t) => {
    const b = await openBrowser()
    const scenario = join(dir, `live-tiny-${mode}.yaml`)
    await writeFile(
      scenario,
      `name: live-tiny
n: 4
f: 1
task:
  dataset: { kind: gaussian-mixture, classes: 4, dim: 8, trainSize: 800, testSize: 200, seed: 1 }
  model: { kind: logreg }
  batchSize: 16
  schedule: { kind: constant, lr: 0.5 }
  beta: 0.9
  rounds: 60
  evalEvery: 5
aggregator: { rule: nna }
byzantine:
  - { members: [3], behaviour: alie }
expect:
  minHonestAccuracy: 0.5
runtime: { backend: cpu, minRoundMs: 250, timeoutMs: 240000 }
  `,
    )
    const child = spawn(process.execPath, [monnaBin, 'run', scenario, ...(mode === 'in-process' ? ['--in-process'] : []), '--live', '--quiet', '--out', join(dir, `run-${mode}`)], { cwd: repoRoot, stdio: ['ignore', 'pipe', 'pipe'] })
    children.push(child)
    const exited = new Promise<number | null>((res) => child.on('exit', (code) => res(code)))
    let stderr = ''
    const url = await new Promise<string>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no live page address within 60 s; stderr:\n${stderr}`)), 60_000)
      child.stderr!.on('data', (c: Buffer) => {
        stderr += c.toString()
        const m = /live page: (http:\/\/127\.0\.0\.1:\d+\/)/.exec(stderr)
        if (m !== null) {
          clearTimeout(timer)
          resolve(m[1]!)
        }
      })
      child.on('exit', (code) => reject(new Error(`monna run exited (${code}) before printing its live page; stderr:\n${stderr}`)))
    })
    t.diagnostic(`page ${url}`)
    const { page, errors } = await watchedPage(b)
    await page.goto(url)
    assert.equal(await page.locator('h1').textContent(), 'monna run: live-tiny')
    const first = await roundAbove(page, 0, 120_000)
    // (the page shows rounds completed, 1…60; a page that first showed the last one — all of a
    // loaded machine's updates at once — has nothing later to show: CI timed out waiting for it)
    const later = first < 60 ? await roundAbove(page, first, 120_000) : first
    t.diagnostic(`round shown ${first}, then ${later}`)
    // every member listed, the Byzantine one marked
    const rows = page.locator('#members tr')
    assert.equal(await rows.count(), 4)
    assert.equal(await page.locator('#members tr.byz').count(), 1)
    assert.match((await page.locator('#members tr.byz').textContent())!, /m3.*Byzantine: alie/)
    assert.equal(await page.locator('#expectations tr').count(), 2)
    await plotLoaded(page, 'accuracy', 120_000)
    // the end of the run: the link to report.html, which opens
    await page.waitForSelector('#report a[href="report.html"]', { timeout: 240_000 })
    const text = await page.locator('#report').textContent()
    assert.match(text!, /Run finished: report\.html \((PASS|FAIL)/)
    await page.click('#report a')
    await page.waitForSelector('h1:has-text("Topology report: live-tiny")', { timeout: 30_000 })
    await page.close()
    assert.deepEqual(errors, [], 'console errors on the run page')
    // the page stays up after the run until a signal; the exit code is the verdict's
    child.kill('SIGINT')
    const code = await exited
    assert.ok(code === 0 || code === 1, `monna run exit code ${code}; stderr:\n${stderr}`)
  })
}
