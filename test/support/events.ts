/** Waiting on events in tests: every wait has a hang guard, none is a sleep. */

/**
 * Resolves with the detail of the first `type` event on `target` whose detail satisfies `pred`;
 * rejects after `ms` (a hang guard, generous: tests run under load) naming the event.
 */
export function waitEvent<T>(target: EventTarget, type: string, pred: (detail: T) => boolean = () => true, ms = 30_000): Promise<T> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      target.removeEventListener(type, on)
      reject(new Error(`no '${type}' event within ${ms} ms`))
    }, ms)
    const on = (e: Event): void => {
      const d = (e as CustomEvent<T>).detail
      if (!pred(d)) return
      clearTimeout(timer)
      target.removeEventListener(type, on)
      resolve(d)
    }
    target.addEventListener(type, on)
  })
}
