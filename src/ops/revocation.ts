// Revoking one agent (or user) of a tenant: `chatd token revoke --tenant T --user U`
// records the revocation instant in the database (PostgreSQL or the embedded PGlite: table
// `revocations`, committed before the revoke is acknowledged), then stores it where every node reads
// it (Redis `t:{tid}:revoked:{userId}`, or the embedded store through the running server's admin
// listener) and publishes the `revoke` tenant event, on which every ws node closes that agent's
// sockets. Every token of that subject issued before the instant is then refused with
// token_revoked, at CONNECT and on HTTP.
//
// The database is the record, the store the fast shared read path: the store is restored from the
// database wherever it can have lost it (restoreRevocations, through Store.keepRestored): at the
// start of every process that serves api or ws (an in-process store starts empty; a Redis may have
// lost its data while no process watched), and when the data epoch shows Redis came back without
// its data. Both keep the later instant (only moves forward), so a restore never moves one back.
// Erasing a user or a tenant's conversations keeps its revocations (src/chat/erase.ts).
//
// `iat` has one-second resolution: a token minted in the same second as the revocation is refused
// too (the safe side); mint the replacement a second later.
import type { Principal } from '../auth/jwt.js';
import type { RevocationLog } from '../db/ports.js';
import { revocationsRestored } from '../observability/metrics.js';
import type { Bus, RevocationStore } from '../store/ports.js';

/** How long a node trusts its last answer about a subject: a revoke reaches every node within it. */
export const REVOCATION_CACHE_MS = 1000;
const CACHE_MAX = 10_000;

/**
 * The TokenService's `isRevoked` hook over the shared revocation store, with a short per-node cache
 * (a busy agent's every request would otherwise be one more Redis GET). A store fault fails the
 * check closed: the request gets the store's DependencyError (503), never a revoked token let in.
 */
export function createRevocationCheck(store: RevocationStore, now: () => number = Date.now) {
  const cache = new Map<string, { revokedAt: number | null; until: number }>();
  const check = async (p: Pick<Principal, 'tenantId' | 'subject' | 'issuedAt'>): Promise<boolean> => {
    if (!p.subject) return false;
    const key = `${p.tenantId}\n${p.subject}`;
    const t = now();
    let hit = cache.get(key);
    if (!hit || hit.until <= t) {
      hit = { revokedAt: await store.revokedAt(p.tenantId, p.subject), until: t + REVOCATION_CACHE_MS };
      if (cache.size >= CACHE_MAX) cache.delete(cache.keys().next().value!);
      cache.set(key, hit);
    }
    return hit.revokedAt !== null && p.issuedAt * 1000 < hit.revokedAt;
  };
  /** Forgets this node's cached answer (the revoking node applies its own revoke at once). */
  const forget = (tenantId: string, userId: string) => void cache.delete(`${tenantId}\n${userId}`);
  return { isRevoked: check, forget };
}

/**
 * Revokes `userId`'s tokens issued before now, and closes its sockets on every node. The database
 * first: a revoke is acknowledged only once it is committed there, so it survives whatever the store
 * loses. A store failure after that fails the call (the caller retries; the record only moves
 * forward) and the next restore writes it anyway.
 */
export async function revokeSubject(
  deps: { readonly log: RevocationLog; readonly revocations: RevocationStore; readonly bus: Pick<Bus, 'publish'> },
  tenantId: string,
  userId: string,
  atMs: number = Date.now(),
): Promise<{ tenantId: string; userId: string; revokedAt: string }> {
  await deps.log.record(tenantId, userId, atMs);
  await deps.revocations.revoke(tenantId, userId, atMs);
  await deps.bus.publish(tenantId, { type: 'revoke', userId });
  return { tenantId, userId, revokedAt: new Date(atMs).toISOString() };
}

const RESTORE_PAGE = 500;

/**
 * Writes every revocation the database records into the store (each only moves forward there, so
 * running it again, or beside new revokes, changes nothing it should not). Resolves with how many.
 */
export async function restoreRevocations(log: Pick<RevocationLog, 'list'>, store: Pick<RevocationStore, 'revoke'>): Promise<number> {
  let n = 0;
  let after: { tenantId: string; userId: string } | undefined;
  for (;;) {
    const page = await log.list(after, RESTORE_PAGE);
    // One page at once: the Redis client sends them in one write (auto-pipelining).
    await Promise.all(page.map((r) => store.revoke(r.tenantId, r.userId, r.atMs)));
    n += page.length;
    revocationsRestored.inc(page.length);
    if (page.length < RESTORE_PAGE) return n;
    const last = page[page.length - 1]!;
    after = { tenantId: last.tenantId, userId: last.userId };
  }
}
