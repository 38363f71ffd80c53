// Rate limits at the edge (DESIGN.md "Limits"): token buckets per client IP for HTTP requests and
// for new Socket.IO sessions, and per API key for HTTP requests. With Redis the buckets live there
// (the store's RateLimiter: one atomic script), so the limit holds across every gateway; with the
// memory store they live in this process (its MemoryRateLimiter). A limiter that cannot be reached lets traffic through (logged and
// counted): the edge must not go down with Redis.
import type { Logger } from 'pino';
import type { Config } from '../../config/schema.js';
import { ChatdError } from '../../errors.js';
import { promClient, registry } from '../../observability/metrics.js';
import type { RateLimiter } from '../../store/ports.js';

const refused = new promClient.Counter({
  name: 'chatd_gateway_rate_limited_total',
  help: 'Requests and connections refused by a rate limit, by bucket (http_ip, http_key, connect_ip).',
  labelNames: ['bucket'] as const,
  registers: [registry],
});

const limiterErrors = new promClient.Counter({
  name: 'chatd_gateway_rate_limiter_errors_total',
  help: 'Rate-limit checks that failed (limiter unreachable) and let the request through.',
  registers: [registry],
});

export type Bucket = 'http_ip' | 'http_key' | 'connect_ip';

/** Bucket names (the store adds `redis.prefix` and its rate-limit namespace): global, per IP or per key id. */
const BUCKET_KEY: Readonly<Record<Bucket, (id: string) => string>> = {
  http_ip: (ip) => `ip:${ip}:http`,
  connect_ip: (ip) => `ip:${ip}:connect`,
  http_key: (keyId) => `key:${keyId}:http`,
};

export interface GatewayLimits {
  /** One HTTP request from `ip`; throws 429 `rate_limited` with Retry-After. */
  httpIp(ip: string): Promise<void>;
  /** One HTTP request with the API key whose id is `keyId` (ApiKeyMatch.keyId); throws 429. */
  httpKey(keyId: string): Promise<void>;
  /** One new Socket.IO session from `ip` (a handshake without a sid); throws 429 `rate_limited`. */
  connect(ip: string): Promise<void>;
}

/**
 * The gateway's limits over a RateLimiter. `limiter` is resolved on first use (the store may be
 * created lazily). Also used by the ws role in `--role all` for the per-IP connect limit.
 */
export function createGatewayLimits(limits: Config['limits'], limiter: () => Promise<RateLimiter>, logger: Logger): GatewayLimits {
  let warnedAt = 0;
  const take = async (bucket: Bucket, key: string, rate: number, burst: number): Promise<void> => {
    let result: { allowed: boolean; retryAfterMs: number };
    try {
      result = await (await limiter()).take(BUCKET_KEY[bucket](key), rate, burst);
    } catch (err) {
      limiterErrors.inc();
      const now = Date.now();
      if (now - warnedAt > 10_000) {
        warnedAt = now;
        logger.warn({ err: (err as Error).message, bucket }, 'rate limiter unavailable: letting traffic through');
      }
      return;
    }
    if (!result.allowed) {
      refused.inc({ bucket });
      const seconds = Math.max(1, Math.ceil(result.retryAfterMs / 1000));
      throw new ChatdError('rate_limited', `Too many requests; retry after ${seconds} s`, {
        headers: { 'Retry-After': String(seconds) },
      });
    }
  };
  return {
    httpIp: (ip) => take('http_ip', ip, limits.httpPerIp.rate, limits.httpPerIp.burst),
    httpKey: (keyId) => take('http_key', keyId, limits.httpPerKey.rate, limits.httpPerKey.burst),
    async connect(ip) {
      await take('connect_ip', ip, limits.connectPerIp.rate, limits.connectPerIp.burst);
    },
  };
}
