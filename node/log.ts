/** The program's loggers: human-readable or JSON lines, on stderr (stdout carries progress). */
import type { LogFields, Logger } from '../src/logger.ts'

export type LogFormat = 'pretty' | 'json'
export type LogLevel = 'debug' | 'info' | 'warn' | 'error'

const rank: Record<LogLevel, number> = { debug: 10, info: 20, warn: 30, error: 40 }

function fieldText(v: unknown): string {
  if (typeof v === 'string') return /\s/.test(v) ? JSON.stringify(v) : v
  if (typeof v === 'number') return Number.isInteger(v) ? String(v) : String(Number(v.toPrecision(4)))
  return JSON.stringify(v)
}

export function createCliLogger(opts: { format: LogFormat; level: LogLevel; name?: string; write?: (line: string) => void }): Logger {
  const write = opts.write ?? ((line: string) => process.stderr.write(`${line}\n`))
  const min = rank[opts.level]
  const make = (name: string): Logger => {
    const log =
      (level: LogLevel) =>
      (msg: string, fields?: LogFields): void => {
        if (rank[level] < min) return
        if (opts.format === 'json') {
          write(JSON.stringify({ time: new Date().toISOString(), level, name, msg, ...fields }))
        } else {
          const time = new Date().toISOString().slice(11, 23)
          const extra = fields === undefined ? '' : Object.entries(fields).map(([k, v]) => ` ${k}=${fieldText(v)}`).join('')
          write(`${time} ${level.toUpperCase().padEnd(5)} ${name === '' ? '' : `${name}: `}${msg}${extra}`)
        }
      }
    return {
      debug: log('debug'),
      info: log('info'),
      warn: log('warn'),
      error: log('error'),
      child: (child: string) => make(name === '' ? child : `${name}:${child}`),
    }
  }
  return make(opts.name ?? '')
}

/**
 * The logger of one-shot commands (swarm, status): warnings and errors as `monna: warning: …`
 * lines on stderr, like the program's error line; debug and info are dropped.
 */
export function createCommandLogger(write: (line: string) => void = (line) => process.stderr.write(`${line}\n`)): Logger {
  const drop = (): void => {}
  const log: Logger = {
    debug: drop,
    info: drop,
    warn: (msg) => write(`monna: warning: ${msg}`),
    error: (msg) => write(`monna: error: ${msg}`),
    child: () => log,
  }
  return log
}
