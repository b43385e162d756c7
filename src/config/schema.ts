/**
 * The swarm file: what every member of a swarm must agree on (members, f, task, aggregation
 * rule, timing, limits). Validated with zod; errors name the field and the fix. The hash of
 * its canonical form identifies the swarm, so members with different files cannot mix.
 *
 * Node-local settings (key file, listen addresses, peers, data directory, backend…) are not
 * part of the swarm file: see `nodeConfigSchema`.
 */
import { sha256 } from '@noble/hashes/sha2.js'
import { bytesToHex } from '@noble/hashes/utils.js'
import { z } from 'zod'
import { aggregationRules } from '../aggregation/rule-names.ts'
import { MAX_META_BYTES, maxMembers } from '../broadcast/wire.ts'
import { InvalidConfigError } from '../errors.ts'
import { modelEncodings } from '../node/payload.ts'
import { checkRedundancy } from '../node/redundancy.ts'

const seed = z.union([z.number().int().nonnegative(), z.string().min(1)])
const positiveInt = z.number().int().positive()

export const datasetSchema = z.discriminatedUnion('kind', [
  z.strictObject({ kind: z.literal('mnist') }),
  z.strictObject({ kind: z.literal('fashion-mnist') }),
  z.strictObject({
    kind: z.literal('gaussian-mixture'),
    classes: positiveInt.min(2).default(4),
    dim: positiveInt.default(20),
    trainSize: positiveInt.default(4000),
    testSize: positiveInt.default(1000),
    separation: z.number().positive().optional(),
    seed: seed.default(1),
  }),
  z.strictObject({
    kind: z.literal('logistic'),
    dim: positiveInt.default(20),
    condition: z.number().min(1).default(10),
    // 2f-redundant generator with a known minimiser (docs/exact.md): `blocks` consecutive blocks of
    // groups of 4 equal examples in their block's `rank`-dimensional subspace, labels calibrated to σ(x·w*)
    rank: positiveInt.optional(),
    blocks: positiveInt.optional(),
    trainSize: positiveInt.default(4000),
    testSize: positiveInt.default(1000),
    seed: seed.default(1),
  }),
  z.strictObject({
    kind: z.literal('linear'),
    dim: positiveInt.min(2).default(20),
    condition: z.number().min(1).default(100),
    noise: z.number().nonnegative().default(0),
    // 2f-redundant generator (docs/exact.md): the train split in `blocks` consecutive blocks, each
    // block's rows in its own random `rank`-dimensional subspace (with partition blocks: one block a member)
    rank: positiveInt.optional(),
    blocks: positiveInt.optional(),
    trainSize: positiveInt.default(4000),
    testSize: positiveInt.default(1000),
    seed: seed.default(1),
  }),
  z.strictObject({
    kind: z.literal('idx'),
    trainImages: z.string(),
    trainLabels: z.string(),
    testImages: z.string(),
    testLabels: z.string(),
  }),
  z.strictObject({ kind: z.literal('csv'), train: z.string(), test: z.string(), labelColumn: z.string() }),
])

export const partitionSchema = z.discriminatedUnion('scheme', [
  z.strictObject({ scheme: z.literal('iid') }),
  z.strictObject({ scheme: z.literal('dirichlet'), alpha: z.number().positive() }),
  z.strictObject({ scheme: z.literal('shards'), labelsPerMember: positiveInt }),
  // member i takes the i-th consecutive block of the train split (the linear data set's `blocks`; docs/exact.md)
  z.strictObject({ scheme: z.literal('blocks') }),
])

export const modelSchema = z.discriminatedUnion('kind', [
  z.strictObject({ kind: z.literal('logreg') }),
  // least squares on the `linear` data set (docs/precondition.md)
  z.strictObject({ kind: z.literal('linear') }),
  z.strictObject({ kind: z.literal('mlp'), hidden: z.array(positiveInt).min(1).default([128]) }),
  z.strictObject({ kind: z.literal('lenet') }),
])

