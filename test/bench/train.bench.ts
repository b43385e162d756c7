/**
 * `npm run bench:train` — ms per training step (batch 25: forward + backward + momentum update,
 * and the new θ read back as the learner returns it) for the MLP and the LeNet of ALGORITHMS §7,
 * on every backend available: wasm with the fallback kernels of src/compute, wasm stock, cpu
 * stock, cpu with the fallback kernels. Prints a table, one JSON line per figure and the machine.
 *
 * Options (env): BENCH_TRAIN_SECONDS per case time budget (default 4), BENCH_TRAIN_THREADS kernel
 * threads of the threaded native and wasm cases (default: the number of cores), BENCH_TRAIN_CASES
 * comma-separated subset of case names (e.g. `lenet/wasm+fallback`).
 *
 * Uses the learner (`createLearner`, contract §1) when src/learning exports it; otherwise the
 * same step written here over the learning core's model (`createModel`/`initParams`). The case
 * `wasm+native/tf-step` always runs that tensors-only step (θ and momentum as tfjs variables):
 * the tfjs graph over the native kernels. With the native kernels, the learner's own step is one
 * native `modelGradient` call (no tfjs), so the `+native` learner cases measure that, and the
 * tfjs cases after them start with tfjs's code less warmed up than they used to.
 */
import os from 'node:os'
import { tf } from '../../src/learning/tf.ts'
import '@tensorflow/tfjs-backend-wasm'
import { nativeAvailable, nativeStatus, registerFallbackKernels, setNativeEnabled, unregisterFallbackKernels } from '../../src/compute/index.ts'
import * as learning from '../../src/learning/index.ts'
import { Rng } from '../../src/rng.ts'

const BATCH = 25
const BETA = 0.99
const LR = 0.01
const budgetMs = Number(process.env.BENCH_TRAIN_SECONDS ?? 4) * 1000
/** kernel threads for the threaded wasm case (main thread included) */
const threadsOption = Number(process.env.BENCH_TRAIN_THREADS ?? os.cpus().length)
const only = process.env.BENCH_TRAIN_CASES?.split(',').filter((s) => s !== '')

type ModelName = 'mlp' | 'lenet'
interface Variant {
  name: string
  backend: 'wasm' | 'cpu'
  fallback: boolean
  /** the native kernels of src/compute/native.ts (when built) */
  native?: boolean
  threads?: number
  /** measure the tensors-only step instead of the learner */
  tfStep?: boolean
}

const models: Record<ModelName, { spec: learning.ModelSpec; inputShape: number[] }> = {
  // ≈100k parameters: 784·128 + 128 + 128·10 + 10 = 101 770.
  mlp: { spec: { kind: 'mlp', hidden: [128] }, inputShape: [784] },
  lenet: { spec: { kind: 'lenet' }, inputShape: [28, 28, 1] },
}
const variants: Variant[] = [
  { name: 'wasm+native', backend: 'wasm', fallback: true, native: true },
  { name: `wasm+native/${threadsOption}threads`, backend: 'wasm', fallback: true, native: true, threads: threadsOption },
  { name: 'wasm+native/tf-step', backend: 'wasm', fallback: true, native: true, tfStep: true },
  { name: 'cpu+native', backend: 'cpu', fallback: true, native: true },
  { name: 'wasm+fallback', backend: 'wasm', fallback: true },
  { name: `wasm+fallback/${threadsOption}threads`, backend: 'wasm', fallback: true, threads: threadsOption },
  { name: 'wasm', backend: 'wasm', fallback: false },
  { name: 'cpu', backend: 'cpu', fallback: false },
  { name: 'cpu+fallback', backend: 'cpu', fallback: true },
]

interface Stepper {
  step(round: number): Promise<void>
  dispose(): void
  via: string
  /** the backend the learner ended up on (it moves to cpu when a kernel is missing) */
  backend(): string
}

function syntheticData(inputShape: number[], n: number, seed: string) {
  const rng = new Rng(seed)
  const per = inputShape.reduce((a, b) => a * b, 1)
  const x = new Float32Array(n * per)
  for (let i = 0; i < x.length; i++) x[i] = rng.normal()
  const y = new Int32Array(n)
  for (let i = 0; i < n; i++) y[i] = rng.int(10)
  return { name: 'synthetic', x, y, n, exampleShape: inputShape, numClasses: 10 }
}

