// Agent presence in process, with the Redis adapter's model and semantics: one entry per
// connection with an expiry and its node, an agent online from its first connection to its last.
// Several node ids may share one instance (tests; a single process has one).
import type { AgentConnection, AgentPresenceChange, AgentPresenceStore, OnlineAgent } from '../ports.js';

interface Conn {
  readonly nodeId: string;
  readonly conn: AgentConnection;
  expiry: number;
}

interface Tenant {
  readonly conns: Map<string, Conn>;
  /** agentId → its connection ids. */
  readonly agents: Map<string, Set<string>>;
  readonly online: Map<string, OnlineAgent>;
}

export class MemoryAgentPresenceStore implements AgentPresenceStore {
  private readonly tenants = new Map<string, Tenant>();

  private tenant(tenantId: string): Tenant {
    let t = this.tenants.get(tenantId);
    if (!t) this.tenants.set(tenantId, (t = { conns: new Map(), agents: new Map(), online: new Map() }));
    return t;
  }

  private removeConn(t: Tenant, connId: string): { agentId: string; last: boolean } | null {
    const c = t.conns.get(connId);
    if (!c) return null;
    t.conns.delete(connId);
    const { agentId } = c.conn;
    const set = t.agents.get(agentId);
    set?.delete(connId);
    const last = !set || set.size === 0;
    if (last) {
      t.agents.delete(agentId);
      t.online.delete(agentId);
    }
    return { agentId, last };
  }

  /** Asserts one connection; true when its agent came online through it. */
  private ensure(nodeId: string, c: AgentConnection, expiry: number): boolean {
    const t = this.tenant(c.tenantId);
    const prev = t.conns.get(c.connId);
    if (prev && prev.conn.agentId !== c.agentId) this.removeConn(t, c.connId);
    t.conns.set(c.connId, { nodeId, conn: c, expiry });
    let set = t.agents.get(c.agentId);
    if (!set) t.agents.set(c.agentId, (set = new Set()));
    set.add(c.connId);
    if (t.online.has(c.agentId)) return false;
    t.online.set(c.agentId, { agentId: c.agentId, connectedAt: c.connectedAt });
    return true;
  }

  private forgetIfEmpty(tenantId: string, t: Tenant): void {
    if (t.conns.size === 0) this.tenants.delete(tenantId);
  }

  async add(nodeId: string, conn: AgentConnection, ttlMs: number): Promise<{ firstForAgent: boolean }> {
    return { firstForAgent: this.ensure(nodeId, conn, Date.now() + ttlMs) };
  }

  async remove(_nodeId: string, tenantId: string, connId: string): Promise<{ lastForAgent: boolean; agentId?: string }> {
    const t = this.tenants.get(tenantId);
    const r = t ? this.removeConn(t, connId) : null;
    if (t) this.forgetIfEmpty(tenantId, t);
    return r ? { lastForAgent: r.last, agentId: r.agentId } : { lastForAgent: false };
  }

  async heartbeat(nodeId: string, conns: readonly AgentConnection[], ttlMs: number): Promise<AgentPresenceChange[]> {
    const expiry = Date.now() + ttlMs;
    const back: AgentPresenceChange[] = [];
    for (const c of conns) if (this.ensure(nodeId, c, expiry)) back.push({ tenantId: c.tenantId, agentId: c.agentId });
    return back;
  }

  async sweep(nowMs: number): Promise<AgentPresenceChange[]> {
    return this.removeWhere((c) => c.expiry <= nowMs);
  }

  async removeNode(nodeId: string): Promise<AgentPresenceChange[]> {
    return this.removeWhere((c) => c.nodeId === nodeId);
  }

  private removeWhere(pred: (c: Conn) => boolean): AgentPresenceChange[] {
    const gone: AgentPresenceChange[] = [];
    for (const [tenantId, t] of this.tenants) {
      for (const [connId, c] of t.conns) {
        if (!pred(c)) continue;
        const r = this.removeConn(t, connId);
        if (r?.last) gone.push({ tenantId, agentId: r.agentId });
      }
      this.forgetIfEmpty(tenantId, t);
    }
    return gone;
  }

  async online(tenantId: string): Promise<OnlineAgent[]> {
    const agents = [...(this.tenants.get(tenantId)?.online.values() ?? [])];
    return agents.sort((a, b) => (a.agentId < b.agentId ? -1 : a.agentId > b.agentId ? 1 : 0));
  }

  async count(tenantId: string): Promise<number> {
    return this.tenants.get(tenantId)?.online.size ?? 0;
  }
}
