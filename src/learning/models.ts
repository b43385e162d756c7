/**
 * Models as pure tfjs ops over an explicit list of parameter tensors, with one flat
 * `Float32Array` layout shared by every member of a swarm.
 *
 * Flat order (the wire format of a model): layers in forward order; for each layer its kernel
 * then its bias, each row-major exactly as tfjs stores it:
 * - dense kernel `[in, out]` (y = x·W + b), bias `[out]`;
 * - conv kernel `[kh, kw, inC, outC]` (tfjs `conv2d` filter layout, NHWC data), bias `[outC]`.
 *
 * Models:
 * - `logreg`: dense(in → K) + softmax.                         d = in·K + K
 * - `linear`: least squares, ŷ = x·w (kernel `[in, 1]`, no bias), loss ½(ŷ − t)² on the real
 *             targets of the `linear` data set (docs/precondition.md).       d = in
 * - `mlp`:    dense(in → h₁) ReLU … dense(h_L → K) + softmax.
 * - `lenet`:  ALGORITHMS §7: conv 5×5×20 (valid) ReLU → maxpool 2 → conv 5×5×50 (valid) ReLU →
 *             maxpool 2 → flatten (NHWC) → dense 500 ReLU → dense K.
 *             On 28×28×1 inputs and K = 10: 520 + 25 050 + 400 500 + 5 010 = **431 080** params.
 *
 * Initial parameters come from our own seeded `Rng` (never tfjs's initializers), so one
 * `initSeed` gives a bit-identical θ₀ on every platform and backend: Glorot/Xavier uniform
 * kernels (limit √(6/(fan_in+fan_out)), fans as Keras computes them, Glorot & Bengio 2010),
 * zero biases — the Keras defaults the MoNNA reference models were trained with.
 */

import type * as tf from '@tensorflow/tfjs'
import { InvalidConfigError } from '../errors.ts'
import { Rng } from '../rng.ts'
import { tfNow } from './tf-loader.ts'

export type ModelSpec = { kind: 'logreg' } | { kind: 'linear' } | { kind: 'mlp'; hidden: number[] } | { kind: 'lenet' }

/** One parameter tensor of a model: its place in the flat vector. */
export interface ParamSlot {
  /** e.g. `conv1/kernel`, `dense2/bias` */
  name: string
  shape: number[]
  size: number
  /** index of its first element in the flat θ */
  offset: number
  /** Glorot fans for kernels; undefined for biases (initialised to 0) */
  fans?: { fanIn: number; fanOut: number }
}

type Layer =
  | { kind: 'dense'; name: string; units: number; relu: boolean; bias?: false }
  | { kind: 'conv'; name: string; filters: number; kernel: number; relu: boolean }
  | { kind: 'maxpool'; size: number }
  | { kind: 'flatten' }

/** A model: its layout and a forward function from parameter tensors to logits. */
export interface Model {
  readonly spec: ModelSpec
  readonly inputShape: number[]
  readonly numClasses: number
  readonly slots: readonly ParamSlot[]
  /** number of parameters d */
  readonly dim: number
  /** logits `[b, K]` for a batch `x` of shape `[b, ...inputShape]`; `params` in slot order */
  forward(params: readonly tf.Tensor[], x: tf.Tensor): tf.Tensor2D
}

function prod(shape: readonly number[]): number {
  return shape.reduce((a, b) => a * b, 1)
}

function layersOf(spec: ModelSpec, numClasses: number): Layer[] {
  switch (spec.kind) {
    case 'logreg':
      return [{ kind: 'flatten' }, { kind: 'dense', name: 'dense1', units: numClasses, relu: false }]
    case 'linear':
      return [{ kind: 'flatten' }, { kind: 'dense', name: 'linear', units: 1, relu: false, bias: false }]
    case 'mlp': {
      const layers: Layer[] = [{ kind: 'flatten' }]
      spec.hidden.forEach((units, i) => {
        layers.push({ kind: 'dense', name: `dense${i + 1}`, units, relu: true })
      })
      layers.push({ kind: 'dense', name: `dense${spec.hidden.length + 1}`, units: numClasses, relu: false })
      return layers
    }
    case 'lenet':
      return [
        { kind: 'conv', name: 'conv1', filters: 20, kernel: 5, relu: true },
        { kind: 'maxpool', size: 2 },
        { kind: 'conv', name: 'conv2', filters: 50, kernel: 5, relu: true },
        { kind: 'maxpool', size: 2 },
        { kind: 'flatten' },
        { kind: 'dense', name: 'dense1', units: 500, relu: true },
        { kind: 'dense', name: 'dense2', units: numClasses, relu: false },
      ]
  }
}

