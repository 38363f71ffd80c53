// The behaviour every WebhookQueue adapter must have, run against Redis (queue-redis.int.test.ts)
// and the in-process queue (queue-memory.test.ts).
import { randomUUID } from 'node:crypto';
import { afterEach, beforeEach, expect, it } from 'vitest';
import type { RetryItem, WebhookQueue } from '../store/ports.js';
import { eventually } from '../../test/helpers/eventually.js';

export interface QueueHarness {
  readonly queue: WebhookQueue;
  /** Appends a job as the outbox relay does; returns its entry id. */
  append(tenantId: string, messageId: string): Promise<string>;
  close(): Promise<void>;
}

const item = (over: Partial<RetryItem> = {}): RetryItem => ({
  v: 1,
  deliveryId: `dlv_${randomUUID()}`,
  tenantId: 't1',
  endpointId: 'ep1',
  messageId: randomUUID(),
  sessionId: 's1',
  type: 'message.created',
  createdAt: new Date().toISOString(),
  payload: '{}',
  attempt: 1,
  firstAttemptAt: 1000,
  ...over,
});

/** Only for the idle-time tests below: there the time that passes is what is tested. */
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export function queueContract(make: () => Promise<QueueHarness>): void {
  let h: QueueHarness;
  beforeEach(async () => {
    h = await make();
    await h.queue.init();
    await h.queue.init(); // idempotent
  });
  afterEach(async () => {
    await h.close();
  });

  const readAll = async (consumer: string, n: number) => {
    const got: string[] = [];
    await eventually(
      async () => {
        got.push(...(await h.queue.readNew(consumer, 100, 50)).map((j) => j.messageId));
        return got.length >= n;
      },
      `${n} jobs read`,
      { timeoutMs: 10_000 },
    );
    return got;
  };

  it('gives each new job to one consumer, with its fields', async () => {
    const m1 = randomUUID();
    const m2 = randomUUID();
    await h.append('t1', m1);
    await h.append('t2', m2);
    expect(await readAll('a', 2)).toEqual([m1, m2]);
    expect(await h.queue.readNew('b', 10, 50)).toEqual([]);
    expect((await h.queue.groupStats()).pending).toBe(2);
  });

  it('settles only for the owner: retries and dead entries are written once, the job leaves pending', async () => {
    await h.append('t1', randomUUID());
    await readAll('a', 1);
    const [job] = (await h.queue.claimStale('a', 0, 10)).jobs; // same owner, to learn the entry id
    const retry = { item: item(), dueAt: 5000 };
    const dead = { item: item(), reason: 'rejected' as const, error: 'HTTP 410', failedAt: 2000 };
    expect(await h.queue.settle('b', job!.id, { retries: [retry], dead: [dead] })).toBe(false);
    expect(await h.queue.retrySize()).toBe(0);
    expect(await h.queue.settle('a', job!.id, { retries: [retry], dead: [dead] })).toBe(true);
    expect(await h.queue.settle('a', job!.id, { retries: [retry], dead: [dead] })).toBe(false);
    expect(await h.queue.retrySize()).toBe(1);
    expect(await h.queue.deadSize()).toBe(1);
    expect((await h.queue.groupStats()).pending).toBe(0);
    const [d] = await h.queue.listDead(10);
    expect(d).toMatchObject({ reason: 'rejected', error: 'HTTP 410', failedAt: 2000, item: dead.item });
  });

  it('lets another consumer claim a job idle too long, unless its owner keeps it alive', async () => {
    const m = randomUUID();
    await h.append('t1', m);
    await readAll('a', 1);
    const [job] = (await h.queue.claimStale('a', 0, 10)).jobs;
    await sleep(700);
    await h.queue.keepAlive('a', [job!.id]);
    expect((await h.queue.claimStale('b', 2500, 10)).jobs).toEqual([]); // idle ~0 ms, not 700
    await sleep(2600);
    const claimed = await h.queue.claimStale('b', 2500, 10);
    expect(claimed.jobs.map((j) => j.messageId)).toEqual([m]);
    expect(await h.queue.settle('a', job!.id, { retries: [], dead: [] })).toBe(false);
    expect(await h.queue.settle('b', job!.id, { retries: [], dead: [] })).toBe(true);
  });

  it('leases a due retry to one claimer; an expired lease makes it due again; ZREM wins', async () => {
    const due = item();
    const later = item();
    await h.append('t1', randomUUID());
    await readAll('a', 1);
    const [job] = (await h.queue.claimStale('a', 0, 10)).jobs;
    await h.queue.settle('a', job!.id, {
      retries: [
        { item: due, dueAt: 100 },
        { item: later, dueAt: 10_000 },
      ],
      dead: [],
    });
    const [c1, c2] = await Promise.all([h.queue.claimDueRetries(200, 1000, 10), h.queue.claimDueRetries(200, 1000, 10)]);
    expect([...c1!, ...c2!].map((c) => c.item)).toEqual([due]);
    expect(await h.queue.claimDueRetries(999, 2000, 10)).toEqual([]);
    await h.queue.extendRetryLeases([[...c1!, ...c2!][0]!.member], 3000);
    expect(await h.queue.claimDueRetries(2500, 4000, 10)).toEqual([]);
    const again = await h.queue.claimDueRetries(3000, 5000, 10); // the lease ran out: due again
    expect(again.map((c) => c.item)).toEqual([due]);
    const next = { item: { ...due, attempt: 2 }, dueAt: 6000 };
    expect(await h.queue.settleRetry(again[0]!.member, { retry: next })).toBe(true);
    expect(await h.queue.settleRetry(again[0]!.member, { retry: next })).toBe(false);
    expect(await h.queue.retrySize()).toBe(2);
    const [n] = await h.queue.claimDueRetries(6000, 7000, 1);
    expect(n!.item.attempt).toBe(2);
    expect(
      await h.queue.settleRetry(n!.member, {
        dead: { item: n!.item, reason: 'retry_window_exhausted', error: 'HTTP 500', failedAt: 6500 },
      }),
    ).toBe(true);
    expect(await h.queue.deadSize()).toBe(1);
    expect(await h.queue.retrySize()).toBe(1);
  });

  it('replays dead deliveries by id or all, once, with a fresh window and the same delivery id', async () => {
    await h.append('t1', randomUUID());
    await readAll('a', 1);
    const [job] = (await h.queue.claimStale('a', 0, 10)).jobs;
    const items = [item(), item(), item()];
    await h.queue.settle('a', job!.id, {
      retries: [],
      dead: items.map((i) => ({ item: i, reason: 'rejected' as const, error: 'HTTP 400', failedAt: 1 })),
    });
    const dead = await h.queue.listDead(10);
    expect(dead.map((d) => d.item.deliveryId)).toEqual(items.map((i) => i.deliveryId));
    expect(await h.queue.listDead(10, dead[0]!.id)).toHaveLength(2);
    expect(await h.queue.replayDead([dead[1]!.id, '1-1'], 50_000)).toEqual([dead[1]!.id]);
    expect(await h.queue.replayDead([dead[1]!.id], 50_000)).toEqual([]);
    expect((await h.queue.replayDead('all', 50_000)).sort()).toEqual([dead[0]!.id, dead[2]!.id].sort());
    expect(await h.queue.deadSize()).toBe(0);
    const claimed = await h.queue.claimDueRetries(50_000, 60_000, 10);
    expect(claimed.map((c) => c.item.deliveryId).sort()).toEqual(items.map((i) => i.deliveryId).sort());
    expect(claimed.every((c) => c.item.firstAttemptAt === 50_000)).toBe(true);
  });
}