export const scheduleSchema = z.discriminatedUnion('kind', [
  z.strictObject({ kind: z.literal('constant'), lr: z.number().positive() }),
  // ALGORITHMS §1: γ_t = lr0 / (1 + ⌊t/Δ⌋·Δ/τ); the MoNNA authors use lr0 0.75, τ = Δ = 50 on MNIST.
  z.strictObject({
    kind: z.literal('hyperbolic'),
    lr0: z.number().positive(),
    tau: z.number().positive().default(50),
    delta: positiveInt.default(50),
  }),
  // diminishing steps (docs/exact.md §2): γ_t = lr0 / (1 + t/T)^power, every round. With power in
  // (0.5, 1], Σ γ_t = ∞ and Σ γ_t² < ∞ — the step-size condition of the exact-fault-tolerance analyses.
  z.strictObject({
    kind: z.literal('diminishing'),
    lr0: z.number().positive(),
    T: z.number().positive().default(1),
    power: z
      .number()
      .gt(0.5, { message: 'power must be in (0.5, 1]: at 0.5 or below Σ γ_t² diverges' })
      .max(1, { message: 'power must be in (0.5, 1]: above 1 Σ γ_t converges (the steps stop short)' })
      .default(1),
  }),
])

/**
 * Differential privacy of honest members (ALGORITHMS §6, docs/privacy.md): each local step
 * clips every example's gradient to `clipNorm`, averages and adds Gaussian noise. The noise is
 * given by exactly one of
 * - `epsilon` (recommended): the whole run's (ε, δ) target — the node takes the smallest
 *   noise whose Rényi-DP accountant ε after `task.rounds` steps at sampling rate b/N (N = the
 *   member's examples) is ≤ epsilon (`resolvePrivacy` in src/privacy);
 * - `noiseMultiplier`: σ directly (noise std = σ · clipNorm / batchSize); the run's ε is reported;
 * - `stepEpsilon`: the per-step (ε, δ) of ALGORITHMS §6's formula (what `epsilon` meant before
 *   it became the whole-run target; analytic Gaussian above ε = 1, where the classic bound fails).
 * In every case the node reports the whole run's ε spent so far (accountant), never a per-step one.
 */
export const privacySchema = z
  .strictObject({
    // TF Privacy's MNIST DP-SGD tutorial uses l2_norm_clip = 1.0 (as `defaultPrivacyOptions`).
    clipNorm: z.number().positive().default(1),
    epsilon: z.number().positive().optional(),
    noiseMultiplier: z.number().nonnegative().optional(),
    stepEpsilon: z.number().positive().optional(),
    // TF Privacy's MNIST tutorial; well below 1/N for the few thousand examples a member holds.
    delta: z.number().positive().lt(1).default(1e-5),
  })
  .refine((p) => [p.epsilon, p.noiseMultiplier, p.stepEpsilon].filter((x) => x !== undefined).length === 1, {
    message: 'give exactly one of epsilon (whole-run target, recommended), noiseMultiplier (σ) or stepEpsilon (per-step, ALGORITHMS §6)',
    path: ['epsilon'],
  })

/**
 * Iterative pre-conditioning (arXiv:2108.08670, docs/precondition.md): each member keeps a d × d
 * matrix K, updated every round from its own shard as K ← K − α·((Hᵢ + β·I)·K − I) (so
 * K → (Hᵢ + β·I)⁻¹), and steps along K·g instead of g. The convex models only: least squares
 * (model `linear`, Hᵢ = AᵢᵀAᵢ/nᵢ) and softmax regression (model `logreg`, Hᵢ = the Hessian of the
 * shard's mean cross-entropy at the current θ, recomputed every round; I is then the projection
 * off the directions no probability depends on), d ≤ 256. The models exchanged and aggregated stay θ.
 */
export const preconditionSchema = z.strictObject({
  // converges for α < 2/(λ_max + β); the `linear` data set's feature covariance has λ_max = 1
  // (logreg on the `logistic` one: λ_max ≤ ½·λ_max(E[x̃x̃ᵀ]), x̃ = [x, 1])
  alpha: z.number().positive().default(0.5),
  beta: z.number().nonnegative().default(0),
})

