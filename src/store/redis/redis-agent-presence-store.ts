// Agent presence in Redis: the visitors' model (one entry per connection with an expiry, an agent
// online from its first connection to its last, each change one Lua script) in keys of its own,
// never in online_users. Every script touches only the tenant's keys, which share the hash tag
// `{online_users:T}` (one Redis Cluster slot); the global `agents:tenants` set, which tells a sweep
// which tenants to visit, is written beside the scripts with single-key commands.
import type { AgentConnection, AgentPresenceChange, AgentPresenceStore, OnlineAgent } from '../ports.js';
import { guard, type ScriptedRedis } from './connection.js';
import type { RedisKeys } from './keys.js';

/** Connections per heartbeat script call: keeps each script short. */
const CHUNK = 500;

const connJson = (nodeId: string, c: AgentConnection) => JSON.stringify({ nodeId, agentId: c.agentId, connectedAt: c.connectedAt });
const onlineJson = (c: AgentConnection) => JSON.stringify({ connectedAt: c.connectedAt });

export class RedisAgentPresenceStore implements AgentPresenceStore {
  constructor(
    private readonly redis: ScriptedRedis,
    private readonly keys: RedisKeys,
  ) {}

  private tenantKeys(tenantId: string): string[] {
    const k = this.keys;
    return [k.agentsExpiry(tenantId), k.agentsConns(tenantId), k.agentsOnline(tenantId), k.agentsBase(tenantId)];
  }

  add(nodeId: string, conn: AgentConnection, ttlMs: number): Promise<{ firstForAgent: boolean }> {
    const expiry = Date.now() + ttlMs;
    return guard('agent presence add', async () => {
      // The tenant is listed first, so a concurrent sweep can only forget it before this add.
      await this.redis.zadd(this.keys.agentTenants, 'GT', expiry, conn.tenantId);
      const r = await this.redis.chatdAgentAdd(
        ...this.tenantKeys(conn.tenantId),
        conn.connId,
        conn.agentId,
        expiry,
        connJson(nodeId, conn),
        onlineJson(conn),
      );
      return { firstForAgent: Number(r) === 1 };
    });
  }

  remove(_nodeId: string, tenantId: string, connId: string): Promise<{ lastForAgent: boolean; agentId?: string }> {
    return guard('agent presence remove', async () => {
      const r = (await this.redis.chatdAgentRemove(...this.tenantKeys(tenantId), connId)) as [number, string] | [];
      if (r.length === 0) return { lastForAgent: false };
      return { lastForAgent: Number(r[0]) === 1, agentId: String(r[1]) };
    });
  }

  heartbeat(nodeId: string, conns: readonly AgentConnection[], ttlMs: number): Promise<AgentPresenceChange[]> {
    const expiry = Date.now() + ttlMs;
    const byTenant = new Map<string, AgentConnection[]>();
    for (const c of conns) {
      let list = byTenant.get(c.tenantId);
      if (!list) byTenant.set(c.tenantId, (list = []));
      list.push(c);
    }
    if (byTenant.size === 0) return Promise.resolve([]);
    return guard('agent presence heartbeat', async () => {
      // Tenants listed first (as in add), then one script per chunk. Separate commands, not one
      // pipeline: on Redis Cluster a pipeline cannot span slots (each tenant has its own); with
      // auto-pipelining they still leave in one write per connection.
      await Promise.all([...byTenant.keys()].map((tenantId) => this.redis.zadd(this.keys.agentTenants, 'GT', expiry, tenantId)));
      const calls: Promise<{ tenantId: string; res: unknown }>[] = [];
      for (const [tenantId, list] of byTenant) {
        for (let i = 0; i < list.length; i += CHUNK) {
          const args: (string | number)[] = [...this.tenantKeys(tenantId), expiry];
          for (const c of list.slice(i, i + CHUNK)) args.push(c.connId, c.agentId, connJson(nodeId, c), onlineJson(c));
          calls.push(this.redis.chatdAgentHeartbeat(...args).then((res) => ({ tenantId, res })));
        }
      }
      const back: AgentPresenceChange[] = [];
      for (const { tenantId, res } of await Promise.all(calls)) {
        for (const agentId of res as string[]) back.push({ tenantId, agentId: String(agentId) });
      }
      return back;
    });
  }

  /** Visits every tenant with agents: a few per deployment, one short script each. */
  sweep(nowMs: number): Promise<AgentPresenceChange[]> {
    return guard('agent presence sweep', async () => {
      const gone: AgentPresenceChange[] = [];
      for (const tenantId of await this.redis.zrange(this.keys.agentTenants, 0, -1)) {
        const r = (await this.redis.chatdAgentSweep(...this.tenantKeys(tenantId), nowMs)) as [number, ...string[]];
        for (const agentId of r.slice(1)) gone.push({ tenantId, agentId: String(agentId) });
        if (Number(r[0]) === 0) await this.redis.chatdAgentForgetTenant(this.keys.agentTenants, tenantId, nowMs);
      }
      return gone;
    });
  }

  removeNode(nodeId: string): Promise<AgentPresenceChange[]> {
    return guard('agent presence removeNode', async () => {
      const gone: AgentPresenceChange[] = [];
      for (const tenantId of await this.redis.zrange(this.keys.agentTenants, 0, -1)) {
        const r = (await this.redis.chatdAgentRemoveNode(...this.tenantKeys(tenantId), nodeId)) as [number, ...string[]];
        for (const agentId of r.slice(1)) gone.push({ tenantId, agentId: String(agentId) });
      }
      return gone;
    });
  }

  online(tenantId: string): Promise<OnlineAgent[]> {
    return guard('agent presence online', async () => {
      const all = await this.redis.hgetall(this.keys.agentsOnline(tenantId));
      const agents: OnlineAgent[] = [];
      for (const [agentId, raw] of Object.entries(all)) {
        let connectedAt = '';
        try {
          connectedAt = String((JSON.parse(raw) as { connectedAt?: unknown }).connectedAt ?? '');
        } catch {
          // Not written by chatd: the agent is still listed, without a time.
        }
        agents.push({ agentId, connectedAt });
      }
      return agents.sort((a, b) => (a.agentId < b.agentId ? -1 : a.agentId > b.agentId ? 1 : 0));
    });
  }

  count(tenantId: string): Promise<number> {
    return guard('agent presence count', () => this.redis.hlen(this.keys.agentsOnline(tenantId)));
  }
}
