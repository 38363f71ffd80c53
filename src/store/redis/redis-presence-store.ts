// Presence in Redis (DESIGN.md "Presence"): one entry per connection, never a counter. Per tenant:
// a sorted set of connection ids scored by expiry, a hash of connection data, a set per user and a
// set per node; `online_users:{tenantId}` gets its HSET on a user's first connection and its HDEL on
// the last, inside the same script, so it stays exact across tabs and nodes. Heartbeats re-assert
// every live connection (repairing a FLUSHALL or restart); sweep removes what a silent node left.
import type { OnlineUser, PresenceChange, PresenceConnection, PresenceStore } from '../ports.js';
import { guard, type ScriptedRedis } from './connection.js';
import type { RedisKeys } from './keys.js';

/** Connections per script call: keeps each script short so Redis never stalls on one heartbeat. */
const CHUNK = 500;

/** The stored connection data (`t:{tid}:presence:conn` values). */
export const connJson = (nodeId: string, c: PresenceConnection) =>
  JSON.stringify({
    nodeId,
    userId: c.userId,
    sessionId: c.sessionId,
    role: c.role,
    connectedAt: c.connectedAt,
    domain: c.domain,
    origin: c.origin,
    url: c.url,
  });

/** The guide's `online_users` value. */
export const onlineJson = (c: PresenceConnection) =>
  JSON.stringify({ sessionId: c.sessionId, connectedAt: c.connectedAt, domain: c.domain, origin: c.origin, url: c.url });

export class RedisPresenceStore implements PresenceStore {
  /** Serialised forms per connection object: a heartbeat re-sends the same connections every time. */
  private readonly encoded = new WeakMap<PresenceConnection, { nodeId: string; conn: string; online: string }>();

  constructor(
    private readonly redis: ScriptedRedis,
    private readonly keys: RedisKeys,
    private readonly now: () => number = Date.now,
  ) {}

  private encode(nodeId: string, c: PresenceConnection): { conn: string; online: string } {
    let e = this.encoded.get(c);
    if (!e || e.nodeId !== nodeId) this.encoded.set(c, (e = { nodeId, conn: connJson(nodeId, c), online: onlineJson(c) }));
    return e;
  }

  private tenantKeys(tenantId: string): string[] {
    const k = this.keys;
    return [k.presenceExpiry(tenantId), k.presenceConns(tenantId), k.onlineUsers(tenantId), k.presenceTenants, k.presenceNodes];
  }

  add(nodeId: string, conn: PresenceConnection, ttlMs: number): Promise<{ firstForUser: boolean }> {
    const expiry = this.now() + ttlMs;
    return guard('presence add', async () => {
      const r = await this.redis.chatdPresenceAdd(
        ...this.tenantKeys(conn.tenantId),
        this.keys.presenceBase(conn.tenantId),
        conn.tenantId,
        conn.connId,
        conn.userId,
        nodeId,
        expiry,
        connJson(nodeId, conn),
        onlineJson(conn),
      );
      return { firstForUser: Number(r) === 1 };
    });
  }

  remove(nodeId: string, tenantId: string, connId: string): Promise<{ lastForUser: boolean } & Partial<PresenceChange>> {
    void nodeId; // connection ids are unique: the stored record knows its node
    return guard('presence remove', async () => {
      const r = (await this.redis.chatdPresenceRemove(...this.tenantKeys(tenantId), this.keys.presenceBase(tenantId), tenantId, connId)) as
        [number, string, string] | [];
      if (r.length === 0) return { lastForUser: false };
      return { lastForUser: Number(r[0]) === 1, tenantId, userId: String(r[1]), sessionId: String(r[2]) };
    });
  }

