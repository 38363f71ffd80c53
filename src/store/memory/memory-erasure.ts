// Erasure and revocation in process, with the Redis adapter's semantics. Scheduled
// webhook retries of the embedded default live in the webhook dispatcher's own in-process queue and
// are not reached from here (counted as 0).
import type { ErasureStore, RevocationStore, StoreErasure } from '../ports.js';
import type { MemoryPresenceStore } from './memory-presence-store.js';
import type { MemorySessionStore } from './memory-session-store.js';
import type { MemoryWebhookStream } from './memory-webhook-stream.js';

export class MemoryErasureStore implements ErasureStore {
  constructor(
    private readonly sessions: MemorySessionStore,
    private readonly presence: MemoryPresenceStore,
    private readonly webhooks: MemoryWebhookStream,
  ) {}

  async eraseSessions(tenantId: string, sessionIds: readonly string[], opts: { dryRun: boolean }): Promise<StoreErasure> {
    const wanted = new Set(sessionIds);
    const { records, bindings } = this.sessions.eraseSessions(tenantId, wanted, opts.dryRun);
    const conns = this.presence.connectionsOfSessions(tenantId, wanted);
    if (!opts.dryRun) for (const connId of conns) await this.presence.remove('', tenantId, connId);
    const jobs = this.webhooks.deleteWhere((j) => j.tenantId === tenantId && wanted.has(j.sessionId), opts.dryRun);
    return { sessionRecords: records, tokenBindings: bindings, presenceEntries: conns.length, webhookJobs: jobs, webhookRetries: 0 };
  }
}

export class MemoryRevocationStore implements RevocationStore {
  private readonly revoked = new Map<string, number>();

  async revoke(tenantId: string, userId: string, atMs: number): Promise<void> {
    const key = `${tenantId}\n${userId}`;
    if (!((this.revoked.get(key) ?? -Infinity) >= atMs)) this.revoked.set(key, Math.floor(atMs));
  }

  async revokedAt(tenantId: string, userId: string): Promise<number | null> {
    return this.revoked.get(`${tenantId}\n${userId}`) ?? null;
  }
}
