/**
 * Robust aggregation (ALGORITHMS.md §4): pure functions over Float32Array vectors, with no
 * knowledge of the network or of tfjs.
 *
 *   const agg = createAggregator({ rule: 'nnm+cwtm', f: 5 })
 *   const theta = agg.aggregate(received, { own: 0 })
 *
 * Rules (k inputs, f declared Byzantine; requirement in brackets):
 *   mean       plain average [k ≥ 1]
 *   cwmed      coordinate-wise median; even k averages the two middle values [k > 2f]
 *   cwtm       coordinate-wise trimmed mean, drops f largest and f smallest [k > 2f]
 *   meamed     coordinate-wise mean of the k − f values closest to the median [k > 2f]
 *   krum       the input with the least sum of squared distances to its k − f − 2 nearest [k > 2f + 2]
 *   multikrum  mean of the m (default k − f) best Krum scores [k > 2f + 2]
 *   gm         smoothed Weiszfeld, T = 3 steps, ν = 0.1, from the zero vector (option start:
 *              'zero' | 'mean' | 'cwmed') — the MoNNA authors' rfa.py settings [k > 2f]
 *   mda        mean of the size-(k − f) subset of least diameter; refuses (TooManySubsetsError)
 *              when C(k, f) > maxSubsets (default 1e6) [k > 2f]
 *   cc         centered clipping, τ = 10, L = 3, from v₀ = context.reference, else the own input
 *              (context.own), else the coordinate-wise median [k > 2f]
 *   cge        drops the f largest-norm inputs, averages the rest [k > 2f]
 *   ce         drops the f inputs farthest from context.reference (else the own input), averages
 *              the rest [k > 2f]
 *   nna        MoNNA: mean of the k − f inputs nearest context.own's vector, own included [k > 2f]
 *   nnm+<rule> every input replaced by the mean of its k − f nearest inputs (itself included),
 *              then <rule> [k > 2f and the rule's own]
 * Ties (equal distances or scores) go to the lower input index, so krum, multikrum, mda, nna,
 * ce, cge and nnm are order-invariant except between exactly tied inputs.
 *
 * Every call checks its inputs and throws a typed error (errors.ts) instead of returning a
 * wrong answer: different lengths, non-finite values, too few inputs for f, missing context.
 * The output is always a new array. Memory: the inputs plus O(d) work space (and O(k · 4096)
 * for the SIMD kernels, simd.ts), except `nnm+<rule>` for gm, cc, cge and ce (k new vectors,
 * O(k·d)) and the k × k distance matrix of the distance-based rules. nnm+krum, nnm+multikrum,
 * nnm+mda and nnm+nna never write the NNM vectors: their distances follow from the inputs'
 * (rules.ts, nnmDistances) and their output is one weighted mean of the inputs.
 * The hot loops run as WebAssembly SIMD kernels when the runtime has them (Node ≥ 16), with
 * plain-JS kernels computing the same quantities otherwise; `npm run bench:aggregate` measures.
 */
import { InvalidParameterError, TooFewInputsError, UnknownRuleError } from './errors.ts'
import { checkShapes } from './kernels.ts'
import { aggregationRules, type BaseRule, baseRules } from './rule-names.ts'
import { cc, ce, cge, coordinatewise, type GmStart, gm, krum, mda, mean, multikrum, nna, nnmByDistances, nnmCoordinatewise, nnmVectors, type Shared } from './rules.ts'

export { empiricalKappa, kappaBound, kappaLowerBound } from './bounds.ts'
export * from './errors.ts'
export { pairwiseSquaredDistances, squaredDistance } from './kernels.ts'

export interface AggregatorOptions {
  rule: string
  f: number
  [param: string]: unknown
}
export interface AggregationContext {
  /** index in `inputs` of the aggregating node's own vector (nna; cc's fallback centre) */
  own?: number
  /** the node's current model (ce, cc) */
  reference?: Float32Array
}
export interface Aggregator {
  readonly rule: string
  readonly f: number
  aggregate(inputs: Float32Array[], context?: AggregationContext): Float32Array
}

export { aggregationRules, type BaseRule, baseRules }

/** Documented parameter defaults per rule. */
export const defaultRuleParams = {
  /** ν and T from the MoNNA authors' RFA aggregator (LPD-EPFL/robust-collaborative-learning,
   *  aggregators/rfa.py: nu=0.1, T=3, started at the zero vector). */
  gm: { nu: 0.1, T: 3, start: 'zero' as GmStart },
  /** L = 3 as in the authors' centeredclip.py (L_iter=3). τ has no default there (required);
   *  10 is our choice for model vectors, (unverified) — set it to the honest spread you expect. */
  cc: { tau: 10, L: 3 },
  /** C(26,5) = 65,780 subsets take ~10 ms; C(50,10) ≈ 1e10 would take hours. */
  mda: { maxSubsets: 1_000_000 },
  /** m = k − f, the usual Multi-Krum choice (Blanchard et al. 2017; ByzFL). */
  multikrum: { m: undefined as number | undefined },
} as const

