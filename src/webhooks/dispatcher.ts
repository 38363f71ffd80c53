// The webhook dispatcher: reads jobs from the queue (a consumer group shared by every api node),
// delivers each to the endpoints of its tenant, and settles it — acknowledged when every endpoint
// got it, or with each failed delivery rescheduled in the retry set or dead-lettered — in one
// atomic step. Jobs a dead dispatcher left pending are claimed after `claimIdleMs`; jobs and
// retries this one is still working on are kept alive, so a slow but live dispatcher is not
// robbed. Delivery is at-least-once: a receiver deduplicates on X-Chatd-Delivery.
import type { Logger } from 'pino';
import type { Dispatcher as HttpDispatcher } from 'undici';
import type { WebhookJob } from '../store/ports.js';
import {
  webhookAttemptDuration,
  webhookAttempts,
  webhookDead,
  webhookDeadSetSize,
  webhookDeliveries,
  webhookGroupLag,
  webhookGroupPending,
  webhookJobsLost,
  webhookRetrySetSize,
} from '../observability/metrics.js';
import { planRetry, type RetryPolicy } from './backoff.js';
import { ConcurrencyLimit } from './concurrency-limit.js';
import { attemptDelivery, createWebhookAgent, type AttemptResult } from './delivery.js';
import type { EndpointDirectory, ResolvedEndpoint } from './endpoints.js';
import type { ClaimedRetry, DeadInput, RetryItem, ScheduledRetry, WebhookQueue } from '../store/ports.js';
import { deliveryIdFor } from './signing.js';

export interface DispatcherOptions {
  readonly queue: WebhookQueue;
  /** The current endpoints (called per job, so a config reload applies at once). */
  readonly endpoints: () => EndpointDirectory;
  readonly logger: Logger;
  /** This dispatcher's consumer name in the group: unique per process. */
  readonly consumer: string;
  readonly timeoutMs: number;
  readonly retry: RetryPolicy;
  /** Pending jobs idle this long are taken over; also the lease of a claimed retry. > timeoutMs. */
  readonly claimIdleMs: number;
  /** Jobs and retries processed at once by this dispatcher (default 256). */
  readonly maxInFlight?: number;
  /** How often due retries are looked for (default 500 ms). */
  readonly retryPollMs?: number;
  /** How often gauges (retry set, dead set, lag) are refreshed (default 5 s). */
  readonly statsIntervalMs?: number;
  /** The HTTP connection pool; one is created (and closed) when absent. */
  readonly http?: HttpDispatcher;
  readonly now?: () => number;
  /** Runs with the dispatcher: started after it joins the group, stopped when it closes (the Redis loss guard). */
  readonly companion?: { start(): void; stop(): Promise<void> };
}

/** What one delivery to one endpoint turned into. */
type DeliveryOutcome =
  | { readonly kind: 'done' }
  /** `deferred`: not attempted (its endpoint was saturated); the attempt count is unchanged. */
  | { readonly kind: 'retry'; readonly retry: ScheduledRetry; readonly deferred?: boolean }
  | { readonly kind: 'dead'; readonly dead: DeadInput };

class Closing extends Error {}

/**
 * Deliveries waiting for one endpoint beyond max(4 × its concurrency, half this dispatcher's
 * slots) are deferred to the retry set: a burst to a fast endpoint just queues, while a stuck
 * endpoint can never hold more than half the slots and starve the other endpoints.
 */
const BACKLOG_FACTOR = 4;
/** A deferred delivery (its endpoint was saturated) comes back after this long, its attempt count unchanged. */
const DEFER_MS = 1000;

export class WebhookDispatcher {
  private running = false;
  private readonly closing = new AbortController();
  private readonly tasks = new Set<Promise<void>>();
  /** Stream entry ids being processed (kept alive in the group). */
  private readonly activeJobs = new Set<string>();
  /** Retry members being processed (their lease is extended). */
  private readonly activeRetries = new Set<string>();
  private readonly limits = new Map<string, ConcurrencyLimit>();
  private readonly timers: NodeJS.Timeout[] = [];
  private readLoop: Promise<void> | undefined;
  private slotWaiter: (() => void) | undefined;
  private readonly http: HttpDispatcher;
  private readonly ownsHttp: boolean;
  private readonly now: () => number;
  private readonly maxInFlight: number;
  private retryPolling = false;
  private initialized = false;
  private readFailing = false;
  private claiming = false;

