// What the domain and the roles need from the durable store. Implemented once with Kysely over
// two dialects (PostgreSQL through `pg`, embedded PGlite); nothing outside src/db knows SQL.
import type { Actor, ConversationStatus, ConversationSummary, ConversationUpdate } from '../chat/conversation.js';
import type { ChatMessage, MessageMeta, Sender } from '../chat/message.js';

export type { ConversationStatus } from '../chat/conversation.js';

export interface NewMessage {
  readonly tenantId: string;
  readonly sessionId: string;
  readonly sender: Sender;
  readonly text: string;
  readonly clientMessageId?: string;
  readonly meta: MessageMeta;
  /** Stored on the conversation when this message creates it. */
  readonly conversation: { readonly userId?: string; readonly fingerprint?: string };
  /**
   * A visitor/user message to a resolved conversation reopens it (a system message takes seq n,
   * this message n+1), unless the tenant turned that off (false).
   */
  readonly reopenResolved?: boolean;
}

export type AcceptResult =
  /**
   * Stored now; the outbox row was written in the same transaction (`outboxId` is the message id).
   * `before`: system messages committed just before it in the same transaction (a reopen), to be
   * published first. `update`: the conversation_updated event written with them.
   */
  | {
      readonly kind: 'created';
      readonly message: ChatMessage;
      readonly outboxId: string;
      readonly before: readonly ChatMessage[];
      readonly update: ConversationUpdate;
    }
  /** Same clientMessageId and same content as an earlier message: that message. */
  | { readonly kind: 'duplicate'; readonly message: ChatMessage }
  /** Same clientMessageId, different content: refused (409). */
  | { readonly kind: 'conflict'; readonly messageId: string }
  /**
   * The session id belongs to another tenant's conversation (session ids are unique across
   * tenants): nothing was written. Refuse it exactly like any other foreign session, without
   * revealing that the id exists.
   */
  | { readonly kind: 'foreign' };

export interface Conversation {
  readonly tenantId: string;
  readonly sessionId: string;
  readonly userId: string | null;
  /** The owner's fingerprint: outlives the 24 h `session:` key and decides later bindings. */
  readonly fingerprint: string | null;
  readonly status: ConversationStatus;
  readonly lastSeq: number;
  readonly createdAt: string;
  readonly updatedAt: string;
}

export interface HistoryQuery {
  readonly tenantId: string;
  /** One conversation… */
  readonly sessionId?: string;
  /** …or every conversation of a (verified) user. */
  readonly userId?: string;
  /** Opaque cursor from a previous page's `nextCursor`. */
  readonly before?: string;
  readonly limit: number;
}

export interface HistoryPage {
  /** Chronological (oldest first): the newest `limit` messages before the cursor. */
  readonly messages: ChatMessage[];
  /** Pass as `before` for the previous page; null when there is none. */
  readonly nextCursor: string | null;
}

export type EnsureConversationResult =
  | { readonly kind: 'created'; readonly conversation: Conversation }
  | { readonly kind: 'existing'; readonly conversation: Conversation }
  /** The session id belongs to another tenant: refuse exactly like any foreign session. */
  | { readonly kind: 'foreign' };

