/**
 * Wire format of the signed echo broadcast, version 2 — the single definition of every byte
 * (spec in src/broadcast/README.md). A frame is a fixed 12-byte header, a small `meta`
 * section and an optional payload; all integers are big-endian.
 *
 *   header:  u8 version (=2) | u8 type | u16 flags | u32 metaLength | u32 payloadLength
 *            (flags: 0, or FLAG_SIGNER_INDEX on a FINAL)
 *   meta:    type-specific fields (below), exactly metaLength bytes
 *   payload: payloadLength opaque bytes (SEND, PAYLOAD and certified FINAL only)
 *
 * Decoders check the header's lengths against the limits before anything is allocated and
 * read every field with a bounds check; any violation is a BroadcastRejectError with a reason.
 */

import { BroadcastRejectError } from './errors.ts'
import { smallBytes, smallCopy } from './small-bytes.ts'

export const WIRE_VERSION = 2
export const HEADER_BYTES = 12
export const HASH_BYTES = 32
export const SIG_BYTES = 64
/** Longest string field (swarm id, PeerId): a base58 Ed25519 PeerId is 52 characters. */
export const MAX_STRING_BYTES = 64
/** Largest meta section: a FINAL for 256 members is ≈ 31 KiB. */
export const MAX_META_BYTES = 65_536
/** Largest number of entries in a certificate or a FETCH `have` list. */
export const MAX_LIST_ENTRIES = 1024
/**
 * The most members a swarm can have with `f` and still certify: a FINAL's meta (instance, hash
 * and Q = ⌊(n + f)/2⌋ + 1 signatures of 1 + 64 + 64 bytes at most, for PeerIds of up to
 * MAX_STRING_BYTES) must fit MAX_META_BYTES, and a FETCH's `have` list (up to n senders) must fit
 * MAX_LIST_ENTRIES. Beyond it members start but nothing is ever certified.
 */
export function maxMembers(f: number): number {
  const fixed = 2 * (1 + MAX_STRING_BYTES) + 4 + 4 + HASH_BYTES + 2 // swarm id, sender, epoch, round, hash, count
  const qMax = Math.min(MAX_LIST_ENTRIES, Math.floor((MAX_META_BYTES - fixed) / (1 + MAX_STRING_BYTES + SIG_BYTES)))
  // Q ≤ qMax ⇔ ⌊(n + f)/2⌋ ≤ qMax − 1 ⇔ n + f ≤ 2·qMax − 1
  return Math.min(MAX_LIST_ENTRIES, 2 * qMax - 1 - f)
}

/**
 * Header flag of a FINAL whose certificate names each signer by its u16 index in the member list
 * of the epoch the FINAL names (2 bytes) instead of its PeerId (53 bytes): the certificate shrinks
 * from 117 to 66 bytes per signature. The decoder leaves the signers to be resolved
 * (`resolveSigners`) by the member that knows that epoch's list.
 */
export const FLAG_SIGNER_INDEX = 1

/** Largest round number (rounds are uint32 on the wire). */
export const MAX_ROUND = 0xffff_ffff

export const FrameType = {
  SEND: 1,
  ECHO: 2,
  FINAL: 3,
  PULL: 4,
  PAYLOAD: 5,
  FETCH: 6,
  END: 7,
  QUERY: 8,
} as const
export type FrameTypeName = keyof typeof FrameType
const TYPE_NAMES: Record<number, FrameTypeName> = Object.fromEntries(Object.entries(FrameType).map(([k, v]) => [v, k])) as Record<
  number,
  FrameTypeName
>
/** Frame types that may carry a payload. */
const PAYLOAD_TYPES = new Set<number>([FrameType.SEND, FrameType.FINAL, FrameType.PAYLOAD])

