// The Redis engine: every port over one shared command connection, plus one subscriber connection
// (the bus) and short-lived dedicated connections for blocking reads. Many chatd nodes share it.
// On Redis Cluster the same ports run over ioredis Cluster clients with the cluster key layout
// (keys.ts: every script in one slot) and the sharded bus (SSUBSCRIBE/SPUBLISH).
import type { RedisOptions } from 'ioredis';
import type { Logger } from 'pino';
import { DependencyError } from '../../errors.js';
import type { OpenedWebhookQueue, Store, WebhookQueueOptions } from '../ports.js';
import {
  clusterSetup,
  createClusterClient,
  createRedisClient,
  guard,
  redisOptions,
  waitReady,
  type RedisClient,
  type RedisConnectionConfig,
  type ScriptedRedis,
} from './connection.js';
import { redisKeys, type RedisKeys } from './keys.js';
import { RedisAgentPresenceStore } from './redis-agent-presence-store.js';
import { RedisBus } from './redis-bus.js';
import { RedisShardedBus } from './redis-sharded-bus.js';
import { RedisEventLog, type RedisEventLogOptions } from './redis-event-log.js';
import { RedisLossGuard } from './redis-loss-guard.js';
import { RestoreWatch } from './redis-data-epoch.js';
import { RedisNodeRegistry } from './redis-node-registry.js';
import { RedisPresenceStore } from './redis-presence-store.js';
import { RedisRateLimiter } from './redis-rate-limiter.js';
import { RedisSessionStore } from './redis-session-store.js';
import { openRedisWebhookQueue, webhookKeys } from './redis-webhook-queue.js';
import { RedisWebhookStream } from './redis-webhook-stream.js';
import { RedisErasureStore, RedisRevocationStore } from './redis-erasure.js';

export interface RedisStoreOptions extends RedisConnectionConfig, Partial<RedisEventLogOptions> {
  /** `redis.prefix`: put before every key and channel. */
  readonly prefix: string;
  /** Overrides the options derived from url/sentinel (tests). */
  readonly ioredis?: RedisOptions;
}

export const DEFAULT_MARKER_TTL_SECONDS = 48 * 3600;

export class RedisStore implements Store {
  readonly kind: 'redis' | 'redis-cluster';
  readonly readinessName = 'redis';
  readonly keys: RedisKeys;
  readonly sessions: RedisSessionStore;
  readonly presence: RedisPresenceStore;
  readonly agentPresence: RedisAgentPresenceStore;
  readonly events: RedisEventLog;
  readonly bus: RedisBus | RedisShardedBus;
  readonly webhooks: RedisWebhookStream;
  readonly rateLimiter: RedisRateLimiter;
  readonly erasure: RedisErasureStore;
  readonly revocations: RedisRevocationStore;
  readonly nodes: RedisNodeRegistry;
  /** The shared command connection (exposed for admin tools and tests). */
  readonly client: ScriptedRedis;
  /** The bus's subscriber connection (the sharded bus may replace its client). */
  private readonly subscriberOf: () => RedisClient;
  private readonly dedicated = new Set<RedisClient>();
  private readonly connectTimeoutMs: number;
  private readonly connection: RedisConnectionConfig & { readonly prefix: string };
  /** The data epoch's key (the webhook queue's): gone = Redis lost its data. */
  private readonly epochKey: string;