export interface MessageStore {
  /**
   * Stores a message: one transaction (group-committed with concurrent callers) upserts the
   * conversation, takes the next seq, inserts the message and its outbox row. Resolves only after
   * COMMIT. "Same content" for a retried clientMessageId means the same text (sha256), from the
   * same sender id in the same conversation. Throws DependencyError (nothing stored),
   * OutcomeUnknownError (maybe stored: the client retries with the same clientMessageId) or
   * ChatdError `validation_failed` when the database refuses this row's data (e.g. a NUL
   * character); a bad row in a batch fails only its own caller.
   */
  accept(msg: NewMessage): Promise<AcceptResult>;
  /** Creates the conversation if missing (owned by this tenant, with this fingerprint). Session ids are unique across tenants. */
  ensureConversation(
    tenantId: string,
    sessionId: string,
    owner: { userId?: string; fingerprint?: string },
  ): Promise<EnsureConversationResult>;
  getConversation(tenantId: string, sessionId: string): Promise<Conversation | null>;
  history(q: HistoryQuery): Promise<HistoryPage>;
  /** Messages of a conversation with seq > afterSeq, ascending, at most `limit` (recovery, gap fill). */
  since(tenantId: string, sessionId: string, afterSeq: number, limit: number): Promise<ChatMessage[]>;
  /**
   * Records that `readerId` read up to `messageId` (a pointer per reader that only moves forward),
   * and moves the conversation's shared pointer of the reader's side (`agent:*` readers: the
   * agents'; others: the visitor's) with its unread count, in one transaction. When the agents'
   * pointer moved, a conversation_updated event is written with it (`update`). `found: false` when
   * the message is not in that conversation.
   */
  markRead(tenantId: string, sessionId: string, readerId: string, messageId: string): Promise<ReadResult>;
  /** Every reader's pointer in a conversation. */
  readPointers(tenantId: string, sessionId: string): Promise<ReadPointer[]>;
  /**
   * Retention: deletes up to `limit` of the tenant's messages created before `before` (their outbox
   * rows with them); returns how many. Conversations stay, so their seqs keep counting up; in the
   * same transaction their summaries lose what was deleted (counts, a deleted lastMessage) and each
   * changed one gets a conversation_updated event.
   */
  deleteMessagesBefore(tenantId: string, before: Date, limit: number): Promise<number>;
  /**
   * Erasure: deletes a subject's conversations — one session's, or every conversation
   * owned by a user — with their messages, read pointers and outbox rows, plus (for a user) the
   * read pointers that user left in other conversations of the tenant. One transaction. With
   * `dryRun` nothing is deleted and the counts say what would be. Only this tenant's rows.
   */
  eraseSubject(tenantId: string, subject: EraseSubject, opts: { dryRun: boolean }): Promise<DatabaseErasure>;
}

export type EraseSubject = { readonly sessionId: string } | { readonly userId: string };

export interface DatabaseErasure {
  /** The session ids of the erased conversations (the store's keys are erased for these). */
  readonly sessionIds: string[];
  readonly conversations: number;
  readonly messages: number;
  readonly readPointers: number;
  readonly outboxRows: number;
}

export type ReadResult = { readonly found: false } | { readonly found: true; readonly update?: ConversationUpdate };

export interface ConversationQuery {
  readonly tenantId: string;
  /** undefined: every status. */
  readonly status?: ConversationStatus;
  /** An agent id, or null for unassigned; undefined: anyone. */
  readonly assignee?: string | null;
  /** Opaque cursor from a previous page's `nextCursor`. */
  readonly before?: string;
  readonly limit: number;
}

/** Summaries as stored: `online` is false here; the domain fills it from presence. */
export interface ConversationPage {
  /** Newest activity first. */
  readonly conversations: ConversationSummary[];
  readonly nextCursor: string | null;
}

export type ConversationChange = { readonly status: ConversationStatus } | { readonly assignee: string | null };

export type ChangeResult =
  | { readonly kind: 'not_found' }
  /** Nothing changed (already so): no system message, no event. */
  | { readonly kind: 'unchanged'; readonly conversation: ConversationSummary; readonly version: number }
  | {
      readonly kind: 'changed';
      /** The system message recording the change (its outbox row id is its id). */
      readonly message: ChatMessage;
      readonly update: ConversationUpdate;
    };

