/** A member's `GET /status` in the NAT lab (test/support/netns.ts), fetched inside its namespace: its endpoint listens on that namespace's 127.0.0.1. */
import { execFile } from 'node:child_process'
import { promisify } from 'node:util'
import type { NatLab } from './netns.ts'

const run = promisify(execFile)

export type LabHost = keyof NatLab['ns']

/** The member's status, or undefined while its endpoint does not answer (not listening yet, or gone). */
export async function natStatus<T>(lab: NatLab, host: LabHost, port: number): Promise<T | undefined> {
  const text = await natFetch(lab, host, port, '/status')
  return text === undefined ? undefined : (JSON.parse(text) as T)
}

/** GET `path` from the member's endpoint inside its namespace, or undefined while it does not answer. */
export async function natFetch(lab: NatLab, host: LabHost, port: number, path: string): Promise<string | undefined> {
  const script = `fetch('http://127.0.0.1:${port}${path}').then((r) => r.text()).then((t) => process.stdout.write(t), () => process.exit(3))`
  const [cmd, ...args] = lab.exec(host)
  try {
    return (await run(cmd!, [...args, process.execPath, '-e', script], { timeout: 20_000 })).stdout
  } catch {
    return undefined
  }
}
