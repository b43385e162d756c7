/** Network layer: membership, identity keys and the member's libp2p node. */
export { loadOrCreateKey, MalformedKeyFileError, peerIdOfKey } from './keys.ts'
export {
  MAX_SWARM_ID_BYTES,
  type Membership,
  quorum,
  swarmProtocol,
  swarmTopic,
  swarmTopicPrefix,
  validateMembership,
  WARN_FAULT_FRACTION,
} from './membership.ts'
export { banPeer, createNetNode, gateStats, gossipLimits, isBanned, libp2pLogger, type NetNode, type NetNodeOptions, type NetServices, SKIP_KNOWN_MERGES, setNetMembership, sharedEd25519Stats, shareEd25519Checks, skipKnownProtocolMerges } from './node.ts'
export { HolePunch, type HolePunchEvents, type HolePunchInit, type HolePunchStats, isRelayed, type PunchAttempt, type PunchAttemptEnd, type PunchRejection, type PunchRejectionReason } from './punch.ts'
