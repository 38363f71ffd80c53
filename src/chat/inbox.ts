// The agents' side of conversations (DESIGN.md "Conversations"): the inbox list, one summary, status
// and assignment. The database writes each change as a system message with a conversation_updated
// event in one transaction; this module checks the caller and the input, publishes what was
// committed through the relay (the one path), and adds `online` from presence.
//
//   inbox.list(caller, { tenantId?, status?, assignee?, before?, limit? }) → { conversations, nextCursor }
//   inbox.get(caller, tenantId, sessionId) → ConversationSummary
//   inbox.setStatus(caller, tenantId, sessionId, status) → ConversationSummary
//   inbox.assign(caller, tenantId, sessionId, assignee | 'me' | null) → ConversationSummary
//   inbox.autoAssign(tenantId, sessionId) → after a conversation's message, per the tenant's autoAssign
//
// Errors: another tenant named → 403 tenant_mismatch; unknown in the caller's tenant → 404 not_found;
// `me` with a secret key → 400 validation_failed; bad status, assignee or cursor → 400.
import type { Logger } from 'pino';
import type { TenantDirectory } from '../auth/tenants.js';
import type { ChangeResult, ConversationChange, ConversationStore, OutboxRelay } from '../db/ports.js';
import { ChatdError } from '../errors.js';
import { assertId, assertUserId } from '../ids.js';
import type { EventLog, PresenceStore } from '../store/ports.js';
import { validationError } from './chat-service.js';
import {
  CONVERSATION_STATUSES,
  type Actor,
  type ConversationStatus,
  type ConversationSummary,
  type ConversationUpdate,
} from './conversation.js';

/** Who asks: an agent (its token's `sub`) or the tenant's backend with a secret key. */
export type InboxCaller =
  { readonly kind: 'agent'; readonly tenantId: string; readonly agentId: string } | { readonly kind: 'secret'; readonly tenantId: string };

export interface InboxListRequest {
  readonly tenantId?: string | undefined;
  /** open | pending | resolved | all (default all). */
  readonly status?: string | undefined;
  /** me | none | an agent id (default anyone). */
  readonly assignee?: string | undefined;
  readonly before?: string | undefined;
  readonly limit?: number | undefined;
}

export interface InboxPage {
  readonly conversations: ConversationSummary[];
  readonly nextCursor: string | null;
}

export interface Inbox {
  list(caller: InboxCaller, req: InboxListRequest): Promise<InboxPage>;
  get(caller: InboxCaller, tenantId: string | undefined, sessionId: string): Promise<ConversationSummary>;
  setStatus(caller: InboxCaller, tenantId: string | undefined, sessionId: string, status: unknown): Promise<ConversationSummary>;
  assign(caller: InboxCaller, tenantId: string | undefined, sessionId: string, assignee: unknown): Promise<ConversationSummary>;
  /** Auto-assignment after a visitor's message, when the tenant asks for it; never throws. */
  autoAssign(tenantId: string, sessionId: string): Promise<void>;
}

export interface InboxDeps {
  readonly tenants: () => TenantDirectory;
  readonly conversations: ConversationStore;
  readonly relay: Pick<OutboxRelay, 'publishNow' | 'publishUpdateNow'>;
  readonly presence: Pick<PresenceStore, 'onlineAmong'>;
  /** The agents online now in a tenant (round_robin's candidates; undefined: round_robin assigns nobody). */
  readonly onlineAgents?: (tenantId: string) => Promise<readonly string[]>;
  readonly logger?: Logger;
}

export const DEFAULT_INBOX_LIMIT = 50;
export const MAX_INBOX_LIMIT = 200;

