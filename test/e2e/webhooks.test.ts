// Webhooks end to end on Redis + PostgreSQL: the real bin/chatd (api role with a tenant that has an
// endpoint), a message sent through the HTTP API reaches a real receiver once with a valid
// signature; a receiver that always fails lands the next one in meta:webhook_dead, and
// `chatd webhooks dead` / `chatd webhooks replay --all-dead` resend it once the receiver recovers.
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runChatd, spawnChatd, type ChatdProcess } from '../helpers/chatd-process.js';
import { DATABASE_URL, dropSchema, hasPostgres, hasRedis, REDIS_URL, uniquePrefix, uniqueSchema } from '../helpers/services.js';
import { startWebhookReceiver, type WebhookReceiver } from '../helpers/webhook-receiver.js';
import { client } from '../helpers/api-harness.js';
import { deliveryIdFor, verifyWebhook } from '../../src/webhooks/signing.js';
import { eventually } from '../helpers/eventually.js';

const SECRET = 'whsec_e2e_0123456789abcdefghij';
const PUB = 'ck_pub_acme_publishable_000001';

/** The one tenant, acme, with an endpoint on the receiver. */
const acmeTenants = (receiver: WebhookReceiver) => [
  {
    id: 'acme',
    apiKeys: [{ key: PUB }],
    allowedOrigins: ['*'],
    webhooks: [{ id: 'crm', url: `${receiver.url}/hooks/chat`, secret: SECRET }],
  },
];

const writeConfig = (cwd: string, config: object) => writeFile(path.join(cwd, 'chat-server.yaml'), JSON.stringify(config, null, 2));

/** A visitor of acme sends `text` through the HTTP API; the stored message's id. */
async function send(call: ReturnType<typeof client>, text: string, sessionId: string, clientMessageId?: string): Promise<string> {
  const minted = await call('POST', '/api/chat/anonymous-token', { token: PUB, body: { tenantId: 'acme' } });
  expect(minted.status, JSON.stringify(minted.body)).toBe(200);
  const sent = await call('POST', '/webchat/message', {
    token: minted.body.token as string,
    body: { text, tenantId: 'acme', sessionId, fingerprint: 'fp-1', ...(clientMessageId && { clientMessageId }) },
  });
  expect(sent.status, JSON.stringify(sent.body)).toBe(200);
  return sent.body.messageId as string;
}

describe.skipIf(!((await hasRedis()) && (await hasPostgres())))('webhooks end to end (Redis + PostgreSQL)', () => {
  let cwd: string;
  let chatd: ChatdProcess;
  let receiver: WebhookReceiver;
  let call: ReturnType<typeof client>;
  let healthy = true;
  const prefix = uniquePrefix('whe2e');
  const schema = uniqueSchema('whe2e');
  const admin = new Redis(REDIS_URL);

  beforeAll(async () => {
    receiver = await startWebhookReceiver();
    receiver.respond = () => (healthy ? { status: 200 } : { status: 503, body: 'receiver down' });
    cwd = await mkdtemp(path.join(tmpdir(), 'chatd-wh-e2e-'));
    const config = {
      server: { port: 0 },
      admin: { port: 0 },
      redis: { url: REDIS_URL, prefix },
      database: { url: DATABASE_URL, schema, autoMigrate: true },
      tenants: acmeTenants(receiver),
      webhooks: { timeoutMs: 10_000, retryBaseMs: 100, retryMaxDelayMs: 200, retryWindowMs: 3000 },
    };
    await writeConfig(cwd, config);
    chatd = await spawnChatd({ cwd, timeoutMs: 60_000 });
    call = client(`http://127.0.0.1:${chatd.ports.public}`);
  }, 90_000);

  afterAll(async () => {
    await chatd?.stop('SIGKILL');
    await receiver?.close();
    const keys = await admin.keys(`${prefix}*`);
    if (keys.length > 0) await admin.del(...keys);
    await admin.quit();
    await dropSchema(schema);
    await rm(cwd, { recursive: true, force: true });
  });

  it('a message sent through the API reaches the receiver once, with a valid signature', async () => {
    const messageId = await send(call, 'Hello webhooks', 's-c-1', 'c-1');
    await eventually(() => receiver.received.length >= 1, 'the delivery');
    // A window on purpose: proves no second delivery follows (there is no event for "none").
    await new Promise((r) => setTimeout(r, 500));
    expect(receiver.received).toHaveLength(1);
    const got = receiver.received[0]!;
    expect(got.path).toBe('/hooks/chat');
    expect(got.deliveryId).toBe(deliveryIdFor('acme', messageId, 'crm'));
    expect(verifyWebhook(SECRET, { timestamp: got.timestamp, signature: got.signature }, got.body)).toBe(true);
    const body = JSON.parse(got.body);
    expect(body).toMatchObject({
      type: 'message.created',
      tenantId: 'acme',
      data: { id: messageId, text: 'Hello webhooks', tenantId: 'acme', seq: 1 },
    });
    expect(chatd.logs()).not.toContain(SECRET);
  });

  it('a receiver that always fails lands the job in the dead stream; replay delivers it after it recovers', async () => {
    healthy = false;
    const before = receiver.received.length;
    const messageId = await send(call, 'Will die first', 's-c-2', 'c-2');
    const deliveryId = deliveryIdFor('acme', messageId, 'crm');
    await eventually(async () => (await admin.xlen(`${prefix}meta:webhook_dead`)) === 1, 'the delivery in the dead stream', {
      timeoutMs: 60_000,
    });
    const listed = await runChatd(['webhooks', 'dead', '--json'], { cwd });
    expect(listed.code, listed.stderr).toBe(0);
    const dead = JSON.parse(listed.stdout).dead as { id: string; deliveryId: string; reason: string; error: string; attempts: number }[];
    expect(dead).toHaveLength(1);
    expect(dead[0]).toMatchObject({ deliveryId, reason: 'retry_window_exhausted', error: 'HTTP 503: receiver down' });
    const attempts = receiver.received.length - before;
    expect(attempts).toBeGreaterThanOrEqual(2);
    expect(dead[0]!.attempts).toBe(attempts);

    const table = await runChatd(['webhooks', 'dead'], { cwd });
    expect(table.stdout).toContain(dead[0]!.id);
    expect(table.stdout).toContain('1 shown, 1 dead in all');

    healthy = true;
    const replay = await runChatd(['webhooks', 'replay', '--all-dead'], { cwd });
    expect(replay.code, replay.stderr).toBe(0);
    expect(replay.stdout.trim()).toBe(`replayed 1: ${dead[0]!.id}`);
    await eventually(() => receiver.received.length === before + attempts + 1, 'the replayed delivery');
    const last = receiver.received.at(-1)!;
    expect(last.deliveryId).toBe(deliveryId);
    expect(verifyWebhook(SECRET, { timestamp: last.timestamp, signature: last.signature }, last.body)).toBe(true);
    const after = await runChatd(['webhooks', 'dead', '--json'], { cwd });
    expect(JSON.parse(after.stdout).total).toBe(0);

    const again = await runChatd(['webhooks', 'replay', dead[0]!.id], { cwd });
    expect(again.code).toBe(1);
    expect(again.stdout).toContain(`not found: ${dead[0]!.id}`);
    const neither = await runChatd(['webhooks', 'replay'], { cwd });
    expect(neither.code).toBe(1);
    expect(neither.stderr.trim()).toBe('chatd: give dead entry ids or --all-dead (not both)');
  }, 300_000);

  it('exposes the webhook metrics and stops cleanly on SIGTERM with the dispatcher running', async () => {
    const metrics = await (await fetch(`http://127.0.0.1:${chatd.ports.admin}/metrics`)).text();
    expect(metrics).toMatch(/chatd_webhook_deliveries_total\{result="delivered"\} [1-9]/);
    expect(metrics).toMatch(/chatd_webhook_dead_total\{reason="retry_window_exhausted"\} 1/);
    expect(metrics).toContain('chatd_webhook_retry_scheduled');
    expect(metrics).toContain('chatd_webhook_group_lag');
    expect(await chatd.stop('SIGTERM')).toBe(0);
    expect(chatd.logs()).toContain('webhook dispatcher started');
  });
});

