/**
 * The learning core (contract §1): data sets, partitions, models with a flat parameter layout,
 * the MoNNA local step (ALGORITHMS §1) and compute backends. Knows nothing of the network.
 */
export type { Model, ModelSpec, ParamSlot } from './models.ts'
export { createModel, flatten, initParams, paramCount, unflatten } from './models.ts'
export { tf } from './tf.ts'
