/**
 * Byzantine members plug into the round engine here (contract §5a). After its own local step a
 * Byzantine member's engine hands its behaviour a context — what it would send if honest, what
 * the others sent this round, and the primitives to act with (`broadcast`, `sendTo`, the
 * adversary toolkit) — and the behaviour acts; everything else (waiting for n − r, aggregating)
 * runs as for an honest member. The engine holds no attack code. Behaviours themselves live in
 * src/topology/behaviours.ts and register by name, so a node config can say
 * `byzantine: { behaviour: <name>, ...params }`.
 */
import type { Adversary } from '../adversary/index.ts'
import { InvalidConfigError, MonnaError } from '../errors.ts'
import type { Rng } from '../rng.ts'
import type { ModelEncoding } from './payload.ts'

export interface ByzantineContext {
  round: number
  self: string
  members: string[]
  f: number
  /** the swarm's redundancy in force (members a round may go without, f ≤ r < n; docs/redundancy.md) */
  r?: number
  swarmSeed: number | string
  /** What this member would send if honest: its local step on its own (possibly label-flipped) data. */
  ownHalfStep: Float32Array
  /** the swarm's model encoding: what a payload must be in to decode at the others (default float32) */
  encoding?: ModelEncoding
  /**
   * Rushing adversary: models of THIS round from other members as soon as this member sees
   * them (SENDs or certified deliveries). Resolves once at least `min` (default n − r − f: of
   * the n − r models an honest member aggregates, up to f are Byzantine; n − 2f when r = f) are
   * seen, or after `timeoutMs` (default the round timeout) with what was seen.
   */
  honest(opts?: { min?: number; timeoutMs?: number; signal?: AbortSignal }): Promise<Float32Array[]>
  rng: Rng
  /**
   * Protocol-level attacks: the adversary toolkit on this member's own libp2p node and key
   * (src/adversary) — any frame, to any member, at any time. Absent when the member runs on a
   * broadcast port without a network (test doubles).
   */
  adversary?: Adversary
  /** Aborted when the run stops: background protocol attacks end with it. */
  signal?: AbortSignal
  /**
   * Broadcasts `payload` (any bytes) as this member's model of round `round` with the signed
   * echo broadcast, in the background, as an honest member broadcasts its own. At most once per
   * round (a second call is equivocation, which the broadcast refuses: use `sendTo`).
   */
  broadcast(payload: Uint8Array): void
  /**
   * SEND of `payload` for this round to `peers` only (equivocation: a different payload per
   * group of members); absent where this member cannot address members one by one.
   */
  sendTo?(peers: string[], payload: Uint8Array): Promise<void>
}

/**
 * A Byzantine member's behaviour: each round, after the member's own local step, `act` does
 * what the member sends (or does not) — typically `ctx.broadcast` of a crafted model — and may
 * start protocol-level attacks in the background with `ctx.adversary` (ended by `ctx.signal`).
 * Throwing `ByzantineCrashError` stops the member's engine on purpose.
 */
export interface ByzantineBehaviour {
  readonly name: string
  act(ctx: ByzantineContext): Promise<void>
}

/** A Byzantine behaviour crashed its member on purpose: the engine stops with this error. */
export class ByzantineCrashError extends MonnaError {
  override name = 'ByzantineCrashError'
  readonly member: string
  readonly round: number
  constructor(member: string, round: number) {
    super(`member ${member} crashed at round ${round} (Byzantine behaviour "crash")`)
    this.member = member
    this.round = round
  }
}

/** Parameters of a behaviour as written in a node config: `{ behaviour: 'alie', z: 1.5 }`. */
export interface BehaviourSpec {
  behaviour: string
  [param: string]: unknown
}

export type BehaviourFactory = (params: Record<string, unknown>) => ByzantineBehaviour

const registry = new Map<string, BehaviourFactory>()

/** Registers (or replaces) the factory of a named behaviour. */
export function registerBehaviour(name: string, factory: BehaviourFactory): void {
  if (!/^[a-z0-9][a-z0-9+._-]*$/i.test(name)) {
    throw new InvalidConfigError('behaviour', `${JSON.stringify(name)} is not a valid behaviour name (letters, digits, "+", ".", "_", "-")`)
  }
  registry.set(name, factory)
}

/** Names of the registered behaviours. */
export function behaviourNames(): string[] {
  return [...registry.keys()].sort()
}

/** Builds a behaviour from its spec; unknown names fail with the list of known ones. */
export function createBehaviour(spec: BehaviourSpec): ByzantineBehaviour {
  const { behaviour, ...params } = spec
  const factory = registry.get(behaviour)
  if (factory === undefined) {
    const known = behaviourNames()
    throw new InvalidConfigError(
      'byzantine.behaviour',
      `unknown behaviour ${JSON.stringify(behaviour)}; known: ${known.length > 0 ? known.join(', ') : '(none registered)'}`,
    )
  }
  return factory(params)
}
