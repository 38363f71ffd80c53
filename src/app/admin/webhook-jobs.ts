// The webhook job stream for `chatd webhooks tail` on the embedded defaults, where the store lives
// in the server process:
import { ChatdError } from '../../errors.js';
import { jobsAfter, MAX_TAIL_COUNT, newestJobs, STREAM_ID } from '../../webhooks/tail.js';
import type { AdminContext, AdminRoutes } from '../serve.js';

/**
 * GET /admin/webhooks/jobs?count=N → { jobs } the newest N (oldest first);
 * GET /admin/webhooks/jobs?after=ID&count=N&waitMs=W → { jobs } after ID, waiting up to W ms for one.
 */
export function webhookTailAdminEndpoints(admin: AdminRoutes, ctx: AdminContext): void {
  admin.route('GET', '/admin/webhooks/jobs', async (req) => {
    const count = intParam(req.query.get('count'), 'count', 20, 0, MAX_TAIL_COUNT);
    const waitMs = intParam(req.query.get('waitMs'), 'waitMs', 0, 0, 60_000);
    const after = req.query.get('after');
    if (after !== null && !STREAM_ID.test(after)) {
      throw new ChatdError('validation_failed', 'after must be a stream entry id (ms-seq)', {
        details: [{ path: 'after', message: 'not an entry id' }],
      });
    }
    const { store } = await ctx.services();
    if (after === null) return { body: { jobs: await newestJobs(store.webhooks, count) } };
    let jobs = await jobsAfter(store.webhooks, after, count);
    if (jobs.length === 0 && waitMs > 0) {
      // Long-poll: follow from `after` until the first entry arrives (plus a moment to batch) or time runs out.
      const ac = new AbortController();
      const timer = setTimeout(() => ac.abort(), waitMs);
      let batching: NodeJS.Timeout | undefined;
      await store.webhooks.follow(
        after,
        () => {
          batching ??= setTimeout(() => ac.abort(), 20);
        },
        ac.signal,
      );
      clearTimeout(timer);
      clearTimeout(batching);
      jobs = await jobsAfter(store.webhooks, after, count);
    }
    return { body: { jobs } };
  });
}
function intParam(raw: string | null, name: string, def: number, min: number, max: number): number {
  if (raw === null) return def;
  const v = Number(raw);
  if (!Number.isInteger(v) || v < min || v > max) {
    throw new ChatdError('validation_failed', `${name} must be an integer from ${min} to ${max}`, {
      details: [{ path: name, message: 'out of range' }],
    });
  }
  return v;
}
