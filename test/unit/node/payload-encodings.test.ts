/**
 * Model encodings on the wire (src/node/payload.ts, docs/encodings.md): exact bit patterns,
 * error bounds on seeded random vectors, refusals of hostile payloads, the swarm id, and swarms
 * that learn with a lossy encoding.
 */
import assert from 'node:assert/strict'
import { mkdtemp, readFile, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import { describe, it } from 'node:test'
import { sha256 } from '@noble/hashes/sha2.js'
import { bytesToHex } from '@noble/hashes/utils.js'
import { nativeKernels, setNativeEnabled } from '../../../src/compute/native.ts'
import { canonicalJson, parseSwarm, swarmId } from '../../../src/config/schema.ts'
import { InvalidConfigError } from '../../../src/errors.ts'
import type { ByzantineContext } from '../../../src/node/behaviour.ts'
import { RoundEngine, type RoundEngineOptions, type RoundReport } from '../../../src/node/engine.ts'
import { createDecodeCache, decodeModel, encodedBytes, encodeModel, INT8_BLOCK, type ModelEncoding, modelEncodings } from '../../../src/node/payload.ts'
import { Rng } from '../../../src/rng.ts'
import { createTopologyBehaviour } from '../../../src/topology/behaviours.ts'
import { runMatrix } from '../../../src/topology/matrix.ts'
import { runTopology } from '../../../src/topology/runner.ts'
import { parseScenario } from '../../../src/topology/schema.ts'
import { createMemoryHub, type MemoryHub } from '../../support/memory-hub.ts'
import { memberIds, quadraticLearner, simpleNna } from './helpers.ts'

const u16 = (bytes: Uint8Array): number[] => Array.from({ length: bytes.length / 2 }, (_, i) => bytes[2 * i]! | (bytes[2 * i + 1]! << 8))
const f32 = (xs: number[]): Float32Array => Float32Array.from(xs)
const model = (bytes: Uint8Array, dim: number, enc: ModelEncoding): Float32Array => {
  const d = decodeModel(bytes, dim, enc)
  assert.ok('model' in d, `refused: ${JSON.stringify(d)}`)
  return d.model
}
const randomVector = (seed: string, d: number, scale: number): Float32Array => {
  const rng = new Rng(seed)
  return Float32Array.from({ length: d }, () => rng.normal() * scale)
}

describe('model encodings: sizes and bit patterns', () => {
  it('exact byte lengths per encoding', () => {
    assert.equal(encodedBytes(1000, 'float32'), 4000)
    assert.equal(encodedBytes(1000, 'float16'), 2000)
    assert.equal(encodedBytes(1000, 'bfloat16'), 2000)
    assert.equal(encodedBytes(256, 'int8'), 256 + 4)
    assert.equal(encodedBytes(257, 'int8'), 257 + 8)
    assert.equal(encodedBytes(1000, 'int8'), 1000 + 4 * 4)
    const x = randomVector('len', 1000, 1)
    for (const enc of modelEncodings) assert.equal(encodeModel(x, enc).byteLength, encodedBytes(1000, enc), enc)
  })

  it('float32 is today’s bytes: little-endian binary32', () => {
    const x = f32([1, -2.5, 3e-40])
    const bytes = encodeModel(x)
    assert.deepEqual(bytes, encodeModel(x, 'float32'))
    const view = new DataView(bytes.buffer)
    for (let i = 0; i < 3; i++) assert.equal(view.getFloat32(4 * i, true), x[i])
    assert.deepEqual(model(bytes, 3, 'float32'), x)
  })

  it('float16: known patterns, subnormals, ties to even, overflow to ∞ (refused)', () => {
    const cases: [number, number][] = [
      [1, 0x3c00],
      [-2, 0xc000],
      [65504, 0x7bff], // largest finite half
      [2 ** -24, 0x0001], // smallest subnormal
      [2 ** -14, 0x0400], // smallest normal
      [1 + 2 ** -11, 0x3c00], // halfway between 1 and 1 + 2⁻¹⁰: to the even one (1)
      [1 + 3 * 2 ** -11, 0x3c02], // halfway between 0x3c01 and 0x3c02: to the even one
      [2 ** -25, 0x0000], // halfway between 0 and the smallest subnormal: to 0
      [65519, 0x7bff], // below the halfway point to 65536: stays finite
      [65520, 0x7c00], // the halfway point to 65536 rounds (to even) to +∞
      [-0, 0x8000],
    ]
    const bytes = encodeModel(f32(cases.map(([x]) => x)), 'float16')
    assert.deepEqual(
      u16(bytes).map((h) => h.toString(16)),
      cases.map(([, h]) => h.toString(16)),
    )
    // the +∞ from 65520 makes the model non-finite: refused, not clamped
    assert.deepEqual(decodeModel(bytes, cases.length, 'float16'), { problem: 'non-finite' })
    const finite = cases.filter(([x]) => x !== 65520)
    const back = model(encodeModel(f32(finite.map(([x]) => x)), 'float16'), finite.length, 'float16')
    assert.deepEqual([...back], [1, -2, 65504, 2 ** -24, 2 ** -14, 1, 1 + 2 * 2 ** -10, 0, 65504, -0])
  })

  it('bfloat16: known patterns, ties to even, NaN stays NaN (refused)', () => {
    const cases: [number, number][] = [
      [1, 0x3f80],
      [-2, 0xc000],
      [1 + 2 ** -7, 0x3f81], // exact
      [1 + 2 ** -8, 0x3f80], // halfway: to even
      [1 + 3 * 2 ** -8, 0x3f82], // halfway: to even
      [1 + 2 ** -8 + 2 ** -20, 0x3f81], // above halfway: up
      [2 ** -149, 0x0000], // smallest float32 subnormal: below half of bf16's smallest
      [3.4028234663852886e38, 0x7f80], // float32 max rounds to +∞
    ]
    const bytes = encodeModel(f32(cases.map(([x]) => x)), 'bfloat16')
    assert.deepEqual(
      u16(bytes).map((h) => h.toString(16)),
      cases.map(([, h]) => h.toString(16)),
    )
    assert.deepEqual(decodeModel(bytes, cases.length, 'bfloat16'), { problem: 'non-finite' })
    assert.deepEqual(u16(encodeModel(f32([Number.NaN, Number.POSITIVE_INFINITY, Number.NEGATIVE_INFINITY]), 'bfloat16')), [0x7fc0, 0x7f80, 0xff80])
    assert.deepEqual(decodeModel(encodeModel(f32([0, Number.NaN]), 'bfloat16'), 2, 'bfloat16'), { problem: 'non-finite' })
    assert.deepEqual([...model(encodeModel(f32([1, 1 + 3 * 2 ** -8]), 'bfloat16'), 2, 'bfloat16')], [1, 1 + 2 ** -6])
  })

  it('int8: layout is ⌈d/256⌉ float32 scales, then d int8 values', () => {
    const x = f32([1, -0.5, 0.25, 0])
    const bytes = encodeModel(x, 'int8')
    assert.equal(bytes.byteLength, 4 + 4)
    const s = new DataView(bytes.buffer).getFloat32(0, true)
    assert.equal(s, Math.fround(1 / 127))
    // 1/s = 127; −0.5/s = −63.5 → −64 (ties away from zero); 0.25/s = 31.75 → 32
    assert.deepEqual([...new Int8Array(bytes.buffer, 4, 4)], [127, -64, 32, 0])
    assert.deepEqual([...model(bytes, 4, 'int8')], [127, -64, 32, 0].map((q) => Math.fround(q * s)))
    // an all-zero block: scale 0, decodes to zeros
    const z = encodeModel(new Float32Array(300), 'int8')
    assert.deepEqual([...model(z, 300, 'int8')], new Array(300).fill(0))
  })
})

describe('model encodings: error bounds on seeded random vectors', () => {
  const d = 1000 // not a multiple of 256: the last int8 block is short
  for (const scale of [1e-3, 1, 300]) {
    it(`float16 / bfloat16 within half an ulp, int8 within max|x|/254 per block (scale ${scale})`, () => {
      const x = randomVector(`bounds/${scale}`, d, scale)
      const h = model(encodeModel(x, 'float16'), d, 'float16')
      const b = model(encodeModel(x, 'bfloat16'), d, 'bfloat16')
      const q = model(encodeModel(x, 'int8'), d, 'int8')
      let worstH = 0
      let worstB = 0
      for (let i = 0; i < d; i++) {
        const a = Math.abs(x[i]!)
        // float16: 11 significant bits (half an ulp = 2⁻¹¹·|x|); subnormals below 2⁻¹⁴ are 2⁻²⁴ apart
        const boundH = Math.max(2 ** -11 * a, 2 ** -25)
        assert.ok(Math.abs(x[i]! - h[i]!) <= boundH, `float16 at ${i}: ${x[i]} → ${h[i]}`)
        assert.ok(Math.abs(x[i]! - b[i]!) <= 2 ** -8 * a, `bfloat16 at ${i}: ${x[i]} → ${b[i]}`)
        worstH = Math.max(worstH, Math.abs(x[i]! - h[i]!) / boundH)
        worstB = Math.max(worstB, Math.abs(x[i]! - b[i]!) / (2 ** -8 * a))
      }
      // the bounds are tight: some entry comes close to them (a test that would pass with no encoding at all fails here)
      assert.ok(worstH > 0.5 && worstB > 0.5, `worst error ratios ${worstH}, ${worstB}`)
      let worstQ = 0
      for (let start = 0; start < d; start += INT8_BLOCK) {
        const end = Math.min(d, start + INT8_BLOCK)
        let m = 0
        for (let i = start; i < end; i++) m = Math.max(m, Math.abs(x[i]!))
        const bound = m / 254 + m * 2 ** -23 // s/2, plus float32 rounding of s and of q·s
        for (let i = start; i < end; i++) {
          const e = Math.abs(x[i]! - q[i]!)
          assert.ok(e <= bound, `int8 at ${i}: ${x[i]} → ${q[i]} (bound ${bound})`)
          worstQ = Math.max(worstQ, e / (m / 254))
        }
      }
      assert.ok(worstQ > 0.9, `worst int8 error ratio ${worstQ}`)
    })
  }

  it('decoding is deterministic and float16 / bfloat16 re-encode to the same bytes', () => {
    const x = randomVector('idempotent', 777, 2)
    for (const enc of ['float16', 'bfloat16'] as const) {
      const bytes = encodeModel(x, enc)
      assert.deepEqual(encodeModel(model(bytes, 777, enc), enc), bytes, enc)
    }
    for (const enc of modelEncodings) {
      const bytes = encodeModel(x, enc)
      assert.deepEqual(model(bytes, 777, enc), model(bytes.slice(), 777, enc), enc)
    }
  })

  it('a payload at an odd offset in its buffer decodes the same (float16 without an aligned view)', () => {
    const x = randomVector('offset', 33, 1)
    const bytes = encodeModel(x, 'float16')
    const shifted = new Uint8Array(bytes.length + 1)
    shifted.set(bytes, 1)
    assert.deepEqual(model(shifted.subarray(1), 33, 'float16'), model(bytes, 33, 'float16'))
    const q = encodeModel(x, 'int8')
    const qs = new Uint8Array(q.length + 3)
    qs.set(q, 3)
    assert.deepEqual(model(qs.subarray(3), 33, 'int8'), model(q, 33, 'int8'))
  })

  it('view: an aligned float32 payload is read in place, anything else is copied as without it', () => {
    const x = randomVector('view', 33, 1)
    const bytes = encodeModel(x, 'float32')
    const viewed = decodeModel(bytes, 33, 'float32', { view: true })
    assert.ok('model' in viewed)
    assert.deepEqual(viewed.model, x)
    assert.equal(viewed.model.buffer, bytes.buffer, 'the same memory, no copy')
    assert.equal(viewed.model.byteOffset, bytes.byteOffset)
    // the default never aliases the payload
    const copied = model(bytes, 33, 'float32')
    assert.notEqual(copied.buffer, bytes.buffer)
    // at an offset that is not a multiple of 4 a Float32Array cannot view it: copied
    const shifted = new Uint8Array(bytes.length + 1)
    shifted.set(bytes, 1)
    const odd = decodeModel(shifted.subarray(1), 33, 'float32', { view: true })
    assert.ok('model' in odd)
    assert.deepEqual(odd.model, x)
    assert.notEqual(odd.model.buffer, shifted.buffer)
    // other encodings decode into fresh memory, view or not
    for (const enc of ['float16', 'bfloat16', 'int8'] as const) {
      const p = encodeModel(x, enc)
      const d = decodeModel(p, 33, enc, { view: true })
      assert.ok('model' in d)
      assert.notEqual(d.model.buffer, p.buffer, enc)
      assert.deepEqual(d.model, model(p, 33, enc))
    }
    // a viewed model is checked like a copied one: a non-finite entry is refused
    const bad = encodeModel(f32([1, Number.NaN, 2]), 'float32')
    assert.deepEqual(decodeModel(bad, 3, 'float32', { view: true }), { problem: 'non-finite' })
    assert.deepEqual(decodeModel(bytes.subarray(4), 33, 'float32', { view: true }), { problem: 'bad-length' })
  })
})

describe('model encodings: hostile payloads', () => {
  it('wrong lengths are refused before anything else, for every encoding', () => {
    for (const enc of modelEncodings) {
      for (const dim of [1, 255, 256, 257, 1000]) {
        const n = encodedBytes(dim, enc)
        for (const len of [0, n - 1, n + 1, n * 2]) assert.deepEqual(decodeModel(new Uint8Array(len), dim, enc), { problem: 'bad-length' }, `${enc} d=${dim} len=${len}`)
        assert.ok('model' in decodeModel(new Uint8Array(n), dim, enc), `${enc} d=${dim}`)
      }
    }
  })

  it('a LeNet-sized float32 payload with one NaN or ±∞ anywhere is refused, read in place or copied, on the native check and on the JS one', () => {
    const dim = 431_080
    const rng = new Rng('payload/non-finite-anywhere')
    const honest = Float32Array.from({ length: dim }, () => rng.normal())
    const clean = encodeModel(honest, 'float32')
    const specials = [Number.NaN, Number.POSITIVE_INFINITY, Number.NEGATIVE_INFINITY]
    const positions = [0, 1, 63, 64, dim - 65, dim - 2, dim - 1, ...Array.from({ length: 12 }, () => rng.int(dim))]
    for (const native of [true, false]) {
      setNativeEnabled(native)
      try {
        assert.ok('model' in decodeModel(clean, dim, 'float32', { view: true }), `native ${native}: the honest payload`)
        for (const [i, at] of positions.entries()) {
          // what a Byzantine member sends: an honest-looking model with one entry replaced
          const bytes = clean.slice()
          new DataView(bytes.buffer).setFloat32(at * 4, specials[i % specials.length]!, true)
          for (const view of [true, false]) assert.deepEqual(decodeModel(bytes, dim, 'float32', { view }), { problem: 'non-finite' }, `native ${native}, entry ${at}, view ${view}`)
        }
      } finally {
        setNativeEnabled(true)
      }
    }
    assert.equal(typeof nativeKernels()?.firstNonFinite, 'function', 'the addon has no firstNonFinite: run npm run build:native')
  })
  it('a payload in another encoding than the swarm’s is refused (bad-length)', () => {
    const x = randomVector('mismatch', 300, 1)
    assert.deepEqual(decodeModel(encodeModel(x, 'float16'), 300, 'float32'), { problem: 'bad-length' })
    assert.deepEqual(decodeModel(encodeModel(x, 'float32'), 300, 'float16'), { problem: 'bad-length' })
    assert.deepEqual(decodeModel(encodeModel(x, 'int8'), 300, 'float16'), { problem: 'bad-length' })
    assert.deepEqual(decodeModel(encodeModel(x, 'float32'), 300, 'int8'), { problem: 'bad-length' })
  })

  it('int8: a NaN or infinite scale is non-finite, a negative one bad-scale', () => {
    const x = randomVector('scales', 600, 1) // 3 blocks
    for (const [s, problem] of [
      [Number.NaN, 'non-finite'],
      [Number.POSITIVE_INFINITY, 'non-finite'],
      [Number.NEGATIVE_INFINITY, 'non-finite'],
      [-1, 'bad-scale'],
      [-1e-30, 'bad-scale'],
    ] as const) {
      const bytes = encodeModel(x, 'int8')
      new DataView(bytes.buffer).setFloat32(4 * 2, s, true) // the last block's scale
      assert.deepEqual(decodeModel(bytes, 600, 'int8'), { problem }, String(s))
    }
    // a finite non-negative scale, whatever the values, decodes (−128 included)
    const bytes = encodeModel(x, 'int8')
    bytes[12] = 0x80
    assert.equal(model(bytes, 600, 'int8')[0], Math.fround(-128 * new DataView(bytes.buffer).getFloat32(0, true)))
  })

  it('a non-finite model encodes to a payload every member refuses, in every encoding', () => {
    for (const bad of [Number.NaN, Number.POSITIVE_INFINITY, Number.NEGATIVE_INFINITY]) {
      const x = randomVector('nonfinite', 300, 1)
      x[270] = bad
      for (const enc of modelEncodings) assert.deepEqual(decodeModel(encodeModel(x, enc), 300, enc), { problem: 'non-finite' }, `${enc} ${bad}`)
    }
    const big = f32([1, 1e6])
    assert.deepEqual(decodeModel(encodeModel(big, 'float16'), 2, 'float16'), { problem: 'non-finite' }) // beyond ±65504: not clamped
    assert.ok('model' in decodeModel(encodeModel(big, 'bfloat16'), 2, 'bfloat16'))
    assert.ok('model' in decodeModel(encodeModel(big, 'int8'), 2, 'int8'))
  })

  it('the decode cache keeps encodings apart for the same bytes', () => {
    const decode = createDecodeCache()
    const bytes = encodeModel(f32([1, 2, 3, 4]), 'int8') // 8 bytes: also the length of 4 float16s
    const a = decode(bytes, 4, 'k', 'int8')
    const b = decode(bytes, 4, 'k', 'float16')
    assert.deepEqual(a, decodeModel(bytes, 4, 'int8'))
    assert.deepEqual(b, decodeModel(bytes, 4, 'float16'))
    assert.notDeepEqual(a, b)
    assert.equal(decode(bytes, 4, 'k', 'int8'), decode(bytes, 4, 'k', 'int8'))
  })
})

describe('model encodings: the swarm file', () => {
  const base = { name: 'enc', f: 0, members: [{ id: '12D3KooWAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA' }] }

  it('float32 (omitted or spelled out) keeps the swarm id; other encodings change it', () => {
    const plain = parseSwarm(base)
    assert.equal(plain.encoding, undefined)
    // the id of a swarm file without the field is what it was before encodings existed
    assert.equal(swarmId(plain), `enc-${bytesToHex(sha256(new TextEncoder().encode(canonicalJson(plain)))).slice(0, 16)}`)
    assert.equal(swarmId(plain), 'enc-cb2a391388377d1f')
    assert.equal(swarmId(parseSwarm({ ...base, encoding: 'float32' })), swarmId(plain))
    const ids = new Set(modelEncodings.map((encoding) => swarmId(parseSwarm({ ...base, encoding }))))
    assert.equal(ids.size, modelEncodings.length)
    assert.ok(ids.has(swarmId(plain)))
  })

  it('an unknown encoding is a one-line error naming the field and the allowed values', () => {
    assert.throws(
      () => parseSwarm({ ...base, encoding: 'fp8' }, 'swarm.yaml'),
      (e: unknown) => e instanceof InvalidConfigError && e.message === 'swarm.yaml: encoding: use one of float32, float16, bfloat16, int8',
    )
    assert.throws(
      () => parseScenario({ name: 's', n: 4, f: 1, encoding: 'half' }),
      (e: unknown) => e instanceof InvalidConfigError && /encoding: use one of float32, float16, bfloat16, int8$/.test(e.message) && !e.message.includes('\n'),
    )
    assert.equal(parseScenario({ name: 's', n: 4, f: 1, encoding: 'int8' }).encoding, 'int8')
  })
})

// ---------------------------------------------------------------------------------------------
// engines on the memory hub: every member aggregates the same vectors; a mismatched member is refused

const DIM = 300

function makeEngine(hub: MemoryHub, member: string, o: Partial<RoundEngineOptions> = {}): RoundEngine & { inputs: Float32Array[][] } {
  const learner = quadraticLearner({ dim: DIM, initSeed: 'swarm-seed', dataSeed: member })
  const agg = simpleNna(hub.membership.f)
  const inputs: Float32Array[][] = []
  const engine = new RoundEngine({
    self: member,
    membership: hub.membership,
    swarmSeed: 'swarm-seed',
    port: hub.port(member),
    learner,
    aggregator: {
      aggregate: (xs, ctx) => {
        inputs.push(xs.map((x) => x.slice()))
        return agg.aggregate(xs, ctx)
      },
    },
    rounds: 3,
    roundTimeoutMs: 10_000,
    ...o,
  })
  return Object.assign(engine, { inputs })
}

describe('model encodings: engines', () => {
  for (const encoding of ['int8', 'float16'] as const) {
    it(`${encoding}: a member's own vector is the decoded form of what it sent, as the others hold it`, async () => {
      const ids = memberIds(4)
      const hub = createMemoryHub({ membership: { swarmId: 'test', members: ids, f: 1 } })
      const engines = ids.map((id) => makeEngine(hub, id, { encoding }))
      const reports: RoundReport[][] = await Promise.all(engines.map((e) => e.run()))
      let compared = 0
      for (let r = 0; r < 3; r++) {
        // sender → the vector each member aggregated for it this round
        const seen = new Map<string, Float32Array[]>()
        for (const [i, rs] of reports.entries()) {
          const rep = rs[r]!
          for (const [k, s] of rep.senders!.entries()) seen.set(s, [...(seen.get(s) ?? []), engines[i]!.inputs[r]![k]!])
        }
        for (const vs of seen.values()) {
          for (const v of vs.slice(1)) {
            assert.deepEqual(v, vs[0], `round ${r}: members aggregated different vectors for one sender`)
            compared++
          }
        }
        // and it is a decoded payload: re-encoding changes nothing (float16), or it lies on the int8 grid
        for (const vs of seen.values()) assert.ok('model' in decodeModel(encodeModel(vs[0]!, encoding), DIM, encoding))
      }
      assert.ok(compared >= 3 * 4, `only ${compared} comparisons`)
      for (const e of engines) e.dispose()
    })
  }

  it('a member with another encoding than the swarm’s is refused as bad-length', async () => {
    const ids = memberIds(4)
    const hub = createMemoryHub({ membership: { swarmId: 'test', members: ids, f: 1 } })
    const engines = ids.map((id, i) => makeEngine(hub, id, { encoding: i === 3 ? 'float32' : 'float16' }))
    // the float32 member refuses everyone else's payloads too: it never completes a round
    const stop = new AbortController()
    const odd = engines[3]!.run({ signal: stop.signal }).catch(() => [])
    const reports = await Promise.all(engines.slice(0, 3).map((e) => e.run()))
    stop.abort()
    for (const rs of reports) {
      for (const r of rs) assert.ok(!r.senders!.includes(ids[3]!), `round ${r.round} used the float32 member's model`)
      assert.ok((rs.at(-1)!.rejected['bad-length'] ?? 0) >= 1, JSON.stringify(rs.at(-1)!.rejected))
    }
    for (const e of engines) e.dispose()
    await odd
  })
})

// ---------------------------------------------------------------------------------------------
// a small in-process swarm (the whole stack: libp2p memory transport, echo broadcast) learns

describe('model encodings: in-process swarms learn', () => {
  const run = async (encoding: ModelEncoding, rounds = 12, lr = 2) => {
    const scenario = parseScenario({
      name: `enc-${encoding}`,
      n: 4,
      f: 1,
      ...(encoding === 'float32' ? {} : { encoding }),
      task: {
        // 4 classes: an untrained model is near chance (0.25); the bar is 0.7
        dataset: { kind: 'gaussian-mixture', classes: 4, dim: 8, trainSize: 800, testSize: 400, seed: 1 },
        model: { kind: 'logreg' },
        schedule: { kind: 'constant', lr },
        rounds,
        evalEvery: Math.min(4, rounds),
        evalExamples: 400,
      },
      byzantine: [{ members: 3, behaviour: 'sign-flip' }],
      expect: { minHonestAccuracy: 0.7 },
      runtime: { backend: 'cpu' },
    })
    const dir = await mkdtemp(join(tmpdir(), 'monna-enc-'))
    try {
      const { report } = await runTopology(scenario, { outDir: dir, mode: 'in-process' })
      const yaml = await readFile(join(dir, 'swarm.yaml'), 'utf8')
      if (encoding === 'float32') assert.doesNotMatch(yaml, /encoding/)
      else assert.match(yaml, new RegExp(`encoding: ${encoding}`))
      for (const n of report.nodes) assert.equal(n.roundsCompleted, rounds)
      return report
    } finally {
      await rm(dir, { recursive: true, force: true })
    }
  }
  it('the bar is above what a (nearly) untrained model reaches', async () => {
    const report = await run('int8', 1, 1e-6)
    assert.ok(report.honest.minFinalAccuracy! < 0.6, JSON.stringify(report.honest))
  })
  let float32: number | undefined
  for (const encoding of ['float32', 'float16', 'int8'] as const) {
    it(`${encoding}: honest members reach an accuracy the untrained model does not`, async () => {
      const report = await run(encoding)
      const acc = report.honest.minFinalAccuracy!
      assert.ok(acc >= 0.7, JSON.stringify(report.honest))
      assert.equal(report.passed, true, JSON.stringify(report.expectations))
      if (encoding === 'float32') float32 = acc
      else if (float32 !== undefined) assert.ok(acc >= float32 - 0.1, `${encoding} ${acc} vs float32 ${float32}`)
      console.log(`# ${encoding}: min honest accuracy ${acc}`)
    })
  }
  it('a matrix with an encodings axis runs one cell per encoding, on the wire in that encoding', async () => {
    const scenario = parseScenario({
      name: 'enc-matrix',
      n: 4,
      f: 1,
      task: {
        // 1,604 parameters: payloads well above the frames' fixed costs (signatures, headers)
        dataset: { kind: 'gaussian-mixture', classes: 4, dim: 400, trainSize: 800, testSize: 400, seed: 1 },
        model: { kind: 'logreg' },
        schedule: { kind: 'constant', lr: 2 },
        rounds: 6,
        evalEvery: 6,
        evalExamples: 400,
      },
      byzantine: [{ members: 3, behaviour: 'sign-flip' }],
      runtime: { backend: 'cpu' },
      matrix: { rules: [{ rule: 'nna' }], behaviours: ['sign-flip'], encodings: ['float32', 'int8'] },
    })
    const dir = await mkdtemp(join(tmpdir(), 'monna-enc-matrix-'))
    try {
      const { matrix, files } = await runMatrix(scenario, { outDir: dir, mode: 'in-process' })
      assert.deepEqual(
        matrix.cells.map((c) => c.encoding),
        ['float32', 'int8'],
      )
      assert.equal(matrix.axes?.encodings, true)
      const md = await readFile(files.markdown, 'utf8')
      assert.match(md, /\| encoding \|/)
      for (const c of matrix.cells) assert.match(md, new RegExp(`\\| ${c.encoding} \\| ${(c.minHonestAccuracy! * 100).toFixed(1)} / `))
      // what each cell's members sent: an int8 payload is about a quarter of a float32 one (plus the frames' fixed costs)
      const sent = await Promise.all(
        matrix.cells.map(async (c) => {
          const report = JSON.parse(await readFile(join(dirname(c.report), 'report.json'), 'utf8')) as { nodes: Array<{ byzantine: boolean; bytesSent: number }> }
          return report.nodes.filter((n) => !n.byzantine).reduce((a, n) => a + n.bytesSent, 0)
        }),
      )
      assert.ok(sent[1]! < 0.5 * sent[0]!, `int8 cell sent ${sent[1]} bytes, float32 ${sent[0]}`)
      console.log(`# encodings axis: honest members sent ${sent[0]} bytes (float32) and ${sent[1]} (int8)`)
    } finally {
      await rm(dir, { recursive: true, force: true })
    }
  })
})

describe('model encodings: Byzantine behaviours', () => {
  it('a model-level behaviour broadcasts in the swarm’s encoding (and equivocates in it)', async () => {
    const honest = [Float32Array.of(1, 2, 3), Float32Array.of(1.2, 2, 2.8), Float32Array.of(0.8, 2, 3.2)]
    for (const encoding of modelEncodings) {
      const sent: Uint8Array[] = []
      const addressed: Uint8Array[] = []
      const ctx: ByzantineContext = {
        round: 0,
        self: 'g',
        members: ['a', 'b', 'c', 'd', 'e', 'f', 'g'],
        f: 2,
        swarmSeed: 1,
        ownHalfStep: Float32Array.of(1, 2, 3),
        encoding,
        rng: new Rng(7),
        broadcast: (p) => {
          sent.push(p)
        },
        sendTo: async (_peers, p) => {
          addressed.push(p)
        },
        honest: async () => honest.map((m) => m.slice()),
      }
      await createTopologyBehaviour({ behaviour: 'sign-flip' }).act(ctx)
      assert.equal(sent.length, 1)
      assert.equal(sent[0]!.byteLength, encodedBytes(3, encoding), encoding)
      const flipped = model(sent[0]!, 3, encoding)
      assert.ok(flipped[0]! < 0 && flipped[2]! < 0, `${encoding}: ${flipped}`)
      await createTopologyBehaviour({ behaviour: 'equivocate' }).act(ctx)
      assert.ok(addressed.length >= 1)
      for (const p of addressed) assert.ok('model' in decodeModel(p, 3, encoding), encoding)
    }
  })
})
