// Runs the webhook dispatcher inside the api role: `withWebhooks(createApiRole)` starts it after
// the role when any tenant has `webhooks` endpoints, drains it with the role and closes it after.
// With the Redis store the dispatcher opens two connections of its own (one blocks on
// XREADGROUP); with the memory store it follows the store's in-process jobs stream.
import { randomBytes } from 'node:crypto';
import type { Logger } from 'pino';
import type { RoleContext, RoleFactory } from '../app/types.js';
import { ConfigError } from '../config/load.js';
import type { Config } from '../config/schema.js';
import { createRedisClient, redisOptions, waitReady } from '../store/redis/connection.js';
import type { Store } from '../store/ports.js';
import { WebhookDispatcher } from './dispatcher.js';
import { endpointDirectory, type EndpointDirectory } from './endpoints.js';
import { MemoryWebhookQueue } from './memory-queue.js';
import type { WebhookQueue } from './queue.js';
import { RedisWebhookQueue } from './redis-queue.js';
import { RedisLossGuard } from './redis-loss-guard.js';

/** The queue of the dispatcher running in this process, for the admin endpoints (dead list, replay). */
let activeQueue: WebhookQueue | undefined;
export const activeWebhookQueue = (): WebhookQueue | undefined => activeQueue;

/** The endpoints the running dispatcher reads at each delivery (swapped by reloadWebhookEndpoints). */
let currentEndpoints: EndpointDirectory | undefined;

/**
 * Applies a reloaded config's endpoints (URLs, secrets, event types, concurrency) to the running
 * dispatcher: jobs and retries delivered from now on use them; a removed endpoint's pending
 * retries are dropped. Returns false when no dispatcher runs (endpoints configured for the first
 * time need a restart to start one).
 */
export function reloadWebhookEndpoints(config: Pick<Config, 'tenants' | 'webhooks'>): boolean {
  if (!currentEndpoints) return false;
  currentEndpoints = endpointDirectory(config);
  return true;
}

/** claimIdleMs when not configured: comfortably above one delivery's timeout. */
export const claimIdleMsFor = (w: Config['webhooks']): number => w.claimIdleMs ?? 2 * w.timeoutMs + 5000;

/** Opens the queue adapter matching the store: Redis (shared by every node) or in process. */
export async function openWebhookQueue(config: Config, store: Pick<Store, 'kind' | 'webhooks'>, logger: Logger): Promise<WebhookQueue> {
  const kind = store.kind;
  switch (kind) {
    case 'redis': {
      const options = redisOptions({ url: config.redis.url, sentinel: config.redis.sentinel });
      const redis = createRedisClient(options, logger, 'webhooks');
      const blocking = createRedisClient(options, logger, 'webhooks-blocking');
      // Like the store: a node may start before its Redis; the dispatcher joins when it comes up.
      await Promise.all([waitReady(redis, 5000), waitReady(blocking, 5000)]).catch((err: unknown) =>
        logger.warn({ err: { message: (err as Error).message } }, 'redis not reachable for webhooks at start; continuing'),
      );
      return new RedisWebhookQueue({ redis, blocking, prefix: config.redis.prefix, deadMaxLen: config.webhooks.deadMaxLen });
    }
    case 'memory':
      return new MemoryWebhookQueue({
        stream: store.webhooks,
        maxBacklog: config.webhooks.streamMaxLen,
        deadMaxLen: config.webhooks.deadMaxLen,
        onError: (err) => logger.error({ err: (err as Error)?.message }, 'following the in-process webhook jobs stream failed'),
      });
    default: {
      const never: never = kind;
      throw new Error(`unknown store ${String(never)}`);
    }
  }
}

/** Creates and starts a dispatcher for this process, or returns undefined when no tenant has endpoints. */
export async function startWebhookDispatcher(ctx: Pick<RoleContext, 'config' | 'logger' | 'nodeId' | 'services'>): Promise<WebhookDispatcher | undefined> {
  const { config } = ctx;
  const directory = endpointDirectory(config);
  if (!directory.any) return undefined;
  if (claimIdleMsFor(config.webhooks) <= config.webhooks.timeoutMs) {
    throw new ConfigError(`webhooks.claimIdleMs (${config.webhooks.claimIdleMs}) must be above webhooks.timeoutMs (${config.webhooks.timeoutMs}): a job still being delivered would be taken over`);
  }
  currentEndpoints = directory;
  const logger = ctx.logger.child({ component: 'webhooks' });
  const services = await ctx.services();
  const queue = await openWebhookQueue(config, services.store, logger);
  // Redis only: a restart without data loses the jobs it held; the guard re-publishes them from PostgreSQL.
  const lossGuard =
    queue instanceof RedisWebhookQueue
      ? new RedisLossGuard({
          queue,
          outbox: services.db.outbox,
          tenants: () => (currentEndpoints ?? directory).tenants(),
          logger,
          streamMaxLen: config.webhooks.streamMaxLen,
        })
      : undefined;
  const dispatcher = new WebhookDispatcher({
    queue,
    ...(lossGuard ? { companion: lossGuard } : {}),
    endpoints: () => currentEndpoints ?? directory,
    logger,
    consumer: `${ctx.nodeId}-${randomBytes(3).toString('hex')}`,
    timeoutMs: config.webhooks.timeoutMs,
    claimIdleMs: claimIdleMsFor(config.webhooks),
    retry: {
      baseMs: config.webhooks.retryBaseMs,
      maxDelayMs: config.webhooks.retryMaxDelayMs,
      windowMs: config.webhooks.retryWindowMs,
    },
  });
  try {
    await dispatcher.start();
  } catch (err) {
    await dispatcher.close().catch(() => undefined);
    throw err;
  }
  activeQueue = queue;
  return dispatcher;
}

/** Wraps the api role so the dispatcher runs, drains and stops with it. */
export function withWebhooks(factory: RoleFactory): RoleFactory {
  return async (ctx) => {
    const role = await factory(ctx);
    let dispatcher: WebhookDispatcher | undefined;
    try {
      dispatcher = await startWebhookDispatcher(ctx);
    } catch (err) {
      await role.close().catch(() => undefined);
      throw err;
    }
    if (!dispatcher) return role;
    const d = dispatcher;
    return {
      readiness: role.readiness,
      async drain() {
        await Promise.all([role.drain(), d.drain()]);
      },
      async close() {
        activeQueue = undefined;
        currentEndpoints = undefined;
        await Promise.allSettled([d.close(), role.close()]);
      },
    };
  };
}
