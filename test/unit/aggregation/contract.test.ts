/**
 * The contract every aggregation rule must honour (ALGORITHMS.md §4): identity on identical
 * inputs, order invariance, the rule's promised bound when f inputs are Byzantine (huge,
 * arbitrary, or crafted by every attack of §5), and a typed error for every bad input.
 */
import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import {
  type AggregationContext,
  type Aggregator,
  aggregationRules,
  createAggregator,
  DimensionMismatchError,
  empiricalKappa,
  InvalidParameterError,
  kappaBound,
  kappaLowerBound,
  MissingContextError,
  NonFiniteInputError,
  TooFewInputsError,
  TooManySubsetsError,
  UnknownRuleError,
} from '../../../src/aggregation/index.ts'
import { attackKinds, createAttack } from '../../../src/attacks/index.ts'
import { Rng } from '../../../src/rng.ts'

const K = 13
const F = 3
const DIM = 40
/** cc's τ for these tests: about one honest spread (honest vectors are N(centre, 1) per coordinate). */
const TAU = 2
const L = 3

function honestSet(rng: Rng, h: number, d: number): Float32Array[] {
  const centre = Float32Array.from({ length: d }, () => 5 + rng.normal())
  return Array.from({ length: h }, () => Float32Array.from(centre, (c) => c + rng.normal()))
}

function make(rule: string, f = F): Aggregator {
  return createAggregator(rule.endsWith('cc') ? { rule, f, tau: TAU, L } : { rule, f })
}

function norm(a: ArrayLike<number>, b?: ArrayLike<number>): number {
  let s = 0
  for (let i = 0; i < a.length; i++) {
    const t = a[i] - (b === undefined ? 0 : b[i])
    s += t * t
  }
  return Math.sqrt(s)
}

function meanOf(xs: readonly Float32Array[]): Float64Array {
  const m = new Float64Array(xs[0].length)
  for (const x of xs) for (let c = 0; c < m.length; c++) m[c] += x[c] / xs.length
  return m
}

function assertClose(actual: Float32Array, expected: ArrayLike<number>, tol: number, what: string): void {
  assert.equal(actual.length, expected.length, what)
  for (let c = 0; c < actual.length; c++) {
    const scale = Math.max(1, Math.abs(expected[c]))
    assert.ok(Math.abs(actual[c] - expected[c]) <= tol * scale, `${what}: coordinate ${c}: ${actual[c]} vs ${expected[c]}`)
  }
}

/** Byzantine inputs of every kind the suite throws at each rule. */
function byzantineSets(rule: string, honest: Float32Array[], rng: Rng): { name: string; byz: Float32Array[] }[] {
  const d = honest[0].length
  const sets: { name: string; byz: Float32Array[] }[] = [
    { name: 'huge', byz: Array.from({ length: F }, (_, i) => new Float32Array(d).fill(i % 2 === 0 ? 1e30 : -1e30)) },
    { name: 'arbitrary', byz: Array.from({ length: F }, () => Float32Array.from({ length: d }, () => (rng.next() - 0.5) * 2e4)) },
    { name: 'near-honest-edge', byz: Array.from({ length: F }, () => Float32Array.from(honest[0], (v) => v + 3)) },
  ]
  for (const kind of attackKinds) {
    if (kind === 'non-finite') continue
    const params = kind.startsWith('optimal') ? { kind, evals: 6 } : { kind }
    const attack = createAttack(params)
    const aggregator = kind.startsWith('optimal') ? make(rule) : undefined
    const v = attack.craft({ honest, n: K, f: F, rng: rng.fork(kind), aggregator, own: honest[0] })
    sets.push({ name: kind, byz: Array.from({ length: F }, () => v) })
  }
  return sets
}

