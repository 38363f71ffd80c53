// One HTTP attempt against a real loopback receiver: how each kind of answer is classified.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freePort } from '../../test/helpers/services.js';
import { startWebhookReceiver, type WebhookReceiver } from '../../test/helpers/webhook-receiver.js';
import { attemptDelivery, createWebhookAgent } from './delivery.js';
import { verifyWebhook } from './signing.js';

const SECRET = 'whsec_delivery_0123456789abcdef';

describe('attemptDelivery', () => {
  let receiver: WebhookReceiver;
  const agent = createWebhookAgent({ timeoutMs: 10_000, connectionsPerOrigin: 4 });
  const attempt = (url: string, timeoutMs = 10_000, signal = new AbortController().signal) =>
    attemptDelivery({ url, secret: SECRET, deliveryId: 'dlv_x', body: '{"a":1}', timeoutMs, signal, dispatcher: agent });

  beforeAll(async () => {
    receiver = await startWebhookReceiver();
  });
  afterAll(async () => {
    await receiver.close();
    await agent.close();
  });

  it('classifies answers: 2xx delivered; 408, 429, 5xx retryable (with Retry-After); 3xx and other 4xx rejected', async () => {
    const answers: Record<string, { status: number; headers?: Record<string, string>; body?: string }> = {
      '/ok': { status: 204 },
      '/busy': { status: 429, headers: { 'retry-after': '7' } },
      '/slow': { status: 408 },
      '/err': { status: 502, body: `${'x'.repeat(500)}` },
      '/moved': { status: 302, headers: { location: '/ok' } },
      '/bad': { status: 422, body: '  invalid\n  payload ' },
    };
    receiver.respond = (r) => answers[r.path] ?? { status: 404 };
    const base = receiver.url;
    expect(await attempt(`${base}/ok`)).toMatchObject({ kind: 'delivered', status: 204 });
    expect(await attempt(`${base}/busy`)).toMatchObject({ kind: 'retryable', status: 429, retryAfterMs: 7000 });
    expect(await attempt(`${base}/slow`)).toMatchObject({ kind: 'retryable', status: 408 });
    const err = await attempt(`${base}/err`);
    expect(err).toMatchObject({ kind: 'retryable', status: 502 });
    expect((err as { error: string }).error).toBe(`HTTP 502: ${'x'.repeat(200)}`);
    expect(await attempt(`${base}/moved`)).toMatchObject({ kind: 'rejected', status: 302, error: 'HTTP 302' });
    expect(await attempt(`${base}/bad`)).toMatchObject({ kind: 'rejected', status: 422, error: 'HTTP 422: invalid payload' });
    const sent = receiver.received.find((r) => r.path === '/ok')!;
    expect(sent.deliveryId).toBe('dlv_x');
    expect(verifyWebhook(SECRET, { timestamp: sent.timestamp, signature: sent.signature }, sent.body)).toBe(true);
  });

  it('a hung endpoint is a retryable timeout; a closed port a retryable connection error', async () => {
    receiver.respond = () => 'hang';
    expect(await attempt(`${receiver.url}/hang`, 300)).toMatchObject({ kind: 'retryable', error: 'timeout after 300 ms' });
    const closed = await attempt(`http://127.0.0.1:${await freePort()}/`);
    expect(closed.kind).toBe('retryable');
    expect((closed as { error: string }).error).toContain('ECONNREFUSED');
  });

  it('throws (no outcome) when the dispatcher aborts it', async () => {
    receiver.respond = () => 'hang';
    const ac = new AbortController();
    const p = attempt(`${receiver.url}/hang2`, 5000, ac.signal);
    setTimeout(() => ac.abort(), 100);
    await expect(p).rejects.toBeDefined();
  });
});
