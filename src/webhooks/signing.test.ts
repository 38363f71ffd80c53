import { createHmac } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { deliveryIdFor, signWebhook, verifyWebhook } from './signing.js';

const SECRET = 'whsec_unit_0123456789abcdef';

describe('webhook signing', () => {
  it('signs `${timestamp}.${body}` with HMAC-SHA256, hex, prefixed sha256=', () => {
    const body = '{"a":1}';
    const expected = createHmac('sha256', SECRET).update(`1700000000.${body}`).digest('hex');
    expect(signWebhook(SECRET, 1700000000, body)).toBe(`sha256=${expected}`);
  });

  it('verifies a genuine delivery and refuses a changed body, timestamp, secret or a stale timestamp', () => {
    const body = '{"id":"evt_1"}';
    const now = 1700000000;
    const sig = signWebhook(SECRET, now, body);
    const ok = (s: string, ts: string, b: string, secret = SECRET, nowSeconds = now) =>
      verifyWebhook(secret, { timestamp: ts, signature: s }, b, { nowSeconds });
    expect(ok(sig, String(now), body)).toBe(true);
    expect(ok(sig, String(now), body.replace('1', '2'))).toBe(false);
    expect(ok(sig, String(now + 1), body)).toBe(false);
    expect(ok(sig, String(now), body, 'another-secret-0123456789')).toBe(false);
    expect(ok(sig, String(now), body, SECRET, now + 301)).toBe(false);
    expect(verifyWebhook(SECRET, { timestamp: undefined, signature: sig }, body)).toBe(false);
    expect(verifyWebhook(SECRET, { timestamp: 'abc', signature: sig }, body)).toBe(false);
  });

  it('derives a delivery id from tenant, message and endpoint only', () => {
    const a = deliveryIdFor('t1', 'm1', 'ep1');
    expect(a).toMatch(/^dlv_[A-Za-z0-9_-]{27}$/);
    expect(deliveryIdFor('t1', 'm1', 'ep1')).toBe(a);
    expect(deliveryIdFor('t1', 'm1', 'ep2')).not.toBe(a);
    expect(deliveryIdFor('t1', 'm2', 'ep1')).not.toBe(a);
    expect(deliveryIdFor('t2', 'm1', 'ep1')).not.toBe(a);
  });
});
