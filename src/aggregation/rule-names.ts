/** The aggregation rules' names (no code: the config schemas import it to validate a rule at load). */

/** Base rules; each also exists as `nnm+<rule>`. */
export const baseRules = ['mean', 'cwmed', 'cwtm', 'meamed', 'krum', 'multikrum', 'gm', 'mda', 'cc', 'cge', 'ce', 'nna'] as const
export type BaseRule = (typeof baseRules)[number]
export const aggregationRules: readonly string[] = [...baseRules, ...baseRules.map((r) => `nnm+${r}`)]
