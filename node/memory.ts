/**
 * Garbage collection of a member process (`monna start`, `monna topology-member`): one full
 * collection after each round, and none triggered by the bytes the network moves.
 *
 * Received payloads outlive their round (the broadcast keeps the closed round for members
 * fetching it while the next arrives), so their buffers' owners reach V8's old generation and their memory returns
 * only at a full (mark-compact) collection. V8 starts one whenever the memory held outside its heap
 * (array buffers: payloads, but also every encrypted and decrypted stream chunk, short-lived and
 * freed by the young generation's collections anyway) grew 64 MB past the last one: in the
 * 26-process swarm 43 full collections per member over 6 rounds (docs/memory.md). With
 * `--external-memory-accounted-in-global-limit` that memory counts against V8's global limit
 * instead, which grows with the heap: far fewer full collections, and the closed round's payloads
 * would stay until one comes. So the process collects once itself, after each round's
 * aggregation that brought at least 16 MiB: the engine has just moved its floor (round t − 1's
 * payloads are garbage now), and what follows is the round's evaluation, if any (the final one
 * evaluates the whole test split: collected before it, its working memory does not come on top
 * of the round's garbage), then training.
 *
 * Between those collections V8 still started full collections of its own. After each full
 * collection it sets the next at a multiple of what that one left (its growing factor), and picks
 * the factor from how fast the process allocates against how fast it collects: 2.78 in a quiet test
 * process; in the 26-process swarm its limits were passed within the rounds (26 payloads of 1.72 MB
 * arriving while the closed round's are kept): 4.9 full collections of its own per member over a
 * 6-round run, beside the 5–6 forced ones, and a forced one costs ≈ 60 ms of CPU (docs/scale.md,
 * "Session 32"). With the factor fixed at 2 (`--heap-growing-percent=100`) the round's own
 * collection is the only one: what is live after it is the closed round's payloads and the
 * process's own heap, and a round adds one round of payloads.
 *
 * Received payloads come from the addon's pool as external ArrayBuffers, which V8 leaves out of
 * its collection triggers: with external memory accounted in the global limit, a process doing
 * nothing but allocate payloads and drop them unread grew by 1.3–2.1 GB before V8 collected
 * (test/unit/node/memory.test.ts). Over TCP the network stack's own allocations bring V8's
 * collections sooner (a peer cutting off 1,000 payloads grew its target by 191 MiB, docs/memory.md),
 * but that depends on how much V8 heap the stack allocates per byte. So the collector also runs a
 * full collection whenever the pool has handed out `PAYLOAD_PRESSURE_BYTES` since the last one.
 */
import { setFlagsFromString } from 'node:v8'
import { runInNewContext } from 'node:vm'
import { payloadPool, payloadsCollected, setPayloadPressure } from '../src/compute/native.ts'

/** V8's heap growing factor between full collections, as 1 + this / 100 (see above) */
export const HEAP_GROWING_PERCENT = 100

/**
 * Received payloads the payload pool hands out between two full collections before the collector
 * runs one of its own, mid-round (default of `pressureBytes`). V8 does not count the pool's
 * buffers towards its triggers, so payloads dropped before the round's end — a peer cutting off
 * payload after payload — would otherwise wait for a collection something else brings on
 * (src/compute/native.ts, `setPayloadPressure`). A fixed figure, not one learned from the bytes
 * received, which peers control. A LeNet round at n = 26 brings 43 MB of payloads: no
 * collection of this kind in a round without an attack; a round bringing more than this (larger
 * models or swarms) gets one per this many bytes.
 */
export const PAYLOAD_PRESSURE_BYTES = 128 * 1024 * 1024

/**
 * The smallest `pressureBytes` a collector takes (1 MiB): a full collection costs a member ≈ 60 ms
 * of CPU, so a bound near zero would let every received payload buy one.
 */
export const MIN_PRESSURE_BYTES = 1024 * 1024

