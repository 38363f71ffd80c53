// The node registry in Redis, shared by every node and gateway: `{redis.prefix}node_url:{nodeId}`
// (string, the node's URL, PX = ttl). Lookups are cached briefly, so a gateway does not ask Redis
// on every polling request.
import type { Redis } from 'ioredis';
import type { NodeRegistry } from '../ports.js';
import { guard } from './connection.js';

/** The subset of ioredis the registry needs. */
export type RegistryRedis = Pick<Redis, 'set' | 'get' | 'del'>;

export class RedisNodeRegistry implements NodeRegistry {
  private readonly cache = new Map<string, { url: string | undefined; until: number }>();

  constructor(
    private readonly redis: RegistryRedis,
    private readonly prefix: string,
    /** Waits (bounded) for the connection before each command: a node may start before its Redis. */
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
}
