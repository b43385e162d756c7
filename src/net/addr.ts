/** What the net modules read off a multiaddr. */
import { CODE_IP4, CODE_IP6, type Multiaddr } from '@multiformats/multiaddr'

/** Whether the address goes through a relay (a `/p2p-circuit` component). */
export const isCircuit = (ma: Multiaddr): boolean => ma.getComponents().some((c) => c.name === 'p2p-circuit')

/** The IP of a multiaddr (its last ip4/ip6 component). */
export function ipOf(ma: Multiaddr): string | undefined {
  return ma
    .getComponents()
    .filter((c) => c.code === CODE_IP4 || c.code === CODE_IP6)
    .map((c) => c.value)
    .pop()
}

/** The IP of a direct connection's remote address (undefined through a relay, or in memory). */
export function directIp(ma: Multiaddr): string | undefined {
  return isCircuit(ma) ? undefined : ipOf(ma)
}
