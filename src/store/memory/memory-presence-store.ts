// Presence in process, with the Redis adapter's data model and semantics: one entry per connection
// with an expiry, a set per user, an index per node, and online_users changed on a user's first and
// last connection. Several node ids may share one instance (tests; a single process has one).
import type { OnlineUser, PresenceChange, PresenceConnection, PresenceStore } from '../ports.js';

const onlineUser = (c: PresenceConnection): OnlineUser => ({
  userId: c.userId,
  sessionId: c.sessionId,
  connectedAt: c.connectedAt,
  domain: c.domain,
  origin: c.origin,
  url: c.url,
});

interface Conn {
  readonly nodeId: string;
  readonly conn: PresenceConnection;
  expiry: number;
}

interface Tenant {
  readonly conns: Map<string, Conn>;
  readonly users: Map<string, Set<string>>;
  readonly online: Map<string, OnlineUser>;
}

export class MemoryPresenceStore implements PresenceStore {
  private readonly tenants = new Map<string, Tenant>();
  private readonly nodeExpiry = new Map<string, number>();

  constructor(private readonly now: () => number = Date.now) {}

  private tenant(tenantId: string): Tenant {
    let t = this.tenants.get(tenantId);
    if (!t) this.tenants.set(tenantId, (t = { conns: new Map(), users: new Map(), online: new Map() }));
    return t;
  }

  private removeConn(t: Tenant, connId: string): { conn: PresenceConnection; last: boolean } | null {
    const c = t.conns.get(connId);
    if (!c) return null;
    t.conns.delete(connId);
    const set = t.users.get(c.conn.userId);
    set?.delete(connId);
    const last = !set || set.size === 0;
    if (last) {
      t.users.delete(c.conn.userId);
      t.online.delete(c.conn.userId);
    } else {
      // The user stays online: if online_users described this connection, describe a live one.
      const cur = t.online.get(c.conn.userId);
      const other = t.conns.get(set.values().next().value as string)?.conn;
      if (cur && other && cur.sessionId === c.conn.sessionId && cur.connectedAt === c.conn.connectedAt) {
        t.online.set(c.conn.userId, onlineUser(other));
      }
    }
    return { conn: c.conn, last };
  }

  /** Erasure: ids of this tenant's connections of `sessions`. */
  connectionsOfSessions(tenantId: string, sessions: ReadonlySet<string>): string[] {
    const t = this.tenants.get(tenantId);
    return t ? [...t.conns].filter(([, c]) => sessions.has(c.conn.sessionId)).map(([id]) => id) : [];
  }

  private forgetIfEmpty(tenantId: string, t: Tenant): void {
    if (t.conns.size === 0 && t.online.size === 0) this.tenants.delete(tenantId);
  }

  /** Same as the Redis script's ensureConn: true when online_users got its entry. */
  private ensure(nodeId: string, c: PresenceConnection, expiry: number): boolean {
    const t = this.tenant(c.tenantId);
    const prev = t.conns.get(c.connId);
    if (prev && prev.conn.userId !== c.userId) this.removeConn(t, c.connId);
    t.conns.set(c.connId, { nodeId, conn: c, expiry });
    let set = t.users.get(c.userId);
    if (!set) t.users.set(c.userId, (set = new Set()));
    set.add(c.connId);
    if (t.online.has(c.userId)) return false;
    t.online.set(c.userId, onlineUser(c));
    return true;
  }

  async add(nodeId: string, conn: PresenceConnection, ttlMs: number): Promise<{ firstForUser: boolean }> {
    const expiry = this.now() + ttlMs;
    this.nodeExpiry.set(nodeId, expiry);
    return { firstForUser: this.ensure(nodeId, conn, expiry) };
  }

  async remove(nodeId: string, tenantId: string, connId: string): Promise<{ lastForUser: boolean } & Partial<PresenceChange>> {
    void nodeId;
    const t = this.tenants.get(tenantId);
    const r = t ? this.removeConn(t, connId) : null;
    if (t) this.forgetIfEmpty(tenantId, t);
    if (!r) return { lastForUser: false };
    return { lastForUser: r.last, tenantId, userId: r.conn.userId, sessionId: r.conn.sessionId };
  }

  async heartbeat(nodeId: string, conns: readonly PresenceConnection[], ttlMs: number): Promise<PresenceChange[]> {
    const expiry = this.now() + ttlMs;
    this.nodeExpiry.set(nodeId, expiry);
    const changes: PresenceChange[] = [];
    for (const c of conns) {
      if (this.ensure(nodeId, c, expiry)) changes.push({ tenantId: c.tenantId, userId: c.userId, sessionId: c.sessionId });
    }
    return changes;
  }

  async sweep(nowMs: number): Promise<PresenceChange[]> {
    for (const [n, e] of this.nodeExpiry) if (e <= nowMs) this.nodeExpiry.delete(n);
    return this.removeWhere((c) => c.expiry <= nowMs);
  }

  async removeNode(nodeId: string): Promise<PresenceChange[]> {
    this.nodeExpiry.delete(nodeId);
    return this.removeWhere((c) => c.nodeId === nodeId);
  }

  private removeWhere(pred: (c: Conn) => boolean): PresenceChange[] {
    const changes: PresenceChange[] = [];
    for (const [tenantId, t] of this.tenants) {
      for (const [connId, c] of t.conns) {
        if (!pred(c)) continue;
        const r = this.removeConn(t, connId);
        if (r?.last) changes.push({ tenantId, userId: r.conn.userId, sessionId: r.conn.sessionId });
      }
      this.forgetIfEmpty(tenantId, t);
    }
    return changes;
  }

  async list(tenantId: string): Promise<OnlineUser[]> {
    const users = [...(this.tenants.get(tenantId)?.online.values() ?? [])];
    return users.sort((a, b) => (a.connectedAt < b.connectedAt ? -1 : a.connectedAt > b.connectedAt ? 1 : 0));
  }

  async isOnline(tenantId: string, userId: string): Promise<boolean> {
    return this.tenants.get(tenantId)?.online.has(userId) ?? false;
  }

  async onlineAmong(tenantId: string, userIds: readonly string[]): Promise<ReadonlySet<string>> {
    const online = this.tenants.get(tenantId)?.online;
    return new Set(online ? userIds.filter((u) => online.has(u)) : []);
  }

  async nodes(nowMs: number): Promise<{ nodeId: string; expiresAt: number }[]> {
    return [...this.nodeExpiry].filter(([, e]) => e > nowMs).map(([nodeId, expiresAt]) => ({ nodeId, expiresAt }));
  }
}
