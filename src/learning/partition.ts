/**
 * Splitting a training set across members, deterministically from a seed. Every scheme returns
 * one `Int32Array` of example indices per member; together they hold every example exactly once.
 *
 * - `iid`: a seeded shuffle cut into `members` parts whose sizes differ by at most one.
 * - `dirichlet`: label skew controlled by α (small α → each member sees few classes). Two
 *   flavours, both exact partitions — each class's (shuffled) examples are cut among the members
 *   at ⌊cumsum(w)·n_c⌋ for weights w over members:
 *   - `per-member` (default; the MoNNA reference code, LPD-EPFL/robust-collaborative-learning
 *     `experiments/dataset.py`, ALGORITHMS §7): each member draws its label distribution
 *     q_i ~ Dirichlet(α·1_K) and class c is split in proportion to q_ic. Shard sizes stay close to
 *     N/members, as in the reference (which samples ⌊(N/n)·q_ic⌋ examples per class and member,
 *     independently per member, so its shards may overlap; here they never do).
 *   - `per-class` (Hsu et al. 2019, arXiv:1909.06335): each class draws its split over members
 *     p_c ~ Dirichlet(α·1_members). Shard sizes vary much more at small α.
 *   The draw is repeated (up to 100 times, deterministically) until every member has at least
 *   `minPerMember` examples (default 1: a member needs data to train); if no draw achieves it,
 *   the last draw is returned.
 * - `shards`: McMahan et al. 2017 (arXiv:1602.05629): examples sorted by label, cut into
 *   `members·labelsPerMember` equal shards, and each member gets `labelsPerMember` shards at
 *   random — so at most `labelsPerMember` labels per member, plus one more where a shard
 *   straddles a label boundary.
 */
import { InvalidConfigError } from '../errors.ts'
import { Rng } from '../rng.ts'

export type PartitionSpec =
  | { scheme: 'iid' }
  | { scheme: 'dirichlet'; alpha: number; mode?: 'per-member' | 'per-class'; minPerMember?: number }
  | { scheme: 'shards'; labelsPerMember: number }
  /** member i takes the i-th of `members` consecutive, equal (± 1) pieces of the split, in order (the `linear` data set's `blocks`; docs/exact.md) */
  | { scheme: 'blocks' }

const dirichletAttempts = 100

export function partition(labels: Int32Array, numClasses: number, members: number, spec: PartitionSpec, seed: number | string): Int32Array[] {
  if (!Number.isInteger(members) || members < 1) throw new InvalidConfigError('members', `must be a positive integer, got ${members}`)
  if (!Number.isInteger(numClasses) || numClasses < 1) throw new InvalidConfigError('numClasses', `must be a positive integer, got ${numClasses}`)
  for (let i = 0; i < labels.length; i++) {
    const y = labels[i]!
    if (y < 0 || y >= numClasses) throw new InvalidConfigError(`labels[${i}]`, `label ${y} is outside [0, ${numClasses})`)
  }
  const rng = new Rng(seed)
  switch (spec?.scheme) {
    case 'iid':
      return iid(labels.length, members, rng)
    case 'dirichlet': {
      if (!(spec.alpha > 0) || !Number.isFinite(spec.alpha)) {
        throw new InvalidConfigError('partition.alpha', `must be a finite number > 0 (MoNNA used 1 and 5), got ${spec.alpha}`)
      }
      const min = spec.minPerMember ?? 1
      if (!Number.isInteger(min) || min < 0) throw new InvalidConfigError('partition.minPerMember', `must be an integer ≥ 0, got ${min}`)
      const mode = spec.mode ?? 'per-member'
      if (mode !== 'per-member' && mode !== 'per-class') {
        throw new InvalidConfigError('partition.mode', `must be 'per-member' (MoNNA reference) or 'per-class' (Hsu et al.), got '${String(mode)}'`)
      }
      return dirichlet(labels, numClasses, members, spec.alpha, mode, min, rng)
    }
    case 'shards': {
      const k = spec.labelsPerMember
      if (!Number.isInteger(k) || k < 1) throw new InvalidConfigError('partition.labelsPerMember', `must be a positive integer, got ${k}`)
      return shards(labels, members, k, rng)
    }
    case 'blocks':
      return cutEven(range(labels.length), members)
    default:
      throw new InvalidConfigError('partition.scheme', `unknown scheme '${String((spec as { scheme?: unknown })?.scheme)}'; use iid, dirichlet, shards or blocks`)
  }
}

function range(n: number): Int32Array {
  const a = new Int32Array(n)
  for (let i = 0; i < n; i++) a[i] = i
  return a
}

