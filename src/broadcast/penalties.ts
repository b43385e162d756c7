/**
 * Bans for peers whose frames keep being rejected with blame: `threshold` penalised rejections
 * within `windowMs` → banned for `banMs` (the caller closes and refuses its connections).
 */
export interface PenaltyOptions {
  threshold: number
  windowMs: number
  banMs: number
}

/** A peer banned for its penalised rejections (event 'ban'). */
export interface BanEvent {
  peer: string
  /** penalised rejections within the window, by reason */
  reasons: Record<string, number>
  until: number
}

export class Penalties {
  private readonly opts: PenaltyOptions
  private readonly byPeer = new Map<string, { at: number; reason: string }[]>()
  constructor(opts: PenaltyOptions) {
    this.opts = opts
  }
  /**
   * Counts one penalised rejection; returns the ban when `peer` reaches the threshold.
   * `conclusive`: the rejection proves by itself that `peer` is faulty (no honest member, lagging
   * or not, can cause it) — the peer is banned at once.
   */
  record(peer: string, reason: string, now = Date.now(), conclusive = false): BanEvent | undefined {
    const p = this.opts
    // bounded: a flood of distinct peer ids cannot grow this map (only connected peers reach it)
    if (!this.byPeer.has(peer) && this.byPeer.size >= 4096) this.byPeer.clear()
    const list = (this.byPeer.get(peer) ?? []).filter((e) => now - e.at < p.windowMs)
    list.push({ at: now, reason })
    this.byPeer.set(peer, list)
    if (list.length < p.threshold && !conclusive) return undefined
    this.byPeer.delete(peer)
    const reasons: Record<string, number> = {}
    for (const e of list) reasons[e.reason] = (reasons[e.reason] ?? 0) + 1
    return { peer, reasons, until: now + p.banMs }
  }
}