describe.skipIf(!(await hasPostgres()))('webhooks end to end on the memory store (dead list and replay through the admin listener)', () => {
  let cwd: string;
  let chatd: ChatdProcess;
  let receiver: WebhookReceiver;
  let call: ReturnType<typeof client>;
  let healthy = false;
  const schema = uniqueSchema('whmem');

  beforeAll(async () => {
    receiver = await startWebhookReceiver();
    receiver.respond = () => (healthy ? { status: 200 } : { status: 400, body: 'bad payload' });
    cwd = await mkdtemp(path.join(tmpdir(), 'chatd-wh-mem-'));
    const config = {
      server: { port: 0 },
      admin: { port: 0 },
      database: { url: DATABASE_URL, schema, autoMigrate: true },
      tenants: acmeTenants(receiver),
      webhooks: { timeoutMs: 10_000 },
    };
    await writeConfig(cwd, config);
    chatd = await spawnChatd({ cwd, timeoutMs: 60_000 });
    call = client(`http://127.0.0.1:${chatd.ports.public}`);
    // The CLI finds the admin listener through the config: point it at the port the server got.
    await writeConfig(cwd, { ...config, admin: { port: chatd.ports.admin } });
  }, 90_000);

  afterAll(async () => {
    await chatd?.stop('SIGKILL');
    await receiver?.close();
    await dropSchema(schema);
    await rm(cwd, { recursive: true, force: true });
  });

  it('a refused delivery (4xx) is dead at once; chatd webhooks dead and replay work through the admin listener', async () => {
    const messageId = await send(call, 'memory store', 's-mem');
    const deliveryId = deliveryIdFor('acme', messageId, 'crm');
    await eventually(() => receiver.received.length === 1, 'the refused attempt');
    let dead: { id: string; deliveryId: string; reason: string; error: string }[] = [];
    await eventually(
      async () => {
        const out = await runChatd(['webhooks', 'dead', '--json'], { cwd });
        expect(out.code, out.stderr).toBe(0);
        dead = JSON.parse(out.stdout).dead;
        return dead.length === 1;
      },
      'the dead delivery listed',
      { timeoutMs: 60_000 },
    );
    expect(dead[0]).toMatchObject({ deliveryId, reason: 'rejected', error: 'HTTP 400: bad payload' });
    healthy = true;
    const replay = await runChatd(['webhooks', 'replay', dead[0]!.id, '--json'], { cwd });
    expect(replay.code, replay.stderr).toBe(0);
    expect(JSON.parse(replay.stdout)).toEqual({ replayed: [dead[0]!.id], notFound: [] });
    await eventually(() => receiver.received.length === 2, 'the replayed delivery');
    expect(receiver.received[1]!.deliveryId).toBe(deliveryId);
    expect(
      verifyWebhook(
        SECRET,
        { timestamp: receiver.received[1]!.timestamp, signature: receiver.received[1]!.signature },
        receiver.received[1]!.body,
      ),
    ).toBe(true);
  }, 300_000);
});
