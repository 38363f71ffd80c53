// Pub/sub between nodes on Redis Cluster: sharded pub/sub (SSUBSCRIBE/SPUBLISH, Redis ≥ 7), so a
// publish costs the one shard that owns its channel's slot instead of being broadcast over the
// whole cluster bus, and a node subscribes only on the shards that hold its tenants' channels.
// A tenant has one channel for its agent stream (`t:{T}:events`, SPUBLISHed inside the append
// scripts, so in offset order, with presence, broadcast and revoke) and CONVERSATION_CHANNELS
// channels for its conversations' typing and read (`t:{T:c<k>}:events`, by session id), which
// spreads a big tenant's chatter over the shards. ioredis keeps one subscriber connection per
// master and re-subscribes after a failover or a slot move (its `shardedSubscribers` mode); the
// messages published meanwhile are lost, so after each re-subscription this bus tells its
// listeners (onResubscribed), which re-read their streams from their last offsets.
//
// When the whole cluster connection drops (every node away: a whole-cluster restart), ioredis
// 5.9.2 stops its shard subscribers and, the slot map being unchanged when it reconnects, does not
// create them again: subscriptions would stay dead. So after such a drop this bus replaces its
// subscriber client with a new one and subscribes every channel again itself.
import type { Cluster } from 'ioredis';
import type { Logger } from 'pino';
import { DependencyError } from '../../errors.js';
import type { Bus, TenantEvent, Unsubscribe } from '../ports.js';
import { guard, waitReady } from './connection.js';
import type { RedisKeys } from './keys.js';

interface Tenant {
  readonly channels: readonly string[];
  readonly handlers: Set<(event: TenantEvent) => void>;
  /** Settles when every SSUBSCRIBE of the tenant was confirmed (or one failed). */
  ready: Promise<void>;
}

export class RedisShardedBus implements Bus {
  /** By tenant id; `byChannel` maps each channel back to its tenant. */
  private readonly tenants = new Map<string, Tenant>();
  private readonly byChannel = new Map<string, Tenant>();
  private readonly resubscribedHandlers = new Set<() => void>();
  private closed = false;
  /** The current subscriber client (a Cluster in shardedSubscribers mode, used for nothing else). */
  private sub: Cluster;

  constructor(
    private readonly pub: Pick<Cluster, 'spublish'>,
    /** Creates a subscriber client (not yet connected); called again to replace a dead one. */
    private readonly createSubscriber: () => Cluster,
    private readonly keys: RedisKeys,
    private readonly logger: Logger,
    private readonly connectTimeoutMs: number,
  ) {
    this.sub = this.attach(createSubscriber());
  }

  /** The subscriber client in use (for connect and readiness). */
  get subscriber(): Cluster {
    return this.sub;
  }

  private attach(sub: Cluster): Cluster {
    let dropped = false;
    let everReady = false;
    sub.on('smessage', (channel: string, raw: string) => {
      if (sub === this.sub) this.dispatch(channel, raw);
    });
    // Emitted after ioredis (re)created the shard subscribers for a new slot map and re-sent the
    // SSUBSCRIBEs: a failover, a node back, a slot moved. What was published before is lost.
    sub.on('subscribersReady', () => {
      if (sub === this.sub && everReady) this.tellResubscribed();
    });
    sub.on('close', () => {
      if (everReady) dropped = true;
    });
    sub.on('ready', () => {
      everReady = true;
      if (!dropped || sub !== this.sub || this.closed) return;
      dropped = false;
      void this.replaceSubscriber();
    });
    return sub;
  }

