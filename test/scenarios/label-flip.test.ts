import { describeAttack } from './helpers.ts'

// Data poisoning: the Byzantine member trains honestly on labels y → K − 1 − y and sends its
// half step. It only moves the mean where it holds more of a class than the honest members the
// mean averages it with — the scenario's non-iid split gives it most of 2 of the 4 classes.
describeAttack('label-flip')
