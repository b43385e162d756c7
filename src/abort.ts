/**
 * Many short waits on one long-lived AbortSignal. Node's EventTarget keeps a signal's listeners in
 * a list that `addEventListener` (its duplicate check) and `removeEventListener` walk: a member of
 * an n-member swarm has ≈ 2n reads in flight on its broadcast's signal, each adding and removing a
 * listener at every chunk it waits for — n² work per member and round, 12 % of the CPU of an
 * in-process round at n = 100 (bench:scale profile). Here a signal gets one listener, and the
 * waits on it live in a set: adding and removing one costs O(1).
 */
const waiters = new WeakMap<AbortSignal, Set<() => void>>()

/**
 * Calls `fn` once when `signal` aborts (at once, on a microtask, if it already has); returns the
 * function that forgets it. Cheap however many waits share the signal.
 */
export function onAbort(signal: AbortSignal, fn: () => void): () => void {
  if (signal.aborted) {
    let forgotten = false
    queueMicrotask(() => {
      if (!forgotten) fn()
    })
    return () => {
      forgotten = true
    }
  }
  let set = waiters.get(signal)
  if (set === undefined) {
    const s = new Set<() => void>()
    waiters.set(signal, s)
    signal.addEventListener(
      'abort',
      () => {
        const all = [...s]
        s.clear()
        for (const f of all) f()
      },
      { once: true },
    )
    set = s
  }
  const mine = set
  // a function may be registered more than once: each registration is its own entry
  const entry = (): void => fn()
  mine.add(entry)
  return () => {
    mine.delete(entry)
  }
}
