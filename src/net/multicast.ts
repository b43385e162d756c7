/**
 * Whether this host can send multicast DNS at all. mDNS queries go to 224.0.0.251:5353; on a
 * host with no route for them (no default route and no multicast route — a container or a
 * network namespace without one) @libp2p/mdns fails to send, says nothing at the default log
 * level, and members that rely on it wait for peers that never come. This sends one mDNS query
 * (PTR `_p2p._udp.local`, what libp2p's mDNS asks for) and reports the send's error. Used only
 * where mDNS is switched on: it would send its own queries a moment later.
 */
import { createSocket } from 'node:dgram'

const labels = ['_p2p', '_udp', 'local']
const QUERY = Buffer.concat([
  Buffer.from([0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0]), // id 0, a query, one question
  ...labels.map((l) => Buffer.concat([Buffer.from([l.length]), Buffer.from(l)])),
  Buffer.from([0, 0, 12, 0, 1]), // end of name, PTR, IN
])

/** The send's error code (e.g. `ENETUNREACH`) when this host cannot send mDNS, undefined when it can. */
export function multicastProblem(timeoutMs = 2000): Promise<string | undefined> {
  return new Promise((resolve) => {
    const socket = createSocket({ type: 'udp4' })
    let settled = false
    const done = (problem: string | undefined): void => {
      if (settled) return
      settled = true
      clearTimeout(timer)
      try {
        socket.close()
      } catch {
        // already closed
      }
      resolve(problem)
    }
    const timer = setTimeout(() => done(undefined), timeoutMs)
    socket.once('error', (err: NodeJS.ErrnoException) => done(err.code ?? err.message))
    socket.send(QUERY, 5353, '224.0.0.251', (err) => done(err === null || err === undefined ? undefined : ((err as NodeJS.ErrnoException).code ?? err.message)))
  })
}
