// Runs the webhook dispatcher inside the api role: `withWebhooks(createApiRole)` starts it after
// the role when any tenant has `webhooks` endpoints, drains it with the role and closes it after.
// The queue comes from the engine (Store.openWebhookQueue): with Redis two connections of its own,
// with the memory store the store's in-process jobs stream.
import { randomBytes } from 'node:crypto';
import type { RoleContext, RoleFactory } from '../roles/role-context.js';
import { ConfigError } from '../config/load.js';
import type { Config } from '../config/schema.js';
import { WebhookDispatcher } from './dispatcher.js';
import { endpointDirectory, type EndpointDirectory } from './endpoints.js';
import type { WebhookQueue } from '../store/ports.js';

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

/** Creates and starts a dispatcher for this process, or returns undefined when no tenant has endpoints. */
export async function startWebhookDispatcher(
  ctx: Pick<RoleContext, 'config' | 'logger' | 'nodeId' | 'services'>,
): Promise<WebhookDispatcher | undefined> {
  const { config } = ctx;
  const directory = endpointDirectory(config);
  if (!directory.any) return undefined;
  if (claimIdleMsFor(config.webhooks) <= config.webhooks.timeoutMs) {
    throw new ConfigError(
      `webhooks.claimIdleMs (${config.webhooks.claimIdleMs}) must be above webhooks.timeoutMs (${config.webhooks.timeoutMs}): a job still being delivered would be taken over`,
    );
  }
  currentEndpoints = directory;
  const logger = ctx.logger.child({ component: 'webhooks' });
  const services = await ctx.services();
  // The engine says what runs beside its queue (Redis: the guard against a restart without data).
  const { queue, companion } = await services.store.openWebhookQueue({
    logger,
    streamMaxLen: config.webhooks.streamMaxLen,
    deadMaxLen: config.webhooks.deadMaxLen,
    durable: {
      // Reached only when the engine needs it (Redis, after a loss): the memory engine never does.
      outbox: {
        createdSince: (...args) => services.db.outbox.createdSince(...args),
        activeSince: (...args) => services.db.outbox.activeSince(...args),
      },
      tenants: () => (currentEndpoints ?? directory).tenants(),
    },
  });
  const dispatcher = new WebhookDispatcher({
    queue,
    ...(companion ? { companion } : {}),
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