export interface Instance {
  swarmId: string
  /** membership epoch the round belongs to (signed: members agree on n, f and Q of the instance) */
  epoch: number
  round: number
  sender: string
}
export interface SignatureEntry {
  signer: string
  signature: Uint8Array
}
export type Frame =
  | ({ type: 'SEND'; hash: Uint8Array; signature: Uint8Array; payload: Uint8Array } & Instance)
  | ({ type: 'ECHO'; hash: Uint8Array; signer: string; signature: Uint8Array } & Instance)
  | ({
      type: 'FINAL'
      hash: Uint8Array
      /** the signers' PeerIds are '' until `resolveSigners` when `signerIndices` is set */
      certificate: SignatureEntry[]
      payload?: Uint8Array
      /** decoded from a FLAG_SIGNER_INDEX frame: each entry's signer as an index into its epoch's member list */
      signerIndices?: number[]
    } & Instance)
  | ({ type: 'PULL'; hash: Uint8Array } & Instance)
  | ({ type: 'PAYLOAD'; hash: Uint8Array; payload: Uint8Array } & Instance)
  | { type: 'FETCH'; swarmId: string; epoch: number; round: number; have: string[] }
  | ({ type: 'QUERY' } & Instance)
  | { type: 'END' }

export interface FrameHeader {
  version: number
  type: FrameTypeName
  flags: number
  metaLength: number
  payloadLength: number
}

export interface WireLimits {
  maxPayloadBytes: number
}

const te = new TextEncoder()

/**
 * UTF-8 bytes of a short string (≤ MAX_STRING_BYTES characters: swarm ids, peer ids, kinds),
 * encoded once: every frame and every signed statement carries the same few dozen strings, and
 * a fresh encoding per field was ≈ 4 % of an in-process round's CPU. The bytes returned are
 * shared: callers copy them, never write into them.
 */
export function utf8(s: string): Uint8Array {
  let b = encoded.get(s)
  if (b === undefined) {
    b = te.encode(s)
    if (s.length > MAX_STRING_BYTES) return b
    if (encoded.size >= 4096) encoded.clear()
    encoded.set(s, b)
  }
  return b
}
const encoded = new Map<string, Uint8Array>()
const td = new TextDecoder('utf-8', { fatal: true })

// ---------------------------------------------------------------- encoding

/**
 * Writes a frame's header and meta into one growing buffer (a frame's header, numbers and
 * strings were a dozen small arrays per frame, then copied together twice — allocations that
 * showed up as ≈ 5 % of an in-process round's CPU).
 */
class Writer {
  private buf: Uint8Array
  length: number
  /** `reserve`: bytes left at the start (the header); `capacity`: the size expected */
  constructor(reserve = 0, capacity = 256) {
    this.buf = smallBytes(Math.max(capacity, reserve + 64))
    this.length = reserve
  }
  private room(n: number): void {
    if (this.length + n <= this.buf.length) return
    const grown = new Uint8Array(Math.max(2 * this.buf.length, this.length + n))
    grown.set(this.buf.subarray(0, this.length))
    this.buf = grown
  }
  private push(b: Uint8Array): void {
    this.room(b.length)
    this.buf.set(b, this.length)
    this.length += b.length
  }
  u8(v: number): void {
    this.room(1)
    this.buf[this.length++] = v
  }
  u16(v: number): void {
    this.room(2)
    putU16(this.buf, this.length, v)
    this.length += 2
  }
  u32(v: number): void {
    this.room(4)
    putU32(this.buf, this.length, v)
    this.length += 4
  }
  str(s: string): void {
    const b = utf8(s)
    if (b.length > MAX_STRING_BYTES) throw new RangeError(`string field longer than ${MAX_STRING_BYTES} bytes`)
    this.u8(b.length)
    this.push(b)
  }
  fixed(b: Uint8Array, n: number): void {
    if (b.length !== n) throw new RangeError(`field must be ${n} bytes, got ${b.length}`)
    this.push(b)
  }
  /** The bytes written (a view on the writer's buffer). */
  bytes(): Uint8Array {
    return this.buf.subarray(0, this.length)
  }
}

/**
 * Big-endian integers written byte by byte: a DataView on a fresh small array (a frame's
 * header, a signed statement) showed up as ≈ 1–3 % of an in-process round's CPU in V8's
 * profile (the array's buffer made real for the view), the shifts do not.
 */
export function putU16(b: Uint8Array, o: number, v: number): void {
  b[o] = v >>> 8
  b[o + 1] = v
}
export function putU32(b: Uint8Array, o: number, v: number): void {
  b[o] = v >>> 24
  b[o + 1] = v >>> 16
  b[o + 2] = v >>> 8
  b[o + 3] = v
}

function writeInstance(w: Writer, i: Instance): void {
  w.str(i.swarmId)
  w.u32(i.epoch)
  w.u32(i.round)
  w.str(i.sender)
}

