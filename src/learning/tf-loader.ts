/**
 * TensorFlow.js on demand. A member whose model monna's native kernels compute (the step and the
 * evaluation: learner.ts) never needs tfjs; loading it anyway costs ≈ 12 MB of V8 heap and
 * ≈ 20 MB of RSS per process (docs/memory.md). This module imports no tfjs at run time:
 * `loadTf()` brings it in (tf.ts, which registers itself here), and `tfNow()` hands it to
 * synchronous code that runs only after something loaded it.
 */
import type * as TF from '@tensorflow/tfjs'
import { TfNotLoadedError } from './errors.ts'

let current: typeof TF | undefined

/** Called by tf.ts once tfjs is imported (any static import of tf.ts counts as loading). */
export function provideTf(tf: typeof TF): void {
  current = tf
}

/** tfjs if something in this process has loaded it, else undefined (nothing is loaded). */
export function tfIfLoaded(): typeof TF | undefined {
  return current
}

/** tfjs, for code that runs only once it is loaded (tensors in hand, or after `loadTf`); else throws `TfNotLoadedError`. */
export function tfNow(): typeof TF {
  if (current === undefined) throw new TfNotLoadedError()
  return current
}

/** Loads tfjs (once per process) and returns it. */
export async function loadTf(): Promise<typeof TF> {
  if (current === undefined) await import('./tf.ts')
  return tfNow()
}
