/**
 * Byzantine behaviours (ALGORITHMS §5) as `ByzantineBehaviour` plug-ins for the real node
 * engine (contract §5a). A Byzantine member runs the honest code path — it trains, echoes and
 * delivers like everyone else — and this plug-in decides, each round, what it broadcasts.
 *
 * Vector attacks (sign-flip, alie, foe, ipm, optimal-*, mimic, gaussian, non-finite) are the
 * aggregation helper's `createAttack` kinds; here they become RUSHING behaviours: the member
 * first waits for this round's honest models (`ctx.honest()`, by default until n − r − f are
 * visible), then crafts its vector from them. Its own honest-looking half step is counted
 * among the honest samples (it trained on real data).
 *
 * Protocol-level behaviours: label-flip (trains on y → K−1−y through the node's `labelFlip`
 * option and sends its half step as if honest), equivocate (different models to different
 * members in the same round), silent, crash at a round, late (always sends after a delay),
 * replay (re-sends an older round's payload), malformed (raw bytes that are not a model).
 */
import type { Aggregator } from '../aggregation/index.ts'
import { createAggregator } from '../aggregation/index.ts'
import { firstNonFinite } from '../aggregation/kernels.ts'
import { createAttack } from '../attacks/index.ts'
import { encodeFrame } from '../broadcast/wire.ts'
import { InvalidConfigError } from '../errors.ts'
import type { ByzantineContext } from '../node/behaviour.ts'
import { registerBehaviour } from '../node/behaviour.ts'
import { encodedBytes, encodeModel } from '../node/payload.ts'
import { type ActingBehaviour, actingBehaviour, type ByzantineAction } from './actions.ts'
import { type BehaviourName, behaviourNames } from './schema.ts'

export type BehaviourParams = { behaviour: string } & Record<string, unknown>

/** Behaviours whose node must train on flipped labels. */
export function needsLabelFlip(params: { behaviour: string }): boolean {
  return params.behaviour === 'label-flip'
}

const vectorAttacks: Partial<Record<BehaviourName, string>> = {
  'sign-flip': 'sign-flip',
  alie: 'alie',
  foe: 'foe',
  ipm: 'ipm',
  'optimal-alie': 'optimal-alie',
  'optimal-foe': 'optimal-foe',
  mimic: 'mimic',
  gaussian: 'gaussian',
  'non-finite': 'non-finite',
}

function num(params: Record<string, unknown>, key: string, fallback: number, where: string): number {
  const v = params[key]
  if (v === undefined) return fallback
  if (typeof v !== 'number' || !Number.isFinite(v)) throw new InvalidConfigError(`${where}.${key}`, `expected a number, got ${JSON.stringify(v)}`)
  return v
}

/** A parameter listing member indices (0 … n − 1; the range is the node's to check: it knows n). */
function memberIndices(params: Record<string, unknown>, key: string, where: string): Set<number> | undefined {
  const v = params[key]
  if (v === undefined) return undefined
  if (!Array.isArray(v) || !v.every((i) => Number.isInteger(i) && i >= 0)) {
    throw new InvalidConfigError(`${where}.${key}`, `expected a list of member indices (integers ≥ 0), got ${JSON.stringify(v)}`)
  }
  return new Set(v as number[])
}

/** Attack parameters = the behaviour's parameters minus the ones the behaviour itself uses. */
function attackParams(params: Record<string, unknown>): Record<string, unknown> {
  const own = new Set(['behaviour', 'members', 'waitFor', 'aggregator', 'attack', 'delayMs', 'lag', 'atRound', 'bytes', 'ahead', 'streams', 'holdMs', 'bytesPerSecond', 'crafted'])
  return Object.fromEntries(Object.entries(params).filter(([k]) => !own.has(k)))
}

/**
 * The rushing wait: this round's honest models, plus our own honest-looking half step.
 * `waitFor` (default n − r − f, the contract default; n − 2f when r = f) is how many other models to wait for.
 */
async function observe(ctx: ByzantineContext, waitFor: number | undefined): Promise<Float32Array[]> {
  const seen = await ctx.honest(waitFor === undefined ? {} : { min: waitFor })
  return ownUsable(ctx) ? [...seen, ctx.ownHalfStep] : seen
}

/** Whether the member's own half step is finite (a simulated attacker's own training may diverge: it then attacks from the others' models alone). */
function ownUsable(ctx: ByzantineContext): boolean {
  return firstNonFinite(ctx.ownHalfStep) < 0
}

