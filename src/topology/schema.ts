/**
 * The scenario file (`topologies/*.yaml|json`): a whole swarm declared as data — its size,
 * task and aggregation rule (the same fields as a swarm file), which members are Byzantine
 * and how they behave, the network conditions between members, and the expectations that
 * decide the run's verdict. Validated with zod; errors name the field and the fix.
 *
 * Members are numbered 0 … n−1 and named `m0 … m{n−1}`; the runner generates their keys,
 * so a scenario never contains PeerIds.
 */

import { readFile } from 'node:fs/promises'
import { extname } from 'node:path'
import { parse as parseYaml } from 'yaml'
import { z } from 'zod'
import { MAX_META_BYTES, maxMembers } from '../broadcast/wire.ts'
import {
  aggregatorSchema,
  checkBlocks,
  checkExactInputs,
  checkTask,
  encodingSchema,
  limitsSchema,
  type PrivacyConfig,
  parseConfig,
  partitionSchema,
  preconditionSchema,
  privacySchema,
  scheduleSchema,
  taskSchema,
  timingSchema,
} from '../config/schema.ts'
import { InvalidConfigError } from '../errors.ts'
import { checkRedundancy } from '../node/redundancy.ts'

const seed = z.union([z.number().int().nonnegative(), z.string().min(1)])
const memberIndex = z.number().int().nonnegative()
const memberSet = z.union([memberIndex, z.array(memberIndex).min(1)]).transform((v) => (Array.isArray(v) ? v : [v]))

/**
 * One link's conditions, realised at the application level by a wrapper around each
 * member's broadcast port (see `network.ts`): a model sent by A becomes visible at B after
 * `latencyMs + U(0, jitterMs) + bytes / bandwidth`, or never (probability `loss`) — on a
 * reliable transport a lost message is an instance that never reaches that member.
 */
export const linkConditionsSchema = z.strictObject({
  latencyMs: z.number().nonnegative().default(0),
  jitterMs: z.number().nonnegative().default(0),
  loss: z.number().min(0).max(1).default(0),
  /** bytes per second; omitted = unlimited */
  bandwidthBytesPerSec: z.number().positive().optional(),
})
export type LinkConditions = z.output<typeof linkConditionsSchema>

const partialLink = z.strictObject({
  latencyMs: z.number().nonnegative().optional(),
  jitterMs: z.number().nonnegative().optional(),
  loss: z.number().min(0).max(1).optional(),
  bandwidthBytesPerSec: z.number().positive().optional(),
})

export const networkSchema = z
  .strictObject({
    /** applies to every link */
    default: partialLink.default({}),
    /** conditions on everything these members send (egress); later entries override earlier ones */
    members: z.array(partialLink.extend({ members: memberSet })).default([]),
    /** conditions on specific directed links (override member conditions) */
    links: z.array(partialLink.extend({ from: memberSet, to: memberSet })).default([]),
  })
  .default({ default: {}, members: [], links: [] })
export type NetworkConfig = z.output<typeof networkSchema>

/** Behaviour names (ALGORITHMS §5); parameters go next to `behaviour`. */
export const behaviourNames = [
  'honest',
  'sign-flip',
  'alie',
  'foe',
  'ipm',
  'optimal-alie',
  'optimal-foe',
  'label-flip',
  'mimic',
  'gaussian',
  'non-finite',
  'malformed',
  'equivocate',
  'silent',
  'crash',
  'late',
  'replay',
  // protocol-level: frames of the signed echo broadcast itself (src/adversary), on libp2p only
  'round-ahead',
  'flood',
  'slow',
  'withhold-final',
] as const
export type BehaviourName = (typeof behaviourNames)[number]

export const byzantineSchema = z
  .object({
    members: memberSet,
    behaviour: z.enum(behaviourNames, {
      error: `unknown behaviour; use one of ${behaviourNames.join(', ')}`,
    }),
  })
  .catchall(z.unknown())
export type ByzantineConfig = z.output<typeof byzantineSchema>

/**
 * Expectations on the honest members (Byzantine members are never judged). Each given key
 * becomes one entry of the report's `expectations[]`; the run passes only if all hold.
 */
