// Presence in Redis (DESIGN.md "Presence"): one entry per connection, never a counter. Per tenant:
// a sorted set of connection ids scored by expiry, a hash of connection data, a set per user and a
// set per node; `online_users:{tenantId}` gets its HSET on a user's first connection and its HDEL on
// the last, inside the same script, so it stays exact across tabs and nodes. Heartbeats re-assert
// every live connection (repairing a FLUSHALL or restart); sweep removes what a silent node left.
//
// In the cluster layout a tenant's presence keys share one slot with `online_users:{tenantId}`, and
// the global indexes — `presence:tenants` (tenant → earliest expiry, what sweep visits),
// `presence:nodes`, and `presence:node_tenants:{nodeId}` (what removeNode visits) — are written
// after each script from what it reports. The tenant index is kept at or below the tenant's true
// earliest expiry (ZADD LT), so a sweep may visit a tenant early, never miss one: only a sweep or
// removeNode raises or removes an entry, and it re-reads the tenant's earliest expiry afterwards so
// a connection added meanwhile is indexed again.
import type { OnlineUser, PresenceChange, PresenceConnection, PresenceStore } from '../ports.js';
import type { Redis } from 'ioredis';
import { guard, type ScriptedRedis } from './connection.js';
import type { RedisKeys } from './keys.js';