type ParamCheck = (v: unknown) => string | undefined
const positive: ParamCheck = (v) => (typeof v === 'number' && Number.isFinite(v) && v > 0 ? undefined : 'must be a finite number > 0')
const positiveInt: ParamCheck = (v) => (typeof v === 'number' && Number.isInteger(v) && v >= 1 ? undefined : 'must be an integer ≥ 1')
const paramChecks: Partial<Record<BaseRule, Record<string, ParamCheck>>> = {
  gm: {
    nu: positive,
    T: positiveInt,
    start: (v) => (v === 'zero' || v === 'mean' || v === 'cwmed' ? undefined : "must be 'zero', 'mean' or 'cwmed'"),
  },
  cc: { tau: positive, L: positiveInt },
  mda: { maxSubsets: positiveInt },
  multikrum: { m: (v) => (v === undefined ? undefined : positiveInt(v)) },
}

/** The requirement on (k, f) a rule states, and whether it holds. */
export function requirementOf(rule: BaseRule): { text: string; holds: (k: number, f: number) => boolean } {
  switch (rule) {
    case 'mean':
      return { text: 'k ≥ 1', holds: (k) => k >= 1 }
    case 'krum':
    case 'multikrum':
      return { text: 'k > 2f + 2', holds: (k, f) => k > 2 * f + 2 }
    default:
      return { text: 'k > 2f', holds: (k, f) => k > 2 * f }
  }
}

function parseRule(rule: unknown): { base: BaseRule; nnm: boolean } {
  if (typeof rule !== 'string') throw new UnknownRuleError(String(rule), aggregationRules)
  const nnm = rule.startsWith('nnm+')
  const base = nnm ? rule.slice(4) : rule
  if (!(baseRules as readonly string[]).includes(base)) throw new UnknownRuleError(rule, aggregationRules)
  return { base: base as BaseRule, nnm }
}

export function createAggregator(opts: AggregatorOptions): Aggregator {
  const { rule, f, ...rest } = opts
  // a parameter given as undefined is absent (config objects often carry such keys)
  const given = Object.fromEntries(Object.entries(rest).filter(([, v]) => v !== undefined))
  const { base, nnm } = parseRule(rule)
  if (typeof f !== 'number' || !Number.isInteger(f) || f < 0) {
    throw new InvalidParameterError(rule, 'f', `must be an integer ≥ 0 (the number of Byzantine inputs tolerated), got ${String(f)}`)
  }
  const checks = paramChecks[base] ?? {}
  for (const [name, value] of Object.entries(given)) {
    const check = checks[name]
    if (check === undefined) {
      const known = Object.keys(checks)
      throw new InvalidParameterError(rule, name, `is unknown to ${base}${known.length > 0 ? `; known: ${known.join(', ')}` : ' (it takes no parameters)'}`)
    }
    const problem = check(value)
    if (problem !== undefined) throw new InvalidParameterError(rule, name, `${problem}, got ${String(value)}`)
  }
  const params = { ...(defaultRuleParams as Record<string, object>)[base], ...given } as Record<string, unknown>
  const req = requirementOf(base)

  const aggregate = (inputs: Float32Array[], context: AggregationContext = {}): Float32Array => {
    const k = inputs.length
    if (!req.holds(k, f)) throw new TooFewInputsError(rule, k, f, req.text)
    if (nnm && !(k > 2 * f)) throw new TooFewInputsError(rule, k, f, 'k > 2f')
    checkShapes(rule, inputs, context.reference)
    const own = context.own
    if (own !== undefined && !(Number.isInteger(own) && own >= 0 && own < k)) {
      throw new InvalidParameterError(rule, 'context.own', `must be an index into inputs (0..${k - 1}), got ${own}`)
    }
    const shared: Shared = {}
    if (nnm) {
      if (base === 'mean' || base === 'cwmed' || base === 'cwtm' || base === 'meamed') return nnmCoordinatewise(rule, inputs, f, base, shared)
      if (base === 'krum' || base === 'multikrum' || base === 'mda' || base === 'nna') {
        const m = params.m as number | undefined
        if (base === 'multikrum' && m !== undefined && m > k) {
          throw new InvalidParameterError(rule, 'm', `must be ≤ k = ${k} (the number of inputs), got ${m}`)
        }
        return nnmByDistances(rule, inputs, f, base, { m, maxSubsets: params.maxSubsets as number | undefined, own }, shared)
      }
      const mixed = nnmVectors(rule, inputs, f, shared)
      return apply(base, mixed, context, {})
    }
    return apply(base, inputs, context, shared)
  }

  const apply = (r: BaseRule, inputs: Float32Array[], ctx: AggregationContext, shared: Shared): Float32Array => {
    switch (r) {
      case 'mean':
        return mean(rule, inputs)
      case 'cwmed':
      case 'cwtm':
      case 'meamed':
        return coordinatewise(rule, inputs, f, r)
      case 'krum':
        return krum(rule, inputs, f, shared)
      case 'multikrum': {
        const m = params.m as number | undefined
        if (m !== undefined && m > inputs.length) {
          throw new InvalidParameterError(rule, 'm', `must be ≤ k = ${inputs.length} (the number of inputs), got ${m}`)
        }
        return multikrum(rule, inputs, f, m, shared)
      }
      case 'gm':
        return gm(rule, inputs, f, params.nu as number, params.T as number, params.start as GmStart)
      case 'mda':
        return mda(rule, inputs, f, params.maxSubsets as number, shared)
      case 'cc':
        return cc(rule, inputs, f, params.tau as number, params.L as number, ctx)
      case 'cge':
        return cge(rule, inputs, f)
      case 'ce':
        return ce(rule, inputs, f, ctx)
      case 'nna':
        return nna(rule, inputs, f, ctx.own, shared)
    }
  }

  return { rule, f, aggregate }
}