/** The agents' side of conversations (DESIGN.md "Conversations"). */
export interface ConversationStore {
  /** A tenant's conversations with activity, newest first, keyset-paged on an index starting with the tenant. */
  list(q: ConversationQuery): Promise<ConversationPage>;
  /** One conversation's summary within its tenant (null: unknown, or another tenant's). */
  summary(tenantId: string, sessionId: string): Promise<{ conversation: ConversationSummary; version: number } | null>;
  /**
   * Changes status or assignee in one transaction under the conversation's row lock: the next seq
   * goes to a system message (sender.type 'system', `meta.event`), with its outbox row and a
   * conversation_updated event.
   */
  change(tenantId: string, sessionId: string, change: ConversationChange, by: Actor): Promise<ChangeResult>;
  /**
   * Auto-assignment: assigns the conversation, if still unassigned and open, to the next of
   * `candidates` (round robin per tenant) with fewer than `cap` open conversations. Same effects as
   * change(); `unchanged` when nobody qualifies or it was assigned meanwhile.
   */
  autoAssign(tenantId: string, sessionId: string, candidates: readonly string[], cap: number): Promise<ChangeResult>;
  /**
   * A conversation_updated event for the conversation as it is now (at its next version), written to
   * the conversation outbox: for changes that take no seq, e.g. the visitor's contact. null: unknown, or
   * not in the inbox yet (no message or change).
   */
  announce(tenantId: string, sessionId: string): Promise<ConversationUpdate | null>;
  /** Unread agent messages for the visitor (after the visitor's read pointer). */
  visitorUnread(tenantId: string, sessionId: string): Promise<number>;
}

/** The outbox of conversation_updated events: written in the changing transaction, drained by the relay. */
export interface ConversationOutbox {
  /** Like Outbox.claimStale, for conversation_outbox rows. */
  claimStale(minAgeMs: number, limit: number, handle: (updates: ConversationUpdate[]) => Promise<string[]>): Promise<number>;
  markDone(ids: readonly string[]): Promise<void>;
  pendingCount(): Promise<number>;
}

export interface ReadPointer {
  readonly readerId: string;
  readonly messageId: string;
  readonly seq: number;
  /** ISO 8601. */
  readonly at: string;
}

export interface OutboxEntry {
  readonly id: string;
  readonly message: ChatMessage;
}

/** The durable side of "publish after commit": rows written by accept(), drained by the relay. */
export interface Outbox {
  /**
   * Claims undone rows older than `minAgeMs` (by the database's clock), at most `limit`, oldest
   * first, and passes them to `handle`, which returns the ids it published; those rows are done.
   * On PostgreSQL the rows stay locked (FOR UPDATE SKIP LOCKED) until `handle` returns, so nodes
   * sweeping at once never take the same row. Returns how many rows were claimed.
   */
  claimStale(minAgeMs: number, limit: number, handle: (entries: OutboxEntry[]) => Promise<string[]>): Promise<number>;
  /** Marks rows done (deletes them). */
  markDone(ids: readonly string[]): Promise<void>;
  /**
   * Marks message rows and conversation_outbox rows (ConversationOutbox's) done in one statement:
   * the relay's fast path, where a message and its conversation_updated event finish publishing
   * together, so one round trip retires both.
   */
  markAllDone(messageIds: readonly string[], updateIds: readonly string[]): Promise<void>;
  /** Rows not yet done (metrics, tests, `/readyz` detail). */
  pendingCount(): Promise<number>;
  /**
   * A tenant's messages created at or after `since` (ISO), oldest first, keyset-paged by
   * (createdAt, id) after `after`; reads messages_tenant_created_idx. The webhook dispatcher's
   * Redis loss guard re-appends their jobs when Redis lost its data (src/store/redis/redis-loss-guard.ts):
   * rows marked done were deleted, the messages are the durable record of what was published.
   */
  createdSince(
    tenantId: string,
    since: string,
    after: { createdAt: string; id: string } | undefined,
    limit: number,
  ): Promise<ChatMessage[]>;
  /**
   * The same for conversation_updated: a fresh event with the current summary of each of the
   * tenant's conversations active at or after `since`, oldest activity first, keyset-paged by
   * (lastActivityAt, sessionId). The events published were deleted from the conversation outbox; a
   * conversation's current state supersedes every one of them (clients keep the highest version).
   */
  activeSince(
    tenantId: string,
    since: string,
    after: { lastActivityAt: string; sessionId: string } | undefined,
    limit: number,
  ): Promise<ConversationUpdate[]>;
}

// ---------------------------------------------------------------- offline continuity

export interface Contact {
  readonly email: string;
  readonly name?: string;
}

