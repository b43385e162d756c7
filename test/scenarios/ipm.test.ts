import { describeAttack } from './helpers.ts'

// Inner-product manipulation: the Byzantine member sends −4·μ of the honest models it saw.
describeAttack('ipm', 'ε = 4')
