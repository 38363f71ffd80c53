// `meta:webhook_jobs` in Redis: read a range, follow it (blocking XREAD on a dedicated connection,
// so the shared connection never blocks), and consumer groups for the webhook dispatcher.
import type { WebhookConsumerGroup, WebhookJob, WebhookStream } from '../ports.js';
import { guard, waitReady, type RedisClient } from './connection.js';
import { entryFields } from './redis-event-log.js';
import type { RedisKeys } from './keys.js';

type RawEntry = [string, string[] | null];

export function toWebhookJob(id: string, fields: readonly string[]): WebhookJob {
  const f = entryFields(fields);
  return {
    id,
    type: f.type === 'conversation.updated' ? 'conversation.updated' : 'message.created',
    tenantId: f.tenantId ?? '',
    sessionId: f.sessionId ?? '',
    messageId: f.messageId ?? '',
    createdAt: f.createdAt ?? '',
    payload: f.payload ?? '',
  };
}

const sleep = (ms: number, signal?: AbortSignal) =>
  new Promise<void>((resolve) => {
    const t = setTimeout(done, ms);
    function done() {
      clearTimeout(t);
      signal?.removeEventListener('abort', done);
      resolve();
    }
    signal?.addEventListener('abort', done, { once: true });
  });

/** Opens a dedicated connection for blocking commands (no command timeout); the caller closes it. */
export type BlockingConnectionFactory = () => RedisClient;

/** How long one blocking XREAD waits before it is re-issued (bounded so a half-open socket is noticed). */
const BLOCK_MS = 5000;

export class RedisWebhookStream implements WebhookStream {
  constructor(
    private readonly redis: RedisClient,
    private readonly keys: RedisKeys,
    private readonly blocking: BlockingConnectionFactory,
    private readonly connectTimeoutMs: number,
  ) {}

  range(start: string, end: string, count: number): Promise<WebhookJob[]> {
    return guard('webhook range', async () => {
      const raw = (await this.redis.xrange(this.keys.webhookJobs, start, end, 'COUNT', count)) as RawEntry[];
      return raw.filter((e) => e[1] !== null).map(([id, f]) => toWebhookJob(id, f!));
    });
  }

  length(): Promise<number> {
    return guard('webhook length', () => this.redis.xlen(this.keys.webhookJobs));
  }

  async follow(fromId: string, onEntry: (job: WebhookJob) => void, signal: AbortSignal): Promise<void> {
    if (signal.aborted) return;
    const conn = this.blocking();
    const onAbort = () => conn.disconnect();
    signal.addEventListener('abort', onAbort, { once: true });
    let last = fromId;
    try {
      while (!signal.aborted) {
        try {
          await waitReady(conn, this.connectTimeoutMs, signal);
          if (last === '$') {
            // Resolve '$' once, so entries added between two XREADs are never skipped.
            const tail = (await conn.xrevrange(this.keys.webhookJobs, '+', '-', 'COUNT', 1)) as RawEntry[];
            last = tail[0]?.[0] ?? '0-0';
          }
          const res = (await conn.xread('COUNT', 100, 'BLOCK', BLOCK_MS, 'STREAMS', this.keys.webhookJobs, last)) as
            [string, RawEntry[]][] | null;
          for (const [, entries] of res ?? []) {
            for (const [id, fields] of entries) {
              last = id;
              if (!fields) continue;
              try {
                onEntry(toWebhookJob(id, fields));
              } catch {
                // A throwing consumer skips its entry; following goes on.
              }
            }
          }
        } catch {
          if (signal.aborted) break;
          await sleep(250, signal); // Redis away: ioredis reconnects; continue after the last entry seen
        }
      }
    } finally {
      signal.removeEventListener('abort', onAbort);
      conn.disconnect();
    }
  }

  group(name: string): WebhookConsumerGroup {
    return new RedisWebhookGroup(name, this.redis, this.keys.webhookJobs, this.blocking, this.connectTimeoutMs);
  }
}