/** An email job this node leased (claimDueEmails): valid while `leaseId` is still the job's. */
export interface ClaimedEmailJob {
  readonly leaseId: string;
  /** 'visitor': agent replies emailed to the visitor; 'tenant': visitor messages notified to the tenant. */
  readonly kind: EmailKind;
  /** The conversation's id (its reply address is derived from it). */
  readonly conversationId: string;
  readonly tenantId: string;
  readonly sessionId: string;
  /** The conversation's verified user, if any (presence lists the visitor under it, else under the session). */
  readonly userId: string | null;
  /** Attempts of this email so far, this one included. */
  readonly attempts: number;
  /** The last message seq already emailed (agent replies for 'visitor', visitor messages for 'tenant'). */
  readonly emailedSeq: number;
  /** The visitor's read pointer: agent messages up to it were seen. */
  readonly visitorReadSeq: number;
  readonly contact: Contact | null;
  /** The job's request count when leased (a reply arriving meanwhile raises it). */
  readonly requests: number;
}

export type EmailKind = 'visitor' | 'tenant';

export interface EmailDelivery {
  readonly id: string;
  readonly kind: EmailKind;
  readonly tenantId: string;
  readonly sessionId: string;
  readonly recipient: string;
  readonly status: 'sent' | 'failed';
  /** The agent messages it carried (or would have): seqs firstSeq..lastSeq. */
  readonly firstSeq: number;
  readonly lastSeq: number;
  readonly messages: number;
  readonly attempts: number;
  readonly error: string | null;
  /** ISO 8601. */
  readonly at: string;
}

/** What became of a leased job (recordEmail): every case moves `emailed_seq` to `upToSeq`. */
export type EmailOutcome =
  | { readonly kind: 'sent'; readonly recipient: string; readonly firstSeq: number; readonly upToSeq: number; readonly messages: number }
  /** Refused for good (a 5xx, or retries exhausted): recorded, not retried, visible in `chatd emails ls`. */
  | {
      readonly kind: 'failed';
      readonly recipient: string;
      readonly firstSeq: number;
      readonly upToSeq: number;
      readonly messages: number;
      readonly error: string;
    }
  /** Nothing to send (no address, unsubscribed, all read or already emailed): no delivery row. */
  | { readonly kind: 'nothing'; readonly upToSeq: number };

/**
 * Contact capture and the email jobs of offline continuity (DESIGN.md "Offline continuity"). A job
 * per conversation is the lease that keeps nodes from racing (claimed with FOR UPDATE SKIP LOCKED
 * on PostgreSQL; PGlite has one connection), and its `emailed_seq` records what was sent.
 */
export interface OfflineStore {
  /** Stores the visitor's contact on the conversation; false when the tenant has no such conversation. */
  setContact(tenantId: string, sessionId: string, contact: Contact): Promise<boolean>;
  /**
   * An agent replied ('visitor'), or a visitor wrote while nobody was available ('tenant'): makes
   * the conversation's job of that kind due at `dueAt` unless one is already pending (then its
   * earlier due time stays: the delay runs from the first message not yet emailed).
   */
  scheduleEmail(tenantId: string, sessionId: string, dueAt: Date, kind?: EmailKind): Promise<void>;
  /** Leases up to `limit` pending jobs due now (whose lease is free or expired) for `leaseMs`. */
  claimDueEmails(limit: number, leaseMs: number): Promise<ClaimedEmailJob[]>;
  /** Agent messages of the conversation with seq > `afterSeq`, ascending, at most `limit`. */
  agentMessagesAfter(tenantId: string, sessionId: string, afterSeq: number, limit: number): Promise<ChatMessage[]>;
  /**
   * The visitor's messages (visitor or user senders) with seq > `afterSeq` that no agent message
   * follows (not answered yet), ascending, at most `limit` (the oldest).
   */
  unansweredVisitorMessagesAfter(tenantId: string, sessionId: string, afterSeq: number, limit: number): Promise<ChatMessage[]>;
  /**
   * Records the outcome of a leased job in one transaction (the delivery row, `emailed_seq`, the
   * job no longer pending — unless a reply came while it was leased: then due again after
   * `nextDelayMs`) — only if the lease is still ours.
   */
  recordEmail(job: ClaimedEmailJob, outcome: EmailOutcome, nextDelayMs: number): Promise<boolean>;
  /** A transient failure: releases the lease and makes the job due again at `dueAt`. */
  retryEmail(job: ClaimedEmailJob, dueAt: Date, error: string): Promise<boolean>;
  /** The visitor is back: nothing to email now (the job waits for the next agent reply). */
  cancelEmail(job: ClaimedEmailJob, nextDelayMs: number): Promise<boolean>;
  /** Deliveries, newest first, optionally of one tenant and/or status. */
  listDeliveries(opts: { limit: number; tenantId?: string; status?: 'sent' | 'failed' }): Promise<EmailDelivery[]>;
  /** Jobs pending (due or waiting), for metrics and `chatd emails ls`. */
  pendingEmails(): Promise<number>;
  /** A conversation by its id (a reply address names it), with what proves its ownership. */
  conversationById(id: string): Promise<{ tenantId: string; sessionId: string; userId: string | null; fingerprint: string | null } | null>;
  unsubscribe(tenantId: string, email: string): Promise<void>;
  isUnsubscribed(tenantId: string, email: string): Promise<boolean>;
}