export function createInbox(deps: InboxDeps): Inbox {
  const tenantOf = (caller: InboxCaller, tenantId: string | undefined): string => {
    if (tenantId !== undefined) assertId('tenantId', tenantId);
    if (tenantId !== undefined && tenantId !== caller.tenantId) throw new ChatdError('tenant_mismatch');
    return caller.tenantId;
  };

  const actorOf = (caller: InboxCaller): Actor =>
    caller.kind === 'agent' ? { type: 'agent', id: caller.agentId } : { type: 'api', id: 'secret-key' };

  /**
   * Marks the summaries whose visitor has a connection now: one read of just these visitors' fields
   * of online_users (a field is the userId, or the sessionId of an anonymous visitor; a conversation
   * with a userId may also be open anonymously, so both are asked).
   */
  const withOnline = async (tenantId: string, list: ConversationSummary[]): Promise<ConversationSummary[]> => {
    if (list.length === 0) return list;
    const fields = new Set<string>();
    for (const c of list) {
      fields.add(c.sessionId);
      if (c.visitor.userId !== undefined) fields.add(c.visitor.userId);
    }
    const online = await deps.presence.onlineAmong(tenantId, [...fields]);
    return list.map((c) => ({ ...c, online: online.has(c.sessionId) || (c.visitor.userId !== undefined && online.has(c.visitor.userId)) }));
  };

  const oneWithOnline = async (tenantId: string, c: ConversationSummary) => (await withOnline(tenantId, [c]))[0]!;

  /** Publishes what a change committed (the system message, then the event) and answers with the summary. */
  const settle = async (tenantId: string, r: ChangeResult): Promise<ConversationSummary> => {
    switch (r.kind) {
      case 'not_found':
        throw new ChatdError('not_found', 'No such conversation');
      case 'unchanged':
        return oneWithOnline(tenantId, r.conversation);
      case 'changed':
        deps.relay.publishNow(r.message, r.message.id);
        deps.relay.publishUpdateNow(r.update);
        return oneWithOnline(tenantId, r.update.conversation);
      default: {
        const never: never = r;
        throw new Error(`unknown change result ${JSON.stringify(never)}`);
      }
    }
  };

  const change = async (caller: InboxCaller, tenantId: string | undefined, sessionId: string, c: ConversationChange) => {
    const tenant = tenantOf(caller, tenantId);
    assertId('sessionId', sessionId);
    return settle(tenant, await deps.conversations.change(tenant, sessionId, c, actorOf(caller)));
  };

  return {
    async list(caller, req) {
      const tenantId = tenantOf(caller, req.tenantId);
      const status = req.status === undefined || req.status === 'all' ? undefined : req.status;
      if (status !== undefined && !CONVERSATION_STATUSES.includes(status as ConversationStatus)) {
        throw validationError([{ path: 'status', message: 'must be open, pending, resolved or all' }]);
      }
      let assignee: string | null | undefined;
      if (req.assignee === undefined) assignee = undefined;
      else if (req.assignee === 'none') assignee = null;
      else if (req.assignee === 'me') {
        if (caller.kind !== 'agent')
          throw validationError([{ path: 'assignee', message: '"me" needs an agent token (a secret key is nobody)' }]);
        assignee = caller.agentId;
      } else {
        assertUserId('assignee', req.assignee);
        assignee = req.assignee;
      }
      const limit = req.limit ?? DEFAULT_INBOX_LIMIT;
      if (!Number.isInteger(limit) || limit < 1 || limit > MAX_INBOX_LIMIT) {
        throw validationError([{ path: 'limit', message: `must be an integer from 1 to ${MAX_INBOX_LIMIT}` }]);
      }
      const page = await deps.conversations.list({
        tenantId,
        ...(status !== undefined ? { status: status as ConversationStatus } : {}),
        ...(assignee !== undefined ? { assignee } : {}),
        ...(req.before !== undefined ? { before: req.before } : {}),
        limit,
      });
      return { conversations: await withOnline(tenantId, page.conversations), nextCursor: page.nextCursor };
    },

    async get(caller, tenantId, sessionId) {
      const tenant = tenantOf(caller, tenantId);
      assertId('sessionId', sessionId);
      const found = await deps.conversations.summary(tenant, sessionId);
      if (!found) throw new ChatdError('not_found', 'No such conversation');
      return oneWithOnline(tenant, found.conversation);
    },

    setStatus(caller, tenantId, sessionId, status) {
      if (typeof status !== 'string' || !CONVERSATION_STATUSES.includes(status as ConversationStatus)) {
        return Promise.reject(validationError([{ path: 'status', message: 'must be open, pending or resolved' }]));
      }
      return change(caller, tenantId, sessionId, { status: status as ConversationStatus });
    },

    async assign(caller, tenantId, sessionId, assignee) {
      let to: string | null;
      if (assignee === null) to = null;
      else if (assignee === 'me') {
        if (caller.kind !== 'agent')
          throw validationError([{ path: 'assignee', message: '"me" needs an agent token (a secret key is nobody)' }]);
        to = caller.agentId;
      } else if (typeof assignee === 'string') {
        assertUserId('assignee', assignee);
        to = assignee;
      } else {
        throw validationError([{ path: 'assignee', message: 'must be an agent id, "me" or null' }]);
      }
      return change(caller, tenantId, sessionId, { assignee: to });
    },

    async autoAssign(tenantId, sessionId) {
      const policy = deps.tenants().get(tenantId)?.conversations.autoAssign;
      if (!policy || policy.mode === 'off' || !deps.onlineAgents) return;
      try {
        const agents = await deps.onlineAgents(tenantId);
        if (agents.length === 0) return;
        const r = await deps.conversations.autoAssign(tenantId, sessionId, agents, policy.maxOpenPerAgent);
        if (r.kind === 'changed') {
          deps.relay.publishNow(r.message, r.message.id);
          deps.relay.publishUpdateNow(r.update);
        }
      } catch (err) {
        // The message is stored and answered; the conversation stays in the unassigned inbox.
        deps.logger?.warn({ err, tenantId, sessionId }, 'auto-assignment failed; the conversation stays unassigned');
      }
    },
  };
}

/**
 * The relay's event log with `online` filled in from presence at publish time (the summary is taken
 * in the transaction; presence is not in the database).
 */
export function withPresence(
  events: Pick<EventLog, 'publishMessage' | 'publishUpdate'>,
  presence: Pick<PresenceStore, 'isOnline'>,
): Pick<EventLog, 'publishMessage' | 'publishUpdate'> {
  return {
    publishMessage: (m) => events.publishMessage(m),
    async publishUpdate(u: ConversationUpdate) {
      const c = u.conversation;
      const online = await presence.isOnline(u.tenantId, c.visitor.userId ?? c.sessionId).catch(() => false);
      return events.publishUpdate({ ...u, conversation: { ...c, online } });
    },
  };
}
