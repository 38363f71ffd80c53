// Token buckets in process: the one in-process bucket of chatd. The memory store's RateLimiter,
// and the synchronous limiter of the protocol layer's per-IP handshake limit (which must answer
// before any await, and holds when Redis is down, so it stays in process whatever the store is).
import type { RateLimiter } from '../ports.js';

/** Exact for one process, nothing shared. `now` is a monotonic clock in ms (injectable for tests). */
export class MemoryRateLimiter implements RateLimiter {
  private readonly buckets = new Map<string, { tokens: number; at: number; rate: number; burst: number }>();
  private takes = 0;

  constructor(private readonly now: () => number = () => performance.now()) {}

  async take(key: string, rate: number, burst: number, cost = 1): Promise<{ allowed: boolean; retryAfterMs: number }> {
    return this.takeSync(key, rate, burst, cost);
  }

  takeSync(key: string, rate: number, burst: number, cost = 1): { allowed: boolean; retryAfterMs: number } {
    const t = this.now();
    let b = this.buckets.get(key);
    if (!b) {
      b = { tokens: burst, at: t, rate, burst };
      this.buckets.set(key, b);
    } else {
      if (t > b.at) {
        b.tokens = Math.min(burst, b.tokens + ((t - b.at) / 1000) * rate);
        b.at = t;
      }
      b.rate = rate;
      b.burst = burst;
    }
    // Every 10,000 takes, forget full buckets: a flood of new keys cannot grow the map for long.
    if (++this.takes >= 10_000) this.purgeIdle();
    if (b.tokens >= cost) {
      b.tokens -= cost;
      return { allowed: true, retryAfterMs: 0 };
    }
    return { allowed: false, retryAfterMs: Math.ceil(((cost - b.tokens) / rate) * 1000) };
  }

  /** Forgets full buckets, so memory follows active clients, not every client ever seen (also run by the memory store's timer). */
  purgeIdle(): void {
    this.takes = 0;
    const t = this.now();
    for (const [k, b] of this.buckets) {
      if (b.tokens + ((t - b.at) / 1000) * b.rate >= b.burst) this.buckets.delete(k);
    }
  }
}
