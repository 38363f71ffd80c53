import { describe, expect, it } from 'vitest';
import { MemoryRateLimiter } from './memory-rate-limiter.js';

describe('MemoryRateLimiter', () => {
  it('allows a burst, then refills at the rate', () => {
    let now = 0;
    const l = new MemoryRateLimiter(() => now);
    for (let i = 0; i < 5; i++) expect(l.takeSync('k', 2, 5).allowed).toBe(true);
    const refused = l.takeSync('k', 2, 5);
    expect(refused.allowed).toBe(false);
    expect(refused.retryAfterMs).toBe(500);
    now += 500;
    expect(l.takeSync('k', 2, 5).allowed).toBe(true);
    expect(l.takeSync('other', 2, 5).allowed).toBe(true);
  });
});
