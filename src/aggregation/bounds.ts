/**
 * The robustness each rule promises, used by the contract tests and useful for reports.
 *
 * (f, κ)-robustness (Allouah et al., "Fixing by Mixing", AISTATS 2023): for every set S of
 * k − f honest inputs, ‖F(x) − x̄_S‖² ≤ κ · (1/|S|) Σ_{i∈S} ‖xᵢ − x̄_S‖². No rule can do better
 * than κ = f/(k − 2f). The constants below are the upper bounds listed in that paper's
 * Table 1 as we recall them — *(unverified against the paper's text)*; the contract tests
 * check the measured κ against them.
 */
import type { BaseRule } from './index.ts'

/** The lower bound every rule obeys: κ ≥ f/(k − 2f). */
export function kappaLowerBound(k: number, f: number): number {
  return f / (k - 2 * f)
}

/** Documented upper bound on κ for `rule` (a base rule or `nnm+<rule>`), or undefined when none is claimed. */
export function kappaBound(rule: string, k: number, f: number): number | undefined {
  if (rule.startsWith('nnm+')) {
    // NNM∘F is (f, 8f/(k−f)·(κ_F + 1))-robust when F is (f, κ_F)-robust (Allouah et al. 2023, Thm. 1).
    const inner = kappaBound(rule.slice(4), k, f)
    return inner === undefined ? undefined : ((8 * f) / (k - f)) * (inner + 1)
  }
  const r = f / (k - 2 * f)
  switch (rule as BaseRule) {
    case 'cwtm':
      return 6 * r * (1 + r)
    case 'cwmed':
    case 'gm': // exact geometric median; smoothed Weiszfeld with few iterations only approximates it
      return 4 * (1 + r) ** 2
    case 'krum':
      return 6 * (1 + r)
    default:
      return undefined
  }
}

/**
 * Measured κ of one aggregate: ‖out − x̄_S‖² / ((1/|S|) Σ ‖xᵢ − x̄_S‖²) for the honest set S.
 * Infinity when the honest inputs are identical and the output differs from them.
 */
export function empiricalKappa(out: Float32Array, honest: readonly Float32Array[]): number {
  const d = out.length
  const h = honest.length
  const mean = new Float64Array(d)
  for (const x of honest) for (let c = 0; c < d; c++) mean[c] += x[c] / h
  let spread = 0
  for (const x of honest) {
    for (let c = 0; c < d; c++) {
      const t = x[c] - mean[c]
      spread += t * t
    }
  }
  spread /= h
  let err = 0
  for (let c = 0; c < d; c++) {
    const t = out[c] - mean[c]
    err += t * t
  }
  if (spread === 0) return err === 0 ? 0 : Number.POSITIVE_INFINITY
  return err / spread
}
