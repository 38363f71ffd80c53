// The tables as Kysely sees them. The SQL that creates them is in migrations.ts; keep both in step.
import type { ColumnType, Generated } from 'kysely';

/** timestamptz: written as a Date or ISO string, read as a Date (pg and PGlite both parse it). */
type Timestamp = ColumnType<Date, Date | string, Date | string>;

export interface ConversationsTable {
  /** Internal key (UUID); the public key is `session_id`, unique across tenants. */
  id: string;
  tenant_id: string;
  session_id: string;
  user_id: string | null;
  /** The owner's fingerprint: decides later session bindings after the 24 h `session:` key expired. */
  fingerprint: string | null;
  /** open | pending | resolved. */
  status: Generated<string>;
  /** The last seq handed out; the row lock on it orders a conversation's messages by commit. */
  last_seq: Generated<number>;
  /** conversation_updated's version: one more on every change that writes the event (summary.ts). */
  version: Generated<number>;
  created_at: Generated<Timestamp>;
  updated_at: Generated<Timestamp>;
  /** The agent id (JWT `sub`) the conversation is assigned to. */
  assignee: string | null;
  /** The agents' read pointer (shared by the tenant's agents): the last seq they read. */
  agents_read_seq: Generated<number>;
  /** The visitor's (or user's) read pointer. */
  visitor_read_seq: Generated<number>;
  /** Visitor/user messages after agents_read_seq (system messages never count). */
  unread_by_agents: Generated<number>;
  /** Agent messages after visitor_read_seq. */
  unread_by_visitor: Generated<number>;
  /** Messages other than system messages. */
  message_count: Generated<number>;
  /** The newest message other than a system message (no foreign key: retention may delete it). */
  last_message_id: string | null;
  /** The newest message or change; null until the first (such a conversation is not listed). */
  last_activity_at: ColumnType<Date | null, Date | string | null | undefined, Date | string | null>;
  /** Contact fields the visitor gave (written by contact capture). */
  contact_email: string | null;
  contact_name: string | null;
}

export interface ConversationOutboxTable {
  /** The event's id: its idempotency marker when published. */
  id: string;
  tenant_id: string;
  conversation_id: string;
  /** conversations.version when the summary was taken. */
  version: number;
  /** The ConversationSummary taken in the transaction (without `online`, which presence adds). */
  summary: ColumnType<Record<string, unknown>, string, string>;
  created_at: Generated<Timestamp>;
}

export interface AutoAssignCursorTable {
  tenant_id: string;
  /** The agent that got the tenant's last automatic assignment. */
  last_agent_id: string;
  updated_at: Generated<Timestamp>;
}

export type EmailKind = 'visitor' | 'tenant';

/** One per conversation with agent replies to email (migration 0004_offline_email). */
export interface EmailJobsTable {
  conversation_id: string;
  /** 'visitor': agent replies to the visitor; 'tenant': visitor messages to the tenant's notifyAddress (0005). */
  kind: Generated<EmailKind>;
  tenant_id: string;
  /** An email is due (at due_at) or being sent; false once the conversation is caught up. */
  pending: Generated<boolean>;
  due_at: ColumnType<Date, Date | string, Date | string>;
  /** Attempts of the current email (reset when it is sent or refused). */
  attempts: Generated<number>;
  /** Who holds the job, until when: a node sending it; expired = anyone may take it. */
  lease_id: string | null;
  lease_until: ColumnType<Date | null, Date | string | null | undefined, Date | string | null>;
  /** The last agent message seq already emailed (or given up on): never emailed again. */
  emailed_seq: Generated<number>;
  /** Agent replies that asked for an email: one arriving while a node sends makes the job pending again. */
  requests: Generated<number>;
  last_error: string | null;
  updated_at: Generated<Timestamp>;
}

/** Every email sent or permanently refused. */
export interface EmailDeliveriesTable {
  id: string;
  tenant_id: string;
  conversation_id: string;
  session_id: string;
  recipient: string;
  status: 'sent' | 'failed';
  kind: Generated<EmailKind>;
  first_seq: number;
  last_seq: number;
  messages: number;
  attempts: number;
  error: string | null;
  created_at: Generated<Timestamp>;
}

export interface EmailUnsubscribesTable {
  tenant_id: string;
  email: string;
  created_at: Generated<Timestamp>;
}

export interface MessagesTable {
  id: string;
  /** Global insertion order (identity): pages a user's history across conversations. */
  pos: ColumnType<string | number, never, never>;
  tenant_id: string;
  conversation_id: string;
  /** Denormalised from the conversation so a message row is self-describing. */
  session_id: string;
  seq: number;
  sender_type: string;
  sender_id: string;
  sender_verified: boolean;
  text: string;
  client_message_id: string | null;
  /** sha256 of the text: a retry with the same clientMessageId must carry the same content. */
  content_hash: string;
  meta: ColumnType<Record<string, unknown>, string, string>;
  created_at: Timestamp;
}

export interface ReadPointersTable {
  conversation_id: string;
  reader_id: string;
  tenant_id: string;
  message_id: string;
  seq: number;
  updated_at: Timestamp;
}

export interface OutboxTable {
  /** The message to publish; the row is deleted once published. */
  message_id: string;
  created_at: Timestamp;
}

/** `chatd token revoke`'s durable record (migration 0008): a subject's latest revocation instant. */
export interface RevocationsTable {
  tenant_id: string;
  /** The tokens' subject (JWT `sub`): an agent's or user's id. */
  user_id: string;
  revoked_at: Timestamp;
  updated_at: Generated<Timestamp>;
}

export interface Tables {
  conversations: ConversationsTable;
  messages: MessagesTable;
  read_pointers: ReadPointersTable;
  outbox: OutboxTable;
  conversation_outbox: ConversationOutboxTable;
  auto_assign_cursor: AutoAssignCursorTable;
  email_jobs: EmailJobsTable;
  email_deliveries: EmailDeliveriesTable;
  email_unsubscribes: EmailUnsubscribesTable;
  revocations: RevocationsTable;
}
