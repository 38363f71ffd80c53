// The webhook queue port: what the dispatcher needs from the engine that holds jobs, retries and
// dead deliveries. Two adapters, like every store port: redis-queue.ts (a consumer group on
// `meta:webhook_jobs` shared by every api node, the sorted set `meta:webhook_retry`, the stream
// `meta:webhook_dead`) and memory-queue.ts (the same semantics inside one process, fed by the
// memory store's jobs stream). One contract suite (queue.contract.ts) runs against both.
import type { WebhookJob } from '../store/ports.js';

/**
 * One delivery (one message to one endpoint) that failed and waits for its next attempt. It is
 * self-contained — it holds the message payload — so trimming the jobs stream never loses it; it
 * holds the endpoint's id only, never its URL or secret (read from config at each attempt).
 */
export interface RetryItem {
  readonly v: 1;
  /** X-Chatd-Delivery: the same on every attempt. */
  readonly deliveryId: string;
  readonly tenantId: string;
  readonly endpointId: string;
  readonly messageId: string;
  readonly sessionId: string;
  readonly type: WebhookJob['type'];
  readonly createdAt: string;
  /** The message JSON, as the jobs stream held it. */
  readonly payload: string;
  /** Attempts made so far. */
  readonly attempt: number;
  /** Epoch ms of the first attempt: the retry window runs from here. */
  readonly firstAttemptAt: number;
  readonly lastError?: string;
}

export type DeadReason = 'retry_window_exhausted' | 'rejected' | 'malformed';

/** What goes to `meta:webhook_dead`. */
export interface DeadInput {
  readonly item: RetryItem;
  readonly reason: DeadReason;
  /** The last error: `HTTP 410`, `timeout after 5000 ms`, `ECONNREFUSED`, … */
  readonly error: string;
  /** Epoch ms. */
  readonly failedAt: number;
}

export interface DeadEntry extends DeadInput {
  /** The dead stream's entry id (what `chatd webhooks replay ID` takes). */
  readonly id: string;
}

export interface ScheduledRetry {
  readonly item: RetryItem;
  /** Epoch ms at which it becomes due. */
  readonly dueAt: number;
}

/** A due retry this dispatcher leased: `member` identifies it for settle and lease extension. */
export interface ClaimedRetry {
  readonly member: string;
  readonly item: RetryItem;
}

/** What a job (or a claimed retry) turned into. */
export interface Settlement {
  readonly retries: readonly ScheduledRetry[];
  readonly dead: readonly DeadInput[];
}

export interface WebhookQueue {
  readonly kind: 'memory' | 'redis';
  /** Creates the consumer group if it does not exist (idempotent; every node calls it). */
  init(): Promise<void>;
  /** New jobs for `consumer` (never delivered to the group before), waiting up to `blockMs`. */
  readNew(consumer: string, count: number, blockMs: number): Promise<WebhookJob[]>;
  /**
   * Takes over jobs pending (read, not acknowledged) for longer than `minIdleMs` — their
   * dispatcher died or hung. `lost` are ids whose entry was trimmed from the stream meanwhile.
   */
  claimStale(consumer: string, minIdleMs: number, count: number): Promise<{ jobs: WebhookJob[]; lost: string[] }>;
  /** Resets the idle time of jobs this consumer is still working on, so nobody claims them. */
  keepAlive(consumer: string, entryIds: readonly string[]): Promise<void>;
  /**
   * Atomically: schedules the retries, appends the dead deliveries and acknowledges the job —
   * only if `consumer` still owns it (else another dispatcher took it over; nothing is written,
   * returns false, so one job never grows two retry chains).
   */
  settle(consumer: string, entryId: string, outcome: Settlement): Promise<boolean>;
  /**
   * Leases up to `count` retries due at `now` until `leaseUntil` (atomically: two dispatchers
   * never lease the same one). A lease not settled or extended in time makes it due again.
   */
  claimDueRetries(now: number, leaseUntil: number, count: number): Promise<ClaimedRetry[]>;
  extendRetryLeases(members: readonly string[], leaseUntil: number): Promise<void>;
  /** Removes a leased retry and, atomically, schedules its successor or dead-letters it. */
  settleRetry(member: string, next: { retry?: ScheduledRetry; dead?: DeadInput }): Promise<boolean>;
  retrySize(): Promise<number>;
  deadSize(): Promise<number>;
  /** Oldest first, after `afterId` (exclusive) when given. */
  listDead(count: number, afterId?: string): Promise<DeadEntry[]>;
  /**
   * Moves dead deliveries back into the retry set, due now, with a fresh retry window (and the
   * same delivery id). Returns the ids replayed (an unknown id is skipped).
   */
  replayDead(ids: readonly string[] | 'all', now: number): Promise<string[]>;
  /** Jobs in the stream not yet read by the group (null when unknown), and jobs read but unacknowledged. */
  groupStats(): Promise<{ lag: number | null; pending: number }>;
  close(): Promise<void>;
}

/** Serialises a retry item as the retry set's member (one canonical JSON text). */
export const encodeRetry = (item: RetryItem): string => JSON.stringify(item);

export function decodeRetry(member: string): RetryItem | undefined {
  try {
    const v = JSON.parse(member) as RetryItem;
    return v && v.v === 1 && typeof v.deliveryId === 'string' && typeof v.endpointId === 'string' ? v : undefined;
  } catch {
    return undefined;
  }
}

/** A retry item made from a dead entry for replay: attempt count kept, window restarted. */
export const replayItem = (item: RetryItem, now: number): RetryItem => ({ ...item, firstAttemptAt: now });

/** Parses a `meta:webhook_jobs` entry's fields (DESIGN.md); undefined when a field is missing. */
export function parseJobFields(id: string, fields: readonly string[] | Record<string, string> | null): WebhookJob | undefined {
  if (!fields) return undefined;
  const f: Record<string, string> = Array.isArray(fields) ? {} : { ...(fields as Record<string, string>) };
  if (Array.isArray(fields)) for (let i = 0; i + 1 < fields.length; i += 2) f[fields[i]!] = fields[i + 1]!;
  const { type, tenantId, sessionId, messageId, createdAt, payload } = f;
  if (type !== 'message.created' || !tenantId || !messageId || payload === undefined) return undefined;
  return { id, type, tenantId, sessionId: sessionId ?? '', messageId, createdAt: createdAt ?? '', payload };
}

/** Orders two stream ids (`ms-seq`). */
export function compareStreamIds(a: string, b: string): number {
  const [am = 0, as = 0] = a.split('-').map(Number);
  const [bm = 0, bs = 0] = b.split('-').map(Number);
  return am !== bm ? am - bm : as - bs;
}
