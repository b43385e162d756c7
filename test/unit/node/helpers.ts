/** Test doubles for the round engine: a quadratic learner (no tfjs) and a plain NNA. */
import type { AggregatorPort, LearnerPort } from '../../../src/node/engine.ts'
import { Rng } from '../../../src/rng.ts'

/** loss = ½‖θ − target‖²; gradient + N(0, noise²); EMA momentum as in ALGORITHMS §1. */
export function quadraticLearner(opts: {
  dim: number
  initSeed: number | string
  dataSeed: number | string
  target?: Float32Array
  lr?: number
  beta?: number
  noise?: number
  stepDelayMs?: number
}): LearnerPort & { steps: number } {
  const { dim } = opts
  const init = new Rng(`${opts.initSeed}/theta0`)
  let theta = Float32Array.from({ length: dim }, () => init.normal())
  let m = new Float32Array(dim)
  let rng = new Rng(opts.dataSeed)
  const target = opts.target ?? new Float32Array(dim)
  const lr = opts.lr ?? 0.5
  const beta = opts.beta ?? 0.5
  const noise = opts.noise ?? 0.01
  const self = {
    dim,
    steps: 0,
    getParams: () => theta.slice(),
    setParams: (x: Float32Array) => {
      theta = x.slice()
    },
    getMomentum: () => m.slice(),
    setMomentum: (x: Float32Array) => {
      m = x.slice()
    },
    getRngState: () => rng.getState(),
    setRngState: (s: unknown) => {
      rng = new Rng(0)
      rng.setState(s as ReturnType<Rng['getState']>)
    },
    async step(_round: number) {
      if (opts.stepDelayMs) await new Promise((r) => setTimeout(r, opts.stepDelayMs))
      let loss = 0
      for (let i = 0; i < dim; i++) {
        const diff = theta[i]! - target[i]!
        loss += 0.5 * diff * diff
        const g = diff + noise * rng.normal()
        m[i] = beta * m[i]! + (1 - beta) * g
        theta[i] = theta[i]! - lr * m[i]!
      }
      self.steps++
      return { halfStep: theta.slice(), loss, gradNorm: 0 }
    },
  }
  return self
}

/** Mean of the k − f inputs nearest to inputs[own] (ALGORITHMS §1 step 6). */
export function simpleNna(f: number): AggregatorPort & { calls: { k: number; own: number }[] } {
  const calls: { k: number; own: number }[] = []
  return {
    calls,
    aggregate(inputs, ctx) {
      const own = ctx?.own ?? 0
      calls.push({ k: inputs.length, own })
      const ref = inputs[own]!
      const d2 = inputs.map((x, i) => ({ i, s: x.reduce((a, v, j) => a + (v - ref[j]!) ** 2, 0) }))
      d2.sort((a, b) => a.s - b.s)
      const keep = d2.slice(0, inputs.length - f)
      const out = new Float32Array(ref.length)
      for (const { i } of keep) for (let j = 0; j < out.length; j++) out[j]! += inputs[i]![j]! / keep.length
      return out
    },
  }
}

/** PeerId-like member names (the hub and engine accept any distinct strings). */
export function memberIds(n: number): string[] {
  return Array.from({ length: n }, (_, i) => `member-${i}`)
}

/** Resolves with the first event of `type` matching `pred`. */
export function once<T>(target: EventTarget, type: string, pred: (d: T) => boolean = () => true): Promise<T> {
  return new Promise((resolve) => {
    const h = (e: Event): void => {
      const d = (e as CustomEvent<T>).detail
      if (pred(d)) {
        target.removeEventListener(type, h)
        resolve(d)
      }
    }
    target.addEventListener(type, h)
  })
}