export const taskSchema = z.strictObject({
  dataset: datasetSchema.default({ kind: 'mnist' }),
  partition: partitionSchema.default({ scheme: 'iid' }),
  model: modelSchema.default({ kind: 'mlp', hidden: [128] }),
  batchSize: positiveInt.default(25),
  schedule: scheduleSchema.default({ kind: 'constant', lr: 0.1 }),
  // ALGORITHMS §1: β = 0.99 in all MoNNA runs; β = 0 is the NNA ablation.
  beta: z.number().min(0).lt(1).default(0.99),
  // λ·‖θ‖₂ regulariser weight; 0 matches the reference numbers (ALGORITHMS §1).
  lambda: z.number().nonnegative().default(0),
  rounds: positiveInt.default(100),
  evalEvery: positiveInt.default(10),
  // Test examples per evaluation (the full held-out split at the end of the run).
  evalExamples: positiveInt.default(1000),
  privacy: privacySchema.optional(),
  precondition: preconditionSchema.optional(),
  /**
   * The exact mechanism under 2f-redundancy (arXiv:2101.12316; docs/exact.md): members exchange
   * [θₜ, γₜ·gₜ] and set θₜ₊₁ = rule(θ parts) − CGE_f(steps). Convex tasks only (model linear or
   * logreg), β = 0, not with precondition or privacy; whole-shard batches (the paper's
   * deterministic gradients) are what docs/exact.md measures, smaller ones are allowed.
   */
  exact: z.boolean().optional(),
})

export const aggregatorSchema = z
  .object({
    rule: z
      .string()
      .refine((r) => aggregationRules.includes(r), { error: (i) => `unknown rule '${String(i.input)}'; use one of ${aggregationRules.join(', ')}` })
      .default('nna'),
  })
  .catchall(z.unknown())
  .default({ rule: 'nna' })

export const memberSchema = z.strictObject({
  id: z.string().min(1),
  name: z.string().optional(),
  addresses: z.array(z.string()).default([]),
  /**
   * This member relays connections between the swarm's members (docs/nat.md): members whose
   * entry lists no addresses reserve a slot on every relay and are reached through it. Needs
   * addresses the others can dial. Absent = not a relay (so swarms without relays keep their ids).
   */
  relay: z.literal(true, { error: 'write relay: true, or leave the field out' }).optional(),
})

export const timingSchema = z
  .strictObject({
    // Only matters when more than f members are down (ALGORITHMS §1 step 5); the node then reports a stall.
    roundTimeoutMs: positiveInt.default(30_000),
    // W: rounds of broadcast state kept per sender, and how far ahead/behind a member echoes.
    roundWindow: positiveInt.default(8),
    // once n − r certified models are held, wait up to this long for the rest (all n) before
    // closing the round; 0 = close at n − r (docs/exact.md §2; §4.7: what waiting buys the exact mechanism)
    waitAllMs: z.number().int().nonnegative().optional(),
  })
  .default({ roundTimeoutMs: 30_000, roundWindow: 8 })

export const limitsSchema = z
  .strictObject({ maxPayloadBytes: positiveInt.default(256 * 1024 * 1024) })
  .default({ maxPayloadBytes: 256 * 1024 * 1024 })

/**
 * How models travel (src/node/payload.ts, docs/encodings.md): `float32` (the default, exact),
 * `float16`, `bfloat16` or `int8` (blocks of 256 with a float32 scale each). Omitted and
 * `float32` are the same swarm (the same swarm id); any other encoding is part of the swarm id.
 */
export const encodingSchema = z.enum(modelEncodings, { error: `use one of ${modelEncodings.join(', ')}` })