/** How `encodeFrameParts` writes a FINAL's signers. */
export interface EncodeOptions {
  /**
   * Index of each member in the member list of the epoch the FINAL names: when every signer has
   * one, signers are written as u16 indices (FLAG_SIGNER_INDEX) instead of PeerIds.
   */
  memberIndex?: ReadonlyMap<string, number>
}

/** Whether a FINAL is written with signer indices (every signer has an index below 2¹⁶). */
function indexed(f: Frame, o: EncodeOptions | undefined): o is { memberIndex: ReadonlyMap<string, number> } {
  if (f.type !== 'FINAL' || o?.memberIndex === undefined) return false
  for (const e of f.certificate) {
    const i = o.memberIndex.get(e.signer)
    if (i === undefined || i > 0xffff) return false
  }
  return true
}

/** Encodes the meta section of a frame. */
function encodeMeta(f: Frame, memberIndex?: ReadonlyMap<string, number>): Writer {
  // certificates and FETCH lists grow with n: sized once for them (a signer's id and signature
  // take at most 1 + MAX_STRING_BYTES + SIG_BYTES bytes, a listed member 1 + MAX_STRING_BYTES)
  const lists = f.type === 'FINAL' ? f.certificate.length * (1 + MAX_STRING_BYTES + SIG_BYTES) : f.type === 'FETCH' ? f.have.length * (1 + MAX_STRING_BYTES) : 0
  const w = new Writer(HEADER_BYTES, 256 + lists)
  switch (f.type) {
    case 'SEND':
      writeInstance(w, f)
      w.fixed(f.hash, HASH_BYTES)
      w.fixed(f.signature, SIG_BYTES)
      break
    case 'ECHO':
      writeInstance(w, f)
      w.fixed(f.hash, HASH_BYTES)
      w.str(f.signer)
      w.fixed(f.signature, SIG_BYTES)
      break
    case 'FINAL':
      writeInstance(w, f)
      w.fixed(f.hash, HASH_BYTES)
      w.u16(f.certificate.length)
      for (const e of f.certificate) {
        if (memberIndex !== undefined) w.u16(memberIndex.get(e.signer)!)
        else w.str(e.signer)
        w.fixed(e.signature, SIG_BYTES)
      }
      break
    case 'PULL':
      writeInstance(w, f)
      w.fixed(f.hash, HASH_BYTES)
      break
    case 'PAYLOAD':
      writeInstance(w, f)
      w.fixed(f.hash, HASH_BYTES)
      break
    case 'QUERY':
      writeInstance(w, f)
      break
    case 'FETCH':
      w.str(f.swarmId)
      w.u32(f.epoch)
      w.u32(f.round)
      w.u16(f.have.length)
      for (const s of f.have) w.str(s)
      break
    case 'END':
      break
  }
  return w
}

function payloadOf(f: Frame): Uint8Array | undefined {
  return f.type === 'SEND' || f.type === 'PAYLOAD' || f.type === 'FINAL' ? f.payload : undefined
}

/**
 * Encodes a frame as [header+meta, payload?]: the payload is not copied (write both parts
 * to the stream in order).
 */
export function encodeFrameParts(f: Frame, o?: EncodeOptions): Uint8Array[] {
  const compact = indexed(f, o)
  const w = encodeMeta(f, compact ? o.memberIndex : undefined)
  const payload = payloadOf(f)
  const head = w.bytes()
  head[0] = WIRE_VERSION
  head[1] = FrameType[f.type]
  putU16(head, 2, compact ? FLAG_SIGNER_INDEX : 0)
  putU32(head, 4, w.length - HEADER_BYTES)
  putU32(head, 8, payload?.length ?? 0)
  return payload === undefined || payload.length === 0 ? [head] : [head, payload]
}

/** Encodes a frame into one contiguous buffer (copies the payload; tests and small frames). */
export function encodeFrame(f: Frame, o?: EncodeOptions): Uint8Array {
  const parts = encodeFrameParts(f, o)
  if (parts.length === 1) return parts[0]!.slice() // its own buffer, exactly its size
  const out = new Uint8Array(parts[0]!.length + parts[1]!.length)
  out.set(parts[0]!, 0)
  out.set(parts[1]!, parts[0]!.length)
  return out
}

