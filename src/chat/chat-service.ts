// The domain: the one path every message takes, whichever door it came through (HTTP or the
// Socket.IO `message` event), and the session and history rules both doors share. It knows ports
// only (SessionStore, MessageStore, OutboxRelay, Bus): no uWebSockets.js, no Redis, no SQL.
//
// Exported API (what the api and ws roles call):
//
//   createChatService(deps: ChatServiceDeps): ChatService
//
//   chat.send(principal, input, door: 'http'|'ws') → Promise<SendResult>
//       Validates `input` (DomainSendInput: the widget's flat body; `tenantId` optional for agents),
//       checks the tenant, resolves identity (token `sub` / `userHash` / tenant policy), binds or
//       checks the session (DESIGN.md "Session binding"), writes `session:{id}` by check-and-set
//       (visitors and users), then db.messages.accept (one group-committed transaction) and, only
//       after COMMIT, hands the message to the relay (publishNow). Resolves with
//       { messageId, sessionId, message, duplicate }. Throws ChatdError: validation_failed /
//       invalid_id (400), tenant_mismatch / session_forbidden / identity_* (403),
//       idempotency_conflict (409), outcome_unknown / dependency_unavailable (503).
//
//   chat.history(principal, { tenantId, sessionId?, userId?, before?, limit?, fingerprint? })
//       → Promise<HistoryPage>. visitor: its bound session only; user (verified sub): its own
//       sessions or by userId = sub across sessions; agent: any conversation of its tenant.
//       A session the principal may not read answers session_forbidden — a foreign or unknown
//       session of another tenant looks exactly like one it does not own.
//
//   chat.markRead(principal, { sessionId, messageId, fingerprint? }) → Promise<{ sessionId, messageId, reader }>
//       Stores the read pointer and publishes the `read` event on the tenant's bus; an agent's read
//       moves the agents' shared pointer and publishes conversation_updated (the unread count).
//
//   chat.typing(principal, { sessionId, isTyping }) → Promise<{ sessionId, sender, isTyping }>
//       Checks access and publishes `typing` on the bus (nothing stored).
//
//   chat.resolveSession(principal, { sessionId?, fingerprint? }) → Promise<string | undefined>
//       The session a visitor/user credential acts on, binding it if needed — what the ws role calls
//       at CONNECT (token `sid`, else the token's stored binding, else auth.sessionId +
//       auth.fingerprint under the binding rule). Agents: undefined (they act on the tenant), unless
//       a sessionId is given, which must be a conversation of their tenant.
//
//   chat.authorizeSession(principal, sessionId, fingerprint?) → Promise<void>
//       Throws session_forbidden unless the principal may act on that session (binding it if it is
//       the token's first). The ws role uses it for join/typing/read.
//
//   chat.identify(principal, { userId?, userHash? }) → Identity { userId, verified }
//       Who a visitor/user is for presence at CONNECT (token `sub`, `userHash`, tenant policy);
//       agents are their `sub`. Throws identity_invalid / identity_required / invalid_id.
//
//   chat.bindForMint(tenantId, jti, ttlSeconds, sessionId, fingerprint?) → Promise<void>
//       The anonymous-token endpoint with a sessionId: binds now, under the same rule.
//
//   chat.setContact(principal, input) → Promise<{ sessionId }>
//       POST /webchat/contact: the visitor's email (and name) stored on the conversation, under
//       the same session rules as sending a message (the conversation is created if it has no
//       message yet). Visitors and users only.
import type { Logger } from 'pino';
import type { Principal } from '../auth/jwt.js';
import { resolveIdentity, type Identity } from '../auth/identity.js';
import type { TenantDirectory, TenantPolicy } from '../auth/tenants.js';
import type { ConversationStore, HistoryPage, MessageStore, OfflineStore, OutboxRelay } from '../db/ports.js';
import { ChatdError } from '../errors.js';
import { assertId, assertUserId } from '../ids.js';
import { messagesAccepted } from '../observability/metrics.js';
import { compileValidator, type ValidationIssue } from '../schemas/validate.js';
import type { Bus, SessionStore } from '../store/ports.js';
import { ContactBody, DomainSendInput } from './contract.js';
import type { ChatMessage, MessageMeta, Sender } from './message.js';
import { createSessionAccess, forbidden } from './session-access.js';