  constructor(opts: RedisStoreOptions, logger: Logger) {
    const cluster = opts.cluster;
    this.kind = cluster ? 'redis-cluster' : 'redis';
    this.keys = redisKeys(opts.prefix, cluster ? 'cluster' : 'standalone');
    this.epochKey = webhookKeys(opts.prefix, cluster ? 'cluster' : 'standalone').epoch;
    let blocking: () => RedisClient;
    if (cluster) {
      const setup = clusterSetup(cluster, { commandTimeoutMs: opts.commandTimeoutMs, connectTimeoutMs: opts.connectTimeoutMs });
      this.connectTimeoutMs = opts.connectTimeoutMs ?? 5000;
      // Commands go to each key's shard, auto-pipelined per shard; MOVED/ASK are followed by ioredis.
      // Sharded pub/sub only: one subscriber connection per master, kept by ioredis across failovers.
      const client = createClusterClient(setup, logger, 'commands', { enableAutoPipelining: true, shardedSubscribers: false });
      this.client = client;
      const bus = new RedisShardedBus(
        client,
        () => createClusterClient(setup, logger, 'subscriber', { shardedSubscribers: true }),
        this.keys,
        logger,
        this.connectTimeoutMs,
      );
      this.bus = bus;
      this.subscriberOf = () => bus.subscriber;
      const blockingSetup = clusterSetup(cluster, { commandTimeoutMs: undefined, connectTimeoutMs: opts.connectTimeoutMs });
      blocking = () => this.track(createClusterClient(blockingSetup, logger, 'blocking', { shardedSubscribers: false }));
    } else {
      const options = { ...redisOptions(opts), ...opts.ioredis };
      this.connectTimeoutMs = Number(options.connectTimeout ?? 5000);
      // Commands issued in the same tick go out in one write (ioredis auto-pipelining) — e.g. the
      // publishes of one group-commit batch, whose acknowledgements resolve together; one write per
      // command was the largest single cost of the ingest path (`npm run bench -- ingest --profile`).
      // Order per client is kept; the subscriber and blocking connections below stay unpipelined.
      const client = createRedisClient({ ...options, enableAutoPipelining: true }, logger, 'commands');
      this.client = client;
      // Subscriber mode never runs regular commands; no command timeout (SUBSCRIBE replies are pushed).
      // The bus re-subscribes its own channel list after a reconnect (then tells its listeners), so
      // ioredis's own re-subscription (which would also revive channels dropped during the outage) is off.
      const sub = createRedisClient({ ...options, commandTimeout: undefined, autoResubscribe: false }, logger, 'subscriber');
      this.subscriberOf = () => sub;
      this.bus = new RedisBus(client, sub, this.keys, logger, this.connectTimeoutMs);
      blocking = () => this.track(createRedisClient({ ...options, commandTimeout: undefined }, logger, 'blocking'));
    }
    this.sessions = new RedisSessionStore(this.client, this.keys);
    this.presence = new RedisPresenceStore(this.client, this.keys);
    this.agentPresence = new RedisAgentPresenceStore(this.client, this.keys);
    this.events = new RedisEventLog(this.client, this.keys, {
      agentHistorySize: opts.agentHistorySize ?? 10000,
      webhookStreamMaxLen: opts.webhookStreamMaxLen ?? 100000,
      markerTtlSeconds: opts.markerTtlSeconds ?? DEFAULT_MARKER_TTL_SECONDS,
    });
    this.webhooks = new RedisWebhookStream(this.client, this.keys, blocking, this.connectTimeoutMs);
    this.rateLimiter = new RedisRateLimiter(this.client, this.keys);
    this.erasure = new RedisErasureStore(this.client, this.keys, this.presence);
    this.revocations = new RedisRevocationStore(this.client, this.keys);
    // Over the shared connection; each call waits (2 s at most) for it, so a node that starts
    // before its Redis advertises itself as soon as Redis is up.
    this.nodes = new RedisNodeRegistry(this.client, opts.prefix, () => waitReady(this.client, 2000));
    this.connection = { url: opts.url, sentinel: opts.sentinel, cluster: opts.cluster, prefix: opts.prefix };
  }

  /** A dedicated connection (blocking reads), closed with the store. */
  private track<C extends RedisClient>(c: C): C {
    this.dedicated.add(c);
    c.once('end', () => this.dedicated.delete(c));
    return c;
  }

  /**
   * The dispatcher's queue, on two connections of its own. With `durable`, the data-loss guard
   * runs beside it: a Redis restarted without its data lost the jobs it held, and the guard
   * re-appends them from the outbox's messages (redis-loss-guard.ts).
   */
  async openWebhookQueue(opts: WebhookQueueOptions): Promise<OpenedWebhookQueue> {
    const queue = await openRedisWebhookQueue(this.connection, opts);
    if (!opts.durable) return { queue };
    const companion = new RedisLossGuard({
      queue,
      outbox: opts.durable.outbox,
      tenants: opts.durable.tenants,
      logger: opts.logger,
      streamMaxLen: opts.streamMaxLen,
    });
    return { queue, companion };
  }

  /**
   * Restores at the first look and after every loss the data epoch shows (redis-data-epoch.ts), on
   * the command connection; resolves after the first look (a failed one is retried each second).
   */
  async keepRestored(restore: () => Promise<number>, logger: Logger): Promise<{ stop(): Promise<void> }> {
    const watch = new RestoreWatch({ redis: this.client, epochKey: this.epochKey, restore, logger });
    await watch.start();
    return watch;
  }

  /** Connects both long-lived connections; rejects with DependencyError after `timeoutMs`. */
  async connect(timeoutMs = this.connectTimeoutMs): Promise<void> {
    await Promise.all([waitReady(this.client, timeoutMs), waitReady(this.subscriberOf(), timeoutMs)]);
  }

  ping(): Promise<void> {
    return guard('ping', async () => {
      if (this.client.status !== 'ready') throw new DependencyError('redis', `not connected (${this.client.status})`);
      await this.client.ping();
    });
  }

  async close(): Promise<void> {
    this.bus.close();
    const all = [this.client, this.subscriberOf(), ...this.dedicated];
    await Promise.allSettled(
      all.map(async (c) => {
        if (c.status === 'ready') await c.quit().catch(() => c.disconnect());
        else c.disconnect();
      }),
    );
    this.dedicated.clear();
  }
}
