/**
 * Stream muxers are never left running on a connection that closed while it was upgraded.
 *
 * libp2p 3's upgrader creates a connection's muxer (`createStreamMuxer(stream)`) after the
 * connection is secured and the muxer is selected, with awaits in between. A muxer learns that its
 * connection closed from the secured stream's `close` event (`@libp2p/utils`'
 * `AbstractStreamMuxer`); if that event fired before the muxer existed — the remote, or anyone on
 * the wire, broke the connection right after the muxer's selection — the muxer stays `open`
 * forever, and yamux's keep-alive task keeps it (and the connection behind it) in memory, pinging a
 * dead connection every 30 s. One such muxer per connection an attacker breaks at that moment:
 * found by test/integration/noise-tamper.test.ts (a wire attacker against a member), where it left
 * one or more in 6 of 8 runs of 14 broken connections.
 *
 * `guardMuxer` wraps a muxer factory: a muxer created on a stream that is already closed, aborted
 * or reset is aborted at once (stopping its keep-alive) and counted in `muxerGuardStats`. The
 * upgrade then goes on as libp2p's does, and the connection it makes is closed as before.
 */
import { ConnectionClosedError, type MessageStream, type StreamMuxerFactory } from '@libp2p/interface'

/** Factories guarded (one per libp2p node), and muxers aborted because their stream had closed before they were created. */
export const muxerGuardStats = { factories: 0, abortedAtCreation: 0 }

/** Whether a stream's `close` event has already fired (it fires once, on these states). */
function ended(stream: MessageStream): boolean {
  return stream.status === 'closed' || stream.status === 'aborted' || stream.status === 'reset'
}

/** `make` (a muxer factory's constructor, as `yamux(init)` returns), its muxers guarded as above. */
export function guardMuxer<C>(make: (components: C) => StreamMuxerFactory): (components: C) => StreamMuxerFactory {
  return (components) => {
    const inner = make(components)
    muxerGuardStats.factories++
    const guarded: StreamMuxerFactory = Object.create(inner)
    guarded.createStreamMuxer = (stream) => {
      const muxer = inner.createStreamMuxer(stream)
      if (ended(stream)) {
        muxerGuardStats.abortedAtCreation++
        try {
          muxer.abort(new ConnectionClosedError(`the connection closed (${stream.status}) before its ${inner.protocol} muxer was created`))
        } catch {
          // yamux marks itself closed and stops its keep-alive, then tries to tell the remote
          // (a GoAway frame), which an ended stream refuses: expected, nothing is left to do
        }
      }
      return muxer
    }
    return guarded
  }
}
