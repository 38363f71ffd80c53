// The node registry: where each ws node can be reached (nodeId → URL), so a request carrying an
// Engine.IO sid (`<nodeId>.<random>`) can be sent to the node that owns it — by a gateway that did
// not route the handshake itself, or by a ws node behind a plain L4 load balancer
// (sid-forwarder.ts). ws nodes advertise themselves with a TTL and re-advertise on a timer, so a
// node that dies drops out by itself.
//
// It is a port with two adapters (memory, Redis) kept here rather than in src/store because only
// the gateway and the sid forwarder use it. Redis key: `{redis.prefix}node_url:{nodeId}` (string,
// the node's URL, PX = ttl).
import type { Logger } from 'pino';
import type { Redis } from 'ioredis';
import type { Config } from '../config/schema.js';
import { storeKind } from '../store/index.js';
import { createRedisClient, guard, redisOptions, waitReady } from '../store/redis/connection.js';

export interface NodeRegistry {
  /** Says node `nodeId` is reachable at `url` for the next `ttlMs`. */
  advertise(nodeId: string, url: string, ttlMs: number): Promise<void>;
  /** Removes the node (a clean shutdown). */
  withdraw(nodeId: string): Promise<void>;
  /** The URL of node `nodeId`, or undefined when it is unknown or its advertisement expired. */
  lookup(nodeId: string): Promise<string | undefined>;
  close(): Promise<void>;
}

/** In-process registry: enough for one process (nodes in other processes cannot be seen). */
export class MemoryNodeRegistry implements NodeRegistry {
  private readonly nodes = new Map<string, { url: string; expires: number }>();

  async advertise(nodeId: string, url: string, ttlMs: number): Promise<void> {
    this.nodes.set(nodeId, { url, expires: Date.now() + ttlMs });
  }

  async withdraw(nodeId: string): Promise<void> {
    this.nodes.delete(nodeId);
  }

  async lookup(nodeId: string): Promise<string | undefined> {
    const n = this.nodes.get(nodeId);
    if (!n) return undefined;
    if (n.expires <= Date.now()) {
      this.nodes.delete(nodeId);
      return undefined;
    }
    return n.url;
  }

  async close(): Promise<void> {
    this.nodes.clear();
  }
}

type RegistryRedis = Pick<Redis, 'set' | 'get' | 'del' | 'quit' | 'disconnect' | 'status'>;

/** Registry in Redis, shared by every node and gateway. Lookups are cached briefly. */
export class RedisNodeRegistry implements NodeRegistry {
  private readonly cache = new Map<string, { url: string | undefined; until: number }>();

  constructor(
    private readonly redis: RegistryRedis,
    private readonly prefix: string,
    private readonly ready: () => Promise<void> = async () => undefined,
  ) {}

  private key(nodeId: string): string {
    return `${this.prefix}node_url:${nodeId}`;
  }

  async advertise(nodeId: string, url: string, ttlMs: number): Promise<void> {
    await this.ready();
    await guard('node registry advertise', () => this.redis.set(this.key(nodeId), url, 'PX', Math.max(1, Math.round(ttlMs))));
  }

  async withdraw(nodeId: string): Promise<void> {
    this.cache.delete(nodeId);
    await this.ready();
    await guard('node registry withdraw', () => this.redis.del(this.key(nodeId)));
  }

  async lookup(nodeId: string): Promise<string | undefined> {
    const now = Date.now();
    const hit = this.cache.get(nodeId);
    if (hit && hit.until > now) return hit.url;
    await this.ready();
    const url = (await guard('node registry lookup', () => this.redis.get(this.key(nodeId)))) ?? undefined;
    // A known node is cached a little longer than an unknown one (which may be advertising now).
    this.cache.set(nodeId, { url, until: now + (url ? 5000 : 500) });
    if (this.cache.size > 10_000) this.cache.clear();
    return url;
  }

  async close(): Promise<void> {
    if (this.redis.status === 'end') return;
    await Promise.race([this.redis.quit().catch(() => undefined), new Promise((r) => setTimeout(r, 1000).unref())]);
    this.redis.disconnect();
  }
}

/** The registry for a config: Redis when Redis is configured (its own small connection), else memory. */
export function createNodeRegistry(config: Config, logger: Logger): NodeRegistry {
  const kind = storeKind(config);
  switch (kind) {
    case 'memory':
      return new MemoryNodeRegistry();
    case 'redis': {
      const client = createRedisClient(
        redisOptions({ url: config.redis.url, sentinel: config.redis.sentinel, commandTimeoutMs: 2000 }),
        logger,
        'node-registry',
      );
      return new RedisNodeRegistry(client, config.redis.prefix, () => waitReady(client, 2000));
    }
    default: {
      const never: never = kind;
      throw new Error(`unknown store ${String(never)}`);
    }
  }
}
