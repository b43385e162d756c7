/**
 * The addon's payload pool (native/kernels.cc, `payloadBytes` in src/compute/native.ts): received
 * models are assembled into page-aligned mappings that go back to a free list when V8 collects
 * their ArrayBuffer, and the next payload of the same size takes one. What must hold: a mapping
 * is never handed out while anything still references it (the bytes of a live payload never
 * change under it), one that was collected is taken again, the bound holds, bad calls throw.
 * Required unless the suite runs with MONNA_NATIVE=off, where payloads are plain buffers.
 */
import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { setFlagsFromString } from 'node:v8'
import { runInNewContext } from 'node:vm'
import { nativeAvailable, nativeKernels, nativeStatus, POOLED_PAYLOAD_BYTES, payloadBytes, payloadPool } from '../../../src/compute/native.ts'
import { Rng } from '../../../src/rng.ts'

const off = process.env.MONNA_NATIVE === 'off'

/** A full collection, then a turn of the event loop for the finalizers Node defers. */
async function collect(): Promise<void> {
  setFlagsFromString('--expose-gc')
  ;(runInNewContext('gc') as () => void)()
  await new Promise((r) => setImmediate(r))
  await new Promise((r) => setTimeout(r, 5))
}

/** Fills `a` with a pattern of its own (a 32-bit tag repeated); `intact` checks it back. */
function patternFill(a: Uint8Array, tag: number): void {
  const w = new Uint32Array(a.buffer, a.byteOffset, a.byteLength >> 2)
  w.fill(tag)
  for (let i = w.length * 4; i < a.byteLength; i++) a[i] = tag & 0xff
}
function intact(a: Uint8Array, tag: number): boolean {
  const w = new Uint32Array(a.buffer, a.byteOffset, a.byteLength >> 2)
  for (let i = 0; i < w.length; i += 97) if (w[i] !== tag) return false
  if (w[w.length - 1] !== tag) return false
  for (let i = w.length * 4; i < a.byteLength; i++) if (a[i] !== (tag & 0xff)) return false
  return true
}