export interface RoundCollector {
  /**
   * After a round's aggregation, with the member's bytes received so far (RoundReport.bytesReceived): one full
   * collection if at least `minBytes` arrived since the last one.
   */
  afterRound(bytesReceived: number): void
  /** full collections run so far (after rounds, and on payload pressure) */
  readonly collections: number
  /** of them, run because the payload pool handed out its bound since the last one */
  readonly pressureCollections: number
}

/**
 * Sets the flag and returns the collector. V8 flags set after start-up: the flag is read when
 * V8 next computes its limits; `--expose-gc` set now exposes `gc` to contexts created from now on
 * (a process started with `--expose-gc` already has it).
 *
 * `minBytes` (default 16 MiB): what a member received is what turns into garbage a round
 * later; rounds that moved less than that since the last collection (a small model: logistic
 * regression's rounds move kilobytes, many a second) are not worth a full collection each — V8's
 * own, rarer ones take care of them. (Not `process.memoryUsage().arrayBuffers`: V8 frees the
 * buffers of a collection on a background thread, so right after it the figure may not have
 * dropped yet.)
 *
 * `pressureBytes` (default PAYLOAD_PRESSURE_BYTES): pooled payload bytes handed out between two
 * full collections before one runs mid-round. The process has one such bound: the last collector
 * made sets it. An integer of at least MIN_PRESSURE_BYTES; anything else (and a negative or
 * non-finite `minBytes`) is refused with a RangeError before any flag is set.
 */
export function roundCollector(opts: { minBytes?: number; pressureBytes?: number } = {}): RoundCollector {
  const minBytes = opts.minBytes ?? 16 * 1024 * 1024
  const pressureBytes = opts.pressureBytes ?? PAYLOAD_PRESSURE_BYTES
  // checked before any flag is set: a bad bound changes nothing in the process
  if (!Number.isFinite(minBytes) || minBytes < 0) throw new RangeError(`roundCollector: minBytes must be a number of bytes >= 0 (got ${minBytes})`)
  if (!Number.isSafeInteger(pressureBytes) || pressureBytes < MIN_PRESSURE_BYTES) {
    throw new RangeError(`roundCollector: pressureBytes must be an integer of at least ${MIN_PRESSURE_BYTES} bytes (got ${pressureBytes}): a smaller bound would run a full collection for nearly every payload received`)
  }
  setFlagsFromString('--external-memory-accounted-in-global-limit')
  setFlagsFromString(`--heap-growing-percent=${HEAP_GROWING_PERCENT}`)
  let gc = (globalThis as { gc?: () => void }).gc
  if (gc === undefined) {
    setFlagsFromString('--expose-gc')
    gc = runInNewContext('gc') as () => void
  }
  const run = gc
  let last = 0
  let collections = 0
  let pressureCollections = 0
  const pressure = {
    bytes: pressureBytes,
    collect() {
      run()
      collections++
      pressureCollections++
    },
  }
  setPayloadPressure(pressure)
  return {
    afterRound(bytesReceived) {
      if (bytesReceived - last < minBytes) return
      last = bytesReceived
      run()
      payloadsCollected()
      collections++
    },
    get collections() {
      return collections
    },
    get pressureCollections() {
      return pressureCollections
    },
  }
}

/**
 * A collector run on the node's 'aggregated' events (each round's aggregate set and the floor
 * moved, before the round's evaluation). After the last round's aggregation it also empties the
 * payload pool and lets it hold nothing more (src/compute/native.ts): its mappings serve the
 * next round's payloads, and there is none — the final evaluation's working memory should not
 * come on top of them.
 */
export function collectAfterAggregation(node: EventTarget, opts: { minBytes?: number } = {}): RoundCollector {
  const collector = roundCollector(opts)
  node.addEventListener('aggregated', (e) => {
    const { bytesReceived, last } = (e as CustomEvent<{ bytesReceived: number; last?: boolean }>).detail
    if (last === true) payloadPool(0)
    collector.afterRound(bytesReceived)
  })
  return collector
}
