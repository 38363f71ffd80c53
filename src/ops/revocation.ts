// Revoking one agent (or user) of a tenant: `chatd token revoke --tenant T --user U`
// stores the revocation instant where every node reads it (Redis `t:{tid}:revoked:{userId}`, or the
// embedded store through the running server's admin listener) and publishes the `revoke` tenant
// event, on which every ws node closes that agent's sockets. Every token of that subject issued
// before the instant is then refused with token_revoked, at CONNECT and on HTTP.
//
// `iat` has one-second resolution: a token minted in the same second as the revocation is refused
// too (the safe side); mint the replacement a second later.
import type { Principal } from '../auth/jwt.js';
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

/** Revokes `userId`'s tokens issued before now, and closes its sockets on every node. */
export async function revokeSubject(
  deps: { readonly revocations: RevocationStore; readonly bus: Pick<Bus, 'publish'> },
  tenantId: string,
  userId: string,
  atMs: number = Date.now(),
): Promise<{ tenantId: string; userId: string; revokedAt: string }> {
  await deps.revocations.revoke(tenantId, userId, atMs);
  await deps.bus.publish(tenantId, { type: 'revoke', userId });
  return { tenantId, userId, revokedAt: new Date(atMs).toISOString() };
}