  heartbeat(nodeId: string, conns: readonly PresenceConnection[], ttlMs: number): Promise<PresenceChange[]> {
    const expiry = this.now() + ttlMs;
    const byTenant = new Map<string, PresenceConnection[]>();
    for (const c of conns) {
      let list = byTenant.get(c.tenantId);
      if (!list) byTenant.set(c.tenantId, (list = []));
      list.push(c);
    }
    return guard('presence heartbeat', async () => {
      const pipe = this.redis.pipeline();
      pipe.zadd(this.keys.presenceNodes, expiry, nodeId);
      const calls: string[] = [];
      for (const [tenantId, list] of byTenant) {
        for (let i = 0; i < list.length; i += CHUNK) {
          const args: (string | number)[] = [...this.tenantKeys(tenantId), this.keys.presenceBase(tenantId), tenantId, nodeId, expiry];
          for (const c of list.slice(i, i + CHUNK)) {
            const e = this.encode(nodeId, c);
            args.push(c.connId, c.userId, e.conn, e.online);
          }
          // Queued on the pipeline; its result comes from exec() below.
          void (pipe as unknown as ScriptedRedis).chatdPresenceHeartbeat(...args);
          calls.push(tenantId);
        }
      }
      const results = await pipe.exec();
      const changes: PresenceChange[] = [];
      results?.forEach(([err, res], i) => {
        if (err) throw err;
        if (i === 0) return;
        const tenantId = calls[i - 1]!;
        const flat = res as string[];
        for (let j = 0; j < flat.length; j += 2) changes.push({ tenantId, userId: String(flat[j]), sessionId: String(flat[j + 1]) });
      });
      return changes;
    });
  }

  sweep(nowMs: number): Promise<PresenceChange[]> {
    return guard('presence sweep', async () => {
      const changes: PresenceChange[] = [];
      await this.redis.zremrangebyscore(this.keys.presenceNodes, '-inf', nowMs);
      // Only tenants whose earliest connection expiry has passed.
      for (const tenantId of await this.redis.zrangebyscore(this.keys.presenceTenants, '-inf', nowMs)) {
        for (;;) {
          const r = (await this.redis.chatdPresenceSweep(
            ...this.tenantKeys(tenantId),
            this.keys.presenceBase(tenantId),
            tenantId,
            nowMs,
            CHUNK,
          )) as [number, ...string[]];
          for (let j = 1; j < r.length; j += 2) changes.push({ tenantId, userId: String(r[j]), sessionId: String(r[j + 1]) });
          if (Number(r[0]) < CHUNK) break;
        }
      }
      return changes;
    });
  }

  removeNode(nodeId: string): Promise<PresenceChange[]> {
    return guard('presence removeNode', async () => {
      const changes: PresenceChange[] = [];
      for (const tenantId of await this.redis.zrange(this.keys.presenceTenants, 0, -1)) {
        const r = (await this.redis.chatdPresenceRemoveNode(
          ...this.tenantKeys(tenantId),
          this.keys.presenceBase(tenantId),
          tenantId,
          nodeId,
        )) as [number, ...string[]];
        for (let j = 1; j < r.length; j += 2) changes.push({ tenantId, userId: String(r[j]), sessionId: String(r[j + 1]) });
      }
      await this.redis.zrem(this.keys.presenceNodes, nodeId);
      return changes;
    });
  }

  list(tenantId: string): Promise<OnlineUser[]> {
    return guard('presence list', async () => {
      const all = await this.redis.hgetall(this.keys.onlineUsers(tenantId));
      const users: OnlineUser[] = [];
      for (const [userId, raw] of Object.entries(all)) {
        try {
          const v = JSON.parse(raw) as Partial<OnlineUser>;
          users.push({
            userId,
            sessionId: String(v.sessionId ?? ''),
            connectedAt: String(v.connectedAt ?? ''),
            domain: String(v.domain ?? ''),
            origin: String(v.origin ?? ''),
            url: String(v.url ?? ''),
          });
        } catch {
          // A value written by something else than chatd: not a user we can describe.
        }
      }
      return users.sort((a, b) => (a.connectedAt < b.connectedAt ? -1 : a.connectedAt > b.connectedAt ? 1 : 0));
    });
  }

  isOnline(tenantId: string, userId: string): Promise<boolean> {
    return guard('presence isOnline', async () => (await this.redis.hexists(this.keys.onlineUsers(tenantId), userId)) === 1);
  }

  nodes(nowMs: number): Promise<{ nodeId: string; expiresAt: number }[]> {
    return guard('presence nodes', async () => {
      const flat = await this.redis.zrangebyscore(this.keys.presenceNodes, `(${nowMs}`, '+inf', 'WITHSCORES');
      const out: { nodeId: string; expiresAt: number }[] = [];
      for (let i = 0; i < flat.length; i += 2) out.push({ nodeId: flat[i]!, expiresAt: Number(flat[i + 1]) });
      return out;
    });
  }
}
