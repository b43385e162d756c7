/**
 * `task.precondition` and the least-squares task in swarm and scenario files
 * (docs/precondition.md): accepted for the convex models (linear, logreg); refused, with one-line
 * errors naming the field, for a non-convex model (mlp, lenet), for a d too large for a d × d
 * matrix (logreg: (features + 1) × classes), and for the linear model without the linear data set.
 */
import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { maxPreconditionDim, parseSwarm } from '../../../src/config/schema.ts'
import { InvalidConfigError } from '../../../src/errors.ts'
import { maxPreconditionDim as learnerBound, validateLearnerOptions } from '../../../src/learning/learner.ts'
import { parseScenario } from '../../../src/topology/schema.ts'
import { fakePeerIds } from '../../support/fake-ids.ts'

const ids = fakePeerIds

const linearTask = { dataset: { kind: 'linear', dim: 10, condition: 100 }, model: { kind: 'linear' }, precondition: { alpha: 1, beta: 0 } }
const swarm = (task: Record<string, unknown>): unknown => ({ name: 'pc', f: 1, members: ids(4).map((id) => ({ id })), task })

/** an InvalidConfigError on one line whose path ends with `path` and whose message matches `re` */
const refused = (path: string, re: RegExp) => (e: unknown) =>
  e instanceof InvalidConfigError && e.path.endsWith(path) && re.test(e.message) && !e.message.includes('\n')

