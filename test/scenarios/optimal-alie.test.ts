import { describeAttack } from './helpers.ts'

// ALIE with its factor searched every round against the rule under attack (the MoNNA authors'
// ALIE): μ − z·σ of the honest models with z maximising the attacked aggregate's distance to μ.
// Against the mean nothing bounds z; against MoNNA a far model is never a nearest neighbour.
describeAttack('optimal-alie')
