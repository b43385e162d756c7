/** Signed echo broadcast (ALGORITHMS §2) over libp2p: see README.md in this directory. */
export {
  type BanEvent,
  type BroadcastStats,
  type Certificate,
  createEchoBroadcast,
  type Delivery,
  defaultEchoBroadcastOptions,
  type EchoBroadcast,
  type EchoBroadcastEvents,
  type EchoBroadcastOptions,
  type EquivocationEvidence,
  type Rejection,
  verifyCertificate,
} from './echo-broadcast.ts'
export {
  AlreadyBroadcastError,
  BroadcastRejectError,
  BroadcastStoppedError,
  penalises,
  type RejectReason,
  RoundOutOfWindowError,
  rejectReasons,
} from './errors.ts'
export { decodeFrame, encodeFrame, type Frame, FrameType, WIRE_VERSION } from './wire.ts'
