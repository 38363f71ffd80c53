// Pub/sub between nodes: one channel per tenant (`t:{tid}:events`, prefixed), one subscriber
// connection per process. Redis pub/sub loses what is published while a subscriber is away, so when
// the subscriber connection comes back this bus re-subscribes every channel itself and only then
// tells its listeners (onResubscribed), which re-read their streams from their last offsets.
import type { Redis } from 'ioredis';
import type { Logger } from 'pino';
import { DependencyError } from '../../errors.js';
import type { Bus, TenantEvent, Unsubscribe } from '../ports.js';
import { guard, waitReady } from './connection.js';
import type { RedisKeys } from './keys.js';

interface Channel {
  readonly tenantId: string;
  readonly handlers: Set<(event: TenantEvent) => void>;
  /** Settles when the SUBSCRIBE for this channel was confirmed (or failed). */
  ready: Promise<void>;
}

export class RedisBus implements Bus {
  private readonly channels = new Map<string, Channel>();
  private readonly resubscribedHandlers = new Set<() => void>();
  private everReady = false;
  private lost = false;
  private closed = false;

  constructor(
    private readonly pub: Pick<Redis, 'publish'>,
    /** A dedicated connection (subscriber mode), lazily connected. */
    private readonly sub: Redis,
    private readonly keys: RedisKeys,
    private readonly logger: Logger,
    private readonly connectTimeoutMs: number,
  ) {
    sub.on('message', (channel: string, raw: string) => this.dispatch(channel, raw));
    sub.on('close', () => {
      if (this.everReady) this.lost = true;
    });
    sub.on('ready', () => {
      const wasLost = this.lost;
      this.everReady = true;
      this.lost = false;
      if (wasLost && !this.closed) void this.resubscribe();
    });
  }

  private async resubscribe(): Promise<void> {
    const names = [...this.channels.keys()];
    try {
      if (names.length > 0) await this.sub.subscribe(...names);
    } catch (err) {
      // The connection dropped again: the next 'ready' retries.
      this.lost = true;
      this.logger.warn({ err: { message: (err as Error).message } }, 'bus re-subscribe failed; will retry on reconnect');
      return;
    }
    this.logger.info({ channels: names.length }, 'bus re-subscribed after a lost connection');
    for (const h of this.resubscribedHandlers) {
      try {
        h();
      } catch (err) {
        this.logger.error({ err }, 'onResubscribed handler threw');
      }
    }
  }

  private dispatch(channel: string, raw: string): void {
    const ch = this.channels.get(channel);
    if (!ch) return;
    let event: TenantEvent;
    try {
      event = JSON.parse(raw) as TenantEvent;
    } catch {
      this.logger.warn({ channel }, 'bus: dropped a message that is not JSON');
      return;
    }
    for (const h of ch.handlers) {
      try {
        h(event);
      } catch (err) {
        this.logger.error({ err, tenantId: ch.tenantId }, 'bus handler threw');
      }
    }
  }

  publish(tenantId: string, event: TenantEvent): Promise<void> {
    return guard('bus publish', async () => {
      await this.pub.publish(this.keys.tenantChannel(tenantId), JSON.stringify(event));
    });
  }

  async subscribe(tenantId: string, handler: (event: TenantEvent) => void): Promise<Unsubscribe> {
    if (this.closed) throw new DependencyError('redis', 'bus is closed');
    const name = this.keys.tenantChannel(tenantId);
    let ch = this.channels.get(name);
    if (!ch) {
      const created: Channel = { tenantId, handlers: new Set(), ready: Promise.resolve() };
      created.ready = guard('bus subscribe', async () => {
        await waitReady(this.sub, this.connectTimeoutMs);
        await this.sub.subscribe(name);
      });
      this.channels.set(name, created);
      ch = created;
    }
    const entry = ch;
    entry.handlers.add(handler);
    try {
      await entry.ready;
    } catch (err) {
      entry.handlers.delete(handler);
      if (this.channels.get(name) === entry) this.channels.delete(name);
      throw err;
    }
    let done = false;
    return async () => {
      if (done) return;
      done = true;
      entry.handlers.delete(handler);
      if (entry.handlers.size === 0 && this.channels.get(name) === entry) {
        this.channels.delete(name);
        // If this fails the connection is down; the re-subscribe after it will not include the channel.
        await this.sub.unsubscribe(name).catch(() => undefined);
      }
    };
  }

  onResubscribed(handler: () => void): void {
    this.resubscribedHandlers.add(handler);
  }

  close(): void {
    this.closed = true;
    this.channels.clear();
  }
}