  constructor(private readonly opts: DispatcherOptions) {
    this.now = opts.now ?? Date.now;
    this.maxInFlight = opts.maxInFlight ?? 256;
    this.ownsHttp = !opts.http;
    this.http = opts.http ?? createWebhookAgent({ timeoutMs: opts.timeoutMs, connectionsPerOrigin: 64 });
    if (opts.claimIdleMs <= opts.timeoutMs) {
      throw new Error(`webhooks: claimIdleMs (${opts.claimIdleMs}) must be above timeoutMs (${opts.timeoutMs})`);
    }
  }

  /** In-flight jobs and retries. */
  get inFlight(): number {
    return this.activeJobs.size + this.activeRetries.size;
  }

  /**
   * Joins the consumer group and starts the loops. If the queue is unreachable (Redis not up yet),
   * it starts anyway and joins as soon as it can, like the store does.
   */
  async start(): Promise<void> {
    this.initialized = await this.opts.queue.init().then(
      () => true,
      (err: unknown) => (this.warn(err, 'webhook queue not reachable at start; will join the consumer group when it is'), false),
    );
    this.running = true;
    const every = (task: string, ms: number, fn: () => Promise<void>) => {
      let failing = false; // logged once per outage, not at every tick
      const t = setInterval(
        () =>
          void fn().then(
            () => {
              if (failing) this.opts.logger.info({ task }, 'webhook dispatcher task works again');
              failing = false;
            },
            (err: unknown) => {
              if (!failing) this.warn(err, `webhook dispatcher task failed (${task}); retrying`);
              failing = true;
            },
          ),
        ms,
      );
      t.unref();
      this.timers.push(t);
    };
    this.readLoop = this.readForever();
    every('retries', this.opts.retryPollMs ?? 500, () => this.pollRetries());
    every('claim', Math.max(250, Math.floor(this.opts.claimIdleMs / 2)), () => this.claimStale());
    every('keep-alive', Math.max(100, Math.floor(this.opts.claimIdleMs / 3)), () => this.keepAlive());
    every('stats', this.opts.statsIntervalMs ?? 5000, () => this.refreshStats());
    void this.refreshStats().catch(() => undefined);
    this.opts.companion?.start();
    this.opts.logger.info({ consumer: this.opts.consumer, queue: this.opts.queue.kind }, 'webhook dispatcher started');
  }

  /** Stops taking work and waits for what is in flight to settle. */
  async drain(): Promise<void> {
    this.stopTaking();
    await this.readLoop;
    await Promise.allSettled([...this.tasks]);
  }

  /**
   * Stops at once: in-flight attempts are aborted and left unsettled — their jobs stay pending and
   * their retries leased, so another dispatcher (or this node after a restart) takes them over.
   */
  async close(): Promise<void> {
    this.stopTaking();
    this.closing.abort();
    await this.opts.companion?.stop();
    await Promise.allSettled([...this.tasks]);
    await this.opts.queue.close(); // also ends a blocked read
    await this.readLoop;
    for (const t of this.timers.splice(0)) clearInterval(t);
    if (this.ownsHttp) await this.http.close().catch(() => undefined);
  }

  private stopTaking(): void {
    if (!this.running) return;
    this.running = false;
    this.slotWaiter?.();
    for (const t of this.timers) clearInterval(t);
    // Keep the keep-alive running until close: work draining must not be claimed by others.
    const keep = setInterval(() => void this.keepAlive().catch(() => undefined), Math.max(100, Math.floor(this.opts.claimIdleMs / 3)));
    keep.unref();
    this.timers.splice(0, this.timers.length, keep);
  }

  private free(): number {
    return this.maxInFlight - this.inFlight;
  }

  private async readForever(): Promise<void> {
    while (this.running) {
      if (this.free() <= 0) {
        await new Promise<void>((r) => (this.slotWaiter = r));
        this.slotWaiter = undefined;
        continue;
      }
      let jobs: WebhookJob[];
      try {
        if (!this.initialized) {
          await this.opts.queue.init();
          this.initialized = true;
        }
        jobs = await this.opts.queue.readNew(this.opts.consumer, Math.min(64, this.free()), 2000);
      } catch (err) {
        if (!this.running) break;
        // Logged once per outage, not once a second.
        if (!this.readFailing) this.warn(err, 'reading webhook jobs failed; retrying every second');
        this.readFailing = true;
        await sleep(1000, this.closing.signal);
        continue;
      }
      if (this.readFailing) this.opts.logger.info('reading webhook jobs again');
      this.readFailing = false;
      for (const job of jobs) this.track(this.activeJobs, job.id, () => this.processJob(job));
    }
  }