/** The rule's own promise, beyond κ. Returns a failure message or undefined. */
function promise(rule: string, out: Float32Array, honest: Float32Array[], inputs: Float32Array[], attack: string): string | undefined {
  const d = out.length
  const mu = meanOf(honest)
  const base = rule.startsWith('nnm+') ? undefined : rule
  if (base === 'cwtm' || base === 'cwmed' || base === 'meamed') {
    for (let c = 0; c < d; c++) {
      let lo = Number.POSITIVE_INFINITY
      let hi = Number.NEGATIVE_INFINITY
      for (const x of honest) {
        lo = Math.min(lo, x[c])
        hi = Math.max(hi, x[c])
      }
      // meamed: within the honest range widened by its width (see meamedColumn; the strict range can fail)
      const slack = base === 'meamed' ? hi - lo : 0
      if (out[c] < lo - slack - 1e-4 || out[c] > hi + slack + 1e-4) return `coordinate ${c} = ${out[c]} outside honest range [${lo}, ${hi}] ± ${slack}`
    }
  }
  if (base === 'krum') {
    const pick = inputs.findIndex((x) => norm(x, out) === 0)
    if (pick < 0) return 'krum output is not one of its inputs'
    const far = ['huge', 'arbitrary', 'gaussian', 'sign-flip', 'ipm'].includes(attack)
    if (far && pick >= honest.length) return `krum picked Byzantine input ${pick} against ${attack}`
  }
  if (base === 'nna') {
    const radius = Math.max(...honest.map((x) => norm(x, honest[0])))
    if (norm(out, honest[0]) > radius * (1 + 1e-5)) return 'nna output farther from own than the farthest honest input'
  }
  if (base === 'ce') {
    const radius = Math.max(...honest.map((x) => norm(x, honest[0])))
    if (norm(out, honest[0]) > radius * (1 + 1e-5)) return 'ce output farther from the reference than the farthest honest input'
  }
  if (base === 'cge') {
    const radius = Math.max(...honest.map((x) => norm(x)))
    if (norm(out) > radius * (1 + 1e-5)) return 'cge output norm above the largest honest norm'
  }
  if (base === 'cc') {
    if (norm(out, honest[0]) > L * TAU * (1 + 1e-5)) return `cc moved ${norm(out, honest[0])} > L·τ from v0`
  }
  if (base === 'mda') {
    let diameter = 0
    for (const a of honest) for (const b of honest) diameter = Math.max(diameter, norm(a, b))
    if (norm(out, mu) > 2 * diameter) return 'mda output farther than 2·diam(honest) from the honest mean'
  }
  return undefined
}

const ctxFor = (honest: Float32Array[]): AggregationContext => ({ own: 0, reference: honest[0] })