describe('payload pool', { skip: off ? 'MONNA_NATIVE=off' : false }, () => {
  it('is built into the addon', () => {
    assert.ok(nativeAvailable(), `native kernels ${nativeStatus()}: npm install builds them (MONNA_NATIVE=off runs the suite without)`)
    assert.ok(payloadPool() !== undefined, 'the addon has no payload pool: run npm run build:native')
  })

  it('takes a collected mapping again, and never one that is still referenced (random schedule)', async () => {
    const rng = new Rng('payload-pool')
    const sizes = [POOLED_PAYLOAD_BYTES, 1_722_320, 1_722_321, 3 * 4096]
    const live = new Map<number, { a: Uint8Array; tag: number }>()
    const before = payloadPool()!
    let tag = 1
    for (let step = 0; step < 400; step++) {
      const r = rng.next()
      if (r < 0.55) {
        const len = sizes[Math.floor(rng.next() * sizes.length)]!
        const a = payloadBytes(len)
        assert.equal(a.byteLength, len)
        assert.equal(a.byteOffset, 0)
        // no live payload shares this one's memory: fill it and check every live one
        patternFill(a, tag)
        live.set(tag, { a, tag })
        tag++
      } else if (r < 0.9 && live.size > 0) {
        const keys = [...live.keys()]
        live.delete(keys[Math.floor(rng.next() * keys.length)]!)
      } else {
        // a view into a payload keeps it alive like the payload itself
        const keys = [...live.keys()]
        if (keys.length > 0) {
          const k = keys[Math.floor(rng.next() * keys.length)]!
          const e = live.get(k)!
          live.set(k, { a: new Uint8Array(e.a.buffer, 0, e.a.byteLength), tag: e.tag })
        }
        await collect()
      }
      for (const { a, tag: t } of live.values()) assert.ok(intact(a, t), `payload ${t} changed under its holder at step ${step}`)
    }
    live.clear()
    await collect()
    const after = payloadPool()!
    assert.ok(after.reused - before.reused > 20, `collected mappings taken again: ${after.reused - before.reused}`)
    assert.ok(after.mapped - before.mapped < after.reused - before.reused + 60, 'mostly reused once warm')
    assert.ok(after.freeBytes <= after.maxBytes)
  })

  it('holds at most its bound, and with a bound of 0 maps every payload anew', async () => {
    const { maxBytes } = payloadPool()!
    try {
      payloadPool(0)
      assert.equal(payloadPool()!.freeBytes, 0)
      let held: Uint8Array[] = Array.from({ length: 4 }, () => payloadBytes(1_722_320))
      held = []
      assert.equal(held.length, 0)
      await collect()
      const s0 = payloadPool()!
      assert.equal(s0.freeBytes, 0)
      const a = payloadBytes(1_722_320)
      patternFill(a, 7)
      const s1 = payloadPool()!
      assert.equal(s1.reused, s0.reused)
      assert.equal(s1.mapped, s0.mapped + 1)

      payloadPool(2 * 1_724_416)
      let more: Uint8Array[] = Array.from({ length: 5 }, () => payloadBytes(1_722_320))
      more = []
      assert.equal(more.length, 0)
      await collect()
      assert.ok(payloadPool()!.freeBytes <= 2 * 1_724_416)
    } finally {
      payloadPool(maxBytes)
    }
  })

  it("a Byzantine member's payloads of odd sizes do not keep the pool from the swarm's own", async () => {
    const { maxBytes } = payloadPool()!
    const honest = 1_722_320
    const mapped = 1_724_416 // page-rounded
    try {
      payloadPool(0)
      payloadPool(8 * mapped)
      // frames of eight sizes no one asks for again (cut or refused once their buffer exists), collected: the pool is full of them
      let odd: Uint8Array[] = Array.from({ length: 8 }, (_, k) => payloadBytes(honest - 4096 * (k + 1)))
      odd = []
      assert.equal(odd.length, 0)
      await collect()
      assert.ok(payloadPool()!.freeBytes > 6 * mapped, 'the odd sizes fill the pool')
      const before = payloadPool()!
      // then rounds of the swarm's own payloads, each collected after its round
      for (let round = 0; round < 4; round++) {
        let held: Uint8Array[] = Array.from({ length: 4 }, () => payloadBytes(honest))
        for (const [i, a] of held.entries()) patternFill(a, round * 10 + i)
        held = []
        assert.equal(held.length, 0)
        await collect()
      }
      const after = payloadPool()!
      // the oldest (odd) mappings left as the honest ones came back: rounds 1–3 took theirs from the pool
      assert.ok(after.reused - before.reused >= 12, `honest payloads taken from the pool: ${after.reused - before.reused} of 16`)
      assert.ok(after.freeBytes <= 8 * mapped)
    } finally {
      payloadPool(maxBytes)
    }
  })

  it('refuses bad arguments without crashing', () => {
    const nk = nativeKernels() as unknown as { payloadBuffer(n: unknown): ArrayBuffer; payloadPool(n: unknown): unknown }
    assert.ok(nk !== undefined)
    for (const bad of [0, -1, 1.5, Number.NaN, 2 ** 31, 'x', undefined]) assert.throws(() => nk.payloadBuffer(bad), /payloadBuffer/)
    for (const bad of [-1, Number.NaN, 'x']) assert.throws(() => nk.payloadPool(bad), /payloadPool/)
  })

  it('leaves payloads under its threshold to plain buffers', () => {
    const before = payloadPool()!
    const a = payloadBytes(POOLED_PAYLOAD_BYTES - 1)
    assert.equal(a.byteLength, POOLED_PAYLOAD_BYTES - 1)
    const after = payloadPool()!
    assert.equal(after.mapped + after.reused, before.mapped + before.reused)
  })
})

describe('payloads without the addon', { skip: off ? false : 'the addon is built (MONNA_NATIVE=off runs this)' }, () => {
  it('are plain buffers of the length asked', () => {
    assert.equal(payloadPool(), undefined)
    const a = payloadBytes(POOLED_PAYLOAD_BYTES * 2)
    assert.equal(a.byteLength, POOLED_PAYLOAD_BYTES * 2)
  })
})
