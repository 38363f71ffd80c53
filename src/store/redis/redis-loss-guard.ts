// Redis restarted without its data (no persistence, a Sentinel failover to a replica that was
// behind, a FLUSHALL): every webhook job Redis held — in meta:webhook_jobs not yet read, in flight
// in the group, waiting in the retry set — is gone, and their outbox rows were deleted when the
// XADD succeeded (DESIGN.md "One path for a message", step 4). Before this guard those messages
// were silently never POSTed. The messages themselves are in PostgreSQL, so:
//
// - Detection: the data epoch (redis-data-epoch.ts), `meta:webhook_epoch`, a random id written once
//   with SET NX and never expiring. Every dispatcher reads it each `intervalMs`; missing or different
//   from the one it knew means Redis lost its data since the last look. The same detection restores
//   revocations on every api and ws node (RestoreWatch there).
// - The safe window: with each look (one Lua script, so atomic with the epoch it belongs to) the
//   guard remembers the oldest `createdAt` among jobs not yet settled (pending, unread, in the
//   retry set — or the newest job when all are settled). Everything older was delivered or
//   dead-lettered before the loss. On detection it re-appends a webhook job for every message of a
//   tenant with endpoints created since that instant minus `marginMs` (clock skew between nodes,
//   whose clocks stamp createdAt), read from PostgreSQL in pages. Only the webhook job: the agent
//   stream and the bus have their own answers to a restart (recovered:false, gap fill).
// - The other side: this is at least once. Messages delivered after the last look are delivered
//   again, with the same X-Chatd-Delivery id, which receivers must use to drop repeats. Each api
//   node running a dispatcher across the loss re-appends its own window, so with N such nodes a
//   message can come up to N + 1 times.
//
// Limits (docs/operations.md "What a Redis restart without data does"): only a dispatcher that was running
// before the loss can tell — one started after it sees a Redis it never knew and claims a new
// epoch; dead-lettered deliveries are not re-sent (they are counted in the warning, the dead list
// is lost); each part of the snapshot is scanned up to `scanLimit` entries.
import type { Logger } from 'pino';
import type { ChatMessage } from '../../chat/message.js';
import type { Outbox } from '../../db/ports.js';
import type { ConversationUpdate } from '../../chat/conversation.js';
import { webhookRedisDataLoss, webhookJobsRepublished } from '../../observability/metrics.js';
import type { QueueSnapshot, RedisWebhookQueue } from './redis-webhook-queue.js';
import { DataEpoch, PeriodicLook } from './redis-data-epoch.js';

export interface RedisLossGuardOptions {
  readonly queue: Pick<RedisWebhookQueue, 'claimEpoch' | 'snapshot' | 'appendJobs' | 'init'>;
  readonly outbox: Pick<Outbox, 'createdSince'> & Partial<Pick<Outbox, 'activeSince'>>;
  /** Tenants with webhook endpoints now (called at each re-publish, so a reload applies). */
  readonly tenants: () => readonly string[];
  readonly logger: Logger;
  /** MAXLEN ~ of the re-appended jobs (`webhooks.streamMaxLen`). */
  readonly streamMaxLen: number;
  /** How often the epoch is checked and the window refreshed (default 1 s). */
  readonly intervalMs?: number;
  /** Taken off the window's start, for clocks of nodes that disagree (default 10 s). */
  readonly marginMs?: number;
  /** Messages read and appended per page (default 500). */
  readonly pageSize?: number;
}

interface Seen {
  readonly snapshot: QueueSnapshot;
  /** When the snapshot was taken (ms, this node's clock). */
  readonly at: number;
}

export class RedisLossGuard {
  private seen: Seen | undefined;
  /** A detected loss whose re-publish has not completed yet (retried at the next tick). */
  private replayFrom: { since: string; lost: QueueSnapshot } | undefined;
  private readonly epoch: DataEpoch;
  private readonly periodic: PeriodicLook;

  constructor(private readonly opts: RedisLossGuardOptions) {
    this.epoch = new DataEpoch((candidate) => opts.queue.claimEpoch(candidate));
    this.periodic = new PeriodicLook(() => this.look(), {
      logger: opts.logger,
      intervalMs: opts.intervalMs,
      failed: 'redis loss guard: look failed; retrying',
      recovered: 'redis loss guard works again',
    });
  }

