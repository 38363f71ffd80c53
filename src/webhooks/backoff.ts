// When the next attempt of a failing delivery runs: exponential backoff with "equal jitter"
// (half the delay fixed, half random, so retries of many deliveries that failed together spread
// out but never come sooner than half the nominal delay), or the receiver's Retry-After.
export interface RetryPolicy {
  /** The first retry waits about this long (0.5–1×). */
  readonly baseMs: number;
  /** No single wait is longer. */
  readonly maxDelayMs: number;
  /** Retries stop when the next one would start later than first attempt + window. */
  readonly windowMs: number;
}

/** The wait after `attempt` failed attempts (attempt ≥ 1). */
export function backoffDelayMs(attempt: number, policy: Pick<RetryPolicy, 'baseMs' | 'maxDelayMs'>, random = Math.random): number {
  const nominal = Math.min(policy.maxDelayMs, policy.baseMs * 2 ** Math.min(attempt - 1, 40));
  return Math.round(nominal / 2 + (random() * nominal) / 2);
}

/**
 * The due time of the next attempt, or `exhausted` when it would fall outside the retry window.
 * A Retry-After is honoured as given (never retried sooner), even beyond `maxDelayMs`.
 */
export function planRetry(
  args: { attempt: number; firstAttemptAt: number; now: number; retryAfterMs?: number | undefined },
  policy: RetryPolicy,
  random = Math.random,
): { dueAt: number } | { exhausted: true } {
  const delay = args.retryAfterMs !== undefined ? Math.max(0, args.retryAfterMs) : backoffDelayMs(args.attempt, policy, random);
  const dueAt = args.now + delay;
  return dueAt > args.firstAttemptAt + policy.windowMs ? { exhausted: true } : { dueAt };
}

/** Retry-After as milliseconds: delay-seconds or an HTTP date; undefined when absent or unreadable. */
export function parseRetryAfter(value: string | undefined, now = Date.now()): number | undefined {
  if (!value) return undefined;
  const v = value.trim();
  if (/^[0-9]+$/.test(v)) return Number(v) * 1000;
  const at = Date.parse(v);
  return Number.isNaN(at) ? undefined : Math.max(0, at - now);
}
