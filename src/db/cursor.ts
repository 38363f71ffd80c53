// History cursors: opaque to clients (base64url), versioned, and checked on the way back in so a
// forged or foreign cursor is a clear 400 rather than a SQL error. A conversation pages by `seq`;
// a user's history across conversations pages by the global insertion position `pos`.
import { ChatdError } from '../errors.js';

export type Cursor = { readonly kind: 'seq'; readonly value: number } | { readonly kind: 'pos'; readonly value: number };

export function encodeCursor(c: Cursor): string {
  return Buffer.from(`v1:${c.kind === 'seq' ? 's' : 'p'}:${c.value}`, 'utf8').toString('base64url');
}

export function decodeCursor(raw: string): Cursor {
  const bad = () =>
    new ChatdError('validation_failed', 'Invalid cursor', { details: [{ path: 'before', message: 'not a cursor chatd returned' }] });
  if (raw.length === 0 || raw.length > 64 || !/^[A-Za-z0-9_-]+$/.test(raw)) throw bad();
  const m = /^v1:([sp]):([1-9][0-9]{0,15})$/.exec(Buffer.from(raw, 'base64url').toString('utf8'));
  if (!m) throw bad();
  const value = Number(m[2]);
  const kind = m[1] === 's' ? 'seq' : 'pos';
  // seq is an integer column; pos a bigint (kept within JavaScript's safe integers).
  if (!Number.isSafeInteger(value) || (kind === 'seq' && value > 2_147_483_647)) throw bad();
  return { kind, value };
}
