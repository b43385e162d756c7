import { describeAttack } from './helpers.ts'

// Equivocation: in every round the Byzantine member m3 SENDs a crafted model (ipm, −4·μ) to m0
// and m1 and its honest-looking half step to the slowed m2. The signed echo broadcast certifies
// a version with Q = 3 echoes: the crafted one gets m0's, m1's and its sender's, the half step
// only m2's and the sender's — so every honest member that delivers m3's model delivers the
// crafted one (m2 pulls it after the FINAL). The mean takes it; MoNNA discards it.
describeAttack('equivocate', 'ipm ε = 4 to half of the members')
