import { describeAttack } from './helpers.ts'

// A little is enough, with a fixed factor: μ − 5·σ of the honest models. The factor ALIE
// derives from (n, f) is −0.43 at n = 4, f = 1 (it would push the other way);
// optimal-alie.test.ts searches it every round instead.
describeAttack('alie', 'z = 5')
