// Chooses the store adapter from config: Redis when a URL or Sentinel is configured, else memory.
import type { Logger } from 'pino';
import type { Config } from '../config/schema.js';
import type { Store } from './ports.js';
import { MemoryStore } from './memory/memory-store.js';
import { RedisStore } from './redis/redis-store.js';

export type StoreKind = Store['kind'];

/** Upper bound of the memory store's webhook jobs stream (entries kept in the heap). */
export const MEMORY_WEBHOOK_STREAM_MAX = 10000;

export function storeKind(config: Config): StoreKind {
  return config.redis.url || config.redis.sentinel ? 'redis' : 'memory';
}

/**
 * Opens the configured store. With Redis it waits a few seconds for the first connection; if Redis
 * is not reachable yet the store is returned anyway (calls fail with DependencyError, /readyz says
 * so) and connects by itself when Redis comes up, so a node can start before its Redis.
 */
export async function createStore(config: Config, logger: Logger, nodeId: string): Promise<Store> {
  const kind = storeKind(config);
  const log = logger.child({ component: 'store', nodeId });
  switch (kind) {
    case 'memory':
      return new MemoryStore(
        {
          agentHistorySize: config.socketio.agentHistorySize,
          // In process the jobs live in the heap, and the only consumer (this process's dispatcher)
          // follows them as they come: a smaller bound keeps RSS flat (~1 KB per job).
          webhookStreamMaxLen: Math.min(config.webhooks.streamMaxLen, MEMORY_WEBHOOK_STREAM_MAX),
        },
        log,
      );
    case 'redis': {
      const store = new RedisStore(
        {
          url: config.redis.url,
          sentinel: config.redis.sentinel,
          prefix: config.redis.prefix,
          agentHistorySize: config.socketio.agentHistorySize,
          webhookStreamMaxLen: config.webhooks.streamMaxLen,
        },
        log,
      );
      try {
        await store.connect();
      } catch (err) {
        log.warn({ err: { message: (err as Error).message } }, 'redis not reachable at start; continuing and reconnecting');
      }
      return store;
    }
    default: {
      const never: never = kind;
      throw new Error(`unknown store ${String(never)}`);
    }
  }
}
