/**
 * The member identity: an Ed25519 libp2p private key kept in a file (libp2p's protobuf key
 * encoding, the same bytes other libp2p tools read), created with mode 0600 when absent.
 */
import { open, readFile, stat } from 'node:fs/promises'
import { generateKeyPair, privateKeyFromProtobuf, privateKeyToProtobuf } from '@libp2p/crypto/keys'
import type { PrivateKey } from '@libp2p/interface'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { MonnaError } from '../errors.ts'
import type { Logger } from '../logger.ts'

/** The key file exists but does not hold an Ed25519 libp2p private key. */
export class MalformedKeyFileError extends MonnaError {
  override name = 'MalformedKeyFileError'
  readonly path: string
  constructor(path: string, reason: string, options?: ErrorOptions) {
    super(`key file ${path} is malformed: ${reason} (delete it to generate a new identity, or restore the original)`, options)
    this.path = path
  }
}

/** Largest key file we read: an Ed25519 protobuf key is 68 bytes. */
const MAX_KEY_FILE_BYTES = 4096

export interface LoadKeyOptions {
  /** warned when an existing key file is open to group or others, with the `chmod` that fixes it */
  logger?: Logger
}

/** `path` as one shell word (quoted when it holds anything but safe characters). */
function shellWord(path: string): string {
  return /^[\w@%+=:,./-]+$/.test(path) ? path : `'${path.replaceAll("'", "'\\''")}'`
}

/**
 * Reads the Ed25519 private key at `path`, or creates one there (mode 0600, never overwriting a
 * file that appears concurrently). Throws MalformedKeyFileError if the file is not a key. An
 * existing file whose mode gives group or others any access (mode & 0o077) is used, with a
 * warning through `opts.logger` naming the `chmod 600 <path>` to run.
 */
export async function loadOrCreateKey(path: string, opts: LoadKeyOptions = {}): Promise<PrivateKey> {
  let bytes: Uint8Array
  let mode: number
  try {
    const st = await stat(path)
    if (!st.isFile()) throw new MalformedKeyFileError(path, 'not a regular file')
    if (st.size > MAX_KEY_FILE_BYTES) throw new MalformedKeyFileError(path, `${st.size} bytes is too large for a key`)
    mode = st.mode & 0o777
    bytes = await readFile(path)
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err
    const key = await generateKeyPair('Ed25519')
    const fh = await open(path, 'wx', 0o600)
    try {
      await fh.writeFile(privateKeyToProtobuf(key))
    } finally {
      await fh.close()
    }
    return key
  }
  let key: PrivateKey
  try {
    key = privateKeyFromProtobuf(bytes)
  } catch (err) {
    throw new MalformedKeyFileError(path, 'not a libp2p protobuf private key', { cause: err })
  }
  if (key.type !== 'Ed25519') throw new MalformedKeyFileError(path, `holds a ${key.type} key; members need Ed25519`)
  if ((mode & 0o077) !== 0) {
    const octal = `0${mode.toString(8).padStart(3, '0')}`
    const can = [mode & 0o044 ? 'read' : '', mode & 0o022 ? 'replace' : ''].filter((x) => x !== '').join(' and ') || 'open'
    opts.logger?.warn(`key file ${path} has mode ${octal}: group or others can ${can} this member's identity; run \`chmod 600 ${shellWord(path)}\``, { path, mode: octal })
  }
  return key
}

/** The PeerId string (e.g. `12D3KooW…`) of a private key: the member's id in a swarm file. */
export function peerIdOfKey(key: PrivateKey): string {
  return peerIdFromPrivateKey(key).toString()
}
