import { describe, expect, it } from 'vitest';
import { backoffDelayMs, parseRetryAfter, planRetry } from './backoff.js';

const policy = { baseMs: 1000, maxDelayMs: 600_000, windowMs: 3_600_000 };

describe('webhook retry policy', () => {
  it('doubles the delay per attempt with equal jitter, capped', () => {
    expect(backoffDelayMs(1, policy, () => 0)).toBe(500);
    expect(backoffDelayMs(1, policy, () => 1)).toBe(1000);
    expect(backoffDelayMs(4, policy, () => 0)).toBe(4000);
    expect(backoffDelayMs(4, policy, () => 1)).toBe(8000);
    expect(backoffDelayMs(30, policy, () => 1)).toBe(600_000);
    expect(backoffDelayMs(1000, policy, () => 0)).toBe(300_000);
  });

  it('honours Retry-After and stops at the end of the window', () => {
    expect(planRetry({ attempt: 1, firstAttemptAt: 0, now: 10, retryAfterMs: 30_000 }, policy)).toEqual({ dueAt: 30_010 });
    expect(planRetry({ attempt: 1, firstAttemptAt: 0, now: 10, retryAfterMs: 7_200_000 }, policy)).toEqual({ exhausted: true });
    expect(planRetry({ attempt: 3, firstAttemptAt: 0, now: 3_599_000 }, policy, () => 0)).toEqual({ exhausted: true });
    expect(planRetry({ attempt: 3, firstAttemptAt: 0, now: 1000 }, policy, () => 0)).toEqual({ dueAt: 3000 });
  });

  it('reads Retry-After as seconds or an HTTP date', () => {
    expect(parseRetryAfter('120')).toBe(120_000);
    expect(parseRetryAfter('Wed, 21 Oct 2015 07:28:00 GMT', Date.parse('Wed, 21 Oct 2015 07:27:00 GMT'))).toBe(60_000);
    expect(parseRetryAfter('soon')).toBeUndefined();
    expect(parseRetryAfter(undefined)).toBeUndefined();
  });
});
