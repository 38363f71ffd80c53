// How many connections one process may hold: each one is an open file, and a process past its
// open-file limit cannot accept(), open a log file or reach Redis. We leave a reserve for those.
import { readFileSync } from 'node:fs';

/** Files kept for everything that is not a client connection (Redis, PostgreSQL, logs, upstreams). */
export const FD_RESERVE = 512;

/** The soft open-file limit of this process (Node raises it to the hard limit at start), or undefined. */
export function openFileLimit(limitsFile = '/proc/self/limits'): number | undefined {
  try {
    const text = readFileSync(limitsFile, 'utf8');
    const line = text.split('\n').find((l) => l.startsWith('Max open files'));
    if (!line) return undefined;
    const soft = line.slice('Max open files'.length).trim().split(/\s+/)[0];
    if (!soft || soft === 'unlimited') return undefined;
    const n = Number(soft);
    return Number.isFinite(n) && n > 0 ? n : undefined;
  } catch {
    return undefined;
  }
}

/**
 * The most authenticated connections this node accepts: `configured` when set (> 0), else its share
 * of the open-file limit less a reserve (at least 1/8 of the limit, FD_RESERVE at most). Sessions
 * that have not completed CONNECT are open files too and are counted apart (a tenth of this by
 * default, `maxPendingConnections`), so the derived maximum leaves them room: both full stay within
 * the open-file limit. With no readable limit, 10,000.
 */
export function maxConnections(configured: number, limit = openFileLimit()): number {
  if (configured > 0) return configured;
  if (limit === undefined) return 10_000;
  const reserve = Math.min(FD_RESERVE, Math.ceil(limit / 8));
  const budget = Math.max(1, limit - reserve);
  return Math.max(1, Math.floor((budget * 10) / 11));
}

/**
 * The most sessions that have not completed CONNECT: `configured` when set (> 0), else a tenth of
 * `maxConns` (at least 1). They are counted apart from maxConnections, so a flood of handshakes
 * fills this share and never the authenticated sockets' room.
 */
export function maxPendingConnections(configured: number, maxConns: number): number {
  if (configured > 0) return configured;
  return Math.max(1, Math.ceil(maxConns / 10));
}
