/**
 * Byzantine vector attacks (ALGORITHMS.md §5): pure functions of one round's honest vectors
 * (and, for the optimal variants, of the rule under attack). `craft` returns the vector every
 * Byzantine member sends this round; randomness comes only from `ctx.rng`.
 *
 * μ = coordinate-wise mean of the honest vectors, σ = their coordinate-wise standard
 * deviation (unbiased, h − 1 in the denominator; 0 when h = 1), both accumulated in Float64.
 * Label-flip is a data transformation applied by the learning core, not a vector attack.
 */

import { InvalidParameterError, MissingContextError, TooFewInputsError, UnknownRuleError } from '../aggregation/errors.ts'
import type { AggregationContext, Aggregator } from '../aggregation/index.ts'
import { firstNonFinite } from '../aggregation/kernels.ts'
import type { Rng } from '../rng.ts'
import { alieZ } from './normal.ts'

export { alieZ, normalQuantile } from './normal.ts'

export interface AttackContext {
  /** the round's honest vectors (the rushing adversary sees them all) */
  honest: Float32Array[]
  /** swarm size and Byzantine count */
  n: number
  f: number
  rng: Rng
  /** the rule under attack (optimal-alie, optimal-foe) */
  aggregator?: Aggregator
  /** the targeted honest node's own vector (its centre for nna/cc/ce); may be one of `honest` */
  own?: Float32Array
}
export interface Attack {
  readonly kind: string
  craft(ctx: AttackContext): Float32Array
}

export const attackKinds: readonly string[] = ['sign-flip', 'alie', 'foe', 'ipm', 'optimal-alie', 'optimal-foe', 'mimic', 'gaussian', 'non-finite']

/** Documented defaults. */
export const defaultAttackParams = {
  /** 'auto' = z from (n, f) as in Baruch et al. 2019; ByzFL uses a fixed z = 1.5. */
  alie: { z: 'auto' as number | 'auto' },
  /** ε = 0.1, the "fall of empires" setting of ALGORITHMS.md §5 (Xie, Koyejo & Gupta 2019). */
  foe: { epsilon: 0.1 },
  /** ε = 1, the default of the MoNNA authors' attacks/empire.py (same paper, larger ε). */
  ipm: { epsilon: 1 },
  /** 16 aggregator evaluations per round (our choice; each costs one aggregation of h + f vectors). */
  'optimal-alie': { evals: 16 },
  'optimal-foe': { evals: 16 },
  /** copy honest vector 0 (the order of `ctx.honest` is the caller's). */
  mimic: { target: 0 },
  /** std 200: far outside the scale of any honest model or gradient (our choice); mean 0. */
  gaussian: { std: 200, mean: 0 },
  /** every coordinate NaN; `coordinates: n` poisons up to n random coordinates, `value` picks NaN/±∞/a mix. */
  'non-finite': { value: 'nan' as 'nan' | 'inf' | '-inf' | 'mixed', coordinates: 'all' as number | 'all' },
} as const

type Check = (v: unknown) => string | undefined
const finiteNumber: Check = (v) => (typeof v === 'number' && Number.isFinite(v) ? undefined : 'must be a finite number')
const nonNegative: Check = (v) => (typeof v === 'number' && Number.isFinite(v) && v >= 0 ? undefined : 'must be a finite number ≥ 0')
const positiveInt: Check = (v) => (typeof v === 'number' && Number.isInteger(v) && v >= 1 ? undefined : 'must be an integer ≥ 1')
const checks: Record<string, Record<string, Check>> = {
  'sign-flip': {},
  alie: { z: (v) => (v === 'auto' ? undefined : finiteNumber(v) && "must be a finite number or 'auto'") },
  foe: { epsilon: finiteNumber },
  ipm: { epsilon: finiteNumber },
  'optimal-alie': { evals: positiveInt },
  'optimal-foe': { evals: positiveInt },
  mimic: { target: (v) => (typeof v === 'number' && Number.isInteger(v) && v >= 0 ? undefined : 'must be an integer ≥ 0') },
  gaussian: { std: nonNegative, mean: finiteNumber },
  'non-finite': {
    value: (v) => (v === 'nan' || v === 'inf' || v === '-inf' || v === 'mixed' ? undefined : "must be 'nan', 'inf', '-inf' or 'mixed'"),
    coordinates: (v) => (v === 'all' ? undefined : positiveInt(v) && "must be an integer ≥ 1 or 'all'"),
  },
}

