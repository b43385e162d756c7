/**
 * Progress output of `monna start`, one line per round on stdout:
 * - `pretty`: `m0  round 12/100  loss 0.3451  acc 91.2%  delivered 5/5  rejected 0  312 ms`
 *   (`rejected 3 (out-of-window 2, over-capacity 1)`: frames refused so far, by reason)
 *   (+ `ε 1.23` when private, `STALLED` when the round waited past the timeout); stalls,
 *   recoveries, catch-ups and membership epoch switches get their own line;
 * - `json`: every RoundReport as one JSON object per line; stall / recover / catch-up events as
 *   lines with an `event` field (`{"event":"stall",...}`) — RoundReports have no `event` field;
 *   after the last round, each model certified while the member lingers for slower ones as a
 *   `{"event":"late","round":…,"sender":…}` line (before it, a RoundReport's `lateSenders` has them);
 * - `none`: nothing.
 */
import type { CatchUpEvent, EpochEvent, RecoverEvent, RoundReport, StallEvent } from '../src/node/index.ts'

export type ProgressFormat = 'pretty' | 'json' | 'none'

export function formatRound(r: RoundReport, rounds: number): string {
  const parts = [`${r.name ?? r.member.slice(-6)}`, `round ${r.round + 1}/${rounds}`, `loss ${Number.isFinite(r.loss) ? r.loss.toFixed(4) : String(r.loss)}`]
  if (r.accuracy !== undefined) parts.push(`acc ${(100 * r.accuracy).toFixed(1)}%`)
  parts.push(`delivered ${r.delivered}/${r.needed}`)
  parts.push(`rejected ${rejectedText(r.rejected)}`)
  parts.push(`${r.roundMs} ms`)
  if (r.epsilon !== undefined) parts.push(`ε ${r.epsilon.toFixed(3)}`)
  if (r.caughtUpFrom !== undefined) parts.push(`(caught up from round ${r.caughtUpFrom + 1})`)
  if (r.stalled) parts.push('STALLED')
  if (r.final === true) parts.push('done')
  return parts.join('  ')
}

/** Subscribes to a node's events and writes progress lines with `write`. */
export function attachProgress(node: EventTarget, opts: { format: ProgressFormat; rounds: number; name: string; write?: (line: string) => void }): void {
  if (opts.format === 'none') return
  const write = opts.write ?? ((line: string) => process.stdout.write(`${line}\n`))
  const json = opts.format === 'json'
  let finished = false
  node.addEventListener('round', (e) => {
    const r = (e as CustomEvent<RoundReport>).detail
    write(json ? JSON.stringify(r) : formatRound(r, opts.rounds))
    if (r.final === true) finished = true
  })
  node.addEventListener('late', (e) => {
    // no RoundReport comes after the last one to carry these in its `lateSenders`
    if (!json || !finished) return
    const s = (e as CustomEvent<{ round: number; sender: string }>).detail
    write(JSON.stringify({ event: 'late', name: opts.name, round: s.round, sender: s.sender }))
  })
  node.addEventListener('stall', (e) => {
    const s = (e as CustomEvent<StallEvent>).detail
    write(
      json
        ? JSON.stringify({ event: 'stall', name: opts.name, stalled: true, ...s })
        : `${opts.name}  round ${s.round + 1}/${opts.rounds}  STALLED  delivered ${s.delivered}/${s.needed} after ${(s.waitedMs / 1000).toFixed(1)} s — more than f (or the swarm's r) members unreachable? still waiting`,
    )
  })
  node.addEventListener('recover', (e) => {
    const s = (e as CustomEvent<RecoverEvent>).detail
    write(
      json
        ? JSON.stringify({ event: 'recover', name: opts.name, ...s })
        : `${opts.name}  round ${s.round + 1}/${opts.rounds}  recovered  delivered ${s.delivered}/${s.needed} after ${(s.stalledMs / 1000).toFixed(1)} s stalled`,
    )
  })
  node.addEventListener('catch-up', (e) => {
    const s = (e as CustomEvent<CatchUpEvent>).detail
    write(
      json
        ? JSON.stringify({ event: 'catch-up', name: opts.name, ...s })
        : `${opts.name}  behind the swarm: caught up from round ${s.from + 1} to ${s.to + 1} (${s.delivered} certified models)`,
    )
  })
  node.addEventListener('epoch', (e) => {
    const s = (e as CustomEvent<EpochEvent>).detail
    write(
      json
        ? JSON.stringify({ event: 'epoch', name: opts.name, ...s })
        : `${opts.name}  round ${s.round + 1}/${opts.rounds}  membership epoch ${s.epoch}: n = ${s.n}, f = ${s.f}`,
    )
  })
  node.addEventListener('removed', (e) => {
    const s = (e as CustomEvent<{ epoch: number; round: number }>).detail
    write(json ? JSON.stringify({ event: 'removed', name: opts.name, ...s }) : `${opts.name}  round ${s.round + 1}/${opts.rounds}  removed from the swarm by epoch ${s.epoch}`)
  })
}

/**
 * Frames refused so far, and why: `0`, or `7 (out-of-window 4, wrong-epoch 3)` — most frequent
 * first. An honest swarm refuses a few without blame (a round outside a lagging member's window,
 * budgets met under load, around a membership change): not an attack by themselves (README).
 */
export function rejectedText(rejected: Record<string, number>): string {
  const reasons = Object.entries(rejected)
    .filter(([, v]) => v > 0)
    .sort((a, b) => b[1] - a[1] || a[0].localeCompare(b[0]))
  const total = reasons.reduce((a, [, v]) => a + v, 0)
  return total === 0 ? '0' : `${total} (${reasons.map(([k, v]) => `${k} ${v}`).join(', ')})`
}
