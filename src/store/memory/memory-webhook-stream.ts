// `meta:webhook_jobs` in process, with Redis stream semantics: entry ids `{ms}-{seq}` (strictly
// increasing), MAXLEN ~ trimming, range, follow, and consumer groups (pending list, ack, claim of
// idle entries) so the webhook dispatcher runs unchanged on the zero-config default.
import type { WebhookConsumerGroup, WebhookJob, WebhookStream } from '../ports.js';

interface Id {
  ms: number;
  seq: number;
}

const parseId = (id: string, forEnd = false): Id => {
  if (id === '-') return { ms: 0, seq: 0 };
  if (id === '+') return { ms: Number.MAX_SAFE_INTEGER, seq: Number.MAX_SAFE_INTEGER };
  const [ms, seq] = id.split('-');
  return { ms: Number(ms), seq: seq === undefined ? (forEnd ? Number.MAX_SAFE_INTEGER : 0) : Number(seq) };
};
const cmp = (a: Id, b: Id) => (a.ms !== b.ms ? a.ms - b.ms : a.seq - b.seq);

interface Entry {
  readonly id: string;
  readonly key: Id;
  readonly job: WebhookJob;
}

interface Pending {
  consumer: string;
  deliveredAt: number;
}

interface Group {
  lastDelivered: Id;
  readonly pel: Map<string, Pending>;
}

export class MemoryWebhookStream implements WebhookStream {
  private entries: Entry[] = [];
  private last: Id = { ms: 0, seq: 0 };
  private readonly waiters = new Set<() => void>();
  private readonly groups = new Map<string, Group>();

  constructor(
    private readonly maxLen: number,
    private readonly now: () => number = Date.now,
  ) {}

  /** XADD * with MAXLEN ~ (trims in steps of 10 %, like Redis's approximate trimming). */
  append(fields: Omit<WebhookJob, 'id'>): string {
    const ms = this.now();
    const key = ms > this.last.ms ? { ms, seq: 0 } : { ms: this.last.ms, seq: this.last.seq + 1 };
    this.last = key;
    const id = `${key.ms}-${key.seq}`;
    this.entries.push({ id, key, job: { id, ...fields } });
    if (this.entries.length > this.maxLen + Math.ceil(this.maxLen / 10)) this.entries = this.entries.slice(-this.maxLen);
    for (const w of [...this.waiters]) w();
    return id;
  }

  /** Index of the first entry with id > `after`. */
  private indexAfter(after: Id): number {
    let lo = 0;
    let hi = this.entries.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (cmp(this.entries[mid]!.key, after) <= 0) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }

  private find(id: string): Entry | undefined {
    const i = this.indexAfter(parseId(id)) - 1;
    const e = this.entries[i];
    return e && e.id === id ? e : undefined;
  }

  async range(start: string, end: string, count: number): Promise<WebhookJob[]> {
    const s = parseId(start);
    const e = parseId(end, true);
    const out: WebhookJob[] = [];
    for (let i = this.indexAfter({ ms: s.ms, seq: s.seq - 1 }); i < this.entries.length && out.length < count; i++) {
      const entry = this.entries[i]!;
      if (cmp(entry.key, e) > 0) break;
      out.push(entry.job);
    }
    return out;
  }

  /** Erasure: removes the entries `pred` selects (XDEL); returns how many (counts only with `dryRun`). */
  deleteWhere(pred: (job: WebhookJob) => boolean, dryRun: boolean): number {
    const n = this.entries.filter((e) => pred(e.job)).length;
    if (!dryRun && n > 0) this.entries = this.entries.filter((e) => !pred(e.job));
    return n;
  }

  async length(): Promise<number> {
    return this.entries.length;
  }

  /** Waits for an append, the timeout or the abort, whichever comes first. */
  waitForAppend(timeoutMs: number, signal?: AbortSignal): Promise<void> {
    return new Promise((resolve) => {
      const done = () => {
        clearTimeout(timer);
        this.waiters.delete(done);
        signal?.removeEventListener('abort', done);
        resolve();
      };
      const timer = setTimeout(done, timeoutMs);
      this.waiters.add(done);
      signal?.addEventListener('abort', done, { once: true });
    });
  }