function vectorCrafter(kind: string, params: Record<string, unknown>, where: string): (ctx: ByzantineContext) => Promise<Float32Array> {
  const attack = createAttack({ kind, ...attackParams(params) })
  let aggregator: Aggregator | undefined
  const aggParams = params.aggregator
  if (aggParams !== undefined) {
    if (typeof aggParams !== 'object' || aggParams === null || typeof (aggParams as { rule?: unknown }).rule !== 'string') {
      throw new InvalidConfigError(`${where}.aggregator`, 'expected an aggregator object with a rule (the swarm’s rule, for the optimal-* attacks)')
    }
  }
  const waitFor = params.waitFor === undefined ? undefined : num(params, 'waitFor', 0, where)
  return async (ctx) => {
    const honest = await observe(ctx, waitFor)
    if (aggParams !== undefined && aggregator === undefined) {
      aggregator = createAggregator({ f: ctx.f, ...(aggParams as { rule: string }) })
    }
    return attack.craft({
      honest: kind === 'mimic' && honest.length > 1 ? honest.slice(0, -1) : honest,
      n: ctx.members.length,
      f: ctx.f,
      rng: ctx.rng,
      ...(ownUsable(ctx) ? { own: ctx.ownHalfStep } : {}),
      ...(aggregator === undefined ? {} : { aggregator }),
    })
  }
}

/**
 * Creates the behaviour named by `params.behaviour` with its parameters:
 * - vector attacks: the attack's own parameters (e.g. `z` for alie, `epsilon` for foe/ipm,
 *   `std` for gaussian), `waitFor` (models to wait for, default n − r − f) and, for optimal-*,
 *   `aggregator` (the swarm's rule; the runner fills it in);
 * - `equivocate`: `attack` (default sign-flip) crafted for half of the members, its honest
 *   half step for the other half; `crafted` (member indices) names the members that get the
 *   crafted version (default: every other member, 0, 2, 4, …);
 * - `crash`: `atRound` (default 5); `late`: `delayMs` (default 2000) and optional `attack`;
 * - `replay`: `lag` rounds back (default 1); `malformed`: `bytes` (default 64).
 *
 * Protocol-level behaviours play frames of the signed echo broadcast itself with the adversary
 * toolkit on the member's own node and key (libp2p only; on a test double of the broadcast they fall back to their
 * model): `round-ahead` (`ahead`, default 4: a certified broadcast that many rounds ahead, every
 * round, to everyone), `flood` (`streams`, default 16, `holdMs` 5000: full-size SENDs for rounds
 * ahead cut off halfway and held open), `slow` (`bytesPerSecond`, default 1024: its SENDs
 * trickled), `withhold-final` (its FINAL to one member only). The first three take an optional
 * `attack` (a vector attack for the model it sends in its own round).
 */
