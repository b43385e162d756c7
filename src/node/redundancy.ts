/**
 * Stragglers apart from Byzantine members: (f, r; ε)-redundancy (Liu, Gupta and Vaidya,
 * arXiv:2110.10858, superseding 2106.03998; docs/redundancy.md).
 *
 * A swarm declares `r`, the number of members a round may go without (f ≤ r < n; default f).
 * Every member waits for n − r certified models instead of n − f; the aggregation still
 * tolerates f Byzantine inputs among what arrived (the aggregator's f and the echo quorum Q stay
 * tied to f). Up to r members may be slow, up to f of which may be Byzantine; a Byzantine
 * member that is fast is always among the n − r, so the rule must hold with k = n − r inputs.
 *
 * These helpers are pure: validation (one-line errors naming what to fix), the r in force in a
 * membership epoch (clamped so that f ≤ r < n and the rule's precondition keep holding when n or
 * f changes), and the number of honest models a rushing attacker waits for.
 */
import { baseRules, requirementOf } from '../aggregation/index.ts'
import { InvalidConfigError } from '../errors.ts'

/** The declared r, or f when the swarm declares none (the behaviour before r existed). */
export function declaredR(swarm: { f: number; r?: number | undefined }): number {
  return swarm.r ?? swarm.f
}

/** Certified models a round waits for, own included: n − r. */
export function quorumOf(n: number, r: number): number {
  return n - r
}

/**
 * The largest r whose n − r inputs satisfy `rule`'s precondition for f (src/aggregation:
 * k > 2f for most rules, k > 2f + 2 for krum and multikrum, k ≥ 1 for mean; nnm+<rule> also
 * needs k > 2f); undefined for a rule this library does not know (refused elsewhere).
 */
export function ruleMaxR(rule: string, n: number, f: number): number | undefined {
  const nnm = rule.startsWith('nnm+')
  const base = nnm ? rule.slice(4) : rule
  if (!(baseRules as readonly string[]).includes(base)) return undefined
  const req = requirementOf(base as (typeof baseRules)[number])
  // the requirements are monotone in k: scan down from k = n
  for (let k = n; k >= 1; k--) {
    if (req.holds(k, f) && (!nnm || k > 2 * f)) continue
    return n - k - 1
  }
  return n - 1
}

/** The precondition text of `rule` (e.g. "k > 2f + 2"), for error messages. */
function requirementText(rule: string): string {
  const nnm = rule.startsWith('nnm+')
  const base = nnm ? rule.slice(4) : rule
  const text = requirementOf(base as (typeof baseRules)[number]).text
  return nnm && text !== 'k > 2f' ? `${text} (and k > 2f for nnm)` : text
}

/**
 * Validates r against n, f and the rule; throws InvalidConfigError (path `<where>: r`, one
 * line, naming the fix). Nothing is checked when r is absent (r = f, as before the field).
 */
export function checkRedundancy(o: { n: number; f: number; r?: number | undefined; rule: string }, where: string, field = 'r'): void {
  const { n, f, r, rule } = o
  if (r === undefined) return
  const at = `${where}: ${field}`
  if (!Number.isInteger(r) || r < 0) throw new InvalidConfigError(at, `r must be an integer ≥ f = ${f}, got ${r}`)
  if (r < f) {
    throw new InvalidConfigError(at, `r = ${r} is below f = ${f}: r counts the members a round may go without, Byzantine ones included; use r ≥ ${f} (or leave r out: r = f)`)
  }
  if (r >= n) throw new InvalidConfigError(at, `r = ${r} leaves no model to wait for (n = ${n}); use r < ${n}`)
  const max = ruleMaxR(rule, n, f)
  if (max !== undefined && r > max) {
    const k = n - r
    const fix = max >= f ? `lower r to at most ${max}` : `this rule cannot run on n = ${n} with f = ${f} at all; pick another rule or add members`
    throw new InvalidConfigError(at, `r = ${r} leaves k = n − r = ${k} models a round, but ${rule} needs ${requirementText(rule)} with f = ${f}; ${fix}`)
  }
}

/**
 * The r in force in a membership epoch of n members and bound f: the declared r (default f)
 * clamped to f ≤ r < n and, when the rule is known, to the largest r whose n − r inputs satisfy
 * its precondition — never below f (a rule that cannot run with n − f fails as it did before r).
 */
export function epochR(declared: number | undefined, n: number, f: number, rule?: string): number {
  let r = Math.min(declared ?? f, n - 1)
  if (rule !== undefined) {
    const max = ruleMaxR(rule, n, f)
    if (max !== undefined) r = Math.min(r, max)
  }
  return Math.max(f, r)
}

/**
 * Honest models a rushing attacker (an attack that crafts its vector from this round's honest
 * models) waits for by default: n − r − f. Of the n − r models an honest member aggregates, up
 * to f are Byzantine, so n − r − f honest ones are all it can count on (n − 2f when r = f).
 */
export function rushingHonestMin(n: number, r: number, f: number): number {
  return Math.max(1, n - r - f)
}
