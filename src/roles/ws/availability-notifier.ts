// `availability_changed` for the sockets of this node (DESIGN.md "Offline continuity"). Availability
// is a state, not a stream: each node re-reads it (one count from the store, business hours in
// process) when told the tenant's agents may have changed — by its own agent presence tracker or by
// another node through the bus (`{ type: 'availability' }`) — and when business hours may have
// opened or closed or a config reload changed the tenant's availability settings (both checked every
// `HOURS_CHECK_MS`), and emits the new state to its tenant-wide room only when it differs from the
// last one it emitted. So a socket gets one event per change whichever
// node saw the change, and a widget that connects later reads GET /api/chat/availability.
import type { Logger } from 'pino';
import type { TenantDirectory } from '../../auth/tenants.js';
import { availabilityOf, sameAvailability, type Availability } from '../../chat/availability.js';
import type { AgentPresenceStore, Bus } from '../../store/ports.js';

/** How often business hours are checked for an opening or closing, and settings for a reload (the event's lag at most). */
export const HOURS_CHECK_MS = 10_000;

export interface AvailabilityNotifierOptions {
  readonly agents: Pick<AgentPresenceStore, 'count'>;
  readonly bus: Pick<Bus, 'publish'>;
  /** Read at each use, so a reload's hours apply. */
  readonly tenants: () => TenantDirectory;
  /** Emits `availability_changed` to the tenant-wide room of this node's sockets. */
  readonly emit: (tenantId: string, availability: Availability) => void;
  /** Tenants with sockets on this node (the others have nobody to tell). */
  readonly activeTenants: () => Iterable<string>;
  readonly logger: Logger;
}

export class AvailabilityNotifier {
  private readonly last = new Map<string, Availability>();
  private readonly hoursOpen = new Map<string, boolean>();
  /** The availability settings (their source) each tenant's last check saw: a reload may change them. */
  private readonly settingsSeen = new Map<string, string>();
  private readonly refreshing = new Map<string, Promise<void>>();
  private readonly again = new Set<string>();
  private timer: NodeJS.Timeout | undefined;

  constructor(private readonly opts: AvailabilityNotifierOptions) {}

  start(): void {
    this.timer ??= setInterval(() => this.checkHours(), HOURS_CHECK_MS);
    this.timer.unref();
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
  }

  /** This node saw agents come or go in the tenant: every node (this one included) re-reads. */
  agentsChanged(tenantId: string): void {
    this.opts.bus.publish(tenantId, { type: 'availability' }).catch((err: unknown) => {
      this.opts.logger.warn({ err, tenantId }, 'availability change could not be published; this node tells its own sockets');
      void this.refresh(tenantId);
    });
  }

  /** Re-reads the tenant's availability and emits it if it changed; one read at a time per tenant. */
  refresh(tenantId: string): Promise<void> {
    const running = this.refreshing.get(tenantId);
    if (running) {
      this.again.add(tenantId);
      return running;
    }
    const p = this.read(tenantId).finally(() => {
      this.refreshing.delete(tenantId);
      if (this.again.delete(tenantId)) void this.refresh(tenantId);
    });
    this.refreshing.set(tenantId, p);
    return p;
  }

  /**
   * This node's first socket of the tenant: learns the settings and hours state it reads over HTTP
   * now, so the next check sees a reload or an opening/closing that comes after it.
   */
  watch(tenantId: string): void {
    const settings = this.opts.tenants().get(tenantId)?.availability;
    if (!settings) return;
    this.settingsSeen.set(tenantId, settings.source);
    this.hoursOpen.set(tenantId, settings.hours?.stateAt(Date.now()).open ?? true);
  }

  /** Forgets a tenant this node no longer has sockets of (its next socket reads over HTTP). */
  forget(tenantId: string): void {
    this.last.delete(tenantId);
    this.hoursOpen.delete(tenantId);
    this.settingsSeen.delete(tenantId);
  }

  private async read(tenantId: string): Promise<void> {
    const tenant = this.opts.tenants().get(tenantId);
    if (!tenant) return;
    try {
      const now = availabilityOf(tenant.availability, await this.opts.agents.count(tenantId), Date.now());
      this.hoursOpen.set(tenantId, now.inBusinessHours);
      const before = this.last.get(tenantId);
      this.last.set(tenantId, now);
      if (before && sameAvailability(before, now)) return;
      this.opts.emit(tenantId, now);
    } catch (err) {
      this.opts.logger.warn({ err, tenantId }, 'availability could not be read');
    }
  }

  private checkHours(): void {
    const now = Date.now();
    for (const tenantId of this.opts.activeTenants()) {
      const settings = this.opts.tenants().get(tenantId)?.availability;
      if (!settings) continue;
      const seen = this.settingsSeen.get(tenantId);
      this.settingsSeen.set(tenantId, settings.source);
      // No business hours: always open (so hours added by a reload are a closing).
      const open = settings.hours?.stateAt(now).open ?? true;
      const before = this.hoursOpen.get(tenantId);
      this.hoursOpen.set(tenantId, open);
      // A first look (no watch) only learns the state: sockets that connected read it over HTTP. Hours
      // opening or closing, or a reload (new hours, away message, reply time): re-read, and emit if
      // what a widget shows changed.
      if ((before !== undefined && before !== open) || (seen !== undefined && seen !== settings.source)) void this.refresh(tenantId);
    }
  }
}