describe('task.precondition', () => {
  it('is accepted on the least-squares task, with defaults α = 0.5, β = 0', () => {
    const s = parseSwarm(swarm(linearTask))
    assert.deepEqual(s.task.precondition, { alpha: 1, beta: 0 })
    assert.deepEqual(parseSwarm(swarm({ ...linearTask, precondition: {} })).task.precondition, { alpha: 0.5, beta: 0 })
    assert.equal(parseSwarm(swarm({ ...linearTask, precondition: undefined })).task.precondition, undefined)
  })

  it('is refused for a non-convex model (mlp, lenet)', () => {
    assert.throws(() => parseSwarm(swarm({ model: { kind: 'mlp' }, precondition: { alpha: 1 } })), refused('task.precondition', /needs a convex model.*mlp is not convex/))
    assert.throws(() => parseSwarm(swarm({ model: { kind: 'lenet' }, precondition: { alpha: 1 } })), refused('task.precondition', /lenet is not convex/))
  })

  it('is accepted for logreg while (features + 1) × classes ≤ 256', () => {
    const logreg = (dataset: unknown) => swarm({ dataset, model: { kind: 'logreg' }, precondition: { alpha: 2 } })
    assert.deepEqual(parseSwarm(logreg({ kind: 'logistic', dim: 20, condition: 1000 })).task.precondition, { alpha: 2, beta: 0 })
    // logistic: 2 classes, (127 + 1)·2 = 256
    assert.doesNotThrow(() => parseSwarm(logreg({ kind: 'logistic', dim: 127 })))
    assert.throws(() => parseSwarm(logreg({ kind: 'logistic', dim: 128 })), refused('task.precondition', /d = 258 \(logreg: \(features \+ 1\) × classes\) is too large .*; lower dataset.dim/))
    assert.doesNotThrow(() => parseSwarm(logreg({ kind: 'gaussian-mixture', classes: 4, dim: 63 })))
    assert.throws(() => parseSwarm(logreg({ kind: 'gaussian-mixture', classes: 4, dim: 64 })), refused('task.precondition', /d = 260 /))
    assert.throws(() => parseSwarm(logreg({ kind: 'mnist' })), refused('task.precondition', /d = 7850 .*use a data set with fewer features/))
  })

  it(`is refused for d > ${maxPreconditionDim} (a d × d matrix per member)`, () => {
    assert.equal(maxPreconditionDim, learnerBound)
    assert.doesNotThrow(() => parseSwarm(swarm({ ...linearTask, dataset: { kind: 'linear', dim: maxPreconditionDim, trainSize: 1000 } })))
    assert.throws(
      () => parseSwarm(swarm({ ...linearTask, dataset: { kind: 'linear', dim: maxPreconditionDim + 1 } })),
      refused('task.precondition', new RegExp(`d = ${maxPreconditionDim + 1} is too large for a d × d pre-conditioner \\(d ≤ ${maxPreconditionDim}\\)`)),
    )
  })

  it('refuses bad α and β, and the linear model without the linear data set', () => {
    assert.throws(() => parseSwarm(swarm({ ...linearTask, precondition: { alpha: 0 } })), refused('task.precondition.alpha', /./))
    assert.throws(() => parseSwarm(swarm({ ...linearTask, precondition: { alpha: 1, beta: -1 } })), refused('task.precondition.beta', /./))
    assert.throws(() => parseSwarm(swarm({ ...linearTask, precondition: { alpha: 1, gamma: 2 } })), refused('task.precondition', /gamma/))
    assert.throws(() => parseSwarm(swarm({ model: { kind: 'linear' } })), refused('task.model', /needs real targets: use dataset kind linear, not mnist/))
  })

  it('is checked in scenario files, for the task and for every matrix optimizer', () => {
    const base = { name: 'pc', n: 4, f: 1, task: linearTask, byzantine: [{ members: 3, behaviour: 'alie' }] }
    assert.doesNotThrow(() => parseScenario(base))
    assert.throws(() => parseScenario({ ...base, task: { ...linearTask, model: { kind: 'mlp' } } }), refused('task.precondition', /mlp is not convex/))
    const matrix = (optimizers: unknown[]) => ({ ...base, task: { dataset: { kind: 'gaussian-mixture' }, model: { kind: 'logreg' } }, matrix: { rules: [{ rule: 'nna' }], behaviours: ['alie'], optimizers } })
    assert.doesNotThrow(() => parseScenario(matrix([{ name: 'plain', beta: 0 }, { name: 'momentum', beta: 0.9 }])))
    assert.doesNotThrow(() => parseScenario(matrix([{ name: 'precond', precondition: { alpha: 1 } }])))
    const big = { ...matrix([{ name: 'plain' }, { name: 'precond', precondition: { alpha: 1 } }]), task: { dataset: { kind: 'gaussian-mixture', dim: 100 }, model: { kind: 'logreg' } } }
    assert.throws(() => parseScenario(big), refused('matrix.optimizers.1: task.precondition', /d = 404 .*too large/))
    assert.throws(() => parseScenario(matrix([{ name: 'a' }, { name: 'a' }])), refused('matrix.optimizers.1.name', /listed twice/))
  })

  it('is refused by the learner too (a program that builds one directly)', () => {
    const train = { name: 't', x: new Float32Array(4), y: new Int32Array(2), n: 2, exampleShape: [2], numClasses: 2 }
    const opts = { model: { kind: 'mlp' as const, hidden: [4] }, inputShape: [2], numClasses: 2, train, batchSize: 1, beta: 0, lambda: 0, schedule: { kind: 'constant' as const, lr: 1 }, initSeed: 1, dataSeed: 1 }
    assert.throws(() => validateLearnerOptions({ ...opts, precondition: { alpha: 1, beta: 0 } }), refused('precondition', /mlp is not convex/))
    assert.doesNotThrow(() => validateLearnerOptions({ ...opts, model: { kind: 'logreg' }, precondition: { alpha: 1, beta: 0 } }))
    // logreg on 2 × 128 images (an idx or csv set, which the config cannot size): (256 + 1)·2 parameters
    const wide = { ...train, x: new Float32Array(2 * 256), exampleShape: [2, 128] }
    assert.throws(() => validateLearnerOptions({ ...opts, train: wide, inputShape: [2, 128], model: { kind: 'logreg' }, precondition: { alpha: 1, beta: 0 } }), refused('precondition', /d = 514 parameters/))
    assert.throws(() => validateLearnerOptions({ ...opts, model: { kind: 'linear' } }), refused('model', /needs regression targets/))
  })
})
