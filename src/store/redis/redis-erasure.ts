// Erasure and revocation in Redis. Erasure is an operator's rare, explicit act, so it may
// scan: the tenant's token bindings (SCAN `t:{tid}:bind:*`), its presence connections (one hash),
// the webhook jobs stream (XRANGE in pages) and the retry set (ZSCAN). Everything is matched on the
// tenant id AND the session id, so another tenant's data is never touched. On a cluster the SCAN
// runs on every master and keys are read and deleted one by one (they live in different slots).
import { Cluster } from 'ioredis';
import type { ErasureStore, RevocationStore, StoreErasure } from '../ports.js';
import { guard, type ScriptedRedis } from './connection.js';
import type { RedisKeys } from './keys.js';
import type { RedisPresenceStore } from './redis-presence-store.js';

const PAGE = 1000;

export class RedisErasureStore implements ErasureStore {
  constructor(
    private readonly redis: ScriptedRedis,
    private readonly keys: RedisKeys,
    private readonly presence: RedisPresenceStore,
  ) {}

  eraseSessions(tenantId: string, sessionIds: readonly string[], opts: { dryRun: boolean }): Promise<StoreErasure> {
    const wanted = new Set(sessionIds);
    return guard('erase', async () => {
      if (wanted.size === 0) return { sessionRecords: 0, tokenBindings: 0, presenceEntries: 0, webhookJobs: 0, webhookRetries: 0 };
      // session: records, only when they belong to this tenant.
      const records: string[] = [];
      for (const sid of wanted) {
        const raw = await this.redis.get(this.keys.session(sid));
        if (raw !== null && tenantOf(raw) === tenantId) records.push(this.keys.session(sid));
      }
      // Token bindings of this tenant whose value is an erased session.
      const bindings: string[] = [];
      const pattern = `${escapeGlob(this.keys.binding(tenantId, ''))}*`;
      const scanned = this.redis instanceof Cluster ? this.redis.nodes('master') : [this.redis];
      for (const node of scanned) {
        let cursor = '0';
        do {
          const [next, found] = await node.scan(cursor, 'MATCH', pattern, 'COUNT', PAGE);
          cursor = next;
          const values = await Promise.all(found.map((k) => this.redis.get(k)));
          found.forEach((k, i) => values[i] !== null && wanted.has(values[i]!) && bindings.push(k));
        } while (cursor !== '0');
      }
      // Presence connections of the erased sessions.
      const conns: string[] = [];
      const all = await this.redis.hgetall(this.keys.presenceConns(tenantId));
      for (const [connId, json] of Object.entries(all)) {
        const c = parse<{ sessionId?: string }>(json);
        if (c?.sessionId && wanted.has(c.sessionId)) conns.push(connId);
      }
      // Webhook jobs (stream entries) and scheduled retries about the erased sessions.
      const jobs: string[] = [];
      let start = '-';
      for (;;) {
        const page = await this.redis.xrange(this.keys.webhookJobs, start, '+', 'COUNT', PAGE);
        for (const [id, fields] of page) {
          const f = pairs(fields);
          if (f.tenantId === tenantId && f.sessionId !== undefined && wanted.has(f.sessionId)) jobs.push(id);
        }
        if (page.length < PAGE) break;
        start = `(${page[page.length - 1]![0]}`;
      }
      const retries: string[] = [];
      let zc = '0';
      do {
        const [next, flat] = await this.redis.zscan(this.keys.webhookRetry, zc, 'COUNT', PAGE);
        zc = next;
        for (let i = 0; i < flat.length; i += 2) {
          const item = parse<{ tenantId?: string; sessionId?: string }>(flat[i]!);
          if (item?.tenantId === tenantId && item.sessionId !== undefined && wanted.has(item.sessionId)) retries.push(flat[i]!);
        }
      } while (zc !== '0');

      if (!opts.dryRun) {
        // One DEL per key: on a cluster the keys are in different slots.
        await Promise.all([...records, ...bindings].map((k) => this.redis.del(k)));
        // Through the presence script: online_users and the per-user/per-node sets stay exact.
        for (const connId of conns) await this.presence.remove('', tenantId, connId);
        for (let i = 0; i < jobs.length; i += PAGE) await this.redis.xdel(this.keys.webhookJobs, ...jobs.slice(i, i + PAGE));
        for (let i = 0; i < retries.length; i += PAGE) await this.redis.zrem(this.keys.webhookRetry, ...retries.slice(i, i + PAGE));
      }
      return {
        sessionRecords: records.length,
        tokenBindings: bindings.length,
        presenceEntries: conns.length,
        webhookJobs: jobs.length,
        webhookRetries: retries.length,
      };
    });
  }
}

export class RedisRevocationStore implements RevocationStore {
  constructor(
    private readonly redis: ScriptedRedis,
    private readonly keys: RedisKeys,
  ) {}

  revoke(tenantId: string, userId: string, atMs: number): Promise<void> {
    return guard('revoke', async () => {
      // Only ever moves forward, atomically: a later revocation wins, an earlier one cannot un-revoke.
      await this.redis.chatdRevoke(this.keys.revoked(tenantId, userId), Math.floor(atMs));
    });
  }

  revokedAt(tenantId: string, userId: string): Promise<number | null> {
    return guard('revoked at', async () => {
      const raw = await this.redis.get(this.keys.revoked(tenantId, userId));
      const n = raw === null ? NaN : Number(raw);
      return Number.isFinite(n) ? n : null;
    });
  }
}

const tenantOf = (json: string) => parse<{ tenantId?: string }>(json)?.tenantId;

function parse<T>(json: string): T | undefined {
  try {
    return JSON.parse(json) as T;
  } catch {
    return undefined;
  }
}

function pairs(fields: string[]): Record<string, string> {
  const out: Record<string, string> = {};
  for (let i = 0; i + 1 < fields.length; i += 2) out[fields[i]!] = fields[i + 1]!;
  return out;
}

const escapeGlob = (s: string) => s.replace(/[*?[\]\\]/g, '\\$&');
