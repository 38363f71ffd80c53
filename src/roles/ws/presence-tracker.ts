// Presence of this node's connections (DESIGN.md "Presence"). Transport-agnostic.
//
// API for the protocol layer:
//   const tracker = new PresenceTracker({ store, nodeId, heartbeatMs, nodeTimeoutMs, offlineGraceMs, logger });
//   tracker.start();                      // one shared timer: heartbeat + sweep every heartbeatMs
//   await tracker.connect(conn);          // after a socket authenticated (conn.connId = the Engine.IO sid)
//   await tracker.disconnect(tenantId, connId);   // when its transport closed for good
//   await tracker.drain();                // SIGTERM: stop re-asserting, keep the entries (see below)
//   await tracker.stop();                 // at close
// Neither connect nor disconnect throws: a store failure is logged and repaired by the next
// heartbeat (which re-asserts every local connection) or by the sweep (entries of a connection this
// node forgot expire after nodeTimeoutMs).
//
// Events reach the agents as `presence_update` { userId, sessionId, status, at } through the agent
// stream: `store.events.publishPresence` appends them (offset) and publishes them on the bus, and the
// StreamHub (streams.ts) delivers them like messages.
//   - online: on a user's first connection (store.presence.add → firstForUser), unless this node
//     still had that user's offline pending (then nothing changed for the agents).
//   - offline: after the user's last connection closed, only once offlineGraceMs passed and the user
//     is still not online anywhere (a reload or a reconnect to another node does not flap).
//   - offline for connections of a node silent past nodeTimeoutMs: every node sweeps periodically;
//     the store's sweep is atomic, so each lost connection is reported by exactly one node.
// On SIGTERM (drain) the node stops heartbeating and leaves its entries in place: its clients
// reconnect elsewhere within the node timeout, and the entries left behind are swept then, with an
// `offline` only for users who did not come back. Offline events still pending in their grace
// period at stop() are decided then (published if the user is not online), rather than lost.
import type { Logger } from 'pino';
import type { PresenceChange, PresenceConnection, Store } from '../../store/ports.js';
import { promClient, registry } from '../../observability/metrics.js';

export interface PresenceTrackerOptions {
  readonly store: { readonly presence: Store['presence']; readonly events: Pick<Store['events'], 'publishPresence'> };
  readonly nodeId: string;
  /** config presence.heartbeatMs: how often this node re-asserts its connections (and sweeps). */
  readonly heartbeatMs: number;
  /** config presence.nodeTimeoutMs: a connection not re-asserted for this long is swept. */
  readonly nodeTimeoutMs: number;
  /** config presence.offlineGraceMs. */
  readonly offlineGraceMs: number;
  readonly logger: Logger;
  /** For tests: the clock (ms). */
  readonly now?: () => number;
}

const presenceEvents = new promClient.Counter({
  name: 'chatd_presence_events_total',
  help: 'presence_update events published by this node, by status and cause.',
  labelNames: ['status', 'cause'] as const,
  registers: [registry],
});

interface PendingOffline {
  readonly tenantId: string;
  readonly userId: string;
  readonly sessionId: string;
  readonly due: number;
}

const userKey = (tenantId: string, userId: string) => `${tenantId}\u0000${userId}`;

/** This node's presence: the local connection registry and the online/offline events. */
export class PresenceTracker {
  private readonly conns = new Map<string, PresenceConnection>();
  /** Local connections per user (tenant + userId). */
  private readonly perUser = new Map<string, number>();
  private readonly pending = new Map<string, PendingOffline>();
  /**
   * Users whose last local connection is being removed from the store right now. A reconnect in that
   * window (a visitor's transport closing as the new one arrives) must count as coming back: before,
   * it saw no pending offline yet, its add found the user gone, and agents got a second `online`.
   */
  private readonly leaving = new Map<string, number>();
  private timer: NodeJS.Timeout | undefined;
  private graceTimer: NodeJS.Timeout | undefined;
  private graceDue = Infinity;
  private ticking: Promise<void> | undefined;
  private draining = false;
  private stopped = false;
  private readonly now: () => number;

