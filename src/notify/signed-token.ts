// Signed, unguessable tokens for links and addresses in emails (an unsubscribe link, a
// conversation's reply address): a payload and an HMAC-SHA256 over it, both base64url. Anyone can
// read the payload; only chatd can make one that verifies. No expiry: an unsubscribe link works as
// long as the secret does (changing `email.secret` invalidates every link sent).
import { createHmac, timingSafeEqual } from 'node:crypto';

const mac = (secret: string, purpose: string, payload: string) =>
  createHmac('sha256', secret).update(`${purpose}\n${payload}`).digest().subarray(0, 18);

/** `purpose` separates kinds of tokens: an unsubscribe token is never a valid reply token. */
export function signToken(secret: string, purpose: string, fields: readonly string[]): string {
  const payload = Buffer.from(JSON.stringify(fields)).toString('base64url');
  return `${payload}.${mac(secret, purpose, payload).toString('base64url')}`;
}

/** The signed fields, or null for anything chatd did not sign for this purpose. */
export function verifyToken(secret: string, purpose: string, token: string): string[] | null {
  const dot = token.indexOf('.');
  if (dot <= 0 || token.length > 2048) return null;
  const payload = token.slice(0, dot);
  const given = Buffer.from(token.slice(dot + 1), 'base64url');
  const want = mac(secret, purpose, payload);
  if (given.length !== want.length || !timingSafeEqual(given, want)) return null;
  try {
    const fields: unknown = JSON.parse(Buffer.from(payload, 'base64url').toString('utf8'));
    return Array.isArray(fields) && fields.every((f) => typeof f === 'string') ? (fields as string[]) : null;
  } catch {
    return null;
  }
}