export const expectationsSchema = z
  .strictObject({
    /** every honest member's final accuracy (full held-out test split) ≥ this */
    minHonestAccuracy: z.number().min(0).max(1).optional(),
    /** median of the honest final accuracies ≥ this */
    minMedianHonestAccuracy: z.number().min(0).max(1).optional(),
    /** median of the honest final accuracies ≤ this (to assert that an attack bites an undefended rule) */
    maxMedianHonestAccuracy: z.number().min(0).max(1).optional(),
    /** largest distance between two honest models at the last evaluation (sketch estimate), ≤ this */
    maxHonestSpread: z.number().nonnegative().optional(),
    /** every honest member completed at least this many rounds (default: all of task.rounds) */
    minRoundsCompleted: z.number().int().nonnegative().optional(),
    /**
     * Time-to-accuracy (docs/redundancy.md): the median honest accuracy reaches this at some
     * evaluation round. The report gives the first such round and its wall time
     * (`timeToTarget`: the median honest RoundReport.elapsedMs of that round), per matrix cell too.
     */
    targetAccuracy: z.number().min(0).max(1).optional(),
    /**
     * Least squares with a known θ* (dataset `linear`; docs/precondition.md): every honest
     * member's ‖θ − θ*‖/‖θ*‖ reaches this at some evaluation round; the report gives the first
     * such round (`distanceToTarget`), per matrix cell too (`roundsToDistance`).
     */
    targetDistance: z.number().positive().optional(),
  })
  .default({})
export type Expectations = z.output<typeof expectationsSchema>

/**
 * One value of the matrix's privacy axis: `"none"` (no privacy), a number (a whole-run ε
 * target, the other fields at their defaults) or a whole `task.privacy` block.
 */
export const matrixPrivacySchema = z.union([z.literal('none'), z.number().positive(), privacySchema], {
  error: 'use "none", a whole-run ε target (a number > 0) or a privacy block { epsilon | noiseMultiplier | stepEpsilon, clipNorm?, delta? }',
})
export type MatrixPrivacy = z.output<typeof matrixPrivacySchema>

/**
 * One value of the matrix's optimizer axis (docs/precondition.md): a name for the table and
 * what it changes in the task — the momentum β, the step-size schedule, and the pre-conditioner
 * (absent = none, so a cell without `precondition` runs plain or momentum SGD).
 */
export const matrixOptimizerSchema = z.strictObject({
  name: z.string().regex(/^[a-z0-9][a-z0-9._+-]*$/i, 'use letters, digits, ".", "_", "+" or "-"'),
  beta: z.number().min(0).lt(1).optional(),
  schedule: scheduleSchema.optional(),
  precondition: preconditionSchema.optional(),
  /** the exact mechanism (docs/exact.md): true turns it on in this cell, false off; absent = the task's */
  exact: z.boolean().optional(),
})
export type MatrixOptimizer = z.output<typeof matrixOptimizerSchema>

export const matrixSchema = z.strictObject({
  rules: z.array(aggregatorSchema.unwrap()).min(1),
  behaviours: z.array(z.union([z.enum(behaviourNames), byzantineSchema.omit({ members: true })])).min(1),
  /** optional axis: privacy settings (replace `task.privacy` in every cell) */
  privacy: z.array(matrixPrivacySchema).min(1).optional(),
  /** optional axis: batch sizes (replace `task.batchSize` in every cell) */
  batchSizes: z.array(z.number().int().positive()).min(1).optional(),
  /** optional axis: the models' wire encodings (replace the scenario's `encoding` in every cell; docs/encodings.md) */
  encodings: z.array(encodingSchema).min(1).optional(),
  /** optional axis: the redundancy r (replaces the scenario's `r` in every cell; f ≤ r < n; docs/redundancy.md) */
  r: z.array(z.number().int().nonnegative()).min(1).optional(),
  /** optional axis: optimizers (momentum β, schedule, pre-conditioner; docs/precondition.md) */
  optimizers: z.array(matrixOptimizerSchema).min(1).optional(),
  /**
   * optional axis: how the data set is split among the members (replaces `task.partition` in
   * every cell): `iid`, a Dirichlet α given as a number (`0.1` = `{ scheme: dirichlet, alpha: 0.1 }`)
   * or any partition — the heterogeneity sweep (docs/heterogeneity.md)
   */
  partitions: z
    .array(z.union([z.literal('iid').transform(() => ({ scheme: 'iid' as const })), z.number().positive().transform((alpha) => ({ scheme: 'dirichlet' as const, alpha })), partitionSchema]))
    .min(1)
    .optional(),
})
export type MatrixConfig = z.output<typeof matrixSchema>

