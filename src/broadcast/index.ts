/** Signed echo broadcast (ALGORITHMS §2) over libp2p: see README.md in this directory. */
export { type Certificate, verifyCertificate } from './certificate.ts'
export { verifyCacheFor } from './crypto.ts'
export {
  type BanEvent,
  type BroadcastStats,
  COOL_OFF_MS,
  type CoolOffEvent,
  createEchoBroadcast,
  type Delivery,
  defaultEchoBroadcastOptions,
  type EchoBroadcast,
  type EchoBroadcastEvents,
  type EchoBroadcastOptions,
  type EquivocationEvidence,
  echoProtocol,
  type FetchOptions,
  finalTopic,
  REFUSAL_BURST_PER_MEMBER,
  REFUSALS_PER_SECOND,
  type Rejection,
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
export { FrameReader, writeParts } from './frame-stream.ts'
export { createFileJournal, createMemoryJournal, type EchoJournal, type JournalEntry } from './journal.ts'
export { decodeFrame, encodeFrame, encodeFrameParts, type Frame, FrameType, type Instance, type SignatureEntry, WIRE_VERSION } from './wire.ts'
