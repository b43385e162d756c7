/**
 * monna — the library. Everything a program needs to run a MoNNA node, a swarm or a
 * topology; nothing here reads argv, exits the process or prints (see node/ for the program).
 */
export * from './errors.ts'
export * from './logger.ts'
export * from './rng.ts'
export * from './config/index.ts'