export type Door = 'http' | 'ws';
export type { Identity } from '../auth/identity.js';

export interface ChatServiceDeps {
  readonly tenants: () => TenantDirectory;
  readonly messages: MessageStore;
  readonly sessions: SessionStore;
  readonly relay: Pick<OutboxRelay, 'publishNow' | 'publishUpdateNow'>;
  /** The visitor's unread count for history answers (absent: history answers carry none). */
  readonly conversations?: Pick<ConversationStore, 'visitorUnread' | 'announce'>;
  /** Auto-assignment after a visitor's message to an unassigned open conversation (never throws). */
  readonly autoAssign?: (tenantId: string, sessionId: string) => Promise<void>;
  readonly bus: Pick<Bus, 'publish'>;
  /** Where contact capture stores the visitor's address. */
  readonly offline: Pick<OfflineStore, 'setContact'>;
  /** Called after an agent's message was stored (offline continuity schedules its email). */
  readonly onAgentReply?: (message: ChatMessage) => void;
  /** Called after a visitor's (or user's) message was stored (offline continuity may notify the tenant). */
  readonly onVisitorMessage?: (message: ChatMessage) => void;
  /** limits.messageMaxChars. */
  readonly messageMaxChars: number;
  /** TTL of `session:{id}` (the guide's 24 h). */
  readonly sessionTtlSeconds?: number;
  readonly logger?: Logger;
}

export interface SendResult {
  readonly messageId: string;
  readonly sessionId: string;
  readonly message: ChatMessage;
  /** True when a retry with the same clientMessageId and content returned the first message. */
  readonly duplicate: boolean;
}

export interface HistoryRequest {
  readonly tenantId: string;
  readonly sessionId?: string | undefined;
  readonly userId?: string | undefined;
  readonly before?: string | undefined;
  readonly limit?: number | undefined;
  /** Proves ownership of an existing session for a token not yet bound. */
  readonly fingerprint?: string | undefined;
}

export interface Party {
  readonly type: Sender['type'];
  readonly id: string;
}

export interface ChatService {
  send(principal: Principal, input: unknown, door: Door): Promise<SendResult>;
  /** A visitor's or user's own conversation also carries `unreadCount` (agent messages after its read pointer). */
  history(principal: Principal, req: HistoryRequest): Promise<HistoryPage & { unreadCount?: number }>;
  markRead(
    principal: Principal,
    req: { sessionId: string; messageId: string; fingerprint?: string | undefined },
  ): Promise<{ sessionId: string; messageId: string; reader: Party }>;
  typing(
    principal: Principal,
    req: { sessionId: string; isTyping: boolean },
  ): Promise<{ sessionId: string; sender: Party; isTyping: boolean }>;
  resolveSession(
    principal: Principal,
    claim: { sessionId?: string | undefined; fingerprint?: string | undefined },
  ): Promise<string | undefined>;
  authorizeSession(principal: Principal, sessionId: string, fingerprint?: string): Promise<void>;
  bindForMint(tenantId: string, jti: string, ttlSeconds: number, sessionId: string, fingerprint?: string): Promise<void>;
  identify(principal: Principal, claim: { userId?: string | undefined; userHash?: string | undefined }): Identity;
  setContact(principal: Principal, input: unknown): Promise<{ sessionId: string }>;
}

export const DEFAULT_HISTORY_LIMIT = 50;
export const MAX_HISTORY_LIMIT = 200;
const SESSION_TTL = 24 * 3600;

const validateSend = compileValidator(DomainSendInput);

/**
 * How deeply `userInfo` (free-form, stored as JSON) may nest. Without a bound a 64 KB body can nest
 * ~30k levels, and serialising it for the INSERT overflows the stack inside the group commit, failing
 * every message of that batch with a 500.
 */
export const USER_INFO_MAX_DEPTH = 16;

