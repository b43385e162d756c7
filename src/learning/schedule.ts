/** Learning-rate schedules of ALGORITHMS §1. */
import { InvalidConfigError } from '../errors.ts'

export type LrSchedule =
  | { kind: 'constant'; lr: number }
  /** γ_t = lr0 / (1 + ⌊t/Δ⌋·Δ/τ): piecewise constant, recomputed every Δ rounds (MoNNA on MNIST: lr0 0.75, τ = Δ = 50). */
  | { kind: 'hyperbolic'; lr0: number; tau: number; delta: number }
  /**
   * γ_t = lr0 / (1 + t/T)^power, recomputed every round; power ∈ (0.5, 1] makes Σ γ_t = ∞ and
   * Σ γ_t² < ∞ (the diminishing steps of the exact mechanism's analyses, docs/exact.md §2).
   */
  | { kind: 'diminishing'; lr0: number; T: number; power: number }

export function validateSchedule(schedule: LrSchedule, path = 'schedule'): void {
  const positive = (name: string, v: unknown): void => {
    if (typeof v !== 'number' || !Number.isFinite(v) || v <= 0) {
      throw new InvalidConfigError(`${path}.${name}`, `must be a finite number > 0, got ${String(v)}`)
    }
  }
  switch (schedule?.kind) {
    case 'constant':
      positive('lr', schedule.lr)
      return
    case 'hyperbolic':
      positive('lr0', schedule.lr0)
      positive('tau', schedule.tau)
      positive('delta', schedule.delta)
      if (!Number.isInteger(schedule.delta)) throw new InvalidConfigError(`${path}.delta`, `must be a whole number of rounds, got ${schedule.delta}`)
      return
    case 'diminishing':
      positive('lr0', schedule.lr0)
      positive('T', schedule.T)
      if (typeof schedule.power !== 'number' || !(schedule.power > 0.5 && schedule.power <= 1)) {
        throw new InvalidConfigError(`${path}.power`, `must be in (0.5, 1] so that Σ γ_t = ∞ and Σ γ_t² < ∞, got ${String(schedule.power)}`)
      }
      return
    default:
      throw new InvalidConfigError(`${path}.kind`, `unknown schedule '${String((schedule as { kind?: unknown })?.kind)}'; use constant, hyperbolic or diminishing`)
  }
}

/** γ_t for round `round` (0-based). */
export function learningRate(schedule: LrSchedule, round: number): number {
  if (schedule.kind === 'constant') return schedule.lr
  const t = Math.max(0, Math.floor(round))
  if (schedule.kind === 'diminishing') return schedule.lr0 / (1 + t / schedule.T) ** schedule.power
  return schedule.lr0 / (1 + (Math.floor(t / schedule.delta) * schedule.delta) / schedule.tau)
}