  private track(set: Set<string>, key: string, fn: () => Promise<void>): void {
    set.add(key);
    const task = fn()
      .catch((err: unknown) => {
        if (!(err instanceof Closing)) this.warn(err, 'webhook delivery could not be settled; it will be retried');
      })
      .finally(() => {
        set.delete(key);
        this.tasks.delete(task);
        this.slotWaiter?.();
      });
    this.tasks.add(task);
  }

  private async claimStale(): Promise<void> {
    if (!this.running || this.claiming || this.free() <= 0) return;
    this.claiming = true;
    try {
      const { jobs, lost } = await this.opts.queue.claimStale(this.opts.consumer, this.opts.claimIdleMs, Math.min(64, this.free()));
      if (lost.length > 0) {
        webhookJobsLost.inc(lost.length);
        this.opts.logger.error(
          { lost: lost.length, ids: lost.slice(0, 10) },
          'webhook jobs were trimmed from the stream before delivery: raise webhooks.streamMaxLen',
        );
      }
      for (const job of jobs) {
        if (this.activeJobs.has(job.id)) continue; // ours, still running (keep-alive was late)
        this.opts.logger.info({ entry: job.id, messageId: job.messageId }, 'took over a webhook job left pending by another dispatcher');
        this.track(this.activeJobs, job.id, () => this.processJob(job));
      }
    } finally {
      this.claiming = false;
    }
  }

  private async pollRetries(): Promise<void> {
    if (!this.running || this.retryPolling || this.free() <= 0) return;
    this.retryPolling = true;
    try {
      const now = this.now();
      const claimed = await this.opts.queue.claimDueRetries(now, now + this.opts.claimIdleMs, Math.min(64, this.free()));
      for (const c of claimed) this.track(this.activeRetries, c.member, () => this.processRetry(c));
    } finally {
      this.retryPolling = false;
    }
  }

  private async keepAlive(): Promise<void> {
    await Promise.all([
      this.opts.queue.keepAlive(this.opts.consumer, [...this.activeJobs]),
      this.opts.queue.extendRetryLeases([...this.activeRetries], this.now() + this.opts.claimIdleMs),
    ]);
  }

  private async refreshStats(): Promise<void> {
    const [retry, dead, group] = await Promise.all([this.opts.queue.retrySize(), this.opts.queue.deadSize(), this.opts.queue.groupStats()]);
    webhookRetrySetSize.set(retry);
    webhookDeadSetSize.set(dead);
    if (group.lag !== null) webhookGroupLag.set(group.lag);
    webhookGroupPending.set(group.pending);
  }

  private async processJob(job: WebhookJob): Promise<void> {
    const log = this.opts.logger;
    if (!job.tenantId || !job.messageId) {
      log.error({ entry: job.id }, 'malformed webhook job (missing tenantId, messageId or payload): acknowledged without delivery');
      await this.opts.queue.settle(this.opts.consumer, job.id, { retries: [], dead: [] });
      return;
    }
    const endpoints = this.opts.endpoints().forEvent(job.tenantId, job.type);
    const firstAttemptAt = this.now();
    const outcomes = await Promise.all(
      endpoints.map((ep) =>
        this.deliver(ep, {
          v: 1,
          deliveryId: deliveryIdFor(job.tenantId, job.messageId, ep.id),
          tenantId: job.tenantId,
          endpointId: ep.id,
          messageId: job.messageId,
          sessionId: job.sessionId,
          type: job.type,
          createdAt: job.createdAt,
          payload: job.payload,
          attempt: 0,
          firstAttemptAt,
        }),
      ),
    );
    const retries: ScheduledRetry[] = [];
    const dead: DeadInput[] = [];
    for (const o of outcomes) {
      if (o.kind === 'retry') retries.push(o.retry);
      else if (o.kind === 'dead') dead.push(o.dead);
    }
    const owned = await this.opts.queue.settle(this.opts.consumer, job.id, { retries, dead });
    if (!owned) {
      log.warn(
        { entry: job.id, messageId: job.messageId },
        'webhook job was taken over by another dispatcher while in flight; its outcome is theirs',
      );
      return;
    }
    this.count(outcomes);
  }

  private async processRetry(c: ClaimedRetry): Promise<void> {
    const ep = this.opts.endpoints().get(c.item.tenantId, c.item.endpointId);
    if (!ep || !ep.events.includes(c.item.type)) {
      this.opts.logger.warn(
        { tenantId: c.item.tenantId, endpointId: c.item.endpointId, deliveryId: c.item.deliveryId },
        'webhook endpoint no longer configured: pending retry dropped',
      );
      if (await this.opts.queue.settleRetry(c.member, {})) webhookDeliveries.inc({ result: 'dropped' });
      return;
    }
    const outcome = await this.deliver(ep, c.item);
    const next = outcome.kind === 'retry' ? { retry: outcome.retry } : outcome.kind === 'dead' ? { dead: outcome.dead } : {};
    if (await this.opts.queue.settleRetry(c.member, next)) this.count([outcome]);
  }

