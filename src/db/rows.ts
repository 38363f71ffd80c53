// The rows the message queries read, and how they become the domain's values. Column types come
// from schema.ts; only what a raw `sql` query returns differently is widened here (PGlite may hand
// back jsonb as text and timestamps as strings).
import { sql, type Selectable } from 'kysely';
import type { ChatMessage, MessageMeta, SenderType } from '../chat/message.js';
import type { ConversationStatus } from '../chat/conversation.js';
import type { Conversation } from './ports.js';
import type { ConversationsTable, MessagesTable } from './schema.js';

type Widened<T, K extends keyof T> = Omit<T, K> & { [P in K]: unknown };

/** A message row as `MESSAGE_COLUMNS` selects it. */
export type MessageRow = Omit<Widened<Selectable<MessagesTable>, 'meta'>, 'pos' | 'conversation_id' | 'created_at'> & {
  created_at: Date | string;
};

/** A conversation row (`selectAll()`). */
export type ConversationRow = Omit<Selectable<ConversationsTable>, 'created_at' | 'updated_at' | 'last_activity_at'> & {
  created_at: Date | string;
  updated_at: Date | string;
  last_activity_at: Date | string | null;
};

/** Every column of `MessageRow`, for raw queries on `messages m`. */
export const MESSAGE_COLUMNS = sql.raw(
  'm.id, m.tenant_id, m.session_id, m.seq, m.sender_type, m.sender_id, m.sender_verified, m.text, m.client_message_id, m.content_hash, m.meta, m.created_at',
);

/** A conversation's id within its tenant, as a scalar subquery (null: none, or another tenant's). */
export const conversationOf = (tenantId: string, sessionId: string) =>
  sql`(select id from conversations where session_id = ${sessionId} and tenant_id = ${tenantId})`;

export const iso = (v: Date | string) => (v instanceof Date ? v : new Date(v)).toISOString();

export function rowToMessage(r: MessageRow): ChatMessage {
  const meta = (typeof r.meta === 'string' ? JSON.parse(r.meta) : r.meta) as MessageMeta;
  return {
    id: r.id,
    tenantId: r.tenant_id,
    sessionId: r.session_id,
    seq: Number(r.seq),
    sender: { type: r.sender_type as SenderType, id: r.sender_id, verified: r.sender_verified },
    text: r.text,
    ...(r.client_message_id !== null ? { clientMessageId: r.client_message_id } : {}),
    createdAt: iso(r.created_at),
    meta,
  };
}

export function rowToConversation(r: ConversationRow): Conversation {
  return {
    tenantId: r.tenant_id,
    sessionId: r.session_id,
    userId: r.user_id,
    fingerprint: r.fingerprint,
    status: r.status as ConversationStatus,
    lastSeq: Number(r.last_seq),
    createdAt: iso(r.created_at),
    updatedAt: iso(r.updated_at),
  };
}
