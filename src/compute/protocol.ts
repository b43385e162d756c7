/**
 * The job format between the main thread and a kernel thread: a small Int32 header at the
 * start of a SharedArrayBuffer (control word, kernel, operand shapes and offsets, attributes),
 * float32 operands and the result after it. Only 4-D NHWC float32 convolution kernels travel.
 */
export const HEADER_BYTES = 256

/** Values of the control word ctrl[0]. */
export const State = {
  Idle: 0,
  Posted: 1,
  Done: 2,
  Failed: 3,
  Stop: 4,
} as const

export const threadedKernels = ['Conv2D', 'Conv2DBackpropFilter', 'Conv2DBackpropInput'] as const
export type ThreadedKernel = (typeof threadedKernels)[number]
const inputNames = ['x', 'filter', 'dy'] as const

export interface JobInput {
  name: (typeof inputNames)[number]
  shape: [number, number, number, number]
  /** float offset in the data region */
  offset: number
}

export interface Job {
  kernel: ThreadedKernel
  inputs: [JobInput, JobInput]
  outOffset: number
  strides: [number, number]
  /** explicit padding top, bottom, left, right */
  pad: [number, number, number, number]
  dilations: [number, number]
  /** filterShape (Conv2DBackpropFilter) or inputShape (Conv2DBackpropInput) */
  shapeAttr: [number, number, number, number]
}

export function encodeJob(ctrl: Int32Array, job: Job): void {
  ctrl[1] = threadedKernels.indexOf(job.kernel)
  job.inputs.forEach((input, i) => {
    const base = 2 + i * 6
    ctrl[base] = inputNames.indexOf(input.name)
    ctrl.set(input.shape, base + 1)
    ctrl[base + 5] = input.offset
  })
  ctrl[14] = job.outOffset
  ctrl.set(job.strides, 15)
  ctrl.set(job.pad, 17)
  ctrl.set(job.dilations, 21)
  ctrl.set(job.shapeAttr, 23)
}

export interface DecodedJob {
  kernel: ThreadedKernel
  inputs: JobInput[]
  outOffset: number
  attrs: Record<string, unknown>
}

export function decodeJob(ctrl: Int32Array): DecodedJob {
  const kernel = threadedKernels[ctrl[1]!]!
  const inputs: JobInput[] = [0, 1].map((i) => {
    const base = 2 + i * 6
    return {
      name: inputNames[ctrl[base]!]!,
      shape: Array.from(ctrl.subarray(base + 1, base + 5)) as [number, number, number, number],
      offset: ctrl[base + 5]!,
    }
  })
  const [t, b, l, r] = Array.from(ctrl.subarray(17, 21))
  const shapeAttr = Array.from(ctrl.subarray(23, 27))
  const attrs: Record<string, unknown> = {
    strides: Array.from(ctrl.subarray(15, 17)),
    pad: [
      [0, 0],
      [t, b],
      [l, r],
      [0, 0],
    ],
    dataFormat: 'NHWC',
    dilations: Array.from(ctrl.subarray(21, 23)),
  }
  if (kernel === 'Conv2DBackpropFilter') attrs.filterShape = shapeAttr
  if (kernel === 'Conv2DBackpropInput') attrs.inputShape = shapeAttr
  return { kernel, inputs, outOffset: ctrl[14]!, attrs }
}
