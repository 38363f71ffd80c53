// Redis going away under the dispatcher (its own redis-server, AOF on, killed and restarted on the
// same port): the dispatcher does not crash, the delivery whose settle failed during the outage
// stays pending and is delivered again (same delivery id) after Redis is back, and new jobs flow.
import { spawn, type ChildProcess } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Redis } from 'ioredis';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freePort } from '../../test/helpers/services.js';
import { startWebhookReceiver, webhookConfig, type WebhookReceiver } from '../../test/helpers/webhook-receiver.js';
import type { Config } from '../config/schema.js';
import { WebhookDispatcher } from './dispatcher.js';
import { endpointDirectory } from './endpoints.js';
import { WEBHOOK_GROUP, webhookKeys } from '../store/redis/redis-webhook-queue.js';
import { deliveryIdFor } from './signing.js';
import { openRedisWebhookQueue } from '../store/redis/redis-webhook-queue.js';
import { eventually } from '../../test/helpers/eventually.js';
import { appendJob } from '../../test/helpers/webhook-jobs.js';

const SECRET = 'whsec_restart_0123456789abcdef';

describe('webhook dispatcher across a Redis restart', () => {
  let dir: string;
  let port: number;
  let server: ChildProcess | undefined;
  let receiver: WebhookReceiver;
  let dispatcher: WebhookDispatcher | undefined;
  let admin: Redis;

  const startRedis = async () => {
    server = spawn(
      'redis-server',
      ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'yes', '--appendfsync', 'always', '--dir', dir],
      { stdio: 'ignore' },
    );
    const probe = new Redis({ port, lazyConnect: true, retryStrategy: () => 50, maxRetriesPerRequest: 0 });
    probe.on('error', () => undefined); // refused until the server listens
    await eventually(async () => (await probe.ping().catch(() => '')) === 'PONG', 'redis-server up');
    probe.disconnect();
  };
  const stopRedis = async () => {
    const s = server!;
    const exited = new Promise((r) => s.once('exit', r));
    s.kill('SIGKILL');
    await exited;
  };

  beforeAll(async () => {
    dir = mkdtempSync(path.join(os.tmpdir(), 'chatd-wh-redis-'));
    port = await freePort();
    await startRedis();
    admin = new Redis({ port });
    admin.on('error', () => undefined); // the test kills this server on purpose
    receiver = await startWebhookReceiver();
  }, 60_000);
  afterAll(async () => {
    await dispatcher?.close();
    admin?.disconnect();
    server?.kill('SIGKILL');
    await receiver?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('keeps an unsettled delivery pending through the outage and delivers it again afterwards', async () => {
    const url = `redis://127.0.0.1:${port}`;
    const config = { redis: { url, prefix: '' }, webhooks: { deadMaxLen: 1000, streamMaxLen: 1000 } } as unknown as Config;
    const warnings: string[] = [];
    const logger = pino({ level: 'warn' }, { write: (line: string) => void warnings.push((JSON.parse(line) as { msg: string }).msg) });
    const queue = await openRedisWebhookQueue(config.redis, { logger, deadMaxLen: config.webhooks.deadMaxLen });
    const directory = endpointDirectory(webhookConfig({ t1: [{ id: 'ep1', url: `${receiver.url}/hook`, secret: SECRET }] }) as never);
    dispatcher = new WebhookDispatcher({
      queue,
      endpoints: () => directory,
      logger,
      consumer: 'n1',
      timeoutMs: 3000,
      claimIdleMs: 7000,
      retryPollMs: 50,
      retry: { baseMs: 100, maxDelayMs: 400, windowMs: 60_000 },
    });
    await dispatcher.start();
    const keys = webhookKeys('');
    const add = (messageId: string) => appendJob(admin, keys.jobs, { tenantId: 't1', messageId, createdAt: 'x' });

    // The first delivery is held by the receiver while Redis dies; it then succeeds, but its
    // settle cannot reach Redis: the job must stay pending, not be lost.
    let release!: () => void;
    const held = new Promise<'hang' | { status: number }>((r) => (release = () => r({ status: 200 })));
    receiver.respond = (_r, i) => (i === 0 ? held : { status: 200 });
    const m1 = randomUUID();
    await add(m1);
    await eventually(() => receiver.received.length === 1, 'the first attempt');
    await stopRedis();
    release();
    // The 200 arrives; the settle fails (Redis down).
    await eventually(() => warnings.includes('webhook delivery could not be settled; it will be retried'), 'the settle to fail');
    await startRedis();
    await eventually(() => receiver.received.length === 2, 'the job claimed again and redelivered after the restart', {
      timeoutMs: 60_000,
    });
    expect(receiver.received[1]!.deliveryId).toBe(receiver.received[0]!.deliveryId);
    expect(receiver.received[0]!.deliveryId).toBe(deliveryIdFor('t1', m1, 'ep1'));
    await eventually(
      async () => Number(((await admin.xpending(keys.jobs, WEBHOOK_GROUP)) as [number])[0]) === 0,
      'settled after the restart',
    );
    // New jobs flow again.
    const m2 = randomUUID();
    await add(m2);
    await eventually(() => receiver.received.some((r) => r.deliveryId === deliveryIdFor('t1', m2, 'ep1')), 'a new job after the restart');
  }, 120_000);
});
