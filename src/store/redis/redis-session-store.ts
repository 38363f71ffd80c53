// Sessions and token bindings in Redis: `session:{sessionId}` (the guide's record) and
// `t:{tid}:bind:{jti}`, each written by one script so concurrent nodes cannot race.
import type { SessionRecord, SessionStore, SessionUpsert } from '../ports.js';
import { guard, type ScriptedRedis } from './connection.js';
import type { RedisKeys } from './keys.js';

export class RedisSessionStore implements SessionStore {
  constructor(
    private readonly redis: ScriptedRedis,
    private readonly keys: RedisKeys,
  ) {}

  upsert(sessionId: string, rec: { tenantId: string; userId: string; fingerprint: string }, ttlSeconds: number): Promise<SessionUpsert> {
    const now = new Date().toISOString();
    const record: SessionRecord = {
      userId: rec.userId,
      fingerprint: rec.fingerprint,
      tenantId: rec.tenantId,
      createdAt: now,
      lastActivity: now,
    };
    return guard('session upsert', async () => {
      const r = await this.redis.chatdSessionUpsert(
        this.keys.session(sessionId),
        rec.tenantId,
        now,
        Math.max(1, Math.ceil(ttlSeconds)),
        JSON.stringify(record),
      );
      return String(r) as SessionUpsert;
    });
  }

  get(sessionId: string): Promise<SessionRecord | null> {
    return guard('session get', async () => {
      const raw = await this.redis.get(this.keys.session(sessionId));
      if (raw === null) return null;
      try {
        return JSON.parse(raw) as SessionRecord;
      } catch {
        return null;
      }
    });
  }

  delete(sessionId: string): Promise<void> {
    return guard('session delete', async () => {
      await this.redis.del(this.keys.session(sessionId));
    });
  }

  bind(tenantId: string, jti: string, sessionId: string, ttlSeconds: number): Promise<string> {
    return guard('bind', async () => {
      const r = await this.redis.chatdBind(this.keys.binding(tenantId, jti), sessionId, Math.max(1, Math.ceil(ttlSeconds)));
      // The binding may expire between SET NX and GET only if the TTL ran out in that instant.
      return r === null ? sessionId : String(r);
    });
  }

  getBinding(tenantId: string, jti: string): Promise<string | null> {
    return guard('get binding', () => this.redis.get(this.keys.binding(tenantId, jti)));
  }
}
