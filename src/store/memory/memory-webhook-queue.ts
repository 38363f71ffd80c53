// The in-process adapter of the webhook queue, for the memory store (the zero-config default, one
// process). Same semantics as the Redis one — a job is pending until settled, a stale one can be
// claimed, retries are leased, ZREM-wins, dead deliveries are kept in order and can be replayed —
// so the dispatcher runs unchanged. Nothing survives a restart, like everything in the memory store.
import type { ClaimedRetry, DeadEntry, DeadInput, ScheduledRetry, Settlement, WebhookJob, WebhookQueue, WebhookStream } from '../ports.js';
import { compareStreamIds, decodeRetry, encodeRetry, replayItem } from '../webhook-jobs.js';

export interface MemoryQueueOptions {
  /**
   * The memory store's jobs stream; the queue follows it from its first entry ('0': the memory
   * store starts empty with the process, so nothing older exists). Without it, jobs come from push().
   */
  readonly stream?: WebhookStream;
  /** Most jobs kept unread (like the stream's MAXLEN ~); older ones are dropped and counted lost. */
  readonly maxBacklog: number;
  readonly deadMaxLen: number;
  readonly now?: () => number;
  /** Called when following the stream fails (it is not retried: the memory store does not fail). */
  readonly onError?: (err: unknown) => void;
}

interface Pending {
  readonly job: WebhookJob;
  consumer: string;
  since: number;
}

export class MemoryWebhookQueue implements WebhookQueue {
  readonly kind = 'memory' as const;
  private readonly fresh: WebhookJob[] = [];
  private readonly pending = new Map<string, Pending>();
  private readonly retries = new Map<string, number>();
  private readonly dead: DeadEntry[] = [];
  private readonly waiters = new Set<() => void>();
  private readonly follow = new AbortController();
  private started = false;
  private closed = false;
  private lastDeadMs = 0;
  private deadSeq = 0;
  /** Jobs dropped because the backlog was full; reported once by the next claimStale. */
  private dropped: string[] = [];
  private readonly now: () => number;

  constructor(private readonly opts: MemoryQueueOptions) {
    this.now = opts.now ?? Date.now;
  }

  async init(): Promise<void> {
    if (this.started || !this.opts.stream) return;
    this.started = true;
    this.opts.stream
      .follow('0', (job) => this.push(job), this.follow.signal)
      .catch((err: unknown) => {
        if (!this.follow.signal.aborted) this.opts.onError?.(err);
      });
  }

  /** Appends a job (what the stream's follow calls). */
  push(job: WebhookJob): void {
    if (this.closed) return;
    this.fresh.push(job);
    while (this.fresh.length > this.opts.maxBacklog) this.dropped.push(this.fresh.shift()!.id);
    for (const w of this.waiters) w();
  }

  async readNew(consumer: string, count: number, blockMs: number): Promise<WebhookJob[]> {
    if (this.fresh.length === 0 && !this.closed && blockMs > 0) {
      await new Promise<void>((resolve) => {
        const done = () => {
          clearTimeout(t);
          this.waiters.delete(done);
          resolve();
        };
        const t = setTimeout(done, blockMs);
        this.waiters.add(done);
      });
    }
    if (this.closed) return [];
    const jobs = this.fresh.splice(0, count);
    const now = this.now();
    for (const job of jobs) this.pending.set(job.id, { job, consumer, since: now });
    return jobs;
  }

  async claimStale(consumer: string, minIdleMs: number, count: number): Promise<{ jobs: WebhookJob[]; lost: string[] }> {
    const now = this.now();
    const jobs: WebhookJob[] = [];
    for (const p of this.pending.values()) {
      if (jobs.length >= count) break;
      if (now - p.since < minIdleMs) continue;
      p.consumer = consumer;
      p.since = now;
      jobs.push(p.job);
    }
    const lost = this.dropped;
    this.dropped = [];
    return { jobs, lost };
  }

  async keepAlive(consumer: string, entryIds: readonly string[]): Promise<void> {
    const now = this.now();
    for (const id of entryIds) {
      const p = this.pending.get(id);
      if (p) {
        p.consumer = consumer;
        p.since = now;
      }
    }
  }

  async settle(consumer: string, entryId: string, outcome: Settlement): Promise<boolean> {
    const p = this.pending.get(entryId);
    if (!p || p.consumer !== consumer) return false;
    for (const r of outcome.retries) this.retries.set(encodeRetry(r.item), r.dueAt);
    for (const d of outcome.dead) this.addDead(d);
    this.pending.delete(entryId);
    return true;
  }

  private addDead(d: DeadInput): void {
    const ms = Math.max(this.now(), this.lastDeadMs);
    this.deadSeq = ms === this.lastDeadMs ? this.deadSeq + 1 : 0;
    this.lastDeadMs = ms;
    this.dead.push({ ...d, id: `${ms}-${this.deadSeq}` });
    if (this.dead.length > this.opts.deadMaxLen) this.dead.splice(0, this.dead.length - this.opts.deadMaxLen);
  }

  async claimDueRetries(now: number, leaseUntil: number, count: number): Promise<ClaimedRetry[]> {
    const due: [string, number][] = [];
    for (const e of this.retries) if (e[1] <= now) due.push(e);
    due.sort((a, b) => a[1] - b[1]);
    const out: ClaimedRetry[] = [];
    for (const [member] of due.slice(0, count)) {
      const item = decodeRetry(member);
      if (!item) continue;
      this.retries.set(member, leaseUntil);
      out.push({ member, item });
    }
    return out;
  }

  async extendRetryLeases(members: readonly string[], leaseUntil: number): Promise<void> {
    for (const m of members) if (this.retries.has(m)) this.retries.set(m, leaseUntil);
  }

  async settleRetry(member: string, next: { retry?: ScheduledRetry; dead?: DeadInput }): Promise<boolean> {
    if (!this.retries.delete(member)) return false;
    if (next.retry) this.retries.set(encodeRetry(next.retry.item), next.retry.dueAt);
    else if (next.dead) this.addDead(next.dead);
    return true;
  }

  async retrySize(): Promise<number> {
    return this.retries.size;
  }

  async deadSize(): Promise<number> {
    return this.dead.length;
  }

  async listDead(count: number, afterId?: string): Promise<DeadEntry[]> {
    const start = afterId ? this.dead.findIndex((d) => compareStreamIds(d.id, afterId) > 0) : 0;
    return start < 0 ? [] : this.dead.slice(start, start + count);
  }

  async replayDead(ids: readonly string[] | 'all', now: number): Promise<string[]> {
    const wanted = ids === 'all' ? undefined : new Set(ids);
    const replayed: string[] = [];
    for (let i = 0; i < this.dead.length;) {
      const d = this.dead[i]!;
      if (wanted && !wanted.has(d.id)) {
        i++;
        continue;
      }
      this.dead.splice(i, 1);
      this.retries.set(encodeRetry(replayItem(d.item, now)), now);
      replayed.push(d.id);
    }
    return replayed;
  }

  async groupStats(): Promise<{ lag: number | null; pending: number }> {
    return { lag: this.fresh.length, pending: this.pending.size };
  }

  async close(): Promise<void> {
    this.closed = true;
    this.follow.abort();
    for (const w of this.waiters) w();
  }
}