function validateModelArgs(spec: ModelSpec, inputShape: number[], numClasses: number): void {
  if (spec?.kind === 'linear') {
    if (!Number.isInteger(numClasses) || numClasses < 1) throw new InvalidConfigError('numClasses', `must be an integer ≥ 1, got ${numClasses}`)
  } else if (!Number.isInteger(numClasses) || numClasses < 2) {
    throw new InvalidConfigError('numClasses', `must be an integer ≥ 2, got ${numClasses}`)
  }
  if (inputShape.length === 0 || inputShape.some((s) => !Number.isInteger(s) || s < 1)) {
    throw new InvalidConfigError('inputShape', `must be a non-empty list of positive integers, got [${inputShape.join(', ')}]`)
  }
  if (spec.kind === 'mlp') {
    if (!Array.isArray(spec.hidden) || spec.hidden.some((h) => !Number.isInteger(h) || h < 1)) {
      throw new InvalidConfigError('model.hidden', 'must be a list of positive integer layer widths, e.g. [200, 200]')
    }
  } else if (spec.kind === 'lenet') {
    if (inputShape.length !== 3) {
      throw new InvalidConfigError('inputShape', `lenet needs images [height, width, channels], got [${inputShape.join(', ')}]`)
    }
    const [h, w] = inputShape as [number, number, number]
    if (h < 16 || w < 16) {
      throw new InvalidConfigError('inputShape', `lenet needs images of at least 16×16 (two valid 5×5 convs and two 2×2 pools), got ${h}×${w}`)
    }
  } else if (spec.kind !== 'logreg' && spec.kind !== 'linear') {
    throw new InvalidConfigError('model.kind', `unknown model kind '${(spec as { kind: unknown }).kind}'; use logreg, linear, mlp or lenet`)
  }
}

/** Builds the model for `inputShape` (without the batch dimension) and `numClasses`. */
export function createModel(spec: ModelSpec, inputShape: number[], numClasses: number): Model {
  validateModelArgs(spec, inputShape, numClasses)
  const layers = layersOf(spec, numClasses)
  const slots: ParamSlot[] = []
  let offset = 0
  const addSlot = (name: string, shape: number[], fans?: { fanIn: number; fanOut: number }): void => {
    const size = prod(shape)
    slots.push({ name, shape, size, offset, fans })
    offset += size
  }
  // Walk the shapes through the layers to size every kernel.
  let shape = [...inputShape]
  for (const layer of layers) {
    switch (layer.kind) {
      case 'flatten':
        shape = [prod(shape)]
        break
      case 'dense': {
        const inDim = shape[0]!
        addSlot(`${layer.name}/kernel`, [inDim, layer.units], { fanIn: inDim, fanOut: layer.units })
        if (layer.bias !== false) addSlot(`${layer.name}/bias`, [layer.units])
        shape = [layer.units]
        break
      }
      case 'conv': {
        const [h, w, c] = shape as [number, number, number]
        const k = layer.kernel
        addSlot(`${layer.name}/kernel`, [k, k, c, layer.filters], { fanIn: k * k * c, fanOut: k * k * layer.filters })
        addSlot(`${layer.name}/bias`, [layer.filters])
        shape = [h - k + 1, w - k + 1, layer.filters]
        break
      }
      case 'maxpool': {
        const [h, w, c] = shape as [number, number, number]
        shape = [Math.floor(h / layer.size), Math.floor(w / layer.size), c]
        break
      }
    }
  }
  const dim = offset

  const forward = (params: readonly tf.Tensor[], x: tf.Tensor): tf.Tensor2D => {
    if (params.length !== slots.length) {
      throw new InvalidConfigError('params', `expected ${slots.length} parameter tensors, got ${params.length}`)
    }
    const T = tfNow()
    let h: tf.Tensor = x
    let p = 0
    for (const layer of layers) {
      switch (layer.kind) {
        case 'flatten':
          h = T.reshape(h, [h.shape[0]!, -1])
          break
        case 'dense': {
          if (layer.bias === false) {
            h = T.matMul(h as tf.Tensor2D, params[p] as tf.Tensor2D)
            p += 1
            break
          }
          const z = T.add(T.matMul(h as tf.Tensor2D, params[p] as tf.Tensor2D), params[p + 1]!)
          p += 2
          h = layer.relu ? T.relu(z) : z
          break
        }
        case 'conv': {
          const z = T.add(T.conv2d(h as tf.Tensor4D, params[p] as tf.Tensor4D, 1, 'valid'), params[p + 1]!)
          p += 2
          h = layer.relu ? T.relu(z) : z
          break
        }
        case 'maxpool':
          h = T.maxPool(h as tf.Tensor4D, layer.size, layer.size, 'valid')
          break
      }
    }
    return h as tf.Tensor2D
  }

  return { spec, inputShape: [...inputShape], numClasses, slots, dim, forward }
}

