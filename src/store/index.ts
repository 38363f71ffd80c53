// The engine, chosen here and nowhere else: Redis Cluster when cluster seed nodes are configured,
// Redis when a URL or Sentinel is, else the in-process memory store. Everything that depends on the choice is a member of the Store it
// returns (bus, event log, sessions, presence, node registry, webhook queue, rate limiter,
// erasure, revocations) or of the Engine's description (`shared`), so no role, CLI command or
// service asks which adapter it has. Adding a backend is one adapter and one case below; the
// `never` check makes a missing case fail to compile.
import type { Logger } from 'pino';
import type { Config } from '../config/schema.js';
import type { Store } from './ports.js';
import { MemoryStore } from './memory/memory-store.js';
import { RedisStore } from './redis/redis-store.js';

export type StoreKind = Store['kind'];

/**
 * The in-process token bucket (the memory store's limiter), for a limit that stays in process
 * whatever the engine is: the protocol layer's per-IP handshake limit answers before any await
 * and must hold while Redis is down.
 */
export { MemoryRateLimiter } from './memory/memory-rate-limiter.js';

/** Upper bound of the memory store's webhook jobs stream (entries kept in the heap). */
export const MEMORY_WEBHOOK_STREAM_MAX = 10000;

/** The engine a config names, before anything is opened. */
export interface Engine {
  readonly kind: StoreKind;
  /**
   * Other processes see the same data (Redis): a ws node may own sessions that reach another node
   * (so it forwards by sid), and a CLI command acts on the data directly. When false the data lives
   * inside the one server process, and CLI commands go through its admin listener.
   */
  readonly shared: boolean;
  /** How `chatd config check` names it. */
  readonly label: string;
  /**
   * Opens it. With Redis it waits a few seconds for the first connection; if Redis is not
   * reachable yet the store is returned anyway (calls fail with DependencyError, /readyz says so)
   * and connects by itself when Redis comes up, so a node can start before its Redis.
   */
  open(logger: Logger, nodeId: string): Promise<Store>;
}

function kindOf(config: Config): StoreKind {
  if (config.redis.cluster) return 'redis-cluster';
  return config.redis.url || config.redis.sentinel ? 'redis' : 'memory';
}

/** Opens a Redis-backed store; if Redis is not reachable yet it is returned anyway and connects by itself. */
async function openRedis(config: Config, logger: Logger, nodeId: string): Promise<Store> {
  const log = logger.child({ component: 'store', nodeId });
  const store = new RedisStore(
    {
      url: config.redis.url,
      sentinel: config.redis.sentinel,
      cluster: config.redis.cluster,
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

export function engineOf(config: Config): Engine {
  const kind = kindOf(config);
  switch (kind) {
    case 'memory':
      return {
        kind,
        shared: false,
        label: 'memory (one node)',
        async open(logger, nodeId) {
          return new MemoryStore(
            {
              agentHistorySize: config.socketio.agentHistorySize,
              // In process the jobs live in the heap, and the only consumer (this process's dispatcher)
              // follows them as they come: a smaller bound keeps RSS flat (~1 KB per job).
              webhookStreamMaxLen: Math.min(config.webhooks.streamMaxLen, MEMORY_WEBHOOK_STREAM_MAX),
            },
            logger.child({ component: 'store', nodeId }),
          );
        },
      };
    case 'redis':
      return {
        kind,
        shared: true,
        label: 'redis',
        open: (logger, nodeId) => openRedis(config, logger, nodeId),
      };
    case 'redis-cluster':
      return {
        kind,
        shared: true,
        label: `redis cluster (${config.redis.cluster?.nodes.length ?? 0} seed nodes, sharded pub/sub)`,
        open: (logger, nodeId) => openRedis(config, logger, nodeId),
      };
    default: {
      const never: never = kind;
      throw new Error(`unknown store ${String(never)}`);
    }
  }
}

/** Opens the configured store (engineOf(config).open): what serve and the CLI call. */
export function createStore(config: Config, logger: Logger, nodeId: string): Promise<Store> {
  return engineOf(config).open(logger, nodeId);
}