// ---------------------------------------------------------------- revocations

/** One subject's revocation as recorded: tokens of `userId` in `tenantId` issued before `atMs` are refused. */
export interface Revocation {
  readonly tenantId: string;
  readonly userId: string;
  /** ms since the epoch. */
  readonly atMs: number;
}

/**
 * The durable record of `chatd token revoke` (src/ops/revocation.ts): written, and committed,
 * before a revoke is acknowledged; the store keeps the copy every node reads, and is restored from
 * here where it can have lost it (an in-process store after a restart, Redis after a restart without
 * its data). Kept when a user or tenant is erased: it is a security record, not chat data.
 */
export interface RevocationLog {
  /**
   * Records `atMs` as the subject's revocation unless a later one is recorded (only moves forward:
   * the later instant wins, whatever the order of concurrent calls). Resolves after COMMIT with the
   * instant now recorded.
   */
  record(tenantId: string, userId: string, atMs: number): Promise<number>;
  /** The recorded instant (ms), or null when the subject was never revoked. */
  revokedAt(tenantId: string, userId: string): Promise<number | null>;
  /** Every recorded revocation, keyset-paged by (tenantId, userId) after `after`, at most `limit`. */
  list(after: { tenantId: string; userId: string } | undefined, limit: number): Promise<Revocation[]>;
}

export interface Database {
  readonly messages: MessageStore;
  /** `chatd token revoke`'s durable record. */
  readonly revocations: RevocationLog;
  /** Contact capture and email jobs. */
  readonly offline: OfflineStore;
  readonly outbox: Outbox;
  readonly conversations: ConversationStore;
  readonly conversationOutbox: ConversationOutbox;
  readonly dialect: 'postgres' | 'pglite';
  /** Throws DependencyError when unreachable (for /readyz). */
  ping(): Promise<void>;
  /** Lets accepts in flight commit and answer, then closes the pool (or PGlite and its folder lock). */
  close(): Promise<void>;
}

/**
 * Publishes accepted messages after commit (DESIGN.md step 4). `publishNow` is fire-and-forget:
 * it calls EventLog.publishMessage and marks the outbox row done; on failure the row stays undone
 * and the relay's periodic sweep (on any node) re-publishes it later — late, never lost.
 */
export interface OutboxRelay {
  publishNow(message: ChatMessage, outboxId: string): void;
  /** The same for a conversation_updated event (its outbox row id is `update.id`). */
  publishUpdateNow(update: ConversationUpdate): void;
  /** One sweep now (normally on a timer): re-publishes stale rows; resolves with how many were published. */
  sweep(): Promise<number>;
  /** Stops the timer and waits (bounded) for publishes in flight. */
  stop(): Promise<void>;
}
