/**
 * `npm run bench:certificates`: what a round's certificates cost as the swarm grows, with the
 * Ed25519 signatures monna uses against one BLS12-381 aggregate signature per certificate —
 * the "aggregate signatures" question of issue #15, measured before choosing.
 *
 * For each n (26, 50, 100, 200 by default; f = ⌊n/5⌋, Q = ⌊(n + f)/2⌋ + 1):
 * - Ed25519 (Node's OpenSSL, monna's path in src/broadcast/crypto.ts): ms to sign one echo, to
 *   verify one signature, to verify one certificate (Q signatures), and the certificate's bytes
 *   with signers named by index (Q · 64 + Q · 2);
 * - BLS12-381 aggregate certificates (min-pk: public keys in G1, signatures in G2, 96 bytes; every
 *   echo signs the same statement, so a certificate is one aggregate signature and a bitmap of
 *   its n possible signers, checked with the Q public keys aggregated and one pairing check —
 *   public keys need a proof of possession against rogue keys), on two libraries: `blst`
 *   (@chainsafe/blst, the native blst library, prebuilt for the platform) and `noble`
 *   (@noble/curves, pure JS): ms to sign one echo, to verify one, for the sender to aggregate
 *   Q echoes (deserialising each with its subgroup check for blst), to verify one certificate,
 *   and the certificate's bytes (96 + ⌈n/8⌉);
 * - per member and round, the sum of what it does: sign n − 1 echoes, check the Q echoes of its
 *   own SEND (Ed25519: each alone; BLS: each alone too — a sender must know which echo is bad to
 *   blame its signer —, then aggregate them), check n certificates (one process may share checks
 *   across members: this is the cost of one member alone, as in its own process), and the
 *   certificate bytes it receives (n of them).
 *
 *   BENCH_NS=26,50,100,200 BENCH_REPEAT=5 npm run bench:certificates
 *
 * One JSON line per n with the machine and load; a table on stderr.
 */
import { createPublicKey, generateKeyPairSync, type KeyObject, sign as nodeSign, verify as nodeVerify, randomBytes } from 'node:crypto'
import { cpus, loadavg, totalmem } from 'node:os'
import blst from '@chainsafe/blst'
import { bls12_381 as bls } from '@noble/curves/bls12-381.js'

const ns = (process.env.BENCH_NS ?? '26,50,100,200').split(',').map((v) => Number(v.trim()))
const repeat = Number(process.env.BENCH_REPEAT ?? 5)
if (ns.some((n) => !Number.isInteger(n) || n < 4) || !Number.isInteger(repeat) || repeat < 1) throw new Error('BENCH_NS: integers ≥ 4; BENCH_REPEAT: an integer ≥ 1')
const machine = { cpu: cpus()[0]?.model, cores: cpus().length, memoryGB: Math.round(totalmem() / 2 ** 30), node: process.version }
const load = (): number[] => loadavg().map((v) => Number(v.toFixed(2)))

/** Median ms of `runs` calls of fn (after one warm-up call). */
function timeMs(runs: number, fn: () => void): number {
  fn()
  const t: number[] = []
  for (let i = 0; i < runs; i++) {
    const s = performance.now()
    fn()
    t.push(performance.now() - s)
  }
  t.sort((a, b) => a - b)
  return t[Math.floor(t.length / 2)]!
}
const r3 = (x: number): number => Number(x.toFixed(3))

// an ECHO statement is ≈ 100 bytes (domain, swarm, epoch, round, sender, hash)
const statement = randomBytes(100)
const S = bls.longSignatures
const H = S.hash(statement)

