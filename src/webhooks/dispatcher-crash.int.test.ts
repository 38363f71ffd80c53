// A dispatcher process killed (SIGKILL) in the middle of a delivery: its job stays pending in the
// consumer group, another dispatcher claims it once it has been idle longer than claimIdleMs and
// delivers it with the same X-Chatd-Delivery (at-least-once: nothing is lost).
import { spawn, type ChildProcess } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { build } from 'esbuild';
import { Redis } from 'ioredis';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { hasRedis, REDIS_URL, uniquePrefix } from '../../test/helpers/services.js';
import { startWebhookReceiver, webhookConfig, type WebhookReceiver } from '../../test/helpers/webhook-receiver.js';
import { WebhookDispatcher } from './dispatcher.js';
import { endpointDirectory } from './endpoints.js';
import { RedisWebhookQueue, WEBHOOK_GROUP, webhookKeys } from '../store/redis/redis-webhook-queue.js';
import { deliveryIdFor, verifyWebhook } from './signing.js';
import { eventually } from '../../test/helpers/eventually.js';
import { appendJob } from '../../test/helpers/webhook-jobs.js';

const SECRET = 'whsec_crash_0123456789abcdef';

describe.skipIf(!(await hasRedis()))('a dispatcher killed mid-delivery', () => {
  let dir: string;
  let childJs: string;
  let admin: Redis;
  let receiver: WebhookReceiver;
  let child: ChildProcess | undefined;
  let survivor: WebhookDispatcher | undefined;
  const prefix = uniquePrefix('whcrash');

  beforeAll(async () => {
    dir = mkdtempSync(path.join(os.tmpdir(), 'chatd-wh-'));
    childJs = path.join(dir, 'child.mjs');
    await build({
      entryPoints: [path.resolve(__dirname, '../../test/helpers/webhook-dispatcher-child.ts')],
      outfile: childJs,
      bundle: true,
      platform: 'node',
      target: 'node20',
      format: 'esm',
      banner: { js: "import { createRequire } from 'node:module'; const require = createRequire(import.meta.url);" },
      logLevel: 'error',
    });
    admin = new Redis(REDIS_URL);
    receiver = await startWebhookReceiver();
  });
  afterAll(async () => {
    child?.kill('SIGKILL');
    await survivor?.close();
    await receiver?.close();
    const keys = await admin.keys(`${prefix}*`);
    if (keys.length > 0) await admin.del(...keys);
    await admin.quit();
    rmSync(dir, { recursive: true, force: true });
  });

  it('another dispatcher claims the pending job and delivers it with the same delivery id', async () => {
    const keys = webhookKeys(prefix);
    let alive = true;
    receiver.respond = () => (alive ? 'hang' : { status: 200 });

    child = spawn(process.execPath, [childJs], {
      env: {
        PATH: process.env.PATH,
        REDIS_URL,
        PREFIX: prefix,
        RECEIVER_URL: `${receiver.url}/hook`,
        SECRET,
        CONSUMER: 'doomed',
        TIMEOUT_MS: '20000',
        CLAIM_IDLE_MS: '30000',
      },
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    let out = '';
    child.stdout!.setEncoding('utf8').on('data', (c: string) => (out += c));
    let gone = false;
    const exited = new Promise<void>((r) => child!.on('exit', () => ((gone = true), r())));
    await eventually(
      () => {
        if (gone) throw new Error('the child dispatcher exited before it started');
        return out.includes('started');
      },
      'the child dispatcher started',
      { timeoutMs: 60_000 },
    );

    const messageId = randomUUID();
    const message = { id: messageId, tenantId: 't1', sessionId: 's1', seq: 1, text: 'survive me', createdAt: new Date().toISOString() };
    await appendJob(admin, keys.jobs, { tenantId: 't1', messageId, createdAt: message.createdAt, payload: JSON.stringify(message) });

    await eventually(() => receiver.received.length === 1, 'the child is delivering (the receiver holds the request)');
    child.kill('SIGKILL');
    await exited;
    alive = false;
    // The job is pending for the dead consumer.
    const pending = (await admin.xpending(keys.jobs, WEBHOOK_GROUP, '-', '+', 10)) as [string, string, number, number][];
    expect(pending.map((p) => p[1])).toEqual(['doomed']);

    const directory = endpointDirectory(webhookConfig({ t1: [{ id: 'ep1', url: `${receiver.url}/hook`, secret: SECRET }] }) as never);
    survivor = new WebhookDispatcher({
      queue: new RedisWebhookQueue({ redis: new Redis(REDIS_URL), blocking: new Redis(REDIS_URL), prefix, deadMaxLen: 1000 }),
      endpoints: () => directory,
      logger: pino({ level: 'silent' }),
      consumer: 'survivor',
      timeoutMs: 5000,
      claimIdleMs: 6000,
      retry: { baseMs: 100, maxDelayMs: 400, windowMs: 60_000 },
    });
    await survivor.start();
    await eventually(() => receiver.received.length >= 2, 'the survivor delivered the job', { timeoutMs: 60_000 });
    const [first, second] = receiver.received;
    expect(second!.deliveryId).toBe(first!.deliveryId);
    expect(second!.deliveryId).toBe(deliveryIdFor('t1', messageId, 'ep1'));
    expect(verifyWebhook(SECRET, { timestamp: second!.timestamp, signature: second!.signature }, second!.body)).toBe(true);
    expect(JSON.parse(second!.body).data).toEqual(message);
    await eventually(async () => Number(((await admin.xpending(keys.jobs, WEBHOOK_GROUP)) as [number])[0]) === 0, 'the job acknowledged');
  });
});
