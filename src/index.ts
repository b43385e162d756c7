/**
 * monna — the library. Everything a program needs to run a MoNNA node, a swarm or a
 * topology; nothing here reads argv, exits the process or prints (see node/ for the program).
 *
 * Each part is also importable on its own (`src/<part>/index.ts`); this root re-exports the
 * public entry points of every part.
 */

export * from './aggregation/index.ts'
export * from './attacks/index.ts'
// The node's BroadcastPort describes these structurally; the broadcast's own types are the public ones.
export type { BroadcastStats, Delivery, Rejection } from './broadcast/index.ts'
export * from './broadcast/index.ts'
export * from './compute/index.ts'
export * from './config/index.ts'
export * from './errors.ts'
export * from './learning/index.ts'
export * from './logger.ts'
export * from './membership/index.ts'
export * from './net/index.ts'
export * from './node/index.ts'
export * from './privacy/index.ts'
export * from './rng.ts'
export * from './topology/index.ts'