/**
 * The model as the layer spec of the native kernels' `modelGradient` (src/compute/native.ts):
 * `[inH, inW, inC, classes, layers, then per layer kind, a, b, c]` with kind 0 conv (filters,
 * kernel, relu), 1 max pool (size), 2 flatten, 3 dense (units, relu, bias). Undefined for
 * `linear` (its gradient is plain JS). Inputs other than [h, w, c] are flattened first by every
 * model that takes them, so they are described as [1, 1, size].
 */
export function nativeLayerSpec(model: Model): Int32Array | undefined {
  if (model.spec.kind === 'linear') return undefined
  const layers = layersOf(model.spec, model.numClasses)
  const shape = model.inputShape
  const head = shape.length === 3 ? shape : [1, 1, prod(shape)]
  const out = [head[0]!, head[1]!, head[2]!, model.numClasses, layers.length]
  for (const l of layers) {
    switch (l.kind) {
      case 'conv':
        out.push(0, l.filters, l.kernel, l.relu ? 1 : 0)
        break
      case 'maxpool':
        out.push(1, l.size, 0, 0)
        break
      case 'flatten':
        out.push(2, 0, 0, 0)
        break
      case 'dense':
        out.push(3, l.units, l.relu ? 1 : 0, l.bias === false ? 0 : 1)
        break
    }
  }
  return Int32Array.from(out)
}

/** Number of parameters d of a model, without building tensors. */
export function paramCount(spec: ModelSpec, inputShape: number[], numClasses: number): number {
  return createModel(spec, inputShape, numClasses).dim
}

/**
 * θ₀ for `model` from `initSeed`: Glorot-uniform kernels, zero biases, drawn slot by slot in
 * flat order from one `Rng(initSeed)` — pure JS, so identical on every member and backend.
 */
export function initParams(model: Model, initSeed: number | string): Float32Array {
  const rng = new Rng(initSeed)
  const theta = new Float32Array(model.dim)
  for (const slot of model.slots) {
    if (slot.fans === undefined) continue
    const limit = Math.sqrt(6 / (slot.fans.fanIn + slot.fans.fanOut))
    const end = slot.offset + slot.size
    for (let i = slot.offset; i < end; i++) theta[i] = (rng.next() * 2 - 1) * limit
  }
  return theta
}

/**
 * The parameter tensors of a flat θ, in slot order (the caller disposes them, or calls this
 * inside `tf.tidy`). Each tensor gets its own copy of its slice.
 */
export function unflatten(model: Model, theta: Float32Array): tf.Tensor[] {
  if (theta.length !== model.dim) {
    throw new InvalidConfigError('theta', `expected ${model.dim} parameters, got ${theta.length}`)
  }
  const T = tfNow()
  return model.slots.map((slot) => T.tensor(theta.slice(slot.offset, slot.offset + slot.size), slot.shape, 'float32'))
}

/** The flat θ of a list of parameter tensors in slot order (reads them synchronously). */
export function flatten(model: Model, params: readonly tf.Tensor[], out: Float32Array = new Float32Array(model.dim)): Float32Array {
  if (params.length !== model.slots.length) {
    throw new InvalidConfigError('params', `expected ${model.slots.length} parameter tensors, got ${params.length}`)
  }
  if (out.length !== model.dim) {
    throw new InvalidConfigError('out', `expected a buffer of ${model.dim} floats, got ${out.length}`)
  }
  model.slots.forEach((slot, i) => {
    const t = params[i]!
    if (t.size !== slot.size) {
      throw new InvalidConfigError(`params[${i}]`, `${slot.name} should have ${slot.size} elements, got ${t.size}`)
    }
    out.set(t.dataSync() as Float32Array, slot.offset)
  })
  return out
}
