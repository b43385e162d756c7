/**
 * A kernel thread: its own tfjs wasm backend (with this module's kernels), fed through one
 * SharedArrayBuffer by `threads.ts`. It blocks on the control word, runs the posted kernel on
 * its slice of the batch synchronously, writes the result back and wakes the caller.
 */
import { parentPort, workerData } from 'node:worker_threads'
import * as tf from '@tensorflow/tfjs'
import '@tensorflow/tfjs-backend-wasm'
import { registerFallbackKernels } from './index.ts'
import { decodeJob, HEADER_BYTES, State } from './protocol.ts'

tf.env().set('PROD', true)
const { buffer } = workerData as { buffer: SharedArrayBuffer }
const ctrl = new Int32Array(buffer, 0, HEADER_BYTES / 4)
const data = new Float32Array(buffer, HEADER_BYTES)

await tf.setBackend('wasm')
await registerFallbackKernels('wasm', { threads: 1 })
parentPort!.postMessage('ready')

for (;;) {
  Atomics.wait(ctrl, 0, State.Idle)
  const state = Atomics.load(ctrl, 0)
  if (state === State.Stop) break
  if (state !== State.Posted) continue
  try {
    const job = decodeJob(ctrl)
    const out = tf.tidy(() => {
      const inputs: Record<string, tf.Tensor> = {}
      for (const input of job.inputs) {
        const size = input.shape.reduce((a, b) => a * b, 1)
        inputs[input.name] = tf.tensor(data.subarray(input.offset, input.offset + size), input.shape, 'float32')
      }
      return tf.engine().runKernel(job.kernel, inputs, job.attrs as never) as tf.Tensor
    })
    data.set(out.dataSync() as Float32Array, job.outOffset)
    out.dispose()
    Atomics.store(ctrl, 0, State.Done)
  } catch {
    Atomics.store(ctrl, 0, State.Failed)
  }
  Atomics.notify(ctrl, 0)
}
