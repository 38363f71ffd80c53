// Which session a credential may act on (DESIGN.md "Session binding"): a token with `sid` acts on
// that session only; a token bound earlier (the stored binding) on its bound session only; an
// unbound token takes a new session, or an existing one whose fingerprint (or, for a verified user,
// userId) it proves, and the binding is stored. Agents act on any conversation of their tenant.
// Used by every chat operation, whichever door it came through.
import { createHash, timingSafeEqual } from 'node:crypto';
import type { Identity } from '../auth/identity.js';
import type { Principal } from '../auth/jwt.js';
import { remainingSeconds } from '../auth/jwt.js';
import type { Conversation, MessageStore } from '../db/ports.js';
import { ChatdError } from '../errors.js';
import type { SessionStore } from '../store/ports.js';

/** Token bindings this node remembers (about 100 bytes each). */
const BINDING_CACHE_SIZE = 50_000;

export const forbidden = () => new ChatdError('session_forbidden');

const digest = (s: string) => createHash('sha256').update(s, 'utf8').digest();
/** Fingerprints are the proof of ownership of a session: compare them in constant time. */
function sameSecret(a: string | null | undefined, b: string | null | undefined): boolean {
  if (!a || !b) return false;
  return timingSafeEqual(digest(a), digest(b));
}

export interface SessionAccessDeps {
  readonly messages: Pick<MessageStore, 'ensureConversation' | 'getConversation'>;
  readonly sessions: Pick<SessionStore, 'getBinding' | 'bind'>;
}

export interface SessionAccess {
  /** The session a token is bound to (this node's cache, else the store), or null. */
  bindingOf(principal: Principal): Promise<string | null>;
  /**
   * Takes `sessionId` for a token with no binding yet: a new session is created and owned by it;
   * an existing one only with its fingerprint (or, for a verified user, its userId). Then stores the
   * binding; a concurrent request that bound the token elsewhere first wins.
   */
  acquire(principal: Principal, sessionId: string, fingerprint: string | undefined, identity: Identity | undefined): Promise<void>;
  /** For writing: `sid` → that session only; a stored binding → that session only; else acquire it. */
  forWrite(principal: Principal, sessionId: string, fingerprint: string | undefined, identity: Identity | undefined): Promise<void>;
  /**
   * For reading: like writing, except that an unbound token reading a session that does not exist
   * yet gets nothing without binding (a GET creates nothing). Returns false when there is nothing
   * to read.
   */
  forRead(principal: Principal, sessionId: string, fingerprint: string | undefined): Promise<boolean>;
  /** An agent's right to a session: it must be a conversation of the agent's tenant. */
  forAgent(principal: Principal, sessionId: string): Promise<void>;
}

export function createSessionAccess(deps: SessionAccessDeps): SessionAccess {
  // A token's binding never changes once set (SET NX until the token expires), so this node keeps
  // the ones it has seen: a bound token's every message then costs no Redis round trip for it.
  const bindings = new Map<string, { sessionId: string; expiresAt: number }>();
  const remember = (principal: Principal, sessionId: string) => {
    if (bindings.size >= BINDING_CACHE_SIZE) {
      // Drop the oldest entry (Map keeps insertion order): a bounded cache, not a leak.
      bindings.delete(bindings.keys().next().value!);
    }
    bindings.set(`${principal.tenantId}:${principal.jti}`, { sessionId, expiresAt: principal.expiresAt });
  };
  async function bindingOf(principal: Principal): Promise<string | null> {
    const key = `${principal.tenantId}:${principal.jti}`;
    const hit = bindings.get(key);
    if (hit) {
      if (hit.expiresAt * 1000 > Date.now()) return hit.sessionId;
      bindings.delete(key);
    }
    const bound = await deps.sessions.getBinding(principal.tenantId, principal.jti);
    if (bound !== null) remember(principal, bound);
    return bound;
  }
  async function bindTo(principal: Principal, sessionId: string): Promise<string> {
    const bound = await deps.sessions.bind(principal.tenantId, principal.jti, sessionId, remainingSeconds(principal));
    remember(principal, bound);
    return bound;
  }

  /** Whether a conversation may be taken over by this credential (the binding rule). */
  const provesOwnership = (principal: Principal, conv: Conversation, fingerprint: string | undefined) =>
    sameSecret(conv.fingerprint, fingerprint) ||
    (principal.role === 'user' && principal.subject !== undefined && conv.userId === principal.subject);

  async function acquire(
    principal: Principal,
    sessionId: string,
    fingerprint: string | undefined,
    identity: Identity | undefined,
  ): Promise<void> {
    const owner = {
      ...(fingerprint ? { fingerprint } : {}),
      ...(identity?.verified && identity.userId ? { userId: identity.userId } : {}),
    };
    const r = await deps.messages.ensureConversation(principal.tenantId, sessionId, owner);
    if (r.kind === 'foreign') throw forbidden();
    if (r.kind === 'existing' && !provesOwnership(principal, r.conversation, fingerprint)) throw forbidden();
    const bound = await bindTo(principal, sessionId);
    if (bound !== sessionId) throw forbidden();
  }

  async function forWrite(
    principal: Principal,
    sessionId: string,
    fingerprint: string | undefined,
    identity: Identity | undefined,
  ): Promise<void> {
    if (principal.role === 'agent') return forAgent(principal, sessionId);
    if (principal.sessionId !== undefined) {
      if (principal.sessionId !== sessionId) throw forbidden();
      return;
    }
    const bound = await bindingOf(principal);
    if (bound !== null) {
      if (bound !== sessionId) throw forbidden();
      return;
    }
    await acquire(principal, sessionId, fingerprint, identity);
  }

  async function forRead(principal: Principal, sessionId: string, fingerprint: string | undefined): Promise<boolean> {
    if (principal.role === 'agent') return true; // history() filters by tenant: another tenant's session reads as empty
    if (principal.sessionId !== undefined) {
      if (principal.sessionId !== sessionId) throw forbidden();
      return true;
    }
    const bound = await bindingOf(principal);
    if (bound !== null) {
      if (bound !== sessionId) throw forbidden();
      return true;
    }
    const conv = await deps.messages.getConversation(principal.tenantId, sessionId);
    if (!conv) return false;
    if (!provesOwnership(principal, conv, fingerprint)) throw forbidden();
    const now = await bindTo(principal, sessionId);
    if (now !== sessionId) throw forbidden();
    return true;
  }

  async function forAgent(principal: Principal, sessionId: string): Promise<void> {
    if (!(await deps.messages.getConversation(principal.tenantId, sessionId))) throw forbidden();
  }

  return { bindingOf, acquire, forWrite, forRead, forAgent };
}