async function makeStepper(model: ModelName, tfStep: boolean): Promise<Stepper> {
  const { spec, inputShape } = models[model]
  const data = syntheticData(inputShape, 1000, `bench-train/${model}`)
  const api = learning as unknown as Record<string, unknown>
  if (!tfStep && typeof api.createLearner === 'function') {
    const createLearner = api.createLearner as (o: unknown) => Promise<{ step(r: number): Promise<unknown>; dispose(): void }>
    const learner = (await createLearner({
      model: spec,
      inputShape,
      numClasses: 10,
      train: data,
      batchSize: BATCH,
      beta: BETA,
      lambda: 0,
      schedule: { kind: 'constant', lr: LR },
      initSeed: 'bench',
      dataSeed: 'bench',
    })) as Awaited<ReturnType<typeof createLearner>> & { backend?: string }
    return {
      step: async (r) => void (await learner.step(r)),
      dispose: () => learner.dispose(),
      via: 'createLearner',
      backend: () => learner.backend ?? tf.getBackend(),
    }
  }
  // The same step with θ and momentum kept as tfjs variables (no JS copies of θ per step):
  // isolates the kernels' share of the learner's step.
  const m = learning.createModel(spec, inputShape, 10)
  const params = learning.unflatten(m, learning.initParams(m, 'bench')).map((t) => {
    const v = tf.variable(t)
    t.dispose()
    return v
  })
  const momentum = params.map((p) => tf.variable(tf.zerosLike(p)))
  const rng = new Rng('bench-data')
  const per = inputShape.reduce((a, b) => a * b, 1)
  const xb = new Float32Array(BATCH * per)
  const yb = new Int32Array(BATCH)
  return {
    via: 'createModel',
    backend: () => tf.getBackend(),
    async step() {
      for (let i = 0; i < BATCH; i++) {
        const j = rng.int(data.n)
        xb.set(data.x.subarray(j * per, (j + 1) * per), i * per)
        yb[i] = data.y[j]!
      }
      const loss = tf.tidy(() => {
        const x = tf.tensor(xb, [BATCH, ...inputShape])
        const y = tf.oneHot(tf.tensor1d(yb, 'int32'), 10)
        const { value, grads } = tf.variableGrads(() => tf.losses.softmaxCrossEntropy(y, m.forward(params, x)) as tf.Scalar, params)
        params.forEach((p, i) => {
          const g = grads[p.name]!
          momentum[i]!.assign(tf.add(tf.mul(momentum[i]!, BETA), tf.mul(g, 1 - BETA)))
          p.assign(tf.sub(p, tf.mul(momentum[i]!, LR)))
        })
        return value
      })
      await loss.data()
      loss.dispose()
      learning.flatten(m, params)
    },
    dispose() {
      tf.dispose([...params, ...momentum])
    },
  }
}

interface Result {
  model: ModelName
  variant: string
  /** median wall-clock ms per step */
  ms?: number
  /** fastest step */
  min?: number
  /** CPU time (user + system, all threads of this process) per step */
  cpuMs?: number
  steps?: number
  error?: string
  via?: string
  note?: string
}