console.log(JSON.stringify({ bench: 'certificates', machine, ns, repeat, loadavg: load() }))
const rows: string[] = []
for (const n of ns) {
  const f = Math.floor(n / 5)
  const q = Math.floor((n + f) / 2) + 1
  // Ed25519 keys and signatures of Q signers
  const ed = Array.from({ length: q }, () => generateKeyPairSync('ed25519'))
  const pub: KeyObject[] = ed.map((k) => createPublicKey(k.privateKey))
  const edSigs = ed.map((k) => nodeSign(null, statement, k.privateKey))
  let bad = 0
  const edSignMs = timeMs(repeat * 20, () => nodeSign(null, statement, ed[0]!.privateKey))
  const edVerifyMs = timeMs(repeat * 20, () => {
    if (!nodeVerify(null, statement, pub[0]!, edSigs[0]!)) bad++
  })
  const edCertMs = timeMs(repeat, () => {
    for (let i = 0; i < q; i++) if (!nodeVerify(null, statement, pub[i]!, edSigs[i]!)) bad++
  })
  // BLS keys and signatures of the same Q signers
  const sks = Array.from({ length: q }, () => bls.utils.randomSecretKey())
  const pks = sks.map((sk) => S.getPublicKey(sk))
  const blsSigs = sks.map((sk) => S.sign(H, sk))
  const blsSignMs = timeMs(repeat, () => S.sign(H, sks[0]!))
  const blsVerifyMs = timeMs(repeat, () => {
    if (!S.verify(blsSigs[0]!, H, pks[0]!)) bad++
  })
  let agg = S.aggregateSignatures(blsSigs)
  const blsAggregateMs = timeMs(repeat, () => {
    agg = S.aggregateSignatures(blsSigs)
  })
  const blsCertMs = timeMs(repeat, () => {
    if (!S.verify(agg, H, S.aggregatePublicKeys(pks))) bad++
  })
  // the same with blst (native)
  const bsks = Array.from({ length: q }, () => blst.SecretKey.fromKeygen(randomBytes(32)))
  const bpks = bsks.map((sk) => sk.toPublicKey())
  const bsigs = bsks.map((sk) => sk.sign(statement).toBytes())
  const blstSignMs = timeMs(repeat * 4, () => bsks[0]!.sign(statement))
  const blstVerifyMs = timeMs(repeat * 4, () => {
    if (!blst.verify(statement, bpks[0]!, blst.Signature.fromBytes(bsigs[0]!, true))) bad++
  })
  let bagg = blst.aggregateSignatures(bsigs.map((b) => blst.Signature.fromBytes(b, true))).toBytes()
  const blstAggregateMs = timeMs(repeat, () => {
    bagg = blst.aggregateSignatures(bsigs.map((b) => blst.Signature.fromBytes(b, true))).toBytes()
  })
  const blstCertMs = timeMs(repeat * 4, () => {
    if (!blst.fastAggregateVerify(statement, bpks, blst.Signature.fromBytes(bagg, true))) bad++
  })
  if (bad > 0) throw new Error(`${bad} valid signatures failed to verify`)
  const edCertBytes = q * 64 + q * 2
  const blsCertBytes = 96 + Math.ceil(n / 8)
  const perMember = {
    ed25519Ms: r3((n - 1) * edSignMs + q * edVerifyMs + n * edCertMs),
    blstMs: r3((n - 1) * blstSignMs + q * blstVerifyMs + blstAggregateMs + n * blstCertMs),
    nobleMs: r3((n - 1) * blsSignMs + q * blsVerifyMs + blsAggregateMs + n * blsCertMs),
    ed25519CertBytes: n * edCertBytes,
    blsCertBytes: n * blsCertBytes,
  }
  const line = {
    bench: 'certificates',
    n,
    f,
    q,
    ed25519: { signMs: r3(edSignMs), verifyMs: r3(edVerifyMs), certificateVerifyMs: r3(edCertMs), certificateBytes: edCertBytes },
    blst: { signMs: r3(blstSignMs), verifyMs: r3(blstVerifyMs), aggregateMs: r3(blstAggregateMs), certificateVerifyMs: r3(blstCertMs), certificateBytes: blsCertBytes },
    noble: { signMs: r3(blsSignMs), verifyMs: r3(blsVerifyMs), aggregateMs: r3(blsAggregateMs), certificateVerifyMs: r3(blsCertMs), certificateBytes: blsCertBytes },
    perMemberPerRound: perMember,
    machine,
    loadavg: load(),
  }
  console.log(JSON.stringify(line))
  rows.push(
    `${String(n).padStart(4)} ${String(q).padStart(4)} | ${perMember.ed25519Ms.toFixed(0).padStart(6)} ms ${(perMember.ed25519CertBytes / 1024).toFixed(0).padStart(6)} KiB | ${perMember.blstMs.toFixed(0).padStart(6)} ms ${perMember.nobleMs.toFixed(0).padStart(6)} ms ${(perMember.blsCertBytes / 1024).toFixed(1).padStart(6)} KiB`,
  )
}
console.error('   n    Q | Ed25519: CPU, certificate bytes | BLS: CPU blst, CPU noble, bytes   (per member and round)')
for (const r of rows) console.error(r)
