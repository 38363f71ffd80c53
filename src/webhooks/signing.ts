// What a receiver checks: every delivery is signed with the endpoint's secret over
// `${timestamp}.${body}` (the timestamp is signed too, so a captured request cannot be replayed
// later with a fresh timestamp), and carries a delivery id that stays the same across retries, so
// a receiver can drop a delivery it has already processed (delivery is at-least-once).
import { createHash, createHmac, timingSafeEqual } from 'node:crypto';

export const HEADER_DELIVERY = 'x-chatd-delivery';
export const HEADER_TIMESTAMP = 'x-chatd-timestamp';
export const HEADER_SIGNATURE = 'x-chatd-signature';

/** `sha256=` + hex HMAC-SHA256 of `${timestamp}.${body}` with the endpoint's secret. */
export function signWebhook(secret: string, timestamp: number | string, body: string): string {
  return `sha256=${createHmac('sha256', secret).update(`${timestamp}.${body}`).digest('hex')}`;
}

/**
 * The receiver's side, as documented in docs/operations.md "Webhooks": recompute the signature and compare in
 * constant time; refuse timestamps further than `toleranceSeconds` from now (replay protection).
 */
export function verifyWebhook(
  secret: string,
  headers: { timestamp: string | undefined; signature: string | undefined },
  body: string,
  opts: { toleranceSeconds?: number; nowSeconds?: number } = {},
): boolean {
  const { timestamp, signature } = headers;
  if (!timestamp || !signature || !/^[0-9]{1,12}$/.test(timestamp)) return false;
  const now = opts.nowSeconds ?? Math.floor(Date.now() / 1000);
  if (Math.abs(now - Number(timestamp)) > (opts.toleranceSeconds ?? 300)) return false;
  const expected = Buffer.from(signWebhook(secret, timestamp, body));
  const presented = Buffer.from(signature);
  return expected.length === presented.length && timingSafeEqual(expected, presented);
}

/**
 * The X-Chatd-Delivery id: derived from the message and the endpoint only, so every retry (and
 * every replay from the dead set) of one message to one endpoint carries the same id, and two
 * endpoints never share one.
 */
export function deliveryIdFor(tenantId: string, messageId: string, endpointId: string): string {
  const h = createHash('sha256').update(`${tenantId}\n${messageId}\n${endpointId}`).digest('base64url');
  return `dlv_${h.slice(0, 27)}`;
}
