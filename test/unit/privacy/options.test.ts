import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { InvalidConfigError } from '../../../src/errors.ts'
import {
  computeEpsilon,
  defaultPrivacyOptions,
  InvalidPrivacyParameterError,
  noiseMultiplierFromStd,
  resolvePrivacy,
} from '../../../src/privacy/index.ts'

const run = { batchSize: 25, datasetSize: 2857, steps: 600 }

describe('resolvePrivacy', () => {
  it('derives the learner hook from a whole-run ε target, and the run then spends at most that ε', () => {
    const r = resolvePrivacy({ epsilon: 4 }, run)
    assert.equal(r.hook.clipNorm, defaultPrivacyOptions.clipNorm)
    assert.equal(r.samplingRate, 25 / 2857)
    assert.equal(r.sampling, 'without-replacement')
    assert.equal(r.adjacency, 'replace-one')
    assert.ok(Math.abs(noiseMultiplierFromStd({ noiseStd: r.hook.noiseStd, clipNorm: 1, batchSize: 25 }) - r.noiseMultiplier) < 1e-12)
    assert.ok(r.plannedEpsilon <= 4 && r.plannedEpsilon > 3.99, String(r.plannedEpsilon))
    const acc = r.createAccountant()
    acc.step(600)
    assert.equal(acc.spent(r.delta).epsilon, r.plannedEpsilon)
  })

  it('takes a noise multiplier directly and reports the planned ε', () => {
    const r = resolvePrivacy({ noiseMultiplier: 1.1, clipNorm: 2, sampling: 'poisson' }, run)
    assert.equal(r.noiseMultiplier, 1.1)
    assert.ok(Math.abs(r.hook.noiseStd - (1.1 * 2) / 25) < 1e-15)
    assert.equal(r.adjacency, 'add-remove')
    const expected = computeEpsilon({ sampling: 'poisson', samplingRate: 25 / 2857, noiseMultiplier: 1.1, steps: 600, delta: 1e-5 })
    assert.equal(r.plannedEpsilon, expected)
  })

  it('uses the whole shard as the batch when the shard is smaller than a batch', () => {
    const r = resolvePrivacy({ noiseMultiplier: 2 }, { batchSize: 25, datasetSize: 10, steps: 3 })
    assert.equal(r.samplingRate, 1)
    assert.ok(Math.abs(r.hook.noiseStd - 2 / 10) < 1e-15)
  })

  it('rejects bad options with errors whose path names the field', () => {
    const cases: [Parameters<typeof resolvePrivacy>[0], string][] = [
      [{}, 'privacy.epsilon'],
      [{ epsilon: 1, noiseMultiplier: 1 }, 'privacy.epsilon'],
      [{ epsilon: -1 }, 'privacy.epsilon'],
      [{ noiseMultiplier: Number.NaN }, 'privacy.noiseMultiplier'],
      [{ epsilon: 1, clipNorm: 0 }, 'privacy.clipNorm'],
      [{ epsilon: 1, delta: 0 }, 'privacy.delta'],
      [{ epsilon: 1, sampling: 'shuffle' as never }, 'privacy.sampling'],
      [{ epsilon: 1, conversion: 'best' as never }, 'privacy.conversion'],
    ]
    for (const [opts, path] of cases) {
      assert.throws(
        () => resolvePrivacy(opts, run),
        (e: unknown) => e instanceof InvalidPrivacyParameterError && e instanceof InvalidConfigError && e.path === path,
        JSON.stringify(opts),
      )
    }
    assert.throws(
      () => resolvePrivacy({ epsilon: 1 }, { ...run, steps: -1 }, 'swarm.privacy'),
      (e: unknown) => e instanceof InvalidPrivacyParameterError && e.path === 'swarm.privacy.steps',
    )
  })
})
