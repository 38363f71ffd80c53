// Token buckets in process (one node: the memory store's scope).
import type { RateLimiter } from '../ports.js';

export class MemoryRateLimiter implements RateLimiter {
  private readonly buckets = new Map<string, { tokens: number; ts: number; idleAt: number }>();

  constructor(private readonly now: () => number = Date.now) {}

  async take(key: string, rate: number, burst: number, cost = 1): Promise<{ allowed: boolean; retryAfterMs: number }> {
    const now = this.now();
    const b = this.buckets.get(key) ?? { tokens: burst, ts: now, idleAt: now };
    let tokens = b.tokens;
    if (now > b.ts) tokens = Math.min(burst, tokens + ((now - b.ts) * rate) / 1000);
    let allowed = false;
    let retryAfterMs = 0;
    if (tokens >= cost) {
      tokens -= cost;
      allowed = true;
    } else {
      retryAfterMs = Math.ceil(((cost - tokens) * 1000) / rate);
    }
    // `idleAt`: when the bucket is full again and can be forgotten.
    this.buckets.set(key, { tokens, ts: Math.max(now, b.ts), idleAt: now + Math.ceil(((burst - tokens) * 1000) / rate) });
    return { allowed, retryAfterMs };
  }

  /** Forgets full buckets (called periodically). */
  purgeIdle(): void {
    const now = this.now();
    for (const [k, b] of this.buckets) if (b.idleAt <= now) this.buckets.delete(k);
  }
}