  private count(outcomes: readonly DeliveryOutcome[]): void {
    for (const o of outcomes) {
      if (o.kind === 'done') webhookDeliveries.inc({ result: 'delivered' });
      else if (o.kind === 'retry') webhookDeliveries.inc({ result: o.deferred ? 'deferred' : 'retry_scheduled' });
      else {
        webhookDeliveries.inc({ result: 'dead' });
        webhookDead.inc({ reason: o.dead.reason });
      }
    }
  }

  /** One attempt of one delivery, within the endpoint's concurrency; never throws but Closing. */
  private async deliver(ep: ResolvedEndpoint, item: RetryItem): Promise<DeliveryOutcome> {
    const limit = this.limitFor(ep);
    if (limit.waiting >= Math.max(ep.concurrency * BACKLOG_FACTOR, Math.floor(this.maxInFlight / 2))) {
      // The endpoint is saturated: park the delivery instead of holding a slot of this dispatcher.
      return { kind: 'retry', retry: { item, dueAt: this.now() + DEFER_MS }, deferred: true };
    }
    let body: string;
    try {
      body = JSON.stringify({
        id: `evt_${item.messageId}`,
        type: item.type,
        tenantId: item.tenantId,
        createdAt: item.createdAt,
        data: JSON.parse(item.payload) as unknown,
      });
    } catch (err) {
      return {
        kind: 'dead',
        dead: { item, reason: 'malformed', error: `payload is not JSON: ${(err as Error).message}`, failedAt: this.now() },
      };
    }
    await limit.acquire();
    let result: AttemptResult;
    try {
      if (this.closing.signal.aborted) throw new Closing();
      result = await attemptDelivery({
        url: ep.url,
        secret: ep.secret,
        deliveryId: item.deliveryId,
        body,
        timeoutMs: this.opts.timeoutMs,
        signal: this.closing.signal,
        dispatcher: this.http,
        now: this.now,
      });
    } catch (err) {
      if (this.closing.signal.aborted) throw new Closing();
      throw err;
    } finally {
      limit.release();
    }
    webhookAttempts.inc({ outcome: result.kind });
    webhookAttemptDuration.observe({ outcome: result.kind }, result.ms / 1000);
    const attempt = item.attempt + 1;
    const logCtx = { tenantId: item.tenantId, endpointId: item.endpointId, deliveryId: item.deliveryId, attempt, ms: result.ms };
    if (result.kind === 'delivered') {
      this.opts.logger.debug({ ...logCtx, status: result.status }, 'webhook delivered');
      return { kind: 'done' };
    }
    const failed: RetryItem = { ...item, attempt, lastError: result.error };
    if (result.kind === 'rejected') {
      this.opts.logger.warn({ ...logCtx, error: result.error }, 'webhook rejected by the endpoint: dead-lettered');
      return { kind: 'dead', dead: { item: failed, reason: 'rejected', error: result.error, failedAt: this.now() } };
    }
    const plan = planRetry(
      { attempt, firstAttemptAt: item.firstAttemptAt, now: this.now(), retryAfterMs: result.retryAfterMs },
      this.opts.retry,
    );
    if ('exhausted' in plan) {
      this.opts.logger.warn({ ...logCtx, error: result.error }, 'webhook retry window exhausted: dead-lettered');
      return { kind: 'dead', dead: { item: failed, reason: 'retry_window_exhausted', error: result.error, failedAt: this.now() } };
    }
    this.opts.logger.info(
      { ...logCtx, error: result.error, retryInMs: plan.dueAt - this.now() },
      'webhook attempt failed: retry scheduled',
    );
    return { kind: 'retry', retry: { item: failed, dueAt: plan.dueAt } };
  }

  private limitFor(ep: ResolvedEndpoint): ConcurrencyLimit {
    const key = `${ep.tenantId}\n${ep.id}`;
    let l = this.limits.get(key);
    if (!l) this.limits.set(key, (l = new ConcurrencyLimit(ep.concurrency)));
    l.limit = ep.concurrency;
    return l;
  }

  private warn(err: unknown, msg: string): void {
    this.opts.logger.warn({ err: (err as Error)?.message ?? String(err) }, msg);
  }
}

function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const t = setTimeout(resolve, ms);
    signal.addEventListener('abort', () => (clearTimeout(t), resolve()), { once: true });
  });
}