  async follow(fromId: string, onEntry: (job: WebhookJob) => void, signal: AbortSignal): Promise<void> {
    let after = fromId === '$' ? this.last : parseId(fromId);
    while (!signal.aborted) {
      const i = this.indexAfter(after);
      if (i < this.entries.length) {
        for (const e of this.entries.slice(i)) {
          if (signal.aborted) return;
          after = e.key;
          try {
            onEntry(e.job);
          } catch {
            // A throwing consumer skips its entry, as with the Redis adapter; following goes on.
          }
        }
        continue;
      }
      await this.waitForAppend(5000, signal);
    }
  }

  group(name: string): WebhookConsumerGroup {
    return new MemoryWebhookGroup(name, this);
  }

  // ---- consumer-group internals (used by MemoryWebhookGroup)

  ensureGroup(name: string, startId: '0' | '$'): void {
    if (!this.groups.has(name)) {
      this.groups.set(name, { lastDelivered: startId === '$' ? this.last : { ms: 0, seq: 0 }, pel: new Map() });
    }
  }

  private groupOf(name: string): Group {
    const g = this.groups.get(name);
    if (!g) throw new Error(`NOGROUP no consumer group '${name}' for meta:webhook_jobs`);
    return g;
  }

  readGroup(name: string, consumer: string, count: number): WebhookJob[] {
    const g = this.groupOf(name);
    const i = this.indexAfter(g.lastDelivered);
    const batch = this.entries.slice(i, i + count);
    const now = this.now();
    for (const e of batch) {
      g.lastDelivered = e.key;
      g.pel.set(e.id, { consumer, deliveredAt: now });
    }
    return batch.map((e) => e.job);
  }

  ackGroup(name: string, ids: readonly string[]): number {
    const g = this.groupOf(name);
    let n = 0;
    for (const id of ids) if (g.pel.delete(id)) n++;
    return n;
  }

  claimGroup(name: string, consumer: string, minIdleMs: number, count: number): WebhookJob[] {
    const g = this.groupOf(name);
    const now = this.now();
    const out: WebhookJob[] = [];
    const ids = [...g.pel.keys()].sort((a, b) => cmp(parseId(a), parseId(b)));
    for (const id of ids) {
      if (out.length >= count) break;
      const p = g.pel.get(id)!;
      if (now - p.deliveredAt < minIdleMs) continue;
      const e = this.find(id);
      if (!e) {
        g.pel.delete(id); // trimmed while pending, as XAUTOCLAIM does
        continue;
      }
      p.consumer = consumer;
      p.deliveredAt = now;
      out.push(e.job);
    }
    return out;
  }

  groupInfo(name: string): { pending: number; lag: number | null } {
    const g = this.groups.get(name);
    if (!g) return { pending: 0, lag: null };
    return { pending: g.pel.size, lag: this.entries.length - this.indexAfter(g.lastDelivered) };
  }
}

class MemoryWebhookGroup implements WebhookConsumerGroup {
  constructor(
    readonly name: string,
    private readonly stream: MemoryWebhookStream,
  ) {}

  async ensure(startId: '0' | '$' = '0'): Promise<void> {
    this.stream.ensureGroup(this.name, startId);
  }

  async read(consumer: string, count: number, blockMs: number, signal?: AbortSignal): Promise<WebhookJob[]> {
    const deadline = Date.now() + Math.max(0, blockMs);
    for (;;) {
      if (signal?.aborted) return [];
      const jobs = this.stream.readGroup(this.name, consumer, count);
      const left = deadline - Date.now();
      if (jobs.length > 0 || left <= 0) return jobs;
      await this.stream.waitForAppend(left, signal);
    }
  }

  async ack(ids: readonly string[]): Promise<number> {
    return this.stream.ackGroup(this.name, ids);
  }

  async claimIdle(consumer: string, minIdleMs: number, count: number): Promise<WebhookJob[]> {
    return this.stream.claimGroup(this.name, consumer, minIdleMs, count);
  }

  async info(): Promise<{ pending: number; lag: number | null }> {
    return this.stream.groupInfo(this.name);
  }
}