/** Nesting depth of a JSON value, iteratively (the value may be too deep to recurse into). */
function nestingDepth(value: unknown): number {
  let max = 0;
  const stack: [unknown, number][] = [[value, 0]];
  while (stack.length > 0) {
    const [v, d] = stack.pop()!;
    if (v === null || typeof v !== 'object') continue;
    if (d + 1 > max) max = d + 1;
    if (max > USER_INFO_MAX_DEPTH) return max;
    for (const child of Object.values(v)) stack.push([child, d + 1]);
  }
  return max;
}

/** Turns schema issues into one 400: `invalid_id` when only ids are malformed, else `validation_failed`. */
const validateContact = compileValidator(ContactBody);

export function validationError(issues: readonly ValidationIssue[]): ChatdError {
  const onlyIds = issues.every((i) => /must match pattern/.test(i.message) && /(Id|^fingerprint)$/.test(i.path));
  const details = issues.map((i) => ({
    path: i.path,
    message: i.message.replace(/must match pattern "\^\(?(.*?)\)?\??\$"/, 'must match $1'),
  }));
  const summary = details
    .map((d) => `${d.path} ${d.message}`)
    .slice(0, 3)
    .join('; ');
  return new ChatdError(onlyIds ? 'invalid_id' : 'validation_failed', `Invalid request: ${summary}`, { details });
}