/** Cuts `a` into `parts` consecutive pieces whose sizes differ by at most one. */
function cutEven(a: Int32Array, parts: number): Int32Array[] {
  const out: Int32Array[] = []
  for (let p = 0; p < parts; p++) {
    out.push(a.slice(Math.floor((p * a.length) / parts), Math.floor(((p + 1) * a.length) / parts)))
  }
  return out
}

function iid(n: number, members: number, rng: Rng): Int32Array[] {
  return cutEven(rng.shuffle(range(n)), members)
}

function byClass(labels: Int32Array, numClasses: number, rng: Rng): Int32Array[] {
  const counts = new Int32Array(numClasses)
  for (let i = 0; i < labels.length; i++) counts[labels[i]!]!++
  const out = Array.from(counts, (c) => new Int32Array(c))
  const fill = new Int32Array(numClasses)
  for (let i = 0; i < labels.length; i++) {
    const y = labels[i]!
    out[y]![fill[y]!++] = i
  }
  for (const idx of out) rng.shuffle(idx)
  return out
}

function dirichlet(
  labels: Int32Array,
  numClasses: number,
  members: number,
  alpha: number,
  mode: 'per-member' | 'per-class',
  min: number,
  rng: Rng,
): Int32Array[] {
  const classes = byClass(labels, numClasses, rng)
  let result: Int32Array[] = []
  for (let attempt = 0; attempt < dirichletAttempts; attempt++) {
    // weights[c][m]: member m's weight in the split of class c
    const weights = Array.from({ length: numClasses }, () => new Float64Array(members))
    if (mode === 'per-class') {
      for (const w of weights) for (let m = 0; m < members; m++) w[m] = rng.gamma(alpha)
    } else {
      for (let m = 0; m < members; m++) {
        let sum = 0
        for (let c = 0; c < numClasses; c++) {
          const g = rng.gamma(alpha)
          weights[c]![m] = g
          sum += g
        }
        // q_m = normalised row (a Dirichlet draw); a row that underflowed to 0 puts all on one class.
        if (!(sum > 0 && Number.isFinite(sum))) {
          for (let c = 0; c < numClasses; c++) weights[c]![m] = 0
          weights[rng.int(numClasses)]![m] = 1
          sum = 1
        }
        for (let c = 0; c < numClasses; c++) weights[c]![m]! /= sum
      }
    }
    const parts: number[][] = Array.from({ length: members }, () => [])
    classes.forEach((idx, c) => {
      const w = weights[c]!
      let sum = 0
      for (let m = 0; m < members; m++) sum += w[m]!
      if (!(sum > 0 && Number.isFinite(sum))) {
        // Every weight underflowed (tiny α): the whole class goes to one member.
        w.fill(0)
        w[rng.int(members)] = 1
        sum = 1
      }
      let start = 0
      let acc = 0
      for (let m = 0; m < members; m++) {
        acc += w[m]!
        // The last member takes the rest: no example lost to rounding.
        const end = m === members - 1 ? idx.length : Math.min(idx.length, Math.floor((acc / sum) * idx.length))
        for (let i = start; i < end; i++) parts[m]!.push(idx[i]!)
        start = Math.max(start, end)
      }
    })
    result = parts.map((p) => Int32Array.from(p))
    if (result.every((p) => p.length >= min)) break
  }
  return result
}

function shards(labels: Int32Array, members: number, k: number, rng: Rng): Int32Array[] {
  // Sort by label; ties in a seeded random order.
  const order = rng.shuffle(range(labels.length))
  const sorted = Int32Array.from(Array.from(order).sort((a, b) => labels[a]! - labels[b]!))
  const pieces = cutEven(sorted, members * k)
  const deal = rng.shuffle(range(pieces.length))
  const out: Int32Array[] = []
  for (let m = 0; m < members; m++) {
    const mine = Array.from(deal.subarray(m * k, (m + 1) * k), (s) => pieces[s]!)
    const total = mine.reduce((a, p) => a + p.length, 0)
    const idx = new Int32Array(total)
    let at = 0
    for (const p of mine) {
      idx.set(p, at)
      at += p.length
    }
    out.push(idx)
  }
  return out
}

/** Count of each label among the examples `indices` (a member's label histogram). */
export function labelHistogram(labels: Int32Array, indices: ArrayLike<number>, numClasses: number): number[] {
  const h = new Array<number>(numClasses).fill(0)
  for (let i = 0; i < indices.length; i++) {
    const y = labels[indices[i]!]!
    if (y >= 0 && y < numClasses) h[y]!++
  }
  return h
}
