// The bus in process: events go to this process's subscribers, asynchronously and in publish order
// (one FIFO queue, so a handler that publishes cannot reorder what others receive). A process never
// loses its own bus, so onResubscribed never fires.
import type { Logger } from 'pino';
import type { Bus, TenantEvent, Unsubscribe } from '../ports.js';

/** publish() cannot fail in process: one settled promise for every call. */
const DELIVERED = Promise.resolve();

export class MemoryBus implements Bus {
  private readonly handlers = new Map<string, Set<(event: TenantEvent) => void>>();
  private readonly queue: { tenantId: string; raw: string | TenantEvent }[] = [];
  private draining = false;
  /** Made once: scheduling a drain allocates no closure (and no AsyncResource, as queueMicrotask does). */
  private readonly drainLater = (): void => this.drain();

  constructor(private readonly logger?: Logger) {}

  /**
   * Delivers after the caller's current step, like a network bus; JSON round-trip as over Redis,
   * except for `typing` (the most frequent event, a few strings and a boolean, built fresh by the
   * domain for this publish): that one is frozen and handed over as is.
   */
  deliver(tenantId: string, event: TenantEvent): void {
    if (event.type === 'typing') {
      Object.freeze(event.sender);
      this.queue.push({ tenantId, raw: Object.freeze(event) });
    } else this.queue.push({ tenantId, raw: JSON.stringify(event) });
    if (!this.draining) {
      this.draining = true;
      void Promise.resolve().then(this.drainLater);
    }
  }

  private drain(): void {
    try {
      for (let item = this.queue.shift(); item; item = this.queue.shift()) {
        const set = this.handlers.get(item.tenantId);
        if (!set || set.size === 0) continue;
        // One subscriber (one ws role in this process, the usual case): no copy of the set.
        const handlers = set.size === 1 ? set : [...set];
        for (const h of handlers) {
          try {
            h(typeof item.raw === 'string' ? (JSON.parse(item.raw) as TenantEvent) : item.raw);
          } catch (err) {
            this.logger?.error({ err, tenantId: item.tenantId }, 'bus handler threw');
          }
        }
      }
    } finally {
      this.draining = false;
    }
  }

  publish(tenantId: string, event: TenantEvent): Promise<void> {
    this.deliver(tenantId, event);
    return DELIVERED;
  }

  async subscribe(tenantId: string, handler: (event: TenantEvent) => void): Promise<Unsubscribe> {
    let set = this.handlers.get(tenantId);
    if (!set) this.handlers.set(tenantId, (set = new Set()));
    set.add(handler);
    const entry = set;
    return async () => {
      entry.delete(handler);
      if (entry.size === 0 && this.handlers.get(tenantId) === entry) this.handlers.delete(tenantId);
    };
  }

  onResubscribed(handler: () => void): void {
    void handler; // never lost in process
  }
}
