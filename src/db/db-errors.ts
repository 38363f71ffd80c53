// Turns what pg and PGlite throw into chatd's typed errors. The distinction that matters: an error
// about one row (retry the batch row by row, fail only that caller), the database being unreachable
// (DependencyError: nothing was stored), and a COMMIT whose answer never came (OutcomeUnknownError:
// the message may be stored; the client retries with the same clientMessageId).
import { ChatdError, DependencyError, OutcomeUnknownError } from '../errors.js';

const NODE_NET_CODES = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'ECONNABORTED',
  'EPIPE',
  'ETIMEDOUT',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'ENOTFOUND',
  'EAI_AGAIN',
  'ENOTCONN',
]);

const CONNECTION_MESSAGES = [
  'connection terminated',
  'timeout exceeded when trying to connect',
  'not queryable',
  'connection error',
  'pglite is closed',
  'client was closed',
  'cannot use a pool after calling end',
  'driver has already been destroyed',
];

/** The SQLSTATE of a server-side error, if the error is one. */
export function sqlState(err: unknown): string | undefined {
  const code = (err as { code?: unknown } | null)?.code;
  return typeof code === 'string' && /^[0-9A-Z]{5}$/.test(code) ? code : undefined;
}

/**
 * Errors that are about the data sent (bad bytes, a constraint, a deadlock, a serialization
 * failure): retrying the rows of a failed batch one by one isolates the bad one.
 */
export function isRowError(err: unknown): boolean {
  const state = sqlState(err);
  if (!state) return false;
  const cls = state.slice(0, 2);
  return cls === '22' || cls === '23' || cls === '40' || cls === '42' || cls === '54';
}

/** The database could not be reached or gave up on us (connection refused, lost, shut down, timed out). */
export function isUnavailable(err: unknown): boolean {
  if (err instanceof DependencyError) return true;
  const e = err as { code?: unknown; message?: unknown } | null;
  const state = sqlState(err);
  if (state) {
    const cls = state.slice(0, 2);
    // 08 connection exception, 53 insufficient resources, 57 operator intervention (admin shutdown,
    // statement timeout), 58 system error.
    return cls === '08' || cls === '53' || cls === '57' || cls === '58';
  }
  if (typeof e?.code === 'string' && NODE_NET_CODES.has(e.code)) return true;
  const message = typeof e?.message === 'string' ? e.message.toLowerCase() : '';
  return CONNECTION_MESSAGES.some((m) => message.includes(m));
}

/** Wraps an error from a query that was not a COMMIT. Row errors and bugs are returned unchanged. */
export function toQueryError(err: unknown): unknown {
  if (err instanceof DependencyError || err instanceof OutcomeUnknownError || err instanceof ChatdError) return err;
  if (isUnavailable(err)) return new DependencyError('postgres', describe(err), { cause: err });
  return err;
}

/**
 * Wraps an error thrown by COMMIT. Only a definite answer from the server (a constraint or a
 * serialization failure, which roll the transaction back) means "not stored"; everything else —
 * the connection dropped, the server shut down — leaves the outcome unknown.
 */
export function toCommitError(err: unknown): unknown {
  if (isRowError(err)) return err;
  return new OutcomeUnknownError(`commit outcome unknown: ${describe(err)}`, { cause: err });
}

/** A row the database refused (bad bytes, too large): the caller's own fault, a 400. */
export function toRowRefusal(err: unknown): ChatdError {
  const message = (err as Error)?.message ?? String(err);
  return new ChatdError('validation_failed', 'The message cannot be stored', {
    details: [{ message: `the database refused it: ${message}` }],
    cause: err,
  });
}

function describe(err: unknown): string {
  const e = err as { message?: unknown; code?: unknown } | null;
  const msg = typeof e?.message === 'string' && e.message ? e.message : String(err);
  return typeof e?.code === 'string' && !msg.includes(e.code) ? `${msg} (${e.code})` : msg;
}
