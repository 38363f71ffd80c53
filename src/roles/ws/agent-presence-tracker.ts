// Agent presence of this node's agent sockets (DESIGN.md "Offline continuity"): what availability
// and auto-assignment read. The visitors' PresenceTracker's model in small: connect/disconnect per
// socket, one timer that re-asserts this node's connections (repairing a Redis restart or a wrong
// sweep) and sweeps what silent nodes left. Nothing here throws: a store failure is logged and
// repaired by the next heartbeat or sweep.
//
// `onChange(tenantId)` is called when the tenant's set of online agents may have changed: at once
// when an agent comes online, and for a departure only after `offlineGraceMs` if the agent did not
// come back (a console reload or a rolling deploy does not flip the widget to its away form).
import type { Logger } from 'pino';
import type { AgentConnection, AgentPresenceStore } from '../../store/ports.js';

export interface AgentPresenceTrackerOptions {
  readonly store: AgentPresenceStore;
  readonly nodeId: string;
  /** config presence.heartbeatMs. */
  readonly heartbeatMs: number;
  /** config presence.nodeTimeoutMs. */
  readonly nodeTimeoutMs: number;
  /** config presence.offlineGraceMs. */
  readonly offlineGraceMs: number;
  readonly logger: Logger;
  readonly onChange?: (tenantId: string) => void;
}

const key = (tenantId: string, connId: string) => `${tenantId}\u0000${connId}`;

export class AgentPresenceTracker {
  private readonly conns = new Map<string, AgentConnection>();
  private readonly graceTimers = new Set<NodeJS.Timeout>();
  private timer: NodeJS.Timeout | undefined;
  private ticking: Promise<void> | undefined;
  private draining = false;
  private stopped = false;

  constructor(private readonly opts: AgentPresenceTrackerOptions) {}

  start(): void {
    if (this.timer || this.stopped) return;
    this.timer = setInterval(() => void this.tick(), Math.max(1, this.opts.heartbeatMs));
    this.timer.unref();
  }

  get size(): number {
    return this.conns.size;
  }

  async connect(conn: AgentConnection): Promise<void> {
    if (this.stopped) return;
    const k = key(conn.tenantId, conn.connId);
    if (this.conns.has(k)) return;
    this.conns.set(k, conn);
    try {
      const { firstForAgent } = await this.opts.store.add(this.opts.nodeId, conn, this.opts.nodeTimeoutMs);
      if (!this.conns.has(k)) return void (await this.remove(conn.tenantId, conn.connId));
      if (firstForAgent) this.opts.onChange?.(conn.tenantId);
    } catch (err) {
      this.opts.logger.warn({ err, tenantId: conn.tenantId }, 'agent presence add failed; the next heartbeat re-asserts it');
    }
  }

  async disconnect(tenantId: string, connId: string): Promise<void> {
    if (!this.conns.delete(key(tenantId, connId))) return;
    // Draining: the entry is left to expire, so an agent reconnecting elsewhere never flaps.
    if (this.draining || this.stopped) return;
    await this.remove(tenantId, connId);
  }

  async drain(): Promise<void> {
    this.draining = true;
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
    await this.ticking;
  }

  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
    for (const t of this.graceTimers) clearTimeout(t);
    this.graceTimers.clear();
    await this.ticking;
  }

  /** One heartbeat and sweep now (the timer calls it; tests too). */
  tick(): Promise<void> {
    this.ticking ??= this.runTick().finally(() => (this.ticking = undefined));
    return this.ticking;
  }

  private async runTick(): Promise<void> {
    const { store } = this.opts;
    const changed = new Set<string>();
    if (!this.draining && !this.stopped) {
      try {
        for (const a of await store.heartbeat(this.opts.nodeId, [...this.conns.values()], this.opts.nodeTimeoutMs)) changed.add(a.tenantId);
      } catch (err) {
        this.opts.logger.warn({ err }, 'agent presence heartbeat failed');
      }
    }
    try {
      for (const a of await store.sweep(Date.now())) changed.add(a.tenantId);
    } catch (err) {
      this.opts.logger.warn({ err }, 'agent presence sweep failed');
    }
    for (const tenantId of changed) this.opts.onChange?.(tenantId);
  }

  private async remove(tenantId: string, connId: string): Promise<void> {
    try {
      const r = await this.opts.store.remove(this.opts.nodeId, tenantId, connId);
      if (!r.lastForAgent) return;
      const t = setTimeout(() => {
        this.graceTimers.delete(t);
        if (!this.stopped) this.opts.onChange?.(tenantId);
      }, this.opts.offlineGraceMs);
      t.unref();
      this.graceTimers.add(t);
    } catch (err) {
      this.opts.logger.warn({ err, tenantId }, 'agent presence remove failed; the sweep removes it later');
    }
  }
}
