/**
 * `npm run bench:evaluate` — what a LeNet learner's `evaluate` costs on MNIST's whole test split
 * (10,000 images; what a member does at the end of a run): with the native kernels' forward pass
 * (`modelEvaluate`) and on tfjs's wasm backend (the path without them), each in a fresh process
 * (tfjs's wasm heap and the kernels' scratch only grow, so a process measures one case), alternated
 * `BENCH_REPEAT` times (default 3). Per case: wall and CPU milliseconds, the process's peak RSS
 * before and after, tfjs's wasm heap after, and accuracy and loss (which must agree). Prints '#'
 * lines for people and one JSON figure per line, with the machine.
 */
import { execFileSync } from 'node:child_process'
import { readFileSync } from 'node:fs'
import { cpus, loadavg } from 'node:os'
import '@tensorflow/tfjs-backend-wasm'
import { nativeAvailable, nativeStatus, registerFallbackKernels, setNativeEnabled } from '../../src/compute/index.ts'
import { createLearner, loadShard, partition } from '../../src/learning/index.ts'
import { tf } from '../../src/learning/tf.ts'

const machine = { cpu: cpus()[0]?.model.replace(/\s+\d+-Core Processor/, '').trim(), cores: cpus().length, node: process.version }
type Case = 'native' | 'tfjs-wasm'

async function measure(c: Case): Promise<Record<string, number>> {
  await tf.setBackend('wasm')
  await registerFallbackKernels('wasm')
  // member 3 of the 26 of paper-mnist-none (Dirichlet α = 1), 60 steps from θ₀ (β 0.9, γ 0.05)
  const { shard, test } = await loadShard({ kind: 'mnist' }, (y, k) => partition(y, k, 26, { scheme: 'dirichlet', alpha: 1 }, 1)[3]!)
  const learner = await createLearner({ model: { kind: 'lenet' }, inputShape: [28, 28, 1], numClasses: 10, train: shard, batchSize: 25, beta: 0.9, lambda: 0, schedule: { kind: 'constant', lr: 0.05 }, initSeed: 'bench-evaluate', dataSeed: 'bench-evaluate' })
  for (let t = 0; t < 60; t++) await learner.step(t)
  setNativeEnabled(c === 'native')
  const hwm = (): number => Number(readFileSync('/proc/self/status', 'utf8').match(/VmHWM:\s+(\d+)/)?.[1] ?? Number.NaN) / 1024
  const before = hwm()
  const cpu0 = process.cpuUsage()
  const t0 = performance.now()
  const r = await learner.evaluate(test)
  const ms = performance.now() - t0
  const cpu = process.cpuUsage(cpu0)
  const wasm = (tf.engine() as unknown as { registry: { wasm?: { wasm?: { HEAPU8?: Uint8Array } } } }).registry.wasm?.wasm?.HEAPU8?.byteLength ?? Number.NaN
  return { ms, cpuMs: (cpu.user + cpu.system) / 1000, peakBeforeMB: before, peakAfterMB: hwm(), wasmHeapMB: wasm / 2 ** 20, accuracy: r.accuracy, loss: r.loss }
}

const child = process.argv[2] as Case | undefined
if (child !== undefined) {
  console.log(JSON.stringify(await measure(child)))
} else {
  if (!nativeAvailable()) throw new Error(`native kernels ${nativeStatus()}: npm install builds them`)
  const repeat = Number(process.env.BENCH_REPEAT ?? 3)
  console.log(`# bench:evaluate — ${machine.cpu}, ${machine.cores} cores, node ${machine.node}, load ${loadavg().map((l) => l.toFixed(1)).join(' ')}; LeNet, MNIST test split, ${repeat} alternations`)
  const runs: Record<Case, Record<string, number>[]> = { native: [], 'tfjs-wasm': [] }
  for (let i = 0; i < repeat; i++) {
    for (const c of ['native', 'tfjs-wasm'] as const) {
      const out = execFileSync(process.execPath, [import.meta.filename, c], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'] })
      const r = JSON.parse(out.trim().split('\n').at(-1)!) as Record<string, number>
      runs[c].push(r)
      console.log(`# ${c}: ${r.ms!.toFixed(0)} ms (${r.cpuMs!.toFixed(0)} CPU-ms), peak RSS ${r.peakBeforeMB!.toFixed(0)} → ${r.peakAfterMB!.toFixed(0)} MB, wasm heap ${r.wasmHeapMB} MB, accuracy ${r.accuracy}, loss ${r.loss!.toFixed(6)}`)
    }
  }
  const fig = (o: Record<string, unknown>): void => console.log(JSON.stringify({ bench: 'evaluate', ...o, machine }))
  for (const [c, rs] of Object.entries(runs)) {
    fig({ case: c, ms: rs.map((r) => Math.round(r.ms!)), peakGrowthMB: rs.map((r) => Math.round(r.peakAfterMB! - r.peakBeforeMB!)), wasmHeapMB: rs.map((r) => r.wasmHeapMB), accuracy: rs[0]!.accuracy, loss: rs[0]!.loss })
  }
  const agree = runs.native.every((r, i) => r.accuracy === runs['tfjs-wasm'][i]!.accuracy && Math.abs(r.loss! - runs['tfjs-wasm'][i]!.loss!) <= 1e-5 * runs['tfjs-wasm'][i]!.loss!)
  fig({ case: 'agreement', sameAccuracyAndLoss: agree })
  if (!agree) process.exitCode = 1
}