/** μ and σ of the honest vectors, Float64. */
export function honestStats(honest: readonly Float32Array[]): { mean: Float64Array; std: Float64Array } {
  if (honest.length === 0) throw new TooFewInputsError('attack', 0, 0, 'at least one honest vector')
  const h = honest.length
  const d = honest[0].length
  const mean = new Float64Array(d)
  const std = new Float64Array(d)
  for (const x of honest) for (let c = 0; c < d; c++) mean[c] += x[c]
  for (let c = 0; c < d; c++) mean[c] /= h
  if (h > 1) {
    for (const x of honest) {
      for (let c = 0; c < d; c++) {
        const t = x[c] - mean[c]
        std[c] += t * t
      }
    }
    for (let c = 0; c < d; c++) std[c] = Math.sqrt(std[c] / (h - 1))
  }
  return { mean, std }
}

/** a·μ + b·σ coordinate-wise, the family every vector attack here belongs to. */
function combine(mean: Float64Array, std: Float64Array, a: number, b: number): Float32Array {
  const out = new Float32Array(mean.length)
  for (let c = 0; c < mean.length; c++) out[c] = a * mean[c] + b * std[c]
  return out
}

/**
 * Maximises g over x ≥ 0 with `evals` evaluations: doubling from x = 1 while g grows (at most
 * half the budget), then golden-section search in the bracket around the best point.
 * Returns the best x evaluated (ties: the first). Deterministic.
 */
export function lineMaximize(g: (x: number) => number, evals: number): { x: number; value: number } {
  let used = 0
  let bestX = 1
  let bestV = Number.NEGATIVE_INFINITY
  const evalAt = (x: number): number => {
    used++
    const v = g(x)
    if (v > bestV) {
      bestV = v
      bestX = x
    }
    return v
  }
  let x = 1
  let prev = evalAt(x)
  const expandBudget = Math.max(1, Math.floor(evals / 2))
  while (used < expandBudget) {
    const v = evalAt(2 * x)
    if (!(v > prev)) break
    x *= 2
    prev = v
  }
  let lo = bestX === 1 ? 0 : bestX / 2
  let hi = bestX * 2
  const phi = (Math.sqrt(5) - 1) / 2
  let x1 = hi - phi * (hi - lo)
  let x2 = lo + phi * (hi - lo)
  let v1 = used < evals ? evalAt(x1) : Number.NEGATIVE_INFINITY
  let v2 = used < evals ? evalAt(x2) : Number.NEGATIVE_INFINITY
  while (used < evals) {
    if (v1 >= v2) {
      hi = x2
      x2 = x1
      v2 = v1
      x1 = hi - phi * (hi - lo)
      v1 = evalAt(x1)
    } else {
      lo = x1
      x1 = x2
      v1 = v2
      x2 = lo + phi * (hi - lo)
      v2 = evalAt(x2)
    }
  }
  return { x: bestX, value: bestV }
}

/** Squared distance between the attacked aggregate and the honest mean, for a crafted vector. */
export function attackedDeviation(ctx: AttackContext, aggregator: Aggregator, byz: Float32Array, mean: Float64Array): number {
  // a candidate that overflowed (a large factor on large models) is refused by every honest
  // member as non-finite: worth nothing, and never the search's answer
  if (firstNonFinite(byz) >= 0) return Number.NEGATIVE_INFINITY
  const inputs: Float32Array[] = []
  // the targeted node's view: its own vector (prepended when not among ctx.honest) is both
  // nna's `own` and the reference of ce/cc; without ctx.own the target is honest[0]
  const own = ctx.own ?? ctx.honest[0]
  const at = ctx.honest.indexOf(own)
  if (at < 0) inputs.push(own)
  const context: AggregationContext = { own: Math.max(at, 0), reference: own }
  inputs.push(...ctx.honest)
  for (let i = 0; i < ctx.f; i++) inputs.push(byz)
  const out = aggregator.aggregate(inputs, context)
  let s = 0
  for (let c = 0; c < out.length; c++) {
    const t = out[c] - mean[c]
    s += t * t
  }
  return s
}

