import pino from 'pino';
import { describe, expect, it } from 'vitest';
import { ChatdError } from '../../errors.js';
import { registry } from '../../observability/metrics.js';
import { MemoryRateLimiter } from '../../store/memory/memory-rate-limiter.js';
import { createGatewayLimits } from './rate-limits.js';

const limits = {
  httpPerIp: { rate: 1, burst: 3 },
  httpPerKey: { rate: 1, burst: 2 },
  connectPerIp: { rate: 1, burst: 1 },
} as const;

describe('createGatewayLimits', () => {
  it('answers 429 rate_limited with Retry-After per bucket; other IPs are unaffected', async () => {
    const local = new MemoryRateLimiter(() => 0);
    const g = createGatewayLimits(limits as never, async () => local, pino({ level: 'silent' }));
    for (let i = 0; i < 3; i++) await g.httpIp('1.1.1.1');
    const err = await g.httpIp('1.1.1.1').catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ChatdError);
    expect((err as ChatdError).code).toBe('rate_limited');
    expect((err as ChatdError).status).toBe(429);
    expect((err as ChatdError).headers?.['Retry-After']).toBe('1');
    await g.httpIp('2.2.2.2');
    await g.connect('1.1.1.1');
    await expect(g.connect('1.1.1.1')).rejects.toThrow(ChatdError);
    await g.httpKey('key1');
    await g.httpKey('key1');
    await expect(g.httpKey('key1')).rejects.toThrow(ChatdError);
  });

  it('lets traffic through when the limiter is unreachable (counted, warned once)', async () => {
    let asked = 0;
    const warnings: { msg: string; bucket: string }[] = [];
    const logger = pino(
      { level: 'warn' },
      { write: (line: string) => void warnings.push(JSON.parse(line) as { msg: string; bucket: string }) },
    );
    const errors = async () => (await registry.getSingleMetric('chatd_gateway_rate_limiter_errors_total')!.get()).values[0]?.value ?? 0;
    const before = await errors();
    const g = createGatewayLimits(
      limits as never,
      async () => ({ take: () => (asked++, Promise.reject(new Error('redis down'))) }),
      logger,
    );
    // Far past the burst of 3: a limiter that failed closed (or a 429 on error) would refuse the 4th.
    for (let i = 0; i < 10; i++) await expect(g.httpIp('1.1.1.1')).resolves.toBeUndefined();
    await expect(g.connect('1.1.1.1')).resolves.toBeUndefined();
    await expect(g.connect('1.1.1.1')).resolves.toBeUndefined();
    expect(asked).toBe(12);
    expect((await errors()) - before).toBe(12);
    // The warning is rate-limited itself (one per 10 s), so a Redis outage does not flood the log.
    expect(warnings).toEqual([expect.objectContaining({ msg: 'rate limiter unavailable: letting traffic through', bucket: 'http_ip' })]);
  });
});
