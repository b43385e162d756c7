/** Aggregation inputs for the rules' tests: a cluster of honest vectors and Byzantine ones among them. */
import { createAttack } from '../../src/attacks/index.ts'
import { Rng } from '../../src/rng.ts'

/**
 * k inputs of `d` coordinates from `seed`: k − f honest ones (a common base plus noise of 0.1),
 * then f Byzantine ones — ALIE's vector, a vector of noise ×100, then ALIE's again.
 */
export function attackedInputs(seed: string, k: number, f: number, d: number): Float32Array[] {
  const rng = new Rng(seed)
  const base = Float32Array.from({ length: d }, () => rng.normal())
  const honest = Array.from({ length: k - f }, () => Float32Array.from(base, (b) => b + 0.1 * rng.normal()))
  const alie = createAttack({ kind: 'alie' }).craft({ honest, n: k, f, rng })
  const byz = [alie, Float32Array.from({ length: d }, () => 100 * rng.normal()), ...Array.from({ length: f }, () => alie)].slice(0, f)
  return [...honest, ...byz]
}