export const swarmSchema = z.strictObject({
  version: z.literal(1).default(1),
  name: z
    .string()
    .regex(/^[a-z0-9][a-z0-9._-]*$/i, 'use letters, digits, ".", "_" or "-"')
    .max(64),
  seed: seed.default(0),
  /**
   * PeerId of the swarm admin's Ed25519 key: the only key that may sign membership epochs
   * (add/remove members, change f while the swarm runs; see src/membership). Optional: a swarm
   * without an admin has a fixed membership. Part of the swarm id like every other field.
   */
  admin: z.string().min(1).optional(),
  f: z.number().int().nonnegative(),
  /**
   * Stragglers apart from Byzantine members ((f, r; ε)-redundancy, docs/redundancy.md): a round
   * waits for n − r certified models instead of n − f (f ≤ r < n). The aggregation still
   * tolerates f Byzantine inputs, so the rule must hold with n − r inputs. Absent = f; absent and
   * r = f are the same swarm (the same swarm id).
   */
  r: z.number().int().nonnegative().optional(),
  members: z.array(memberSchema).min(1),
  task: taskSchema.default(taskSchema.parse({})),
  aggregator: aggregatorSchema,
  timing: timingSchema,
  limits: limitsSchema,
  /** the models' wire encoding (omitted = float32) */
  encoding: encodingSchema.optional(),
})

export type DatasetConfig = z.infer<typeof datasetSchema>
export type PartitionConfig = z.infer<typeof partitionSchema>
export type ModelConfig = z.infer<typeof modelSchema>
export type ScheduleConfig = z.infer<typeof scheduleSchema>
export type PrivacyConfig = z.infer<typeof privacySchema>
export type PreconditionConfig = z.infer<typeof preconditionSchema>
export type TaskConfig = z.infer<typeof taskSchema>
export type AggregatorConfig = z.infer<typeof aggregatorSchema>
export type MemberConfig = z.infer<typeof memberSchema>
export type SwarmConfig = z.infer<typeof swarmSchema>

/**
 * Parses `input` with `schema`; on failure throws InvalidConfigError naming the first bad
 * field (dotted path, prefixed by `where`, e.g. the file name) and what is expected.
 */
export function parseConfig<S extends z.ZodType>(schema: S, input: unknown, where = ''): z.output<S> {
  const result = schema.safeParse(input)
  if (result.success) return result.data
  const issue = result.error.issues[0]!
  const path = issue.path.map(String).join('.')
  const at = [where, path].filter((s) => s !== '').join(': ')
  const extra = result.error.issues.length > 1 ? ` (and ${result.error.issues.length - 1} more problem(s))` : ''
  throw new InvalidConfigError(at, `${issue.message}${extra}`)
}

/** Largest d for `task.precondition` (a d × d matrix per member; as src/learning's maxPreconditionDim). */
export const maxPreconditionDim = 256

/**
 * The number of parameters d of `task`'s model when the config alone determines it (the convex
 * models on the generated data sets and MNIST-shaped ones), else undefined (idx and csv: the
 * learner checks d when it has the data).
 */
function convexModelDim(task: TaskConfig): number | undefined {
  const ds = task.dataset
  const shape =
    ds.kind === 'mnist' || ds.kind === 'fashion-mnist'
      ? { features: 784, classes: 10 }
      : ds.kind === 'logistic'
        ? { features: ds.dim, classes: 2 }
        : ds.kind === 'gaussian-mixture'
          ? { features: ds.dim, classes: ds.classes }
          : ds.kind === 'linear'
            ? { features: ds.dim, classes: 1 }
            : undefined
  if (shape === undefined) return undefined
  // linear: x·θ, no bias; logreg: kernel [in, K] and bias [K]
  return task.model.kind === 'linear' ? shape.features : (shape.features + 1) * shape.classes
}

/**
 * Cross-field rules of the task: the `linear` model needs the `linear` data set (real targets),
 * and `precondition` needs a convex model (`linear`: least squares, or `logreg`) with d ≤ 256.
 */
export function checkTask(task: TaskConfig, where: string): void {
  if (task.model.kind === 'linear' && task.dataset.kind !== 'linear') {
    throw new InvalidConfigError(`${where}: task.model`, `the linear model (least squares) needs real targets: use dataset kind linear, not ${task.dataset.kind}`)
  }
  if (task.exact === true) checkExact(task, where)
  if (task.precondition === undefined) return
  if (task.model.kind !== 'linear' && task.model.kind !== 'logreg') {
    throw new InvalidConfigError(
      `${where}: task.precondition`,
      `pre-conditioning needs a convex model (linear: least squares on dataset linear, or logreg); ${task.model.kind} is not convex`,
    )
  }
  const d = convexModelDim(task)
  if (d !== undefined && d > maxPreconditionDim) {
    const fix = task.dataset.kind === 'linear' || task.dataset.kind === 'logistic' || task.dataset.kind === 'gaussian-mixture' ? 'lower dataset.dim' : 'use a data set with fewer features'
    const what = task.model.kind === 'logreg' ? ` (logreg: (features + 1) × classes)` : ''
    throw new InvalidConfigError(`${where}: task.precondition`, `d = ${d}${what} is too large for a d × d pre-conditioner (d ≤ ${maxPreconditionDim}); ${fix}`)
  }
}

