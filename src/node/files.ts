/**
 * Reading swarm files and node configs (YAML or JSON; YAML is a superset, so one parser).
 * Errors name the file and the field.
 */
import { readFile } from 'node:fs/promises'
import { dirname, isAbsolute, resolve } from 'node:path'
import { parse } from 'yaml'
import { parseSwarm, type SwarmConfig } from '../config/schema.ts'
import { InvalidConfigError } from '../errors.ts'
import { type NodeConfig, parseNodeConfig } from './config.ts'

/** Largest config file we read: swarm files list members, a few kB each hundred. */
const MAX_CONFIG_BYTES = 16 * 1024 * 1024

/** Parses a YAML or JSON file; a missing file or a syntax error is an InvalidConfigError naming the file. */
export async function readConfigFile(path: string): Promise<unknown> {
  let text: string
  try {
    const bytes = await readFile(path)
    if (bytes.length > MAX_CONFIG_BYTES) throw new InvalidConfigError(path, `${bytes.length} bytes is too large for a config file`)
    text = bytes.toString('utf8')
  } catch (err) {
    if (err instanceof InvalidConfigError) throw err
    const code = (err as NodeJS.ErrnoException).code
    throw new InvalidConfigError(path, code === 'ENOENT' ? 'file not found; check the path' : `cannot read it (${code ?? String(err)})`, { cause: err })
  }
  try {
    return parse(text)
  } catch (err) {
    throw new InvalidConfigError(path, `not valid YAML/JSON: ${(err as Error).message.split('\n')[0]}`, { cause: err })
  }
}

export async function loadSwarmFile(path: string): Promise<SwarmConfig> {
  return parseSwarm(await readConfigFile(path), path)
}

/** A node config with its relative paths (swarm, key, dataDir) resolved against the config file's directory. */
export async function loadNodeConfigFile(path: string): Promise<NodeConfig> {
  const config = parseNodeConfig(await readConfigFile(path), path)
  const base = dirname(resolve(path))
  const abs = (p: string): string => (isAbsolute(p) ? p : resolve(base, p))
  return {
    ...config,
    swarm: abs(config.swarm),
    key: abs(config.key),
    ...(config.dataDir !== undefined ? { dataDir: abs(config.dataDir) } : {}),
    epochs: config.epochs.map(abs),
  }
}
