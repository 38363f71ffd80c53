// Appends a `meta:webhook_jobs` entry the way the store's event log writes one (DESIGN.md: the
// guide's fields), for tests that feed a dispatcher or a queue directly.
import type { Redis } from 'ioredis';

export interface JobFields {
  readonly tenantId: string;
  readonly messageId: string;
  readonly sessionId?: string;
  readonly createdAt?: string;
  /** The message JSON; `{}` when the test does not look at it. */
  readonly payload?: string;
}

/** XADDs one job to `stream` (optionally trimmed to `maxLen`); resolves with its entry id. */
export async function appendJob(redis: Pick<Redis, 'xadd'>, stream: string, job: JobFields, maxLen?: number): Promise<string> {
  const fields = [
    'type',
    'message.created',
    'tenantId',
    job.tenantId,
    'sessionId',
    job.sessionId ?? 's1',
    'messageId',
    job.messageId,
    'createdAt',
    job.createdAt ?? new Date().toISOString(),
    'payload',
    job.payload ?? '{}',
  ];
  const trim = maxLen === undefined ? [] : ['MAXLEN', String(maxLen)];
  return (await (redis.xadd as (...args: string[]) => Promise<string | null>)(stream, ...trim, '*', ...fields))!;
}
