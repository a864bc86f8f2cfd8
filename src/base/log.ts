// Structured logs: one JSON object per line on stderr when AZOTE_LOG_FORMAT=json, else a short human line.
// Levels below AZOTE_LOG_LEVEL (default "info") are dropped.

export type LogLevel = 'debug' | 'info' | 'warn' | 'error';
export type LogFields = Record<string, unknown>;

const rank: Record<LogLevel, number> = { debug: 10, info: 20, warn: 30, error: 40 };

export interface Logger {
  debug(msg: string, fields?: LogFields): void;
  info(msg: string, fields?: LogFields): void;
  warn(msg: string, fields?: LogFields): void;
  error(msg: string, fields?: LogFields): void;
  child(component: string): Logger;
}

export interface LogSink {
  write(line: string): void;
}

function envLevel(): LogLevel {
  const v = process.env['AZOTE_LOG_LEVEL'];
  return v === 'debug' || v === 'info' || v === 'warn' || v === 'error' ? v : 'info';
}

export function createLogger(component: string, sink: LogSink = process.stderr, level: LogLevel = envLevel()): Logger {
  const json = process.env['AZOTE_LOG_FORMAT'] === 'json';
  const emit = (lvl: LogLevel, msg: string, fields?: LogFields): void => {
    if (rank[lvl] < rank[level]) return;
    if (json) {
      sink.write(JSON.stringify({ time: new Date().toISOString(), level: lvl, component, msg, ...fields }) + '\n');
      return;
    }
    const extra = fields && Object.keys(fields).length > 0
      ? ' ' + Object.entries(fields).map(([k, v]) => `${k}=${typeof v === 'string' ? v : JSON.stringify(v)}`).join(' ')
      : '';
    sink.write(`azote ${component}: ${lvl === 'info' ? '' : lvl + ': '}${msg}${extra}\n`);
  };
  return {
    debug: (m, f) => emit('debug', m, f),
    info: (m, f) => emit('info', m, f),
    warn: (m, f) => emit('warn', m, f),
    error: (m, f) => emit('error', m, f),
    child: (c) => createLogger(`${component}.${c}`, sink, level),
  };
}

/** A logger that drops everything, for tests and quiet library use. */
export const silentLogger: Logger = {
  debug: () => {}, info: () => {}, warn: () => {}, error: () => {},
  child: () => silentLogger,
};