type PresenceOp = 'Add' | 'Remove' | 'Heartbeat' | 'Sweep' | 'RemoveNode';

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
    const own = [k.presenceExpiry(tenantId), k.presenceConns(tenantId), k.onlineUsers(tenantId)];
    return k.cluster ? own : [...own, k.presenceTenants, k.presenceNodes];
  }

  /**
   * Runs a presence script of the store's layout; in the cluster layout, then writes the global
   * indexes: the tenant's entry lowered to its earliest expiry (or, after a sweep or node removal,
   * set to it), and for a live node its heartbeat and its tenant.
   */
  private async script(
    op: PresenceOp,
    tenantId: string,
    args: (string | number)[],
    alive?: { nodeId: string; expiry: number; ttlMs: number },
  ): Promise<unknown> {
    const k = this.keys;
    if (!k.cluster) return this.redis[`chatdPresence${op}`](...this.tenantKeys(tenantId), k.presenceBase(tenantId), tenantId, ...args);
    const [reply, earliest] = (await this.redis[`chatdClusterPresence${op}`](
      ...this.tenantKeys(tenantId),
      k.presenceBase(tenantId),
      tenantId,
      ...args,
    )) as [unknown, string | null];
    const writes: Promise<unknown>[] = [];
    if (op === 'Sweep' || op === 'RemoveNode') writes.push(this.reindexTenant(tenantId, earliest));
    else if (earliest !== null) writes.push(this.redis.zadd(k.presenceTenants, 'LT', earliest, tenantId));
    if (alive) {
      const nodeTenants = k.presenceNodeTenants(alive.nodeId);
      writes.push(
        this.redis.zadd(k.presenceNodes, 'GT', alive.expiry, alive.nodeId),
        this.redis.sadd(nodeTenants, tenantId),
        this.redis.pexpire(nodeTenants, Math.max(1, Math.round(alive.ttlMs * 2))),
      );
    }
    await Promise.all(writes);
    return reply;
  }

  /** Cluster: sets the tenant's index entry after a sweep, then re-lowers it to what a concurrent add may have written. */
  private async reindexTenant(tenantId: string, earliest: string | null): Promise<void> {
    const k = this.keys;
    if (earliest !== null) await this.redis.zadd(k.presenceTenants, earliest, tenantId);
    else await this.redis.zrem(k.presenceTenants, tenantId);
    const first = await this.redis.zrange(k.presenceExpiry(tenantId), 0, 0, 'WITHSCORES');
    if (first[1] !== undefined) await this.redis.zadd(k.presenceTenants, 'LT', first[1], tenantId);
  }

  add(nodeId: string, conn: PresenceConnection, ttlMs: number): Promise<{ firstForUser: boolean }> {
    const expiry = this.now() + ttlMs;
    return guard('presence add', async () => {
      const r = await this.script(
        'Add',
        conn.tenantId,
        [conn.connId, conn.userId, nodeId, expiry, connJson(nodeId, conn), onlineJson(conn)],
        { nodeId, expiry, ttlMs },
      );
      return { firstForUser: Number(r) === 1 };
    });
  }

  remove(nodeId: string, tenantId: string, connId: string): Promise<{ lastForUser: boolean } & Partial<PresenceChange>> {
    void nodeId; // connection ids are unique: the stored record knows its node
    return guard('presence remove', async () => {
      const r = (await this.script('Remove', tenantId, [connId])) as [number, string, string] | [];
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
    const chunks: { tenantId: string; args: (string | number)[] }[] = [];
    for (const [tenantId, list] of byTenant) {
      for (let i = 0; i < list.length; i += CHUNK) {
        const args: (string | number)[] = [nodeId, expiry];
        for (const c of list.slice(i, i + CHUNK)) {
          const e = this.encode(nodeId, c);
          args.push(c.connId, c.userId, e.conn, e.online);
        }
        chunks.push({ tenantId, args });
      }
    }
    const changesOf = (tenantId: string, flat: string[]) => {
      const out: PresenceChange[] = [];
      for (let j = 0; j < flat.length; j += 2) out.push({ tenantId, userId: String(flat[j]), sessionId: String(flat[j + 1]) });
      return out;
    };
    if (this.keys.cluster) {
      // Each tenant's script goes to its own shard (auto-pipelined per shard); a pipeline cannot span slots.
      return guard('presence heartbeat', async () => {
        const alive = { nodeId, expiry, ttlMs };
        const [, ...replies] = await Promise.all([
          this.redis.zadd(this.keys.presenceNodes, 'GT', expiry, nodeId),
          ...chunks.map((c) => this.script('Heartbeat', c.tenantId, c.args, alive)),
        ]);
        return replies.flatMap((flat, i) => changesOf(chunks[i]!.tenantId, flat as string[]));
      });
    }
    return guard('presence heartbeat', async () => {
      const pipe = (this.redis as Redis).pipeline();
      pipe.zadd(this.keys.presenceNodes, expiry, nodeId);
      for (const c of chunks) {
        // Queued on the pipeline; its result comes from exec() below.
        void (pipe as unknown as ScriptedRedis).chatdPresenceHeartbeat(
          ...this.tenantKeys(c.tenantId),
          this.keys.presenceBase(c.tenantId),
          c.tenantId,
          ...c.args,
        );
      }
      const results = await pipe.exec();
      const changes: PresenceChange[] = [];
      results?.forEach(([err, res], i) => {
        if (err) throw err;
        if (i === 0) return;
        changes.push(...changesOf(chunks[i - 1]!.tenantId, res as string[]));
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
          const r = (await this.script('Sweep', tenantId, [nowMs, CHUNK])) as [number, ...string[]];
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
      const k = this.keys;
      // Cluster: only the tenants this node had connections in; standalone: every tenant with connections.
      const tenants = k.cluster
        ? await this.redis.smembers(k.presenceNodeTenants(nodeId))
        : await this.redis.zrange(k.presenceTenants, 0, -1);
      for (const tenantId of tenants) {
        const r = (await this.script('RemoveNode', tenantId, [nodeId])) as [number, ...string[]];
        for (let j = 1; j < r.length; j += 2) changes.push({ tenantId, userId: String(r[j]), sessionId: String(r[j + 1]) });
      }
      await this.redis.zrem(k.presenceNodes, nodeId);
      if (k.cluster) await this.redis.del(k.presenceNodeTenants(nodeId));
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

  onlineAmong(tenantId: string, userIds: readonly string[]): Promise<ReadonlySet<string>> {
    if (userIds.length === 0) return Promise.resolve(new Set());
    return guard('presence onlineAmong', async () => {
      const values = await this.redis.hmget(this.keys.onlineUsers(tenantId), ...userIds);
      return new Set(userIds.filter((_, i) => values[i] !== null));
    });
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
