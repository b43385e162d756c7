/**
 * What a model-level Byzantine behaviour does in a round, as data (`ByzantineAction`), and the
 * code that does it with the primitives the engine offers (`ctx.broadcast`, `ctx.sendTo`).
 * Behaviours that decide an action per round (every one of src/topology/behaviours.ts) are
 * built with `actingBehaviour`: their decisions stay unit-testable without an engine, and the
 * honest engine holds no attack code.
 */
import type { ByzantineBehaviour, ByzantineContext } from '../node/behaviour.ts'
import { ByzantineCrashError } from '../node/behaviour.ts'
import { encodeModel } from '../node/payload.ts'

export type ByzantineAction =
  /** broadcast `model` as this round's model, now or after `delayMs` */
  | { kind: 'send'; model: Float32Array; delayMs?: number }
  /** broadcast bytes that need not be a model */
  | { kind: 'send-raw'; payload: Uint8Array }
  /** a different model per member, each SENT to its member only */
  | { kind: 'equivocate'; models: Map<string, Float32Array> }
  /** broadcast again, for this round, the payload this member broadcast in `fromRound` */
  | { kind: 'replay'; fromRound: number }
  | { kind: 'silent' }
  /** stop this member's engine */
  | { kind: 'crash' }

/** A behaviour that decides an action per round; `act` performs it. */
export interface ActingBehaviour extends ByzantineBehaviour {
  decide(ctx: ByzantineContext): Promise<ByzantineAction>
}

/** Rounds of own payloads kept for `replay`. */
const HISTORY = 64

/** Builds a behaviour from a per-round decision; each behaviour keeps its own payload history (for `replay`). */
export function actingBehaviour(name: string, decide: (ctx: ByzantineContext) => Promise<ByzantineAction>): ActingBehaviour {
  const history = new Map<number, Uint8Array>()
  const remember = (round: number, payload: Uint8Array): void => {
    history.set(round, payload)
    for (const r of history.keys()) if (r <= round - HISTORY) history.delete(r)
  }
  return {
    name,
    decide,
    act: async (ctx) => perform(ctx, await decide(ctx), history, remember),
  }
}

async function perform(ctx: ByzantineContext, action: ByzantineAction, history: Map<number, Uint8Array>, remember: (round: number, payload: Uint8Array) => void): Promise<void> {
  const t = ctx.round
  switch (action.kind) {
    case 'send': {
      const payload = encodeModel(action.model, ctx.encoding)
      remember(t, payload)
      if (action.delayMs === undefined || action.delayMs <= 0) {
        ctx.broadcast(payload)
        return
      }
      const timer = setTimeout(() => {
        ctx.signal?.removeEventListener('abort', cancel)
        ctx.broadcast(payload)
      }, action.delayMs)
      const cancel = (): void => clearTimeout(timer)
      ctx.signal?.addEventListener('abort', cancel, { once: true })
      return
    }
    case 'send-raw':
      remember(t, action.payload)
      ctx.broadcast(action.payload)
      return
    case 'equivocate': {
      if (ctx.sendTo === undefined) return // nowhere to address members one by one: silent
      const groups = new Map<string, { payload: Uint8Array; peers: string[] }>()
      for (const [peer, model] of action.models) {
        const payload = encodeModel(model, ctx.encoding)
        const key = Buffer.from(payload).toString('base64')
        const g = groups.get(key) ?? { payload, peers: [] }
        g.peers.push(peer)
        groups.set(key, g)
      }
      for (const g of groups.values()) void ctx.sendTo(g.peers, g.payload).catch(() => {})
      return
    }
    case 'replay': {
      const old = history.get(action.fromRound)
      if (old === undefined) return // nothing kept for that round: silent
      remember(t, old)
      ctx.broadcast(old)
      return
    }
    case 'silent':
      return
    case 'crash':
      throw new ByzantineCrashError(ctx.self, t)
  }
}