export const runtimeSchema = z
  .strictObject({
    backend: z.enum(['auto', 'tensorflow', 'wasm', 'cpu']).default('auto'),
    /** compute threads per member (native kernels' matrix product, or wasm convolutions; default 1) */
    threads: z.number().int().positive().optional(),
    /** kill the run after this long (safety net for CI) */
    timeoutMs: z.number().int().positive().default(30 * 60_000),
    /**
     * Pace: every round of every member lasts at least this long (0 = as fast as possible).
     * On one machine the members that are never needed (the slowed-down ones) could otherwise
     * fall more than the round window behind the others.
     */
    minRoundMs: z.number().int().nonnegative().default(0),
  })
  .default({ backend: 'auto', timeoutMs: 30 * 60_000, minRoundMs: 0 })

export const scenarioSchema = z.strictObject({
  version: z.literal(1).default(1),
  name: z
    .string()
    .regex(/^[a-z0-9][a-z0-9._-]*$/i, 'use letters, digits, ".", "_" or "-"')
    .max(64),
  description: z.string().optional(),
  seed: seed.default(0),
  n: z.number().int().min(1).max(512),
  f: z.number().int().nonnegative(),
  /** members a round may go without, f ≤ r < n (default f): a round waits for n − r models (docs/redundancy.md) */
  r: z.number().int().nonnegative().optional(),
  task: taskSchema.default(taskSchema.parse({})),
  aggregator: aggregatorSchema,
  timing: timingSchema,
  limits: limitsSchema,
  /** the models' wire encoding, as in a swarm file (omitted = float32; docs/encodings.md) */
  encoding: encodingSchema.optional(),
  byzantine: z.array(byzantineSchema).default([]),
  network: networkSchema,
  expect: expectationsSchema,
  matrix: matrixSchema.optional(),
  runtime: runtimeSchema,
})
export type Scenario = z.output<typeof scenarioSchema>