class RedisWebhookGroup implements WebhookConsumerGroup {
  private conn: RedisClient | null = null;

  constructor(
    readonly name: string,
    private readonly redis: RedisClient,
    private readonly key: string,
    private readonly blocking: BlockingConnectionFactory,
    private readonly connectTimeoutMs: number,
  ) {}

  ensure(startId: '0' | '$' = '0'): Promise<void> {
    return guard('webhook group create', async () => {
      try {
        await this.redis.xgroup('CREATE', this.key, this.name, startId, 'MKSTREAM');
      } catch (err) {
        if (!/BUSYGROUP/.test((err as Error).message)) throw err;
      }
    });
  }

  read(consumer: string, count: number, blockMs: number, signal?: AbortSignal): Promise<WebhookJob[]> {
    if (signal?.aborted) return Promise.resolve([]);
    return guard('webhook group read', async () => {
      let res: [string, RawEntry[]][] | null;
      if (blockMs <= 0) {
        res = (await this.redis.xreadgroup('GROUP', this.name, consumer, 'COUNT', count, 'STREAMS', this.key, '>')) as
          [string, RawEntry[]][] | null;
      } else {
        // One dedicated connection per group handle; an abort closes it (a new one is opened next time).
        const conn = (this.conn ??= this.blocking());
        const onAbort = () => {
          if (this.conn === conn) this.conn = null;
          conn.disconnect();
        };
        signal?.addEventListener('abort', onAbort, { once: true });
        try {
          await waitReady(conn, this.connectTimeoutMs, signal);
          res = (await conn.xreadgroup('GROUP', this.name, consumer, 'COUNT', count, 'BLOCK', blockMs, 'STREAMS', this.key, '>')) as
            [string, RawEntry[]][] | null;
        } catch (err) {
          if (signal?.aborted) return [];
          throw err;
        } finally {
          signal?.removeEventListener('abort', onAbort);
        }
      }
      const jobs: WebhookJob[] = [];
      for (const [, entries] of res ?? []) for (const [id, f] of entries) if (f) jobs.push(toWebhookJob(id, f));
      return jobs;
    });
  }

  ack(ids: readonly string[]): Promise<number> {
    if (ids.length === 0) return Promise.resolve(0);
    return guard('webhook group ack', () => this.redis.xack(this.key, this.name, ...ids));
  }

  claimIdle(consumer: string, minIdleMs: number, count: number): Promise<WebhookJob[]> {
    return guard('webhook group claim', async () => {
      const jobs: WebhookJob[] = [];
      let cursor = '0-0';
      do {
        const r = (await this.redis.xautoclaim(this.key, this.name, consumer, minIdleMs, cursor, 'COUNT', count - jobs.length)) as [
          string,
          RawEntry[],
          string[]?,
        ];
        cursor = r[0];
        const gone: string[] = [];
        for (const [id, f] of r[1]) {
          if (f) jobs.push(toWebhookJob(id, f));
          else gone.push(id); // Redis 6.2 returns trimmed entries with no fields: drop them from the PEL
        }
        if (gone.length > 0) await this.redis.xack(this.key, this.name, ...gone);
      } while (cursor !== '0-0' && jobs.length < count);
      return jobs;
    });
  }

  info(): Promise<{ pending: number; lag: number | null }> {
    return guard('webhook group info', async () => {
      const groups = (await this.redis.xinfo('GROUPS', this.key)) as (string | number | null)[][];
      for (const g of groups) {
        const f = new Map<string, string | number | null>();
        for (let i = 0; i + 1 < g.length; i += 2) f.set(String(g[i]), g[i + 1] ?? null);
        if (f.get('name') === this.name) {
          const lag = f.get('lag');
          return { pending: Number(f.get('pending') ?? 0), lag: lag === null || lag === undefined ? null : Number(lag) };
        }
      }
      return { pending: 0, lag: null };
    });
  }

  close(): void {
    this.conn?.disconnect();
    this.conn = null;
  }
}