/**
 * `task.exact` (docs/exact.md): a convex task (model linear or logreg), β = 0 (the step part of
 * the payload is γₜ·gₜ, not a momentum), and neither a pre-conditioner nor privacy noise (both
 * change what the step part means).
 */
export function checkExact(task: TaskConfig, where: string): void {
  const at = `${where}: task.exact`
  if (task.model.kind !== 'linear' && task.model.kind !== 'logreg') {
    throw new InvalidConfigError(at, `the exact mechanism needs a convex task (model linear or logreg); ${task.model.kind} is not convex`)
  }
  if (task.beta !== 0) throw new InvalidConfigError(at, `the exact mechanism exchanges plain gradient steps: set task.beta to 0 (got ${task.beta})`)
  if (task.precondition !== undefined) throw new InvalidConfigError(at, 'the exact mechanism and task.precondition cannot be combined; remove one')
  if (task.privacy !== undefined) throw new InvalidConfigError(at, 'the exact mechanism and task.privacy cannot be combined; remove one')
}

/**
 * The 2f-redundant generators (dataset linear or logistic with rank and blocks; docs/exact.md): one block a
 * member (partition blocks, blocks = n), and with the exact mechanism 2f-redundancy itself:
 * any n − 2f blocks must span the dim features ((n − 2f)·rank ≥ dim, generic subspaces).
 */
export function checkBlocks(task: TaskConfig, n: number, f: number, where: string): void {
  const ds = task.dataset
  const blocky = ds.kind === 'linear' || ds.kind === 'logistic'
  if (blocky && ds.rank === undefined && ds.blocks !== undefined) {
    throw new InvalidConfigError(`${where}: task.dataset.blocks`, 'rank and blocks go together: blocks of examples, each in its own rank-dimensional subspace')
  }
  if (!blocky || ds.rank === undefined) {
    if (task.partition.scheme === 'blocks' && !blocky) {
      throw new InvalidConfigError(`${where}: task.partition`, `scheme blocks splits the linear or logistic data set's blocks; use iid, dirichlet or shards with ${ds.kind}`)
    }
    return
  }
  if (ds.blocks === undefined) throw new InvalidConfigError(`${where}: task.dataset.rank`, 'rank and blocks go together: blocks of examples, each in its own rank-dimensional subspace')
  if (ds.rank > ds.dim) throw new InvalidConfigError(`${where}: task.dataset.rank`, `must be ≤ dim = ${ds.dim}, got ${ds.rank}`)
  if (task.partition.scheme !== 'blocks') {
    throw new InvalidConfigError(`${where}: task.partition`, `dataset.rank gives each block of examples its own subspace: use partition { scheme: blocks }, not ${task.partition.scheme}`)
  }
  if (ds.blocks !== n) throw new InvalidConfigError(`${where}: task.dataset.blocks`, `must equal the ${n} members (one block a member), got ${ds.blocks}`)
  // the logistic generator's groups of 4 equal examples must not straddle two blocks (src/learning/exact-logistic.ts)
  if (ds.kind === 'logistic' && ds.trainSize % (4 * ds.blocks) !== 0) {
    throw new InvalidConfigError(`${where}: task.dataset.trainSize`, `must be a multiple of 4·blocks = ${4 * ds.blocks} (groups of 4 examples, whole groups a block), got ${ds.trainSize}`)
  }
  if (task.exact === true && (n - 2 * f) * ds.rank < ds.dim) {
    throw new InvalidConfigError(
      `${where}: task.dataset.rank`,
      `not 2f-redundant: n − 2f = ${n - 2 * f} blocks of rank ${ds.rank} span ${(n - 2 * f) * ds.rank} < dim = ${ds.dim} dimensions; raise rank to ≥ ${Math.ceil(ds.dim / (n - 2 * f))}`,
    )
  }
}