  constructor(private readonly opts: PresenceTrackerOptions) {
    this.now = opts.now ?? Date.now;
  }

  /** Starts the shared heartbeat/sweep timer. */
  start(): void {
    if (this.timer || this.stopped) return;
    this.timer = setInterval(() => void this.tick(), Math.max(1, this.opts.heartbeatMs));
    this.timer.unref();
  }

  /** Number of local connections. */
  get size(): number {
    return this.conns.size;
  }

  /** Users whose last connection here closed and whose offline waits for the grace period. */
  get pendingOffline(): number {
    return this.pending.size;
  }

  /** Registers an authenticated connection and announces the user if it is their first anywhere. */
  async connect(conn: PresenceConnection): Promise<void> {
    if (this.stopped) return;
    const key = connKey(conn.tenantId, conn.connId);
    if (this.conns.has(key)) return;
    this.conns.set(key, conn);
    const uk = userKey(conn.tenantId, conn.userId);
    this.perUser.set(uk, (this.perUser.get(uk) ?? 0) + 1);
    const hadPending = this.pending.delete(uk) || this.leaving.has(uk);
    try {
      const { firstForUser } = await this.opts.store.presence.add(this.opts.nodeId, conn, this.opts.nodeTimeoutMs);
      // Gone again while adding: undo (disconnect could not remove what was not there yet).
      if (!this.conns.has(key)) {
        await this.removeEntry(conn.tenantId, conn.connId);
        return;
      }
      if (firstForUser && !hadPending) await this.publish(conn.tenantId, conn.userId, conn.sessionId, 'online', 'connect');
    } catch (err) {
      this.opts.logger.warn({ err, tenantId: conn.tenantId }, 'presence add failed; the next heartbeat re-asserts it');
    }
  }

  /** Forgets a closed connection; the user's `offline` follows after the grace period if they do not return. */
  async disconnect(tenantId: string, connId: string): Promise<void> {
    const key = connKey(tenantId, connId);
    const conn = this.conns.get(key);
    if (!conn) return;
    this.conns.delete(key);
    const uk = userKey(tenantId, conn.userId);
    const left = (this.perUser.get(uk) ?? 1) - 1;
    if (left > 0) this.perUser.set(uk, left);
    else this.perUser.delete(uk);
    // Draining: leave the entry; it expires and is swept unless the client reconnects elsewhere.
    if (this.draining || this.stopped) return;
    if (left > 0) return void (await this.removeEntry(tenantId, connId, conn));
    this.leaving.set(uk, (this.leaving.get(uk) ?? 0) + 1);
    try {
      await this.removeEntry(tenantId, connId, conn);
    } finally {
      const n = (this.leaving.get(uk) ?? 1) - 1;
      if (n > 0) this.leaving.set(uk, n);
      else this.leaving.delete(uk);
    }
  }

  /** SIGTERM: stop re-asserting connections; their entries are left to expire and be swept. */
  async drain(): Promise<void> {
    this.draining = true;
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
    await this.ticking;
  }