// ---------------------------------------------------------------- decoding

const malformed = (msg: string): BroadcastRejectError => new BroadcastRejectError('malformed', msg)

/** Decodes and checks a 12-byte header against the limits (before anything else is read). */
export function decodeHeader(b: Uint8Array, limits: WireLimits): FrameHeader {
  if (b.length < HEADER_BYTES) throw malformed(`header needs ${HEADER_BYTES} bytes, got ${b.length}`)
  const dv = new DataView(b.buffer, b.byteOffset, HEADER_BYTES)
  const version = dv.getUint8(0)
  if (version !== WIRE_VERSION) throw new BroadcastRejectError('unknown-version', `wire version ${version}, this member speaks ${WIRE_VERSION}`)
  const typeCode = dv.getUint8(1)
  const type = TYPE_NAMES[typeCode]
  if (type === undefined) throw malformed(`unknown frame type ${typeCode}`)
  const flags = dv.getUint16(2)
  if (flags !== 0 && !(type === 'FINAL' && flags === FLAG_SIGNER_INDEX)) throw malformed(`flags must be 0${type === 'FINAL' ? ` or ${FLAG_SIGNER_INDEX}` : ''} on a ${type}, got ${flags}`)
  const metaLength = dv.getUint32(4)
  const payloadLength = dv.getUint32(8)
  if (metaLength > MAX_META_BYTES) throw new BroadcastRejectError('oversized', `meta of ${metaLength} bytes > ${MAX_META_BYTES}`)
  if (payloadLength > 0 && !PAYLOAD_TYPES.has(typeCode)) throw malformed(`a ${type} frame carries no payload, got ${payloadLength} bytes`)
  if (payloadLength > limits.maxPayloadBytes) {
    throw new BroadcastRejectError('oversized', `payload of ${payloadLength} bytes > limit ${limits.maxPayloadBytes}`)
  }
  return { version, type, flags, metaLength, payloadLength }
}

class Reader {
  private o = 0
  private readonly dv: DataView
  readonly b: Uint8Array
  constructor(b: Uint8Array) {
    this.b = b
    this.dv = new DataView(b.buffer, b.byteOffset, b.byteLength)
  }
  private need(n: number, what: string): void {
    if (this.o + n > this.b.length) throw malformed(`truncated ${what}: need ${n} bytes at offset ${this.o} of ${this.b.length}`)
  }
  u16(what: string): number {
    this.need(2, what)
    const v = this.dv.getUint16(this.o)
    this.o += 2
    return v
  }
  u32(what: string): number {
    this.need(4, what)
    const v = this.dv.getUint32(this.o)
    this.o += 4
    return v
  }
  str(what: string): string {
    this.need(1, what)
    const len = this.dv.getUint8(this.o)
    this.o += 1
    if (len === 0 || len > MAX_STRING_BYTES) throw malformed(`${what} length ${len} outside 1..${MAX_STRING_BYTES}`)
    this.need(len, what)
    let s: string
    try {
      s = td.decode(this.b.subarray(this.o, this.o + len))
    } catch {
      throw malformed(`${what} is not UTF-8`)
    }
    this.o += len
    return s
  }
  fixed(n: number, what: string): Uint8Array {
    this.need(n, what)
    const v = smallCopy(this.b.subarray(this.o, this.o + n))
    this.o += n
    return v
  }
  end(): void {
    if (this.o !== this.b.length) throw malformed(`${this.b.length - this.o} trailing bytes in meta`)
  }
}

function readInstance(r: Reader): Instance {
  return { swarmId: r.str('swarm id'), epoch: r.u32('epoch'), round: r.u32('round'), sender: r.str('sender') }
}