  /** After a whole-cluster drop: a new subscriber client, every channel subscribed again, then the listeners told. */
  private async replaceSubscriber(): Promise<void> {
    const old = this.sub;
    const fresh = this.attach(this.createSubscriber());
    this.sub = fresh;
    old.disconnect();
    try {
      await waitReady(fresh, this.connectTimeoutMs);
      await Promise.all([...this.byChannel.keys()].map((c) => fresh.ssubscribe(c)));
    } catch (err) {
      this.logger.warn({ err: { message: (err as Error).message } }, 'bus re-subscribe after a cluster drop failed; trying again');
      if (!this.closed && this.sub === fresh) setTimeout(() => void this.replaceSubscriber(), 1000).unref();
      return;
    }
    this.logger.info({ channels: this.byChannel.size }, 'bus subscriber client replaced after the whole cluster connection dropped');
    this.tellResubscribed();
  }

  private tellResubscribed(): void {
    if (this.closed || this.tenants.size === 0) return;
    this.logger.info({ tenants: this.tenants.size }, 'bus shard subscribers re-created; streams re-read');
    for (const h of this.resubscribedHandlers) {
      try {
        h();
      } catch (err) {
        this.logger.error({ err }, 'onResubscribed handler threw');
      }
    }
  }

  private dispatch(channel: string, raw: string): void {
    const tenant = this.byChannel.get(channel);
    if (!tenant) return;
    let event: TenantEvent;
    try {
      event = JSON.parse(raw) as TenantEvent;
    } catch {
      this.logger.warn({ channel }, 'bus: dropped a message that is not JSON');
      return;
    }
    for (const h of tenant.handlers) {
      try {
        h(event);
      } catch (err) {
        this.logger.error({ err, channel }, 'bus handler threw');
      }
    }
  }

  /** typing and read go on their conversation's channel; the rest on the tenant's agent-stream channel. */
  private channelOf(tenantId: string, event: TenantEvent): string {
    if (event.type === 'typing' || event.type === 'read') return this.keys.conversationChannel(tenantId, event.sessionId);
    return this.keys.tenantChannel(tenantId);
  }

  publish(tenantId: string, event: TenantEvent): Promise<void> {
    return guard('bus publish', async () => {
      await this.pub.spublish(this.channelOf(tenantId, event), JSON.stringify(event));
    });
  }

  async subscribe(tenantId: string, handler: (event: TenantEvent) => void): Promise<Unsubscribe> {
    if (this.closed) throw new DependencyError('redis', 'bus is closed');
    let tenant = this.tenants.get(tenantId);
    if (!tenant) {
      const channels = this.keys.tenantChannels(tenantId);
      const created: Tenant = { channels, handlers: new Set(), ready: Promise.resolve() };
      // One SSUBSCRIBE per channel: ioredis refuses channels of different slots in one command.
      created.ready = guard('bus subscribe', async () => {
        await waitReady(this.sub, this.connectTimeoutMs);
        await Promise.all(channels.map((c) => this.sub.ssubscribe(c)));
      });
      this.tenants.set(tenantId, created);
      for (const c of channels) this.byChannel.set(c, created);
      tenant = created;
    }
    const entry = tenant;
    entry.handlers.add(handler);
    try {
      await entry.ready;
    } catch (err) {
      entry.handlers.delete(handler);
      if (this.tenants.get(tenantId) === entry && entry.handlers.size === 0) this.forget(tenantId, entry);
      throw err;
    }
    let done = false;
    return async () => {
      if (done) return;
      done = true;
      entry.handlers.delete(handler);
      if (entry.handlers.size === 0 && this.tenants.get(tenantId) === entry) {
        this.forget(tenantId, entry);
        // If this fails the shard is away; ioredis's re-subscription no longer includes the channels.
        await Promise.all(entry.channels.map((c) => this.sub.sunsubscribe(c).catch(() => undefined)));
      }
    };
  }

  private forget(tenantId: string, entry: Tenant): void {
    this.tenants.delete(tenantId);
    for (const c of entry.channels) if (this.byChannel.get(c) === entry) this.byChannel.delete(c);
  }

  onResubscribed(handler: () => void): void {
    this.resubscribedHandlers.add(handler);
  }

  close(): void {
    this.closed = true;
    this.tenants.clear();
    this.byChannel.clear();
    this.sub.disconnect();
  }
}
