// Waiting for a condition in tests: the one polling helper (each test file used to carry its own).
// The timeout is a hang detector, not a performance bound: it only decides how long a broken test
// takes to say what it was waiting for, so it is generous (this 2-core machine runs three test files
// at once) and a passing test never waits for it.

export interface EventuallyOptions {
  /** When to give up and fail naming `what` (default 30 s). Never a claim about how fast it should be. */
  readonly timeoutMs?: number;
  /** Pause between checks (default 25 ms); longer for checks that cost a request to another process. */
  readonly intervalMs?: number;
  /**
   * A check that throws means "not yet" rather than "failed" (it talks to something that may be
   * restarting or not listening yet); the last error is in the timeout's message. Off by default:
   * an error from the check fails the wait at once.
   */
  readonly retryOnError?: boolean;
}

/**
 * Resolves with the check's first truthy result (`true` for a boolean check, the value found for one
 * that looks something up); rejects after `timeoutMs` with "timed out … waiting for <what>".
 */
export async function eventually<T>(
  check: () => T | Promise<T>,
  what: string,
  { timeoutMs = 30_000, intervalMs = 25, retryOnError = false }: EventuallyOptions = {},
): Promise<NonNullable<T>> {
  const deadline = Date.now() + timeoutMs;
  let lastError: unknown;
  for (;;) {
    try {
      const v = await check();
      if (v) return v as NonNullable<T>;
    } catch (err) {
      if (!retryOnError) throw err;
      lastError = err;
    }
    if (Date.now() > deadline) {
      const cause = lastError === undefined ? '' : `: ${lastError instanceof Error ? lastError.message : String(lastError)}`;
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${cause}`);
    }
    await new Promise((r) => setTimeout(r, intervalMs));
  }
}