  start(): void {
    void this.periodic.start();
  }

  stop(): Promise<void> {
    return this.periodic.stop();
  }

  /** One look (shared by callers arriving while one runs). Exposed for tests. */
  tick(): Promise<void> {
    return this.periodic.tick();
  }

  private async look(): Promise<void> {
    if (this.replayFrom) return this.replay();
    const at = Date.now();
    const snap = await this.opts.queue.snapshot();
    // A first look joins the epoch in place, or starts one (a new Redis, or one that lost its data
    // before this node came up — which this node cannot tell apart).
    const seen = await this.epoch.look(snap.epoch);
    const known = this.seen;
    if (seen !== 'lost' || !known) {
      this.seen = { snapshot: snap.epoch === this.epoch.known ? snap : { ...snap, epoch: this.epoch.known ?? null }, at };
      return;
    }
    // The epoch is gone (or another node already replaced it): Redis lost its data since `known`.
    const start = known.snapshot.oldestUnsettled ? Math.min(Date.parse(known.snapshot.oldestUnsettled), known.at) : known.at;
    const since = new Date(start - (this.opts.marginMs ?? 10_000)).toISOString();
    webhookRedisDataLoss.inc();
    // The group first (at '0', so nothing appended since the restart is skipped), then the epoch.
    await this.opts.queue.init('0');
    const epoch = await this.epoch.renew();
    this.seen = { snapshot: { epoch, oldestUnsettled: null, retries: 0, dead: 0 }, at: Date.now() };
    this.replayFrom = { since, lost: known.snapshot };
    await this.replay();
  }

  /**
   * Re-appends the jobs of every message created since the window's start, tenant by tenant, and a
   * conversation.updated job with the current summary of every conversation active since then.
   */
  private async replay(): Promise<void> {
    const r = this.replayFrom!;
    const size = this.opts.pageSize ?? 500;
    let n = 0;
    for (const tenantId of this.opts.tenants()) {
      let after: { createdAt: string; id: string } | undefined;
      for (let page = 0; page < 1_000_000; page++) {
        const messages = await this.opts.outbox.createdSince(tenantId, r.since, after, size);
        if (messages.length === 0) break;
        await this.opts.queue.appendJobs(messages.map(jobOf), this.opts.streamMaxLen);
        n += messages.length;
        const last = messages[messages.length - 1]!;
        after = { createdAt: last.createdAt, id: last.id };
        if (messages.length < size) break;
      }
    }
    // conversation.updated: the current summary of every conversation active in the window.
    const activeSince = this.opts.outbox.activeSince?.bind(this.opts.outbox);
    if (activeSince) {
      for (const tenantId of this.opts.tenants()) {
        let after: { lastActivityAt: string; sessionId: string } | undefined;
        for (let page = 0; page < 1_000_000; page++) {
          const updates = await activeSince(tenantId, r.since, after, size);
          if (updates.length === 0) break;
          await this.opts.queue.appendJobs(updates.map(updateJobOf), this.opts.streamMaxLen);
          n += updates.length;
          const last = updates[updates.length - 1]!;
          after = { lastActivityAt: last.conversation.lastActivityAt, sessionId: last.sessionId };
          if (updates.length < size) break;
        }
      }
    }
    webhookJobsRepublished.inc(n);
    this.replayFrom = undefined;
    this.opts.logger.warn(
      { republished: n, since: r.since, retriesLost: r.lost.retries, deadLost: r.lost.dead },
      `redis restarted without data; re-publishing ${n} outbox rows`,
    );
  }
}

function updateJobOf(u: ConversationUpdate) {
  return {
    type: 'conversation.updated' as const,
    tenantId: u.tenantId,
    sessionId: u.sessionId,
    messageId: u.id,
    createdAt: u.at,
    payload: JSON.stringify(u),
  };
}

function jobOf(m: ChatMessage) {
  return {
    type: 'message.created' as const,
    tenantId: m.tenantId,
    sessionId: m.sessionId,
    messageId: m.id,
    createdAt: m.createdAt,
    payload: JSON.stringify(m),
  };
}
