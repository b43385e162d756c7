/**
 * The exact mechanism of issue 18 item 2 (docs/exact.md; after Gupta & Vaidya, arXiv:2101.12316,
 * and comparative gradient elimination, the `cge` rule; arXiv:2108.11769 for `ce`), on monna's round engine
 * without touching it: the learner and aggregator ports are wrapped so that what a member
 * broadcasts each round is the pair
 *
 *   [ θₜ , γₜ·gₜ ]   (2d numbers: its model before the step, and its step γₜ·∇Qᵢ(θₜ) on its whole shard)
 *
 * and what it aggregates is
 *
 *   θₜ₊₁ = rule(θ parts, own, reference) − CGE(step parts)
 *
 * where `rule` is the swarm's aggregation rule (nna, ce, …) on the models — the consensus part —
 * and CGE (comparative gradient elimination: drop the f step parts of largest norm, average the
 * rest) filters the gradients — the descent part. With the same set of inputs at every honest
 * member and θ equal everywhere this is the paper's server-based CGE iteration, run at every
 * member; monna's rounds close on the first n − r certified vectors, so the sets can differ, and
 * the members' θ then differ too: the `rule` part pulls them together again (docs/exact.md §3
 * states what holds and what does not).
 *
 * The engine sees a learner of dimension 2d: its snapshots and checkpoints hold [θ, last CGE step].
 * A catch-up (a member the swarm left behind) takes the θ part of the median-referenced mean of
 * the fetched pairs (no gradient step that round).
 */
import { createAggregator } from '../aggregation/index.ts'
import type { AggregatorPort, LearnerPort } from './engine.ts'

/** A learner whose payload is [θₜ, θₜ − θₜ₊½] = [θₜ, γₜ·gₜ] (momentum must be 0: validated by the config). */
export function exactLearner(inner: LearnerPort): LearnerPort {
  const d = inner.dim
  const widen = (v: Float32Array): Float32Array => {
    const out = new Float32Array(2 * d)
    out.set(v.subarray(0, d))
    return out
  }
  return {
    dim: 2 * d,
    getParams: () => widen(inner.getParams()),
    setParams: (theta) => inner.setParams(theta.length === 2 * d ? theta.slice(0, d) : theta),
    getMomentum: () => widen(inner.getMomentum()),
    setMomentum: (m) => inner.setMomentum(m.length === 2 * d ? m.slice(0, d) : m),
    getRngState: () => inner.getRngState(),
    setRngState: (s) => inner.setRngState(s),
    async step(round) {
      const theta = inner.getParams().slice()
      const r = await inner.step(round)
      const payload = new Float32Array(2 * d)
      payload.set(theta)
      // γₜ·gₜ in float64 before the float32 store: θ and θ₊½ are float32, their difference exact to an ulp of θ
      for (let j = 0; j < d; j++) payload[d + j] = theta[j]! - r.halfStep[j]!
      return { halfStep: payload, loss: r.loss, ...(r.gradNorm !== undefined ? { gradNorm: r.gradNorm } : {}) }
    },
  }
}

/** Aggregates [θ, γ·g] pairs: θₜ₊₁ = consensus(θ parts) − CGE_f(step parts); returns [θₜ₊₁, CGE step]. */
export function exactAggregator(consensus: AggregatorPort, f: number): AggregatorPort {
  const cge = createAggregator({ rule: 'cge', f })
  return {
    aggregate(inputs, context) {
      const d2 = inputs[0]?.length ?? 0
      const d = d2 / 2
      const thetas = inputs.map((v) => v.subarray(0, d))
      const steps = inputs.map((v) => v.subarray(d))
      const ctx: { own?: number; reference?: Float32Array } = {}
      if (context?.own !== undefined && context.own >= 0) ctx.own = context.own
      if (context?.reference !== undefined) ctx.reference = context.reference.length === d2 ? context.reference.subarray(0, d) : context.reference
      const theta = consensus.aggregate(thetas, ctx)
      const step = cge.aggregate(steps)
      const out = new Float32Array(d2)
      for (let j = 0; j < d; j++) {
        out[j] = theta[j]! - step[j]!
        out[d + j] = step[j]!
      }
      return out
    },
  }
}
