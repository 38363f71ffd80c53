// pino: JSON lines by default, human-readable on a terminal. Every line is scrubbed of the
// configured secret values before it is written, whatever code path logged it.
import { pino, type Logger, type DestinationStream } from 'pino';
import pretty from 'pino-pretty';
import { REDACTED } from '../config/redact.js';

export type { Logger };

export interface LoggerOptions {
  level: string;
  format: 'auto' | 'json' | 'pretty';
  /** Values that must never appear in output (API keys, JWT secrets, passwords). */
  secrets?: readonly string[];
  destination?: DestinationStream;
  /** Where lines go when no destination is given: 1 (stdout, the default) or 2 (stderr). */
  fd?: 1 | 2;
}

const REDACT_PATHS = [
  'req.headers.authorization',
  'headers.authorization',
  'authorization',
  'apiKey',
  'token',
  'auth.apiKey',
  'auth.token',
  '*.apiKey',
  '*.token',
  '*.secret',
  '*.password',
];

export function createLogger(opts: LoggerOptions): Logger {
  const fd = opts.fd ?? 1;
  const usePretty = opts.format === 'pretty' || (opts.format === 'auto' && (fd === 2 ? process.stderr : process.stdout).isTTY === true);
  const secrets = [...(opts.secrets ?? [])].filter((s) => s.length >= 8).sort((a, b) => b.length - a.length);
  const scrub = (line: string) => {
    for (const s of secrets) if (line.includes(s)) line = line.split(s).join(REDACTED);
    return line;
  };
  const destination =
    opts.destination ??
    (usePretty
      ? pretty({ colorize: true, translateTime: 'SYS:HH:MM:ss.l', ignore: 'pid,hostname', sync: true, destination: fd })
      : pino.destination({ fd, sync: fd === 2 }));
  return pino(
    {
      level: opts.level,
      base: { pid: process.pid },
      redact: { paths: REDACT_PATHS, censor: REDACTED },
      hooks: secrets.length > 0 ? { streamWrite: scrub } : {},
      serializers: { err: pino.stdSerializers.err },
    },
    destination,
  );
}

/** A logger for the moments before config is loaded, and for tests. */
export const bootstrapLogger = (level = 'info') => createLogger({ level, format: 'auto' });