async function measure(model: ModelName, v: Variant): Promise<Result> {
  if (v.native === true && !nativeAvailable()) return { model, variant: v.name, error: `native kernels ${nativeStatus()}` }
  setNativeEnabled(v.native === true)
  await tf.setBackend(v.backend)
  if (v.fallback) await registerFallbackKernels(v.backend, { threads: v.threads ?? 1 })
  else await unregisterFallbackKernels(v.backend)
  let stepper: Stepper | undefined
  try {
    stepper = await makeStepper(model, v.tfStep === true)
    // Warm-up (JIT, XNNPACK operator creation, heap growth); a case slower than 1 s per step
    // (the stock cpu LeNet takes ~20 s) gets one warm-up and two timed steps only.
    const w0 = performance.now()
    await stepper.step(0)
    const slow = performance.now() - w0 > 1000
    if (!slow) await stepper.step(1)
    const minSteps = slow ? 2 : 3
    const times: number[] = []
    const cpu0 = process.cpuUsage()
    const start = performance.now()
    while (times.length < minSteps || (performance.now() - start < budgetMs && times.length < 200)) {
      const t0 = performance.now()
      await stepper.step(times.length + 2)
      times.push(performance.now() - t0)
    }
    const cpu = process.cpuUsage(cpu0)
    const cpuMsPerStep = (cpu.user + cpu.system) / 1000 / times.length
    times.sort((a, b) => a - b)
    // Median: this 2-core machine is shared, and the mean follows the neighbours' load.
    const ran = stepper.backend()
    const note = ran !== v.backend ? `a kernel is missing on ${v.backend}: the learner fell back to ${ran} (with the fallback cpu kernels)` : undefined
    const median = times.length % 2 === 1 ? times[times.length >> 1]! : (times[times.length / 2 - 1]! + times[times.length / 2]!) / 2
    return { model, variant: v.name, ms: median, min: times[0]!, cpuMs: cpuMsPerStep, steps: times.length, via: stepper.via, note }
  } catch (err) {
    return { model, variant: v.name, error: err instanceof Error ? err.message.split('\n')[0]! : String(err) }
  } finally {
    stepper?.dispose()
    await unregisterFallbackKernels(v.backend)
  }
}

tf.env().set('PROD', true)
const cpus = os.cpus()
const machine = {
  cpu: cpus[0]?.model ?? 'unknown',
  cores: cpus.length,
  node: process.version,
  tfjs: tf.version.tfjs,
  loadavg: os.loadavg().map((l) => Number(l.toFixed(2))),
}
console.log(`machine: ${machine.cpu}, ${machine.cores} cores, node ${machine.node}, tfjs ${machine.tfjs}, load ${machine.loadavg.join(' ')}, monna kernels: ${nativeStatus()}`)

const results: Result[] = []
for (const model of ['mlp', 'lenet'] as const) {
  for (const v of variants) {
    if (only !== undefined && !only.includes(`${model}/${v.name}`)) continue
    results.push(await measure(model, v))
  }
}

const cpuMs = (model: ModelName) => results.find((r) => r.model === model && r.variant === 'cpu')?.ms
console.log('')
console.log('model  backend                  median ms     min ms  cpu ms/step   steps  vs cpu (×faster)')
for (const r of results) {
  const base = cpuMs(r.model)
  const ratio = r.ms !== undefined && base !== undefined ? base / r.ms : undefined
  const cells = [
    r.model.padEnd(6),
    r.variant.padEnd(23),
    r.ms !== undefined ? r.ms.toFixed(1).padStart(9) : '        —',
    r.min !== undefined ? r.min.toFixed(1).padStart(9) : '        —',
    r.cpuMs !== undefined ? r.cpuMs.toFixed(1).padStart(11) : '          —',
    String(r.steps ?? '').padStart(6),
    ratio !== undefined ? ratio.toFixed(1).padStart(16) : '               —',
    r.error !== undefined ? ` unavailable: ${r.error}` : '',
    r.note !== undefined ? ` (${r.note})` : '',
  ]
  console.log(cells.join('  '))
}
console.log('')
for (const r of results) {
  if (r.ms === undefined || r.note !== undefined) continue
  console.log(JSON.stringify({ bench: 'train', case: `${r.model}/${r.variant}`, value: Number(r.ms.toFixed(2)), unit: 'ms' }))
  console.log(JSON.stringify({ bench: 'train', case: `${r.model}/${r.variant}/min`, value: Number(r.min!.toFixed(2)), unit: 'ms' }))
  console.log(JSON.stringify({ bench: 'train', case: `${r.model}/${r.variant}/cpu-time`, value: Number(r.cpuMs!.toFixed(2)), unit: 'ms' }))
  const base = cpuMs(r.model)
  if (base !== undefined && r.variant !== 'cpu') {
    console.log(JSON.stringify({ bench: 'train', case: `${r.model}/${r.variant}/speedup-vs-cpu`, value: Number((base / r.ms).toFixed(2)), unit: 'x' }))
  }
}
console.log(JSON.stringify({ bench: 'train', machine, batch: BATCH, via: results.find((r) => r.via)?.via }))
