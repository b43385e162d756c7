/**
 * Logging is injected: the library never prints. The program (node/) provides an
 * implementation (pretty or JSON lines); tests and embedders may pass `silentLogger`.
 */
export type LogFields = Record<string, unknown>

export interface Logger {
  debug(msg: string, fields?: LogFields): void
  info(msg: string, fields?: LogFields): void
  warn(msg: string, fields?: LogFields): void
  error(msg: string, fields?: LogFields): void
  /** A logger for a sub-component: names are joined with ':' (e.g. `node-3:broadcast`). */
  child(name: string): Logger
}

const noop = (): void => {}

export const silentLogger: Logger = {
  debug: noop,
  info: noop,
  warn: noop,
  error: noop,
  child: () => silentLogger,
}

/** A logger that keeps records in memory (for tests that assert what was logged). */
export interface LogRecord {
  level: 'debug' | 'info' | 'warn' | 'error'
  name: string
  msg: string
  fields?: LogFields
}

export function memoryLogger(records: LogRecord[] = [], name = ''): Logger & { records: LogRecord[] } {
  const log = (level: LogRecord['level']) => (msg: string, fields?: LogFields) => {
    records.push({ level, name, msg, fields })
  }
  return {
    records,
    debug: log('debug'),
    info: log('info'),
    warn: log('warn'),
    error: log('error'),
    child: (child: string) => memoryLogger(records, name === '' ? child : `${name}:${child}`),
  }
}
