// A webhook dispatcher in a process of its own, for the "killed mid-delivery" test: the test
// bundles this file with esbuild, spawns it, and SIGKILLs it while its delivery hangs.
import { Redis } from 'ioredis';
import pino from 'pino';
import { WebhookDispatcher } from '../../src/webhooks/dispatcher.js';
import { endpointDirectory } from '../../src/webhooks/endpoints.js';
import { RedisWebhookQueue } from '../../src/store/redis/redis-webhook-queue.js';
import { webhookConfig } from './webhook-receiver.js';

const env = (k: string) => {
  const v = process.env[k];
  if (!v) throw new Error(`${k} is required`);
  return v;
};

const directory = endpointDirectory(webhookConfig({ t1: [{ id: 'ep1', url: env('RECEIVER_URL'), secret: env('SECRET') }] }) as never);
const dispatcher = new WebhookDispatcher({
  queue: new RedisWebhookQueue({
    redis: new Redis(env('REDIS_URL')),
    blocking: new Redis(env('REDIS_URL')),
    prefix: env('PREFIX'),
    deadMaxLen: 1000,
  }),
  endpoints: () => directory,
  logger: pino({ level: 'silent' }),
  consumer: env('CONSUMER'),
  timeoutMs: Number(env('TIMEOUT_MS')),
  claimIdleMs: Number(env('CLAIM_IDLE_MS')),
  retryPollMs: 50,
  retry: { baseMs: 100, maxDelayMs: 400, windowMs: 60_000 },
});
await dispatcher.start();
process.stdout.write('started\n');