export function createChatService(deps: ChatServiceDeps): ChatService {
  const sessionTtl = deps.sessionTtlSeconds ?? SESSION_TTL;

  const tenantOf = (principal: Principal, tenantId: string | undefined): TenantPolicy => {
    if (tenantId !== undefined && tenantId !== principal.tenantId) throw new ChatdError('tenant_mismatch');
    const t = deps.tenants().get(principal.tenantId);
    // The token verified against a tenant that a reload has since removed.
    if (!t) throw new ChatdError('token_invalid', 'Invalid token: unknown tenant');
    return t;
  };

  const access = createSessionAccess(deps);
  const { bindingOf, acquire } = access;

  const partyOf = (principal: Principal, sessionId: string): Party =>
    principal.role === 'agent'
      ? { type: 'agent', id: principal.subject! }
      : principal.role === 'user' && principal.subject
        ? { type: 'user', id: principal.subject }
        : { type: 'visitor', id: sessionId };

  /** Publishes a checked typing event; resolves with it as the caller sees it. */
  const publishTyping = (principal: Principal, req: { sessionId: string; isTyping: boolean }) => {
    const { sessionId, isTyping } = req;
    const sender = partyOf(principal, sessionId);
    return deps.bus
      .publish(principal.tenantId, { type: 'typing', sessionId, sender, isTyping })
      .then(() => ({ sessionId, sender, isTyping }));
  };

  return {
    async send(principal, raw, door) {
      const v = validateSend(raw);
      if (!v.ok) throw validationError(v.errors);
      const input = v.value;
      const tenant = tenantOf(principal, input.tenantId);
      if (principal.role !== 'agent' && input.tenantId === undefined) {
        throw validationError([{ path: 'tenantId', message: 'is required' }]);
      }
      const text = input.text;
      if (text.trim().length === 0) throw validationError([{ path: 'text', message: 'must not be blank' }]);
      if ([...text].length > deps.messageMaxChars) {
        throw validationError([{ path: 'text', message: `must be at most ${deps.messageMaxChars} characters` }]);
      }
      if (input.userInfo !== undefined && nestingDepth(input.userInfo) > USER_INFO_MAX_DEPTH) {
        throw validationError([{ path: 'userInfo', message: `must nest at most ${USER_INFO_MAX_DEPTH} levels deep` }]);
      }
      const fingerprint = input.fingerprint || undefined;
      if (principal.role === 'visitor' && !fingerprint) {
        throw validationError([{ path: 'fingerprint', message: 'is required for visitors' }]);
      }
      const sessionId = input.sessionId;

      let sender: Sender;
      let identity: Identity | undefined;
      if (principal.role === 'agent') {
        sender = { type: 'agent', id: principal.subject!, verified: true };
      } else {
        identity = resolveIdentity(principal, tenant, { userId: input.userId, userHash: input.userHash });
        sender = identity.userId
          ? { type: 'user', id: identity.userId, verified: identity.verified }
          : { type: 'visitor', id: sessionId, verified: false };
      }

      await access.forWrite(principal, sessionId, fingerprint, identity);

      if (principal.role !== 'agent') {
        const r = await deps.sessions.upsert(
          sessionId,
          { tenantId: principal.tenantId, userId: identity?.userId ?? sessionId, fingerprint: fingerprint ?? '' },
          sessionTtl,
        );
        if (r === 'foreign') throw forbidden();
        if (r === 'created' && principal.sessionId !== undefined) {
          // A `sid` token used after the 24 h `session:` key expired (or was never written): the
          // conversation row still decides whose session it is.
          const conv = await deps.messages.ensureConversation(principal.tenantId, sessionId, {
            ...(fingerprint ? { fingerprint } : {}),
            ...(identity?.verified && identity.userId ? { userId: identity.userId } : {}),
          });
          if (conv.kind === 'foreign') {
            await deps.sessions.delete(sessionId);
            throw forbidden();
          }
        }
      }

      const meta: MessageMeta = {
        domain: input.domain ?? '',
        origin: input.origin ?? '',
        url: input.url ?? '',
        referrer: input.referrer ?? '',
        siteId: input.siteId ?? '',
        ...(input.userInfo && Object.keys(input.userInfo).length > 0 ? { userInfo: input.userInfo } : {}),
      };
      const result = await deps.messages.accept({
        tenantId: principal.tenantId,
        sessionId,
        sender,
        text,
        ...(input.clientMessageId ? { clientMessageId: input.clientMessageId } : {}),
        meta,
        reopenResolved: tenant.conversations.reopenOnVisitorMessage,
        conversation: {
          // Only a verified userId is stored on the conversation: history by userId must never
          // include a session someone merely claimed.
          ...(identity?.verified && identity.userId ? { userId: identity.userId } : {}),
          ...(fingerprint ? { fingerprint } : {}),
        },
      });
      switch (result.kind) {
        case 'created': {
          messagesAccepted.inc({ door });
          // A reopen's system message first, then the message, then the conversation's new summary.
          for (const m of result.before) deps.relay.publishNow(m, m.id);
          deps.relay.publishNow(result.message, result.outboxId);
          deps.relay.publishUpdateNow(result.update);
          const c = result.update.conversation;
          if (sender.type !== 'agent' && c.assignee === null && c.status === 'open' && deps.autoAssign) {
            void deps.autoAssign(principal.tenantId, sessionId);
          }
          if (sender.type === 'agent') deps.onAgentReply?.(result.message);
          else if (sender.type !== 'system') deps.onVisitorMessage?.(result.message);
          return { messageId: result.message.id, sessionId, message: result.message, duplicate: false };
        }
        case 'duplicate':
          return { messageId: result.message.id, sessionId, message: result.message, duplicate: true };
        case 'conflict':
          throw new ChatdError('idempotency_conflict');
        case 'foreign':
          // The session id is another tenant's conversation; nothing was written.
          throw forbidden();
        default: {
          const never: never = result;
          throw new Error(`unknown accept result ${JSON.stringify(never)}`);
        }
      }
    },

    async history(principal, req) {
      assertId('tenantId', req.tenantId);
      if (req.userId !== undefined) assertUserId('userId', req.userId);
      tenantOf(principal, req.tenantId);
      const limit = req.limit ?? DEFAULT_HISTORY_LIMIT;
      if (!Number.isInteger(limit) || limit < 1 || limit > MAX_HISTORY_LIMIT) {
        throw validationError([{ path: 'limit', message: `must be an integer from 1 to ${MAX_HISTORY_LIMIT}` }]);
      }
      if (req.before !== undefined && (req.before.length === 0 || req.before.length > 256)) {
        throw validationError([{ path: 'before', message: 'must be a cursor from nextCursor' }]);
      }
      const base = { tenantId: principal.tenantId, limit, ...(req.before ? { before: req.before } : {}) };
      /** A visitor's or user's own conversation: the page and its unread count. */
      const own = async (sessionId: string) => {
        const [page, unreadCount] = await Promise.all([
          deps.messages.history({ ...base, sessionId }),
          deps.conversations ? deps.conversations.visitorUnread(principal.tenantId, sessionId) : undefined,
        ]);
        return unreadCount === undefined ? page : { ...page, unreadCount };
      };
      if (req.sessionId !== undefined) {
        assertId('sessionId', req.sessionId);
        if (!(await access.forRead(principal, req.sessionId, req.fingerprint))) {
          return principal.role === 'agent' || !deps.conversations
            ? { messages: [], nextCursor: null }
            : { messages: [], nextCursor: null, unreadCount: 0 };
        }
        if (principal.role !== 'agent') return own(req.sessionId);
        return deps.messages.history({ ...base, sessionId: req.sessionId });
      }
      if (req.userId !== undefined) {
        if (principal.role === 'visitor') {
          throw new ChatdError('forbidden', 'History by userId needs a verified user token or an agent token');
        }
        if (principal.role === 'user' && req.userId !== principal.subject) {
          throw new ChatdError('forbidden', "A user token reads only its own user's history");
        }
        return deps.messages.history({ ...base, userId: req.userId });
      }
      // No sessionId: a visitor or user bound to a session reads it.
      if (principal.role !== 'agent') {
        const bound = principal.sessionId ?? (await bindingOf(principal));
        if (bound) return own(bound);
        if (principal.role === 'user') return deps.messages.history({ ...base, userId: principal.subject! });
      }
      throw validationError([{ path: 'sessionId', message: 'is required (or userId)' }]);
    },

    async markRead(principal, req) {
      tenantOf(principal, undefined);
      assertId('sessionId', req.sessionId);
      if (principal.role === 'agent') {
        await access.forAgent(principal, req.sessionId);
      } else if (!(await access.forRead(principal, req.sessionId, req.fingerprint))) {
        throw forbidden();
      }
      const reader = partyOf(principal, req.sessionId);
      const read = await deps.messages.markRead(principal.tenantId, req.sessionId, `${reader.type}:${reader.id}`, req.messageId);
      if (!read.found) throw new ChatdError('not_found', 'No such message in this conversation');
      // The agents' pointer moved: every agent's inbox gets the new unread count.
      if (read.update) deps.relay.publishUpdateNow(read.update);
      const event = { sessionId: req.sessionId, messageId: req.messageId, reader };
      await deps.bus.publish(principal.tenantId, { type: 'read', ...event });
      return event;
    },

    typing(principal, req) {
      // No async function: a typing event is frequent and stored nowhere, so the usual widget token
      // (a visitor's or user's, naming its session) is checked synchronously and costs one promise,
      // the bus's. Failures still reject.
      try {
        tenantOf(principal, undefined);
        assertId('sessionId', req.sessionId);
        if (principal.role !== 'agent' && principal.sessionId !== undefined) {
          if (principal.sessionId !== req.sessionId) throw forbidden();
          return publishTyping(principal, req);
        }
      } catch (err) {
        return Promise.reject(err as Error);
      }
      const allowed =
        principal.role === 'agent'
          ? access.forAgent(principal, req.sessionId)
          : access.forRead(principal, req.sessionId, undefined).then((ok) => {
              if (!ok) throw forbidden();
            });
      return allowed.then(() => publishTyping(principal, req));
    },

    async resolveSession(principal, claim) {
      tenantOf(principal, undefined);
      const sessionId = claim.sessionId || undefined;
      const fingerprint = claim.fingerprint || undefined;
      if (sessionId !== undefined) assertId('sessionId', sessionId);
      if (fingerprint !== undefined) assertId('fingerprint', fingerprint);
      if (principal.role === 'agent') {
        if (sessionId === undefined) return undefined;
        await access.forAgent(principal, sessionId);
        return sessionId;
      }
      if (principal.sessionId !== undefined) {
        if (sessionId !== undefined && sessionId !== principal.sessionId) throw forbidden();
        return principal.sessionId;
      }
      const bound = await bindingOf(principal);
      if (bound !== null) {
        if (sessionId !== undefined && sessionId !== bound) throw forbidden();
        return bound;
      }
      if (sessionId === undefined) {
        throw validationError([{ path: 'sessionId', message: 'is required: the token is not bound to a session yet' }]);
      }
      // A visitor's session is owned through its fingerprint: one taken without it could never be
      // proven again once this token expires.
      if (principal.role === 'visitor' && fingerprint === undefined) {
        throw validationError([{ path: 'fingerprint', message: 'is required for visitors' }]);
      }
      const identity: Identity | undefined =
        principal.role === 'user' && principal.subject ? { userId: principal.subject, verified: true } : undefined;
      await acquire(principal, sessionId, fingerprint, identity);
      return sessionId;
    },

    async authorizeSession(principal, sessionId, fingerprint) {
      tenantOf(principal, undefined);
      assertId('sessionId', sessionId);
      if (principal.role === 'agent') {
        return access.forAgent(principal, sessionId);
      }
      if (!(await access.forRead(principal, sessionId, fingerprint))) {
        // Not created yet: take it now, as the first use of the token.
        if (principal.role === 'visitor' && !fingerprint)
          throw validationError([{ path: 'fingerprint', message: 'is required for visitors' }]);
        const identity: Identity | undefined =
          principal.role === 'user' && principal.subject ? { userId: principal.subject, verified: true } : undefined;
        await acquire(principal, sessionId, fingerprint, identity);
      }
    },

    identify(principal, claim) {
      const tenant = tenantOf(principal, undefined);
      if (principal.role === 'agent') return { userId: principal.subject, verified: true };
      return resolveIdentity(principal, tenant, { userId: claim.userId || undefined, userHash: claim.userHash || undefined });
    },

    async setContact(principal, raw) {
      const v = validateContact(raw);
      if (!v.ok) throw validationError(v.errors);
      const input = v.value;
      const tenant = tenantOf(principal, input.tenantId);
      if (principal.role === 'agent') throw new ChatdError('forbidden', "Contact capture is the visitor's: use a visitor or user token");
      const fingerprint = input.fingerprint || undefined;
      if (principal.role === 'visitor' && !fingerprint) {
        throw validationError([{ path: 'fingerprint', message: 'is required for visitors' }]);
      }
      const { sessionId } = input;
      const identity = resolveIdentity(principal, tenant, { userId: input.userId, userHash: input.userHash });
      await access.forWrite(principal, sessionId, fingerprint, identity);
      const r = await deps.sessions.upsert(
        sessionId,
        { tenantId: principal.tenantId, userId: identity.userId ?? sessionId, fingerprint: fingerprint ?? '' },
        sessionTtl,
      );
      if (r === 'foreign') throw forbidden();
      const conv = await deps.messages.ensureConversation(principal.tenantId, sessionId, {
        ...(fingerprint ? { fingerprint } : {}),
        ...(identity.verified && identity.userId ? { userId: identity.userId } : {}),
      });
      if (conv.kind === 'foreign') throw forbidden();
      const name = input.name?.trim();
      if (!(await deps.offline.setContact(principal.tenantId, sessionId, { email: input.email.trim(), ...(name ? { name } : {}) }))) {
        throw forbidden();
      }
      // The inbox shows the contact (visitor.name/email): tell the agents. Stored already; an
      // event that fails to be written only leaves inboxes to learn it with the next change.
      try {
        const update = await deps.conversations?.announce(principal.tenantId, sessionId);
        if (update) deps.relay.publishUpdateNow(update);
      } catch (err) {
        deps.logger?.warn({ err, sessionId }, 'contact stored; its conversation_updated could not be written');
      }
      return { sessionId };
    },

    async bindForMint(tenantId, jti, ttlSeconds, sessionId, fingerprint) {
      const pseudo: Principal = {
        tenantId,
        role: 'visitor',
        jti,
        expiresAt: Math.floor(Date.now() / 1000) + ttlSeconds,
        issuedAt: Math.floor(Date.now() / 1000),
        issuer: 'chatd',
      };
      await acquire(pseudo, sessionId, fingerprint, undefined);
    },
  };
}