/** CGE on the step parts needs more than 2f of them: n − r > 2f (docs/exact.md). */
export function checkExactInputs(n: number, f: number, r: number | undefined, where: string, field = 'task.exact'): void {
  const k = n - (r ?? f)
  if (k <= 2 * f) throw new InvalidConfigError(`${where}: ${field}`, `the exact mechanism's CGE needs n − r > 2f inputs, but n − r = ${k} with f = ${f}; lower r`)
}

/** Validates a swarm file's content; checks cross-field rules (distinct members, n ≥ 3f + 1, f ≤ r < n and the rule with n − r inputs). */
export function parseSwarm(input: unknown, where = 'swarm'): SwarmConfig {
  const swarm = parseConfig(swarmSchema, input, where)
  const ids = new Set<string>()
  for (const [i, m] of swarm.members.entries()) {
    if (ids.has(m.id)) throw new InvalidConfigError(`${where}: members.${i}.id`, `member ${m.id} is listed twice; list each member once`)
    ids.add(m.id)
    if (m.relay === true && m.addresses.length === 0) {
      throw new InvalidConfigError(`${where}: members.${i}.addresses`, `member ${m.name ?? m.id} is a relay but lists no address; give the addresses other members dial it at`)
    }
  }
  if (swarm.admin !== undefined && !/^12D3KooW[1-9A-HJ-NP-Za-km-z]{44}$/.test(swarm.admin)) {
    throw new InvalidConfigError(`${where}: admin`, `${swarm.admin} is not the PeerId of an Ed25519 key (12D3KooW…); print one with \`monna keygen --out admin.key\``)
  }
  const n = swarm.members.length
  if (n < 3 * swarm.f + 1) {
    throw new InvalidConfigError(
      `${where}: f`,
      `f = ${swarm.f} needs at least ${3 * swarm.f + 1} members (n ≥ 3f + 1 for the signed echo broadcast), but there are ${n}; lower f or add members`,
    )
  }
  if (n > maxMembers(swarm.f)) {
    throw new InvalidConfigError(`${where}: members`, `${n} members with f = ${swarm.f} are more than the wire can certify (at most ${maxMembers(swarm.f)}: a certificate of Q = ⌊(n + f)/2⌋ + 1 signatures must fit a ${MAX_META_BYTES / 1024} KiB FINAL); split the swarm`)
  }
  checkRedundancy({ n, f: swarm.f, r: swarm.r, rule: swarm.aggregator.rule }, where)
  checkTask(swarm.task, where)
  if (swarm.task.exact === true) checkExactInputs(n, swarm.f, swarm.r, where)
  checkBlocks(swarm.task, n, swarm.f, where)
  return swarm
}

/** JSON with object keys sorted, so equal configurations hash equally whatever their key order or file format. */
export function canonicalJson(value: unknown): string {
  return JSON.stringify(value, (_key, v: unknown) => {
    if (v !== null && typeof v === 'object' && !Array.isArray(v)) {
      return Object.fromEntries(Object.entries(v as Record<string, unknown>).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)))
    }
    return v
  })
}

/**
 * The swarm id: `<name>-<first 16 hex chars of sha256(canonical parsed swarm file)>`. An
 * `encoding` of float32 (the default) is left out of the hash, so swarms that predate the field
 * keep their ids whether or not their file now spells it out; any other encoding is hashed.
 * Likewise `r`: absent or equal to f (the default) is left out; any other r is hashed.
 */
export function swarmId(swarm: SwarmConfig): string {
  const { encoding, r, ...rest } = swarm
  const defining: Record<string, unknown> = { ...rest }
  if (encoding !== undefined && encoding !== 'float32') defining.encoding = encoding
  if (r !== undefined && r !== swarm.f) defining.r = r
  const hash = bytesToHex(sha256(new TextEncoder().encode(canonicalJson(defining))))
  return `${swarm.name}-${hash.slice(0, 16)}`
}