/** Validates a scenario's content, including the cross-field rules (member indices, n ≥ 3f + 1, at most f Byzantine). */
export function parseScenario(input: unknown, where = 'scenario'): Scenario {
  const s = parseConfig(scenarioSchema, input, where)
  if (s.n < 3 * s.f + 1) {
    throw new InvalidConfigError(
      `${where}: f`,
      `f = ${s.f} needs n ≥ ${3 * s.f + 1} (signed echo broadcast), but n = ${s.n}; lower f or raise n`,
    )
  }
  if (s.n > maxMembers(s.f)) {
    throw new InvalidConfigError(`${where}: n`, `n = ${s.n} with f = ${s.f} is more than the wire can certify (at most ${maxMembers(s.f)}: a certificate of Q = ⌊(n + f)/2⌋ + 1 signatures must fit a ${MAX_META_BYTES / 1024} KiB FINAL); lower n`)
  }
  const checkIndex = (path: string, i: number): void => {
    if (i >= s.n) throw new InvalidConfigError(`${where}: ${path}`, `member ${i} does not exist; members are numbered 0 … ${s.n - 1}`)
  }
  const byz = new Set<number>()
  for (const [k, b] of s.byzantine.entries()) {
    for (const i of b.members) {
      checkIndex(`byzantine.${k}.members`, i)
      if (byz.has(i)) throw new InvalidConfigError(`${where}: byzantine.${k}.members`, `member ${i} is given two behaviours; list it once`)
      byz.add(i)
    }
    // equivocate's `crafted`: the members that get its crafted version
    if (Array.isArray(b.crafted)) for (const i of b.crafted) if (typeof i === 'number') checkIndex(`byzantine.${k}.crafted`, i)
  }
  if (byz.size > s.f) {
    throw new InvalidConfigError(
      `${where}: byzantine`,
      `${byz.size} Byzantine members but f = ${s.f}; the guarantees only hold for at most f — raise f or remove some`,
    )
  }
  if (byz.size === s.n) throw new InvalidConfigError(`${where}: byzantine`, 'at least one member must be honest')
  checkRedundancy({ n: s.n, f: s.f, r: s.r, rule: s.aggregator.rule }, where)
  checkTask(s.task, where)
  if (s.task.exact === true) checkExactInputs(s.n, s.f, s.r, where)
  checkBlocks(s.task, s.n, s.f, where)
  if (s.matrix !== undefined) {
    // every cell's (r, rule) pair must hold before the first cell runs
    const rs: Array<[string, number | undefined]> = s.matrix.r?.map((r, k) => [`matrix.r.${k}`, r]) ?? [['r', s.r]]
    for (const [field, r] of rs) for (const rule of s.matrix.rules) checkRedundancy({ n: s.n, f: s.f, r, rule: rule.rule }, where, field)
    const names = new Set<string>()
    for (const [k, o] of (s.matrix.optimizers ?? []).entries()) {
      if (names.has(o.name)) throw new InvalidConfigError(`${where}: matrix.optimizers.${k}.name`, `optimizer ${o.name} is listed twice; give each a distinct name`)
      names.add(o.name)
      const cell = withOptimizer(s, o)
      checkTask(cell.task, `${where}: matrix.optimizers.${k}`)
      checkBlocks(cell.task, s.n, s.f, `${where}: matrix.optimizers.${k}`)
      if (cell.task.exact === true) for (const [field, r] of rs) checkExactInputs(s.n, s.f, r, `${where}: matrix.optimizers.${k}`, field === 'r' ? 'exact' : field)
    }
    const seen = new Set<string>()
    for (const [k, p] of (s.matrix.partitions ?? []).entries()) {
      const key = partitionLabel(p)
      if (seen.has(key)) throw new InvalidConfigError(`${where}: matrix.partitions.${k}`, `partition ${key} is listed twice`)
      seen.add(key)
      checkTask({ ...s.task, partition: p }, `${where}: matrix.partitions.${k}`)
    }
  }
  for (const [k, m] of s.network.members.entries()) for (const i of m.members) checkIndex(`network.members.${k}.members`, i)
  for (const [k, l] of s.network.links.entries()) {
    for (const i of l.from) checkIndex(`network.links.${k}.from`, i)
    for (const i of l.to) checkIndex(`network.links.${k}.to`, i)
  }
  return s
}

/** Reads and validates a scenario file (`.yaml`, `.yml` or `.json`). */
/**
 * Applies `path=value` overrides (`monna run --set`) to a scenario file's parsed data, before
 * it is validated: the path is dot-separated (a number indexes a list: `byzantine.0.behaviour`),
 * the value is YAML (`aggregator={rule: mean, beta: 0}`, `task.rounds=50`), and a null value
 * (`matrix=null`) removes the field. Missing objects on the path are created. Returns a copy.
 */
export function applyOverrides(data: unknown, overrides: readonly string[], source: string): unknown {
  const root: unknown = structuredClone(data)
  for (const o of overrides) {
    const eq = o.indexOf('=')
    const path = eq < 0 ? [] : o.slice(0, eq).split('.')
    if (eq <= 0 || path.some((k) => k === '')) throw new InvalidConfigError(source, `--set ${o}: give path=value, e.g. aggregator.rule=mean or task.rounds=50`)
    if (path.some((k) => k === '__proto__' || k === 'constructor' || k === 'prototype')) throw new InvalidConfigError(source, `--set ${o}: ${path.join('.')} is not a scenario field`)
    let value: unknown
    try {
      value = parseYaml(o.slice(eq + 1))
    } catch (err) {
      throw new InvalidConfigError(source, `--set ${o}: the value is not valid YAML: ${(err as Error).message}`, { cause: err })
    }
    if (typeof root !== 'object' || root === null) throw new InvalidConfigError(source, 'the file holds no mapping to override')
    let node = root as Record<string, unknown>
    for (let i = 0; i < path.length - 1; i++) {
      const key = path[i]!
      let next = Object.hasOwn(node, key) ? node[key] : undefined
      if (next === undefined || next === null) {
        next = {}
        node[key] = next
      }
      if (typeof next !== 'object') throw new InvalidConfigError(source, `--set ${o}: ${path.slice(0, i + 1).join('.')} is ${JSON.stringify(next)}, not a mapping or list`)
      node = next as Record<string, unknown>
    }
    const last = path[path.length - 1]!
    if (Array.isArray(node) && !/^\d+$/.test(last)) throw new InvalidConfigError(source, `--set ${o}: ${path.slice(0, -1).join('.')} is a list; index it with a number`)
    if (value === null) delete node[last]
    else node[last] = value
  }
  return root
}