export function createTopologyBehaviour(params: BehaviourParams, where = 'byzantine'): ActingBehaviour {
  const name = params.behaviour
  if (!(behaviourNames as readonly string[]).includes(name)) {
    throw new InvalidConfigError(`${where}.behaviour`, `unknown behaviour ${JSON.stringify(name)}; use one of ${behaviourNames.join(', ')}`)
  }
  const b = name as BehaviourName
  const attackKind = vectorAttacks[b]
  if (attackKind !== undefined) {
    const craft = vectorCrafter(attackKind, params, where)
    return actingBehaviour(name, async (ctx) => ({ kind: 'send', model: await craft(ctx) }))
  }
  switch (b) {
    case 'honest':
    case 'label-flip':
      return actingBehaviour(name, async (ctx) => ({ kind: 'send', model: ctx.ownHalfStep }))
    case 'silent':
      return actingBehaviour(name, async () => ({ kind: 'silent' }))
    case 'crash': {
      const atRound = num(params, 'atRound', 5, where)
      return actingBehaviour(name, async (ctx) => (ctx.round >= atRound ? { kind: 'crash' } : { kind: 'send', model: ctx.ownHalfStep }))
    }
    case 'late': {
      const delayMs = num(params, 'delayMs', 2000, where)
      const inner = typeof params.attack === 'string' ? vectorCrafter(params.attack, params, where) : undefined
      return actingBehaviour(name, async (ctx) => ({ kind: 'send', model: inner === undefined ? ctx.ownHalfStep : await inner(ctx), delayMs }))
    }
    case 'replay': {
      const lag = Math.max(1, Math.floor(num(params, 'lag', 1, where)))
      return actingBehaviour(name, async (ctx): Promise<ByzantineAction> =>
          ctx.round < lag ? { kind: 'send', model: ctx.ownHalfStep } : { kind: 'replay', fromRound: ctx.round - lag })
    }
    case 'malformed': {
      const bytes = Math.max(1, Math.floor(num(params, 'bytes', 64, where)))
      return actingBehaviour(name, async (ctx) => {
          const payload = new Uint8Array(bytes)
          for (let i = 0; i < bytes; i++) payload[i] = ctx.rng.int(256)
          return { kind: 'send-raw', payload }
        })
    }
    case 'equivocate': {
      const craft = vectorCrafter(typeof params.attack === 'string' ? params.attack : 'sign-flip', params, where)
      const crafted = memberIndices(params, 'crafted', where)
      return actingBehaviour(name, async (ctx) => {
          const bad = await craft(ctx)
          const models = new Map<string, Float32Array>()
          // By default alternate along the member list, so every honest member is targeted by some version.
          ctx.members.forEach((m, i) => {
            if (m !== ctx.self) models.set(m, (crafted === undefined ? i % 2 === 0 : crafted.has(i)) ? bad : ctx.ownHalfStep)
          })
          return { kind: 'equivocate', models }
        })
    }
    case 'round-ahead': {
      // a certified broadcast `ahead` rounds beyond the current one, every round, to everyone:
      // honest members echo it (it is inside their window) but it is evidence of one member only
      const ahead = Math.max(1, Math.floor(num(params, 'ahead', 4, where)))
      const inner = typeof params.attack === 'string' ? vectorCrafter(params.attack, params, where) : undefined
      return actingBehaviour(name, async (ctx) => {
          const model = inner === undefined ? ctx.ownHalfStep : await inner(ctx)
          const adv = ctx.adversary
          if (adv !== undefined) {
            background(ctx, async (signal) => {
              const others = ctx.members.filter((m) => m !== ctx.self)
              const { final } = await adv.collect(others, ctx.round + ahead, encodeModel(model, ctx.encoding))
              if (final === undefined) return
              await adv.publish(encodeFrame(final)).catch(() => {})
              await Promise.allSettled(others.map((p) => adv.exchange(p, [final], { signal })))
            })
          }
          return { kind: 'send', model }
        })
    }
    case 'flood': {
      // every round, `streams` SENDs of full-size models for rounds ahead, each cut off halfway and
      // held open for `holdMs`: memory the honest members must not give away beyond their budget
      const streams = Math.max(1, Math.floor(num(params, 'streams', 16, where)))
      const holdMs = num(params, 'holdMs', 5000, where)
      const inner = typeof params.attack === 'string' ? vectorCrafter(params.attack, params, where) : undefined
      return actingBehaviour(name, async (ctx) => {
          const model = inner === undefined ? ctx.ownHalfStep : await inner(ctx)
          const adv = ctx.adversary
          if (adv !== undefined) {
            background(ctx, async (signal) => {
              const others = ctx.members.filter((m) => m !== ctx.self)
              const junk = new Uint8Array(encodedBytes(model.length, ctx.encoding))
              for (let i = 0; i < junk.length; i += 4096) junk[i] = ctx.rng.int(256)
              const held = await Promise.allSettled(
                Array.from({ length: streams }, async (_, k) => {
                  const bytes = encodeFrame(adv.sendFrame(ctx.round + 1 + (k % 8), junk))
                  return (await adv.exchange(others[k % others.length]!, [bytes.subarray(0, bytes.length >> 1)], { holdOpen: true, signal })).stream
                }),
              )
              await sleep(holdMs, signal).catch(() => {})
              for (const h of held) if (h.status === 'fulfilled') h.value.abort(new Error('flood over'))
            })
          }
          return { kind: 'send', model }
        })
    }
    case 'slow': {
      // its own model trickled to every member at `bytesPerSecond`: streams held, never certified
      const bytesPerSecond = Math.max(1, Math.floor(num(params, 'bytesPerSecond', 1024, where)))
      return actingBehaviour(name, async (ctx) => {
          const adv = ctx.adversary
          if (adv !== undefined) {
            background(ctx, async (signal) => {
              const frame = adv.sendFrame(ctx.round, encodeModel(ctx.ownHalfStep, ctx.encoding))
              const chunk = Math.max(1, Math.floor(bytesPerSecond / 4))
              await Promise.allSettled(ctx.members.filter((m) => m !== ctx.self).map((p) => adv.exchange(p, [frame], { chunkBytes: chunk, intervalMs: 250, signal })))
            })
          }
          return { kind: 'silent' }
        })
    }
    case 'withhold-final': {
      // a SEND to everyone, but the FINAL only to one member (not published): the others must
      // recover the certificate (QUERY) or go on without this model
      const inner = typeof params.attack === 'string' ? vectorCrafter(params.attack, params, where) : undefined
      return actingBehaviour(name, async (ctx) => {
          const model = inner === undefined ? ctx.ownHalfStep : await inner(ctx)
          const adv = ctx.adversary
          if (adv === undefined) return { kind: 'send', model }
          const others = ctx.members.filter((m) => m !== ctx.self)
          background(ctx, () => adv.sendTo(others, ctx.round, encodeModel(model, ctx.encoding), { finalTo: [others[ctx.round % others.length]!] }))
          return { kind: 'silent' }
        })
    }
    default:
      throw new InvalidConfigError(`${where}.behaviour`, `behaviour ${name} has no implementation`)
  }
}

/** Runs a protocol-level attack beside the round (ends with the run; failures are the attack's own). */
function background(ctx: ByzantineContext, task: (signal: AbortSignal) => Promise<unknown>): void {
  const signal = ctx.signal === undefined ? AbortSignal.timeout(120_000) : AbortSignal.any([ctx.signal, AbortSignal.timeout(120_000)])
  void task(signal).catch(() => {})
}

function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    const t = setTimeout(resolve, ms)
    signal.addEventListener(
      'abort',
      () => {
        clearTimeout(t)
        reject(signal.reason)
      },
      { once: true },
    )
  })
}

let registered = false

/** Registers every behaviour with the node's behaviour registry (idempotent), so node configs can name them. */
export function registerStandardBehaviours(): void {
  if (registered) return
  registered = true
  for (const name of behaviourNames) {
    registerBehaviour(name, (params: Record<string, unknown>) => createTopologyBehaviour({ ...params, behaviour: name }))
  }
}