/** Decodes a meta section; `payload` (already length-checked) is attached where the type has one. */
export function decodeMeta(header: FrameHeader, meta: Uint8Array, payload: Uint8Array | undefined): Frame {
  if (meta.length !== header.metaLength) throw malformed('meta length differs from header')
  const r = new Reader(meta)
  let f: Frame
  switch (header.type) {
    case 'SEND': {
      const i = readInstance(r)
      f = { type: 'SEND', ...i, hash: r.fixed(HASH_BYTES, 'hash'), signature: r.fixed(SIG_BYTES, 'signature'), payload: payload ?? new Uint8Array(0) }
      break
    }
    case 'ECHO': {
      const i = readInstance(r)
      f = { type: 'ECHO', ...i, hash: r.fixed(HASH_BYTES, 'hash'), signer: r.str('signer'), signature: r.fixed(SIG_BYTES, 'signature') }
      break
    }
    case 'FINAL': {
      const i = readInstance(r)
      const hash = r.fixed(HASH_BYTES, 'hash')
      const count = r.u16('certificate size')
      if (count > MAX_LIST_ENTRIES) throw new BroadcastRejectError('oversized', `certificate of ${count} entries > ${MAX_LIST_ENTRIES}`)
      const certificate: SignatureEntry[] = []
      if (header.flags === FLAG_SIGNER_INDEX) {
        const signerIndices: number[] = []
        for (let k = 0; k < count; k++) {
          signerIndices.push(r.u16('signer index'))
          certificate.push({ signer: '', signature: r.fixed(SIG_BYTES, 'signature') })
        }
        f = { type: 'FINAL', ...i, hash, certificate, signerIndices }
      } else {
        for (let k = 0; k < count; k++) certificate.push({ signer: r.str('signer'), signature: r.fixed(SIG_BYTES, 'signature') })
        f = { type: 'FINAL', ...i, hash, certificate }
      }
      if (header.payloadLength > 0 || payload !== undefined) f.payload = payload ?? new Uint8Array(0)
      break
    }
    case 'PULL': {
      const i = readInstance(r)
      f = { type: 'PULL', ...i, hash: r.fixed(HASH_BYTES, 'hash') }
      break
    }
    case 'PAYLOAD': {
      const i = readInstance(r)
      f = { type: 'PAYLOAD', ...i, hash: r.fixed(HASH_BYTES, 'hash'), payload: payload ?? new Uint8Array(0) }
      break
    }
    case 'FETCH': {
      const swarmId = r.str('swarm id')
      const epoch = r.u32('epoch')
      const round = r.u32('round')
      const count = r.u16('have size')
      if (count > MAX_LIST_ENTRIES) throw new BroadcastRejectError('oversized', `have list of ${count} entries > ${MAX_LIST_ENTRIES}`)
      const have: string[] = []
      for (let k = 0; k < count; k++) have.push(r.str('have entry'))
      f = { type: 'FETCH', swarmId, epoch, round, have }
      break
    }
    case 'QUERY':
      f = { type: 'QUERY', ...readInstance(r) }
      break
    case 'END':
      f = { type: 'END' }
      break
  }
  r.end()
  return f
}

/**
 * Names the signers of a FINAL decoded with signer indices, from the member list of the epoch it
 * names (`members`, in the membership's order); an index beyond the list is `malformed`. A FINAL
 * with PeerIds is returned as it is.
 */
export function resolveSigners(f: Extract<Frame, { type: 'FINAL' }>, members: readonly string[]): Extract<Frame, { type: 'FINAL' }> {
  const idx = f.signerIndices
  if (idx === undefined) return f
  const certificate = f.certificate.map((e, k) => {
    const signer = members[idx[k]!]
    if (signer === undefined) throw malformed(`signer index ${idx[k]} in a certificate of an epoch with ${members.length} members`)
    return { signer, signature: e.signature }
  })
  const out: Extract<Frame, { type: 'FINAL' }> = { type: 'FINAL', swarmId: f.swarmId, epoch: f.epoch, round: f.round, sender: f.sender, hash: f.hash, certificate }
  if (f.payload !== undefined) out.payload = f.payload
  return out
}

/** Decodes one complete frame held in `b` (exactly one frame, no trailing bytes). */
export function decodeFrame(b: Uint8Array, limits: WireLimits): Frame {
  const header = decodeHeader(b, limits)
  const total = HEADER_BYTES + header.metaLength + header.payloadLength
  if (b.length !== total) throw malformed(`frame is ${b.length} bytes, header says ${total}`)
  const meta = b.subarray(HEADER_BYTES, HEADER_BYTES + header.metaLength)
  const payload = header.payloadLength > 0 ? b.slice(HEADER_BYTES + header.metaLength) : undefined
  return decodeMeta(header, meta, payload)
}

/** Total encoded size of a frame's header and meta (for byte accounting). */
export function frameOverhead(header: FrameHeader): number {
  return HEADER_BYTES + header.metaLength
}