  /** Stops timers; offline events still in their grace period are decided now. */
  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    if (this.timer) clearInterval(this.timer);
    if (this.graceTimer) clearTimeout(this.graceTimer);
    this.timer = undefined;
    this.graceTimer = undefined;
    await this.ticking;
    await this.flushPending(Infinity);
  }

  /** One heartbeat and sweep now (the timer calls it; tests too). */
  tick(): Promise<void> {
    this.ticking ??= this.runTick().finally(() => (this.ticking = undefined));
    return this.ticking;
  }

  private async runTick(): Promise<void> {
    const { presence } = this.opts.store;
    if (!this.draining && !this.stopped) {
      try {
        const back = await presence.heartbeat(this.opts.nodeId, [...this.conns.values()], this.opts.nodeTimeoutMs);
        // Users the store had lost (Redis restart, this node wrongly swept) are online again.
        for (const u of back) await this.publish(u.tenantId, u.userId, u.sessionId, 'online', 'heartbeat');
      } catch (err) {
        this.opts.logger.warn({ err }, 'presence heartbeat failed');
      }
    }
    try {
      const gone = await presence.sweep(this.now());
      for (const u of gone) await this.offlineUnlessBack(u, 'sweep');
    } catch (err) {
      this.opts.logger.warn({ err }, 'presence sweep failed');
    }
  }

  private async removeEntry(tenantId: string, connId: string, conn?: PresenceConnection): Promise<void> {
    try {
      const r = await this.opts.store.presence.remove(this.opts.nodeId, tenantId, connId);
      if (!r.lastForUser) return;
      const userId = r.userId ?? conn?.userId;
      const sessionId = r.sessionId ?? conn?.sessionId;
      if (userId === undefined || sessionId === undefined) return;
      // Back here while the entry was being removed: nothing changed for the agents.
      if (this.hasLocal(tenantId, userId)) return;
      this.scheduleOffline({ tenantId, userId, sessionId, due: this.now() + this.opts.offlineGraceMs });
    } catch (err) {
      // The entry expires with this node's heartbeat gone for it, and the sweep reports the user.
      this.opts.logger.warn({ err, tenantId }, 'presence remove failed; the sweep removes it later');
    }
  }

  private scheduleOffline(p: PendingOffline): void {
    if (this.stopped) return;
    this.pending.set(userKey(p.tenantId, p.userId), p);
    this.armGrace(p.due);
  }

  /** One timer for every pending offline: it fires at the earliest due time. */
  private armGrace(due: number): void {
    if (this.stopped || due >= this.graceDue) return;
    if (this.graceTimer) clearTimeout(this.graceTimer);
    this.graceDue = due;
    this.graceTimer = setTimeout(
      () => {
        this.graceTimer = undefined;
        this.graceDue = Infinity;
        void this.flushPending(this.now()).then(() => {
          let next = Infinity;
          for (const p of this.pending.values()) next = Math.min(next, p.due);
          if (next !== Infinity) this.armGrace(next);
        });
      },
      Math.max(0, due - this.now()),
    );
    this.graceTimer.unref();
  }

  private async flushPending(upTo: number): Promise<void> {
    const due = [...this.pending.entries()].filter(([, p]) => p.due <= upTo);
    for (const [key, p] of due) {
      if (this.pending.get(key) !== p) continue;
      this.pending.delete(key);
      await this.offlineUnlessBack(p, 'grace');
    }
  }

  private async offlineUnlessBack(u: PresenceChange, cause: 'grace' | 'sweep'): Promise<void> {
    try {
      // Back on this node (a connect in flight) or on any other node: nothing to announce.
      if (this.hasLocal(u.tenantId, u.userId)) return;
      if (await this.opts.store.presence.isOnline(u.tenantId, u.userId)) return;
      await this.publish(u.tenantId, u.userId, u.sessionId, 'offline', cause);
    } catch (err) {
      this.opts.logger.warn({ err, tenantId: u.tenantId }, 'presence offline check failed');
    }
  }

  private hasLocal(tenantId: string, userId: string): boolean {
    return this.perUser.has(userKey(tenantId, userId));
  }

  private async publish(tenantId: string, userId: string, sessionId: string, status: 'online' | 'offline', cause: string): Promise<void> {
    try {
      await this.opts.store.events.publishPresence(tenantId, { userId, sessionId, status, at: new Date(this.now()).toISOString() });
      presenceEvents.inc({ status, cause });
    } catch (err) {
      this.opts.logger.warn({ err, tenantId, status }, 'presence event could not be published');
    }
  }
}

const connKey = (tenantId: string, connId: string) => `${tenantId}\u0000${connId}`;
