// The dispatcher on real Redis (a unique prefix per file) delivering to a real HTTP receiver on
// loopback: signatures, retries with a stable delivery id, Retry-After, two dispatchers sharing
// the group, trimming, dead-lettering and replay.
import { randomUUID } from 'node:crypto';
import { Redis } from 'ioredis';
import pino from 'pino';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { hasRedis, REDIS_URL, uniquePrefix } from '../../test/helpers/services.js';
import { startWebhookReceiver, webhookConfig, type WebhookReceiver } from '../../test/helpers/webhook-receiver.js';
import { RedisStore } from '../store/redis/redis-store.js';
import { WebhookDispatcher } from './dispatcher.js';
import { endpointDirectory } from './endpoints.js';
import { RedisWebhookQueue, WEBHOOK_GROUP, webhookKeys } from '../store/redis/redis-webhook-queue.js';
import { deliveryIdFor, verifyWebhook } from './signing.js';
import { eventually } from '../../test/helpers/eventually.js';
import { appendJob } from '../../test/helpers/webhook-jobs.js';

const SECRET = 'whsec_test_0123456789abcdef';
const logger = pino({ level: process.env.TEST_LOG_LEVEL ?? 'silent' });

describe.skipIf(!(await hasRedis()))('webhook dispatcher on Redis', () => {
  let admin: Redis;
  let receiver: WebhookReceiver;
  const running: WebhookDispatcher[] = [];
  let prefix: string;

  beforeAll(async () => {
    admin = new Redis(REDIS_URL);
  });
  afterAll(async () => {
    await admin.quit();
  });
  afterEach(async () => {
    await Promise.allSettled(running.splice(0).map((d) => d.close()));
    await receiver?.close();
    const keys = await admin.keys(`${prefix}*`);
    if (keys.length > 0) await admin.del(...keys);
  });

  type Endpoints = Record<string, { id?: string; url: string; secret: string; concurrency?: number }[]>;
  async function setup(opts: { windowMs?: number; endpoints?: (url: string) => Endpoints } = {}) {
    prefix = uniquePrefix('wh');
    receiver = await startWebhookReceiver();
    const config = webhookConfig(opts.endpoints?.(receiver.url) ?? { t1: [{ id: 'ep1', url: `${receiver.url}/hook`, secret: SECRET }] });
    const directory = endpointDirectory(config as never);
    const keys = webhookKeys(prefix);
    const start = async (consumer = `c-${randomUUID().slice(0, 8)}`) => {
      const queue = new RedisWebhookQueue({ redis: new Redis(REDIS_URL), blocking: new Redis(REDIS_URL), prefix, deadMaxLen: 1000 });
      const d = new WebhookDispatcher({
        queue,
        endpoints: () => directory,
        logger,
        consumer,
        // Generous: a loaded machine must not turn a slow answer into a retry (a second delivery).
        timeoutMs: 10_000,
        claimIdleMs: 25_000,
        retryPollMs: 50,
        statsIntervalMs: 200,
        retry: { baseMs: 100, maxDelayMs: 400, windowMs: opts.windowMs ?? 60_000 },
      });
      running.push(d);
      await d.start();
      return d;
    };
    // What the store's outbox relay writes (DESIGN.md: meta:webhook_jobs fields).
    const addJob = async (tenantId = 't1', text = 'hello', maxLen?: number) => {
      const messageId = randomUUID();
      const message = { id: messageId, tenantId, sessionId: 's1', seq: 1, text, createdAt: new Date().toISOString() };
      const id = await appendJob(
        admin,
        keys.jobs,
        { tenantId, messageId, createdAt: message.createdAt, payload: JSON.stringify(message) },
        maxLen,
      );
      return { id: id!, messageId, message };
    };
    const pending = async () => Number(((await admin.xpending(keys.jobs, WEBHOOK_GROUP)) as [number])[0]);
    return { keys, start, addJob, pending };
  }

  it('delivers a job once, signed so that a receiver can verify it, and acknowledges it', async () => {
    const { start, addJob, pending, keys } = await setup();
    await start();
    const { messageId, message } = await addJob();
    await eventually(() => receiver.received.length === 1, 'the delivery');
    const got = receiver.received[0]!;
    expect(got.path).toBe('/hook');
    expect(verifyWebhook(SECRET, { timestamp: got.timestamp, signature: got.signature }, got.body)).toBe(true);
    expect(verifyWebhook('another-secret-xxxxxxxx', { timestamp: got.timestamp, signature: got.signature }, got.body)).toBe(false);
    expect(verifyWebhook(SECRET, { timestamp: got.timestamp, signature: got.signature }, got.body.replace('hello', 'hellO'))).toBe(false);
    expect(got.deliveryId).toBe(deliveryIdFor('t1', messageId, 'ep1'));
    expect(JSON.parse(got.body)).toEqual({
      id: `evt_${messageId}`,
      type: 'message.created',
      tenantId: 't1',
      createdAt: message.createdAt,
      data: message,
    });
    await eventually(async () => (await pending()) === 0, 'the job acknowledged');
    expect(await admin.zcard(keys.retry)).toBe(0);
  });

  it('retries after 500s and a 429 with Retry-After, keeping the same X-Chatd-Delivery, then is done', async () => {
    const { start, addJob, pending, keys } = await setup();
    const answers = [{ status: 500 }, { status: 503 }, { status: 429, headers: { 'retry-after': '1' } }, { status: 200 }];
    receiver.respond = (_r, i) => answers[i] ?? { status: 200 };
    let scoreAfter429: number | undefined;
    await start();
    const { messageId } = await addJob();
    await eventually(async () => {
      if (receiver.received.length === 3 && scoreAfter429 === undefined) {
        const [member, score] = await admin.zrange(keys.retry, 0, 0, 'WITHSCORES');
        if (member && JSON.parse(member).attempt === 3) scoreAfter429 = Number(score);
      }
      return receiver.received.length === 4;
    }, 'four attempts');
    const ids = new Set(receiver.received.map((r) => r.deliveryId));
    expect([...ids]).toEqual([deliveryIdFor('t1', messageId, 'ep1')]);
    // Retry-After: 1 was honoured: the retry was not due before a second after the 429 was sent.
    if (scoreAfter429 !== undefined) expect(scoreAfter429).toBeGreaterThanOrEqual(receiver.received[2]!.receivedAt + 1000 - 5);
    expect(receiver.received[3]!.receivedAt - receiver.received[2]!.receivedAt).toBeGreaterThanOrEqual(990);
    await eventually(async () => (await admin.zcard(keys.retry)) === 0 && (await pending()) === 0, 'nothing left to retry');
    // A window on purpose: proves no second delivery follows (there is no event for "none").
    await new Promise((r) => setTimeout(r, 500));
    expect(receiver.received.length).toBe(4);
  });

  it('two dispatchers on separate connections deliver each job exactly once to a healthy endpoint', async () => {
    const { start, addJob, pending, keys } = await setup();
    await Promise.all([start('node-a'), start('node-b')]);
    const jobs = await Promise.all(Array.from({ length: 200 }, (_, i) => addJob('t1', `m${i}`)));
    await eventually(async () => (await pending()) === 0 && receiver.received.length >= 200, 'every job delivered and acknowledged');
    await new Promise((r) => setTimeout(r, 500));
    expect(await admin.zcard(keys.retry)).toBe(0);
    const ids = receiver.received.map((r) => r.deliveryId).sort();
    expect(ids).toEqual(jobs.map((j) => deliveryIdFor('t1', j.messageId, 'ep1')).sort());
  });

  it('keeps a scheduled retry when a burst trims the stream past its job', async () => {
    const { start, addJob, keys } = await setup();
    let healthy = false;
    receiver.respond = () => (healthy ? { status: 200 } : { status: 500 });
    await start();
    const job = await addJob();
    await eventually(async () => (await admin.zcard(keys.retry)) === 1, 'a retry scheduled');
    for (let i = 0; i < 50; i++) await addJob('no-hooks', `burst ${i}`, 5);
    expect(await admin.xrange(keys.jobs, job.id, job.id)).toEqual([]); // the job is gone from the stream
    const before = receiver.received.length;
    healthy = true;
    await eventually(() => receiver.received.length > before, 'a retry after recovery');
    await eventually(async () => (await admin.zcard(keys.retry)) === 0, 'the retry settled');
    const mine = receiver.received.filter((r) => r.deliveryId === deliveryIdFor('t1', job.messageId, 'ep1'));
    expect(mine.length).toBeGreaterThanOrEqual(2);
    expect(JSON.parse(mine.at(-1)!.body).data.id).toBe(job.messageId);
  });

  it('dead-letters after the retry window and replays the dead delivery with the same id', async () => {
    const { start, addJob, keys } = await setup({ windowMs: 3000 });
    let healthy = false;
    receiver.respond = () => (healthy ? { status: 200 } : { status: 500, body: 'down for maintenance' });
    const d = await start();
    const job = await addJob();
    await eventually(async () => (await admin.xlen(keys.dead)) === 1, 'a dead entry');
    expect(await admin.zcard(keys.retry)).toBe(0);
    const queue = (d as unknown as { opts: { queue: RedisWebhookQueue } }).opts.queue;
    const [dead] = await queue.listDead(10);
    expect(dead!.reason).toBe('retry_window_exhausted');
    expect(dead!.error).toBe('HTTP 500: down for maintenance');
    expect(dead!.item.deliveryId).toBe(deliveryIdFor('t1', job.messageId, 'ep1'));
    const attempts = receiver.received.length;
    expect(attempts).toBeGreaterThanOrEqual(2);
    healthy = true;
    expect(await queue.replayDead('all', Date.now())).toEqual([dead!.id]);
    await eventually(() => receiver.received.length === attempts + 1, 'the replayed delivery');
    expect(receiver.received.at(-1)!.deliveryId).toBe(dead!.item.deliveryId);
    await eventually(async () => (await admin.zcard(keys.retry)) === 0, 'the replay settled');
    expect(await admin.xlen(keys.dead)).toBe(0);
  });

  it('dead-letters at once on a non-retryable 4xx, and a failing endpoint does not hold back another', async () => {
    const { start, addJob, keys, pending } = await setup({
      endpoints: (url) => ({
        t1: [
          { id: 'gone', url: `${url}/gone`, secret: SECRET },
          { id: 'ok', url: `${url}/ok`, secret: SECRET },
        ],
      }),
    });
    receiver.respond = (r) => (r.path === '/gone' ? { status: 410 } : { status: 204 });
    await start();
    const job = await addJob();
    await eventually(async () => (await pending()) === 0, 'the job settled');
    expect(receiver.received.map((r) => r.path).sort()).toEqual(['/gone', '/ok']);
    expect(await admin.zcard(keys.retry)).toBe(0);
    const dead = await admin.xrange(keys.dead, '-', '+');
    expect(dead).toHaveLength(1);
    const fields = Object.fromEntries(dead[0]![1].flatMap((v, i, a) => (i % 2 === 0 ? [[v, a[i + 1]]] : [])));
    expect(fields).toMatchObject({ reason: 'rejected', error: 'HTTP 410', endpointId: 'gone', messageId: job.messageId, attempts: '1' });
  });

  it('limits deliveries in flight per endpoint', async () => {
    const { start, addJob, pending } = await setup({
      endpoints: (url) => ({ t1: [{ id: 'slow', url: `${url}/slow`, secret: SECRET, concurrency: 2 }] }),
    });
    receiver.respond = () => ({ status: 200 });
    await start();
    await Promise.all(Array.from({ length: 12 }, (_, i) => addJob('t1', `m${i}`)));
    await eventually(async () => (await pending()) === 0 && receiver.received.length >= 12, 'all delivered');
    expect(receiver.maxInFlight()).toBeLessThanOrEqual(2);
  });

  it("delivers what the Redis store's publishMessage appends (the relay's fields), once per message", async () => {
    const { start, pending } = await setup();
    await start();
    const store = new RedisStore({ url: REDIS_URL, prefix }, logger);
    try {
      await store.connect();
      const m = {
        id: randomUUID(),
        tenantId: 't1',
        sessionId: 's1',
        seq: 1,
        sender: { type: 'visitor' as const, id: 's1', verified: false },
        text: 'through the store',
        createdAt: new Date().toISOString(),
        meta: { domain: '', origin: '', url: '', referrer: '', siteId: '' },
      };
      await store.events.publishMessage(m);
      await store.events.publishMessage(m); // a relay re-publish: no second job
      await eventually(() => receiver.received.length === 1, 'the delivery');
      await eventually(async () => (await pending()) === 0, 'acknowledged');
      // A window on purpose: proves no second delivery follows (there is no event for "none").
      await new Promise((r) => setTimeout(r, 300));
      expect(receiver.received).toHaveLength(1);
      const got = receiver.received[0]!;
      expect(got.deliveryId).toBe(deliveryIdFor('t1', m.id, 'ep1'));
      expect(JSON.parse(got.body).data).toEqual(m);
      expect(verifyWebhook(SECRET, { timestamp: got.timestamp, signature: got.signature }, got.body)).toBe(true);
    } finally {
      await store.close();
    }
  });
});
