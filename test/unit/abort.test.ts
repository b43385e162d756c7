import assert from 'node:assert/strict'
import { test } from 'node:test'
import { onAbort } from '../../src/abort.ts'

test('onAbort: every registered wait runs once on abort, forgotten ones never; one listener on the signal however many waits', async () => {
  const c = new AbortController()
  let added = 0
  const add = c.signal.addEventListener.bind(c.signal)
  c.signal.addEventListener = ((...args: Parameters<AbortSignal['addEventListener']>) => {
    added++
    add(...args)
  }) as AbortSignal['addEventListener']
  const calls: number[] = []
  const forgets = Array.from({ length: 1000 }, (_, i) => onAbort(c.signal, () => calls.push(i)))
  for (let i = 0; i < 1000; i += 2) forgets[i]!()
  // the same function twice: two entries
  const twice = (): void => {
    calls.push(-1)
  }
  onAbort(c.signal, twice)
  onAbort(c.signal, twice)
  assert.equal(added, 1)
  c.abort()
  assert.equal(calls.filter((x) => x === -1).length, 2)
  assert.deepEqual(
    calls.filter((x) => x >= 0),
    Array.from({ length: 500 }, (_, i) => 2 * i + 1),
  )
  // after the abort: at once (on a microtask) unless forgotten first
  let late = 0
  onAbort(c.signal, () => late++)
  const forgotten = onAbort(c.signal, () => late++)
  forgotten()
  assert.equal(late, 0)
  await Promise.resolve()
  assert.equal(late, 1)
})
