/**
 * Byzantine members plug into the round engine here (contract §5a). After its own local step a
 * Byzantine member's engine asks its behaviour what to broadcast; everything else (waiting for
 * n − f, aggregating) runs as for an honest member. Behaviours themselves live in
 * src/topology/behaviours.ts and register by name, so a node config can say
 * `byzantine: { behaviour: <name>, ...params }`.
 */
import type { Adversary } from '../adversary/index.ts'
import { InvalidConfigError } from '../errors.ts'
import type { Rng } from '../rng.ts'

export interface ByzantineContext {
  round: number
  self: string
  members: string[]
  f: number
  swarmSeed: number | string
  /** What this member would send if honest: its local step on its own (possibly label-flipped) data. */
  ownHalfStep: Float32Array
  /**
   * Rushing adversary: models of THIS round from other members as soon as this member sees
   * them (SENDs or certified deliveries). Resolves once at least `min` (default n − 2f) are
   * seen, or after `timeoutMs` (default the round timeout) with what was seen.
   */
  honest(opts?: { min?: number; timeoutMs?: number; signal?: AbortSignal }): Promise<Float32Array[]>
  rng: Rng
  /**
   * Protocol-level attacks: the adversary toolkit on this member's own libp2p node and key
   * (src/adversary) — any frame, to any member, at any time. Absent on the in-process hub.
   */
  adversary?: Adversary
  /** Aborted when the run stops: background protocol attacks end with it. */
  signal?: AbortSignal
}

export type ByzantineAction =
  | { kind: 'send'; model: Float32Array; delayMs?: number }
  | { kind: 'send-raw'; payload: Uint8Array }
  | { kind: 'equivocate'; models: Map<string, Float32Array> }
  | { kind: 'replay'; fromRound: number }
  | { kind: 'silent' }
  | { kind: 'crash' }

export interface ByzantineBehaviour {
  readonly name: string
  act(ctx: ByzantineContext): Promise<ByzantineAction>
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
