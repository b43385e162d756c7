import { describeAttack } from './helpers.ts'

// Fall of empires with its factor searched every round against the rule under attack: −ε·μ of
// the honest models, ε maximising the attacked aggregate's distance to μ. `evals: 6` (scenario
// matrix) bounds the search to ε ≤ 6.6, enough to turn the mean's aggregate around every round
// (its honest median ends at 0 %). The default budget (16) reaches ε = 256, which multiplies
// the mean's models by up to 85 every round: on the iid ci-attacks scenario (in one process
// and on processes) they overflowed at round 22, members refused each other's models as
// non-finite, the round stalled short of n − f deliveries, and the run only ended at its
// timeout. Against MoNNA, where −ε·μ is never a nearest neighbour, both budgets hold (88.4 %
// with 16, 89.6 % with 6, in one process).
describeAttack('optimal-foe')
