// The zero-config engine: every port in process, for one node. Same semantics as the Redis store
// (one contract suite runs against both); nothing is shared with other processes.
import type { Logger } from 'pino';
import type { OpenedWebhookQueue, Store, WebhookQueueOptions } from '../ports.js';
import { MemoryAgentPresenceStore } from './memory-agent-presence-store.js';
import { MemoryBus } from './memory-bus.js';
import { MemoryEventLog } from './memory-event-log.js';
import { MemoryNodeRegistry } from './memory-node-registry.js';
import { MemoryPresenceStore } from './memory-presence-store.js';
import { MemoryRateLimiter } from './memory-rate-limiter.js';
import { MemorySessionStore } from './memory-session-store.js';
import { MemoryWebhookQueue } from './memory-webhook-queue.js';
import { MemoryWebhookStream } from './memory-webhook-stream.js';
import { MemoryErasureStore, MemoryRevocationStore } from './memory-erasure.js';

export interface MemoryStoreOptions {
  readonly agentHistorySize?: number;
  readonly webhookStreamMaxLen?: number;
  readonly markerTtlSeconds?: number;
  /** How often expired sessions, markers and idle buckets are dropped. */
  readonly purgeIntervalMs?: number;
}

export class MemoryStore implements Store {
  readonly kind = 'memory' as const;
  readonly readinessName = 'memory-store';
  readonly sessions: MemorySessionStore;
  readonly presence: MemoryPresenceStore;
  readonly agentPresence = new MemoryAgentPresenceStore();
  readonly events: MemoryEventLog;
  readonly bus: MemoryBus;
  readonly webhooks: MemoryWebhookStream;
  readonly rateLimiter: MemoryRateLimiter;
  readonly erasure: MemoryErasureStore;
  readonly revocations = new MemoryRevocationStore();
  readonly nodes = new MemoryNodeRegistry();
  private readonly timer: NodeJS.Timeout;

  constructor(opts: MemoryStoreOptions = {}, logger?: Logger) {
    this.sessions = new MemorySessionStore();
    this.presence = new MemoryPresenceStore();
    this.bus = new MemoryBus(logger);
    this.webhooks = new MemoryWebhookStream(opts.webhookStreamMaxLen ?? 100000);
    this.events = new MemoryEventLog(this.bus, this.webhooks, {
      agentHistorySize: opts.agentHistorySize ?? 10000,
      markerTtlSeconds: opts.markerTtlSeconds ?? 24 * 3600,
    });
    this.rateLimiter = new MemoryRateLimiter();
    this.erasure = new MemoryErasureStore(this.sessions, this.presence, this.webhooks);
    this.timer = setInterval(() => {
      this.sessions.purgeExpired();
      this.events.purgeExpired();
      this.rateLimiter.purgeIdle();
    }, opts.purgeIntervalMs ?? 60000);
    this.timer.unref();
  }

  /**
   * The queue follows this store's in-process jobs stream; its only consumer is this process's
   * dispatcher, and nothing outlives the process, so no guard runs beside it.
   */
  async openWebhookQueue(opts: WebhookQueueOptions): Promise<OpenedWebhookQueue> {
    const queue = new MemoryWebhookQueue({
      stream: this.webhooks,
      maxBacklog: opts.streamMaxLen,
      deadMaxLen: opts.deadMaxLen,
      onError: (err) => opts.logger.error({ err: (err as Error)?.message }, 'following the in-process webhook jobs stream failed'),
    });
    return { queue };
  }

  /** Nothing here outlives the process, and nothing is lost while it runs: one restore, at start. */
  async keepRestored(restore: () => Promise<number>, logger: Logger): Promise<{ stop(): Promise<void> }> {
    const n = await restore();
    logger.debug({ restored: n }, 'revocations restored into the memory store from the database');
    return { stop: async () => undefined };
  }

  async ping(): Promise<void> {}

  async close(): Promise<void> {
    clearInterval(this.timer);
  }
}