describe('aggregation contract', () => {
  it('lists every base rule and its nnm+ composition', () => {
    for (const r of ['mean', 'cwmed', 'cwtm', 'meamed', 'krum', 'multikrum', 'gm', 'mda', 'cc', 'cge', 'ce', 'nna', 'nnm+cwtm', 'nnm+krum']) {
      assert.ok(aggregationRules.includes(r), r)
    }
  })

  it('every attack leaves the honest models and the own model it is handed untouched', () => {
    for (const kind of attackKinds) {
      for (const d of [DIM, 50_000]) {
        const rng = new Rng(`readonly-attack/${kind}/${d}`)
        const honest = honestSet(rng, K - F, d)
        const own = Float32Array.from(honest[0], (v) => v + 0.5)
        const before = honest.map((x) => Float32Array.from(x))
        const ownBefore = Float32Array.from(own)
        const params = kind.startsWith('optimal') ? { kind, evals: 6 } : { kind }
        const aggregator = kind.startsWith('optimal') ? make('nna') : undefined
        const v = createAttack(params).craft({ honest, n: K, f: F, rng: rng.fork(kind), aggregator, own })
        assert.ok(!honest.includes(v) && v !== own, `${kind}: the crafted model aliases an input`)
        for (const [i, x] of honest.entries()) assert.deepEqual(x, before[i], `${kind}, d = ${d}: honest model ${i} was written`)
        assert.deepEqual(own, ownBefore, `${kind}, d = ${d}: the own model was written`)
      }
    }
  })

  for (const rule of aggregationRules) {
    describe(rule, () => {
      it('returns the input when all inputs are identical, as a new array', () => {
        const rng = new Rng(`identical/${rule}`)
        const x = Float32Array.from({ length: DIM }, () => rng.normal() * 3)
        const inputs = Array.from({ length: K }, () => Float32Array.from(x))
        const out = make(rule).aggregate(inputs, { own: 2, reference: Float32Array.from(x) })
        assertClose(out, x, 1e-6, rule)
        assert.ok(!inputs.some((v) => v === out), 'output must not alias an input')
      })

      it('never writes into its inputs or its context (in one process members aggregate the same certified bytes)', () => {
        for (const d of [DIM, 50_000]) {
          const rng = new Rng(`readonly/${rule}/${d}`)
          const honest = honestSet(rng, K - F, d)
          const byz = Array.from({ length: F }, () => Float32Array.from({ length: d }, () => 20 * rng.normal()))
          const inputs = [...honest, ...byz]
          const before = inputs.map((x) => Float32Array.from(x))
          const reference = Float32Array.from(honest[1])
          make(rule).aggregate(inputs, { own: 1, reference })
          for (const [i, x] of inputs.entries()) assert.deepEqual(x, before[i], `${rule}, d = ${d}: input ${i} was written`)
          assert.deepEqual(reference, honest[1], `${rule}, d = ${d}: the reference was written`)
        }
      })

      it('is invariant to the order of its inputs', () => {
        const rng = new Rng(`order/${rule}`)
        const honest = honestSet(rng, K - F, DIM)
        const byz = Array.from({ length: F }, () => Float32Array.from({ length: DIM }, () => 20 * rng.normal()))
        const inputs = [...honest, ...byz]
        const agg = make(rule)
        const out = agg.aggregate(inputs, ctxFor(honest))
        const perm = rng.shuffle(Array.from(inputs.keys()))
        const permuted = perm.map((i) => inputs[i])
        const out2 = agg.aggregate(permuted, { own: perm.indexOf(0), reference: honest[0] })
        assertClose(out2, out, 1e-5, rule)
      })

      it('keeps its promised bound with f Byzantine inputs of every kind', (t) => {
        const rng = new Rng(`bound/${rule}`)
        const honest = honestSet(rng, K - F, DIM)
        const agg = make(rule)
        const bound = kappaBound(rule, K, F)
        const measured: Record<string, number> = {}
        for (const { name, byz } of byzantineSets(rule, honest, rng)) {
          const inputs = [...honest, ...byz]
          const out = agg.aggregate(inputs, ctxFor(honest))
          const kappa = empiricalKappa(out, honest)
          measured[name] = Number(kappa.toPrecision(4))
          if (rule === 'mean') continue
          assert.ok(Number.isFinite(kappa), `${rule} vs ${name}: non-finite deviation`)
          const broken = promise(rule, out, honest, inputs, name)
          assert.equal(broken, undefined, `${rule} vs ${name}: ${broken}`)
          if (bound !== undefined) assert.ok(kappa <= bound, `${rule} vs ${name}: κ = ${kappa} above documented bound ${bound}`)
        }
        t.diagnostic(JSON.stringify({ rule, k: K, f: F, kappaBound: bound, kappaLowerBound: kappaLowerBound(K, F), kappa: measured }))
        if (rule === 'mean') assert.ok(measured.huge > 1e20, 'mean must be broken by a huge input (the suite can fail)')
      })

      it('rejects non-finite inputs, including the non-finite attack', () => {
        const rng = new Rng(`nan/${rule}`)
        const honest = honestSet(rng, K - F, DIM)
        const agg = make(rule)
        for (const value of ['nan', 'inf', '-inf'] as const) {
          const byz = createAttack({ kind: 'non-finite', value, coordinates: 1 }).craft({ honest, n: K, f: F, rng })
          const inputs = [...honest, byz, ...honest.slice(0, F - 1)]
          assert.throws(
            () => agg.aggregate(inputs, ctxFor(honest)),
            (e: unknown) => e instanceof NonFiniteInputError && e.input === K - F && e.name === 'NonFiniteInputError',
          )
        }
      })

      it('rejects vectors of different lengths', () => {
        const rng = new Rng(`dim/${rule}`)
        const inputs = honestSet(rng, K, DIM)
        inputs[4] = inputs[4].subarray(1)
        assert.throws(
          () => make(rule).aggregate(inputs, { own: 0, reference: inputs[0] }),
          (e: unknown) => e instanceof DimensionMismatchError && e.input === 4 && e.expected === DIM && e.actual === DIM - 1,
        )
      })

      it('rejects too few inputs for f, stating its requirement', () => {
        const base = rule.replace('nnm+', '')
        const needsMore = base === 'krum' || base === 'multikrum'
        const k = base === 'mean' && !rule.startsWith('nnm+') ? 0 : needsMore ? 2 * F + 2 : 2 * F
        const inputs = honestSet(new Rng(1), k, DIM)
        assert.throws(
          () => make(rule).aggregate(inputs, { own: 0 }),
          (e: unknown) =>
            e instanceof TooFewInputsError && (k === 0 || e.requirement === (needsMore ? 'k > 2f + 2' : 'k > 2f')) && e.k === k,
        )
      })
    })
  }

  it('rejects unknown rules, unknown or bad parameters and a bad context', () => {
    for (const rule of ['median', 'nnm+nnm', 'nnm+', 'NNA', 'nnm+foo']) {
      assert.throws(() => createAggregator({ rule, f: 1 }), UnknownRuleError)
    }
    assert.throws(() => createAggregator({ rule: 'cwtm', f: 1, tau: 3 }), (e: unknown) => e instanceof InvalidParameterError && e.parameter === 'tau')
    assert.throws(() => createAggregator({ rule: 'gm', f: 1, nu: -1 }), (e: unknown) => e instanceof InvalidParameterError && e.parameter === 'nu')
    assert.throws(() => createAggregator({ rule: 'gm', f: 1, start: 'one' }), InvalidParameterError)
    assert.equal(createAggregator({ rule: 'gm', f: 1, nu: undefined }).rule, 'gm', 'an undefined parameter is absent')
    assert.throws(() => createAggregator({ rule: 'cc', f: 1, L: 0.5 }), InvalidParameterError)
    assert.throws(() => createAggregator({ rule: 'mean', f: -1 }), (e: unknown) => e instanceof InvalidParameterError && e.parameter === 'f')
    assert.throws(() => createAggregator({ rule: 'mean', f: 1.5 }), InvalidParameterError)
    const inputs = honestSet(new Rng(2), 7, 5)
    assert.throws(() => createAggregator({ rule: 'nna', f: 1 }).aggregate(inputs, { own: 7 }), InvalidParameterError)
    assert.throws(() => createAggregator({ rule: 'multikrum', f: 1, m: 8 }).aggregate(inputs), InvalidParameterError)
  })

  it('nna needs context.own and ce needs a reference (or own)', () => {
    const inputs = honestSet(new Rng(3), 7, 5)
    assert.throws(() => createAggregator({ rule: 'nna', f: 1 }).aggregate(inputs), (e: unknown) => e instanceof MissingContextError && e.field === 'own')
    assert.throws(() => createAggregator({ rule: 'ce', f: 1 }).aggregate(inputs), (e: unknown) => e instanceof MissingContextError && e.field === 'reference')
  })

  it('rejects a reference of the wrong length or with non-finite values', () => {
    const inputs = honestSet(new Rng(4), 7, 5)
    const ce = createAggregator({ rule: 'ce', f: 1 })
    assert.throws(() => ce.aggregate(inputs, { reference: new Float32Array(4) }), (e: unknown) => e instanceof DimensionMismatchError && e.input === -1)
    assert.throws(() => ce.aggregate(inputs, { reference: new Float32Array(5).fill(Number.NaN) }), (e: unknown) => e instanceof NonFiniteInputError && e.input === -1)
  })

  it('mda refuses when C(k, f) exceeds maxSubsets', () => {
    const inputs = honestSet(new Rng(5), 50, 3)
    assert.throws(
      () => createAggregator({ rule: 'mda', f: 10 }).aggregate(inputs),
      (e: unknown) => e instanceof TooManySubsetsError && e.subsets === 10272278170 && e.maxSubsets === 1_000_000,
    )
    assert.throws(() => createAggregator({ rule: 'mda', f: 2, maxSubsets: 10 }).aggregate(inputs.slice(0, 7)), TooManySubsetsError)
  })
})
