/** Learning-rate schedules of ALGORITHMS §1. */
import { InvalidConfigError } from '../errors.ts'

export type LrSchedule =
  | { kind: 'constant'; lr: number }
  /** γ_t = lr0 / (1 + ⌊t/Δ⌋·Δ/τ): piecewise constant, recomputed every Δ rounds (MoNNA on MNIST: lr0 0.75, τ = Δ = 50). */
  | { kind: 'hyperbolic'; lr0: number; tau: number; delta: number }

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
    default:
      throw new InvalidConfigError(`${path}.kind`, `unknown schedule '${String((schedule as { kind?: unknown })?.kind)}'; use constant or hyperbolic`)
  }
}

/** γ_t for round `round` (0-based). */
export function learningRate(schedule: LrSchedule, round: number): number {
  if (schedule.kind === 'constant') return schedule.lr
  const t = Math.max(0, Math.floor(round))
  return schedule.lr0 / (1 + (Math.floor(t / schedule.delta) * schedule.delta) / schedule.tau)
}
