import { describeAttack } from './helpers.ts'

// The Byzantine member sends −μ of the honest models it saw. With iid data the mean only
// shrinks and keeps its argmax (README: 81.7 %); with the scenario's non-iid split it fails.
describeAttack('sign-flip')
