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
  status: Generated<string>;
  /** The last seq handed out; the row lock on it orders a conversation's messages by commit. */
  last_seq: Generated<number>;
  created_at: Generated<Timestamp>;
  updated_at: Generated<Timestamp>;
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

export interface Tables {
  conversations: ConversationsTable;
  messages: MessagesTable;
  read_pointers: ReadPointersTable;
  outbox: OutboxTable;
}