export async function loadScenario(path: string, opts: { signal?: AbortSignal; overrides?: readonly string[] } = {}): Promise<Scenario> {
  const text = await readFile(path, { encoding: 'utf8', signal: opts.signal })
  let data: unknown
  try {
    data = extname(path) === '.json' ? JSON.parse(text) : parseYaml(text)
  } catch (err) {
    throw new InvalidConfigError(path, `not valid ${extname(path) === '.json' ? 'JSON' : 'YAML'}: ${(err as Error).message}`, { cause: err })
  }
  if (opts.overrides !== undefined && opts.overrides.length > 0) data = applyOverrides(data, opts.overrides, path)
  return parseScenario(data, path)
}

/** Member names used in reports and logs. */
export function memberName(index: number): string {
  return `m${index}`
}

/** Behaviour config of each member (undefined = honest), by index. */
export function byzantineByMember(s: Scenario): (ByzantineConfig | undefined)[] {
  const out: (ByzantineConfig | undefined)[] = new Array(s.n).fill(undefined)
  for (const b of s.byzantine) for (const i of b.members) out[i] = b
  return out
}

/** A matrix privacy value as the task's privacy block (undefined = no privacy). */
export function privacyOf(p: MatrixPrivacy): PrivacyConfig | undefined {
  if (p === 'none') return undefined
  return typeof p === 'number' ? privacySchema.parse({ epsilon: p }) : p
}

/** The scenario with a matrix optimizer's β, schedule and pre-conditioner (absent = none) in its task. */
export function withOptimizer(s: Scenario, o: MatrixOptimizer): Scenario {
  const next: Scenario = structuredClone(s)
  if (o.beta !== undefined) next.task.beta = o.beta
  if (o.schedule !== undefined) next.task.schedule = o.schedule
  if (o.precondition !== undefined) next.task.precondition = o.precondition
  else delete next.task.precondition
  if (o.exact === true) next.task.exact = true
  else if (o.exact === false) delete next.task.exact
  return next
}

/** Short label of a data partition: `iid`, `α=0.1`, `2 labels/member`, `blocks`. */
export function partitionLabel(p: Scenario['task']['partition']): string {
  return p.scheme === 'iid' ? 'iid' : p.scheme === 'dirichlet' ? `α=${p.alpha}` : p.scheme === 'shards' ? `${p.labelsPerMember} labels/member` : p.scheme
}

/** The scenario with another rule, behaviour, batch size, privacy, r and/or data partition (for matrices); `privacy: 'none'` removes it. */
export function withVariant(
  s: Scenario,
  variant: { aggregator?: Scenario['aggregator']; behaviour?: Omit<ByzantineConfig, 'members'>; batchSize?: number; privacy?: MatrixPrivacy; r?: number; partition?: Scenario['task']['partition'] },
): Scenario {
  const next: Scenario = structuredClone(s)
  if (variant.r !== undefined) next.r = variant.r
  if (variant.partition !== undefined) next.task.partition = structuredClone(variant.partition)
  if (variant.aggregator !== undefined) next.aggregator = variant.aggregator
  if (variant.batchSize !== undefined) next.task.batchSize = variant.batchSize
  if (variant.privacy !== undefined) {
    const p = privacyOf(variant.privacy)
    if (p === undefined) delete next.task.privacy
    else next.task.privacy = p
  }
  if (variant.behaviour !== undefined) next.byzantine = s.byzantine.map((b) => ({ ...variant.behaviour!, members: b.members }) as ByzantineConfig)
  delete next.matrix
  return next
}
