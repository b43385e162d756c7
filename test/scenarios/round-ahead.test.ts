import { describeAttack } from './helpers.ts'

// Protocol level: besides its own round's model (ipm, −4·μ), every round the Byzantine member
// gets a broadcast certified 4 rounds ahead and sends its FINAL to everyone. Before issue 12 one
// such certificate made every honest engine catch up and then wait forever; now it is one
// member's evidence only (progress needs f + 1 senders), and its second SEND for that round,
// when the round comes, is refused as equivocation. The mean still takes the ipm model.
describeAttack('round-ahead', 'ipm ε = 4, plus a certified broadcast 4 rounds ahead every round')
