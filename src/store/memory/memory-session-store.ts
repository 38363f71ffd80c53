// Sessions and token bindings in process, with the Redis adapter's semantics (TTL, check-and-set).
import type { SessionRecord, SessionStore, SessionUpsert } from '../ports.js';

interface Expiring<T> {
  value: T;
  expiresAt: number;
}

export class MemorySessionStore implements SessionStore {
  private readonly sessions = new Map<string, Expiring<SessionRecord>>();
  private readonly bindings = new Map<string, Expiring<string>>();

  constructor(private readonly now: () => number = Date.now) {}

  private live<T>(map: Map<string, Expiring<T>>, key: string): T | null {
    const e = map.get(key);
    if (!e) return null;
    if (e.expiresAt <= this.now()) {
      map.delete(key);
      return null;
    }
    return e.value;
  }

  async upsert(
    sessionId: string,
    rec: { tenantId: string; userId: string; fingerprint: string },
    ttlSeconds: number,
  ): Promise<SessionUpsert> {
    const nowMs = this.now();
    const iso = new Date(nowMs).toISOString();
    const expiresAt = nowMs + Math.max(1, Math.ceil(ttlSeconds)) * 1000;
    const cur = this.live(this.sessions, sessionId);
    if (cur) {
      if (cur.tenantId !== rec.tenantId) return 'foreign';
      this.sessions.set(sessionId, { value: { ...cur, lastActivity: iso }, expiresAt });
      return 'refreshed';
    }
    const value: SessionRecord = {
      userId: rec.userId,
      fingerprint: rec.fingerprint,
      tenantId: rec.tenantId,
      createdAt: iso,
      lastActivity: iso,
    };
    this.sessions.set(sessionId, { value, expiresAt });
    return 'created';
  }

  async get(sessionId: string): Promise<SessionRecord | null> {
    return this.live(this.sessions, sessionId);
  }

  async delete(sessionId: string): Promise<void> {
    this.sessions.delete(sessionId);
  }

  async bind(tenantId: string, jti: string, sessionId: string, ttlSeconds: number): Promise<string> {
    const key = `${tenantId}\n${jti}`;
    const cur = this.live(this.bindings, key);
    if (cur !== null) return cur;
    this.bindings.set(key, { value: sessionId, expiresAt: this.now() + Math.max(1, Math.ceil(ttlSeconds)) * 1000 });
    return sessionId;
  }

  async getBinding(tenantId: string, jti: string): Promise<string | null> {
    return this.live(this.bindings, `${tenantId}\n${jti}`);
  }

  /** Erasure: this tenant's records and bindings of `sessions` (deleted unless `dryRun`); counts. */
  eraseSessions(tenantId: string, sessions: ReadonlySet<string>, dryRun: boolean): { records: number; bindings: number } {
    let records = 0;
    let bindings = 0;
    for (const sid of sessions) {
      const rec = this.live(this.sessions, sid);
      if (rec && rec.tenantId === tenantId) {
        records++;
        if (!dryRun) this.sessions.delete(sid);
      }
    }
    const prefix = `${tenantId}\n`;
    for (const [k, e] of this.bindings) {
      if (k.startsWith(prefix) && e.expiresAt > this.now() && sessions.has(e.value)) {
        bindings++;
        if (!dryRun) this.bindings.delete(k);
      }
    }
    return { records, bindings };
  }

  /** Drops expired records (called periodically: a Map has no TTL of its own). */
  purgeExpired(): void {
    const now = this.now();
    for (const [k, e] of this.sessions) if (e.expiresAt <= now) this.sessions.delete(k);
    for (const [k, e] of this.bindings) if (e.expiresAt <= now) this.bindings.delete(k);
  }
}
