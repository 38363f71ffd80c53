// `newestJobs` finds the newest entries with forward range reads only: checked on the memory store's
// stream against the plain answer (read everything, keep the tail), including bursts in one millisecond.
import { describe, expect, it } from 'vitest';
import { MemoryWebhookStream } from '../store/memory/memory-webhook-stream.js';
import type { WebhookJob, WebhookStream } from '../store/ports.js';
import { jobsAfter, newestJobs } from './tail.js';

/** A stream whose entries carry chosen ids (ms-seq), to place them in time. */
function streamWith(ids: string[]): Pick<WebhookStream, 'range'> {
  const jobs: WebhookJob[] = ids.map((id, i) => ({
    id,
    type: 'message.created',
    tenantId: 't',
    sessionId: 's',
    messageId: `m${i}`,
    createdAt: new Date(0).toISOString(),
    payload: '{}',
  }));
  const key = (id: string) => id.split('-').map(Number) as [number, number];
  const cmp = (a: string, b: string) => {
    const [am, as] = key(a);
    const [bm, bs] = key(b);
    return am !== bm ? am - bm : as - bs;
  };
  const norm = (id: string, end: boolean) =>
    id === '-' ? '0-0' : id === '+' ? `${Number.MAX_SAFE_INTEGER}-0` : id.includes('-') ? id : `${id}-${end ? Number.MAX_SAFE_INTEGER : 0}`;
  return {
    async range(start, end, count) {
      const s = norm(start, false);
      const e = norm(end, true);
      return jobs.filter((j) => cmp(j.id, s) >= 0 && cmp(j.id, e) <= 0).slice(0, count);
    },
  };
}

describe('newestJobs', () => {
  it('returns the newest n in order, across spread-out times and same-millisecond bursts', async () => {
    const ids: string[] = [];
    for (let ms = 1_000; ms < 50_000; ms += 997) ids.push(`${ms}-0`);
    for (let seq = 0; seq < 30; seq++) ids.push(`60000-${seq}`); // a burst
    ids.push('60001-0', '70000-0');
    const stream = streamWith(ids);
    for (const n of [0, 1, 2, 5, 31, 32, 33, 40, ids.length, ids.length + 5]) {
      const got = (await newestJobs(stream, n, 80_000)).map((j) => j.id);
      expect(got, `n=${n}`).toEqual(n === 0 ? [] : ids.slice(-n));
    }
    // Entries stamped after "now" (a Redis clock ahead of this one) are still found.
    expect((await newestJobs(stream, 3, 10_000)).map((j) => j.id)).toEqual(ids.slice(-3));
  });

  it('works on the memory store and jobsAfter excludes the given id', async () => {
    const stream = new MemoryWebhookStream(100_000);
    const empty = await newestJobs(stream, 5);
    expect(empty).toEqual([]);
    for (let i = 0; i < 25; i++) {
      stream.append({
        type: 'message.created',
        tenantId: 't',
        sessionId: 's',
        messageId: `m${i}`,
        createdAt: new Date().toISOString(),
        payload: '{}',
      });
    }
    const all = await stream.range('-', '+', 100);
    expect((await newestJobs(stream, 4)).map((j) => j.messageId)).toEqual(['m21', 'm22', 'm23', 'm24']);
    expect((await jobsAfter(stream, all[20]!.id, 10)).map((j) => j.messageId)).toEqual(['m21', 'm22', 'm23', 'm24']);
    expect(await jobsAfter(stream, all[24]!.id, 10)).toEqual([]);
  });
});