export function createAttack(opts: { kind: string; [param: string]: unknown }): Attack {
  const { kind, ...rest } = opts
  const given = Object.fromEntries(Object.entries(rest).filter(([, v]) => v !== undefined))
  const known = checks[kind]
  if (known === undefined) throw new UnknownRuleError(String(kind), attackKinds, 'attack')
  for (const [name, value] of Object.entries(given)) {
    const check = known[name]
    if (check === undefined) {
      const names = Object.keys(known)
      throw new InvalidParameterError(kind, name, `is unknown to ${kind}${names.length > 0 ? `; known: ${names.join(', ')}` : ' (it takes no parameters)'}`)
    }
    const problem = check(value)
    if (problem !== undefined) throw new InvalidParameterError(kind, name, `${problem}, got ${String(value)}`)
  }
  const defaults = (defaultAttackParams as Record<string, object>)[kind] ?? {}
  const p = { ...defaults, ...given } as Record<string, unknown>

  const craft = (ctx: AttackContext): Float32Array => {
    switch (kind) {
      case 'sign-flip': {
        const { mean, std } = honestStats(ctx.honest)
        return combine(mean, std, -1, 0)
      }
      case 'alie': {
        const { mean, std } = honestStats(ctx.honest)
        const z = p.z === 'auto' ? alieZ(ctx.n, ctx.f) : (p.z as number)
        if (!Number.isFinite(z)) {
          throw new InvalidParameterError(kind, 'z', `from (n = ${ctx.n}, f = ${ctx.f}) is not finite; give a fixed z (e.g. 1.5)`)
        }
        return combine(mean, std, 1, -z)
      }
      case 'foe':
      case 'ipm': {
        const { mean, std } = honestStats(ctx.honest)
        return combine(mean, std, -(p.epsilon as number), 0)
      }
      case 'optimal-alie':
      case 'optimal-foe': {
        const aggregator = ctx.aggregator
        if (aggregator === undefined) throw new MissingContextError(kind, 'aggregator', `${kind} searches against a rule: pass ctx.aggregator`)
        const { mean, std } = honestStats(ctx.honest)
        const family = kind === 'optimal-alie' ? (x: number) => combine(mean, std, 1, -x) : (x: number) => combine(mean, std, -x, 0)
        const best = lineMaximize((x) => attackedDeviation(ctx, aggregator, family(x), mean), p.evals as number)
        return family(best.x)
      }
      case 'mimic': {
        const target = p.target as number
        if (target >= ctx.honest.length) {
          throw new InvalidParameterError(kind, 'target', `must be < ${ctx.honest.length} (the number of honest vectors), got ${target}`)
        }
        return Float32Array.from(ctx.honest[target])
      }
      case 'gaussian': {
        const d = ctx.honest[0].length
        const out = new Float32Array(d)
        const std = p.std as number
        const m = p.mean as number
        for (let c = 0; c < d; c++) out[c] = m + std * ctx.rng.normal()
        return out
      }
      default: {
        // non-finite
        const d = ctx.honest[0].length
        const out = Float32Array.from(ctx.honest[0])
        const values = p.value === 'nan' ? [Number.NaN] : p.value === 'inf' ? [Number.POSITIVE_INFINITY] : p.value === '-inf' ? [Number.NEGATIVE_INFINITY] : [Number.NaN, Number.POSITIVE_INFINITY, Number.NEGATIVE_INFINITY]
        if (p.coordinates === 'all') {
          for (let c = 0; c < d; c++) out[c] = values[c % values.length]
        } else {
          const count = Math.min(d, p.coordinates as number)
          // up to `count` distinct coordinates (random draws may repeat)
          for (let t = 0; t < count; t++) out[ctx.rng.int(d)] = values[t % values.length]
        }
        return out
      }
    }
  }
  return { kind, craft }
}
