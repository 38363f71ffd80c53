// Token buckets shared by every node: one script per take, on Redis's clock.
import type { RateLimiter } from '../ports.js';
import { guard, type ScriptedRedis } from './connection.js';
import type { RedisKeys } from './keys.js';

export class RedisRateLimiter implements RateLimiter {
  constructor(
    private readonly redis: ScriptedRedis,
    private readonly keys: RedisKeys,
  ) {}

  take(key: string, rate: number, burst: number, cost = 1): Promise<{ allowed: boolean; retryAfterMs: number }> {
    return guard('rate limit', async () => {
      const r = (await this.redis.chatdTokenBucket(this.keys.rateBucket(key), rate, burst, cost)) as [number, number];
      return { allowed: Number(r[0]) === 1, retryAfterMs: Number(r[1]) };
    });
  }
}
