// The inbox summary of a conversation, from its row (and its last message): one mapping shared by
// the list, the single read, and the transactions that write conversation_updated events.
import { randomUUID } from 'node:crypto';
import { sql, type Kysely } from 'kysely';
import { cutText, type ConversationStatus, type ConversationSummary, type ConversationUpdate } from '../chat/conversation.js';
import type { SenderType } from '../chat/message.js';
import { iso } from './rows.js';
import type { Tables } from './schema.js';

/** What a summary needs of the conversation row. */
export interface SummaryState {
  readonly id: string;
  readonly tenant_id: string;
  readonly session_id: string;
  readonly status: string;
  readonly assignee: string | null;
  readonly user_id: string | null;
  readonly contact_name: string | null;
  readonly contact_email: string | null;
  readonly unread_by_agents: number | string;
  readonly message_count: number | string;
  readonly last_seq: number | string;
  /** conversation_updated's version: every writer of an event adds one under the row lock. */
  readonly version: number | string;
  readonly created_at: Date | string;
  readonly last_activity_at: Date | string | null;
}

/** The last message as a summary shows it (text already cut). */
export interface LastMessageRow {
  readonly lm_id: string | null;
  readonly lm_text: string | null;
  readonly lm_sender_type: string | null;
  readonly lm_sender_id: string | null;
  readonly lm_sender_verified: boolean | null;
  readonly lm_created_at: Date | string | null;
}

export type SummaryRow = SummaryState & LastMessageRow;

/** Every column of SummaryState on `conversations c`. */
const STATE_COLUMN_LIST =
  'c.id, c.tenant_id, c.session_id, c.status, c.assignee, c.user_id, c.contact_name, c.contact_email, c.unread_by_agents, ' +
  'c.message_count, c.last_seq, c.version, c.created_at, c.last_activity_at';

/** SummaryRow from `conversations c left join messages lm on lm.id = c.last_message_id`. */
export const SUMMARY_COLUMNS = sql.raw(
  `${STATE_COLUMN_LIST}, ` +
    'lm.id as lm_id, left(lm.text, 200) as lm_text, lm.sender_type as lm_sender_type, lm.sender_id as lm_sender_id, ' +
    'lm.sender_verified as lm_sender_verified, lm.created_at as lm_created_at',
);

export function toSummary(r: SummaryState, last: LastMessageRow | ConversationSummary['lastMessage']): ConversationSummary {
  const lastMessage =
    last === null
      ? null
      : 'lm_id' in last
        ? last.lm_id === null
          ? null
          : {
              id: last.lm_id,
              text: cutText(last.lm_text ?? ''),
              sender: { type: last.lm_sender_type as SenderType, id: last.lm_sender_id ?? '', verified: last.lm_sender_verified === true },
              createdAt: iso(last.lm_created_at!),
            }
        : { ...last, text: cutText(last.text) };
  return {
    sessionId: r.session_id,
    status: r.status as ConversationStatus,
    assignee: r.assignee,
    visitor: {
      ...(r.user_id !== null
        ? { type: 'user' as const, id: r.user_id, userId: r.user_id, verified: true }
        : { type: 'visitor' as const, id: r.session_id, verified: false }),
      ...(r.contact_name ? { name: r.contact_name } : {}),
      ...(r.contact_email ? { email: r.contact_email } : {}),
    },
    lastMessage,
    unreadCount: Number(r.unread_by_agents),
    messageCount: Number(r.message_count),
    online: false,
    createdAt: iso(r.created_at),
    lastActivityAt: iso(r.last_activity_at ?? r.created_at),
  };
}

/**
 * A conversation_updated event for a summary taken now, at the row's version. A writer of a new
 * event adds one to conversations.version in the same statement that changes the row (under its
 * lock), so every event of a conversation has a version of its own, in commit order: a client
 * keeping the highest never keeps a stale summary over a newer one of the same version.
 */
export function updateOf(r: SummaryState, conversation: ConversationSummary, at: string): ConversationUpdate {
  return { id: randomUUID(), tenantId: r.tenant_id, sessionId: r.session_id, version: Number(r.version), conversation, at };
}

/** Writes conversation_updated events to the conversation outbox (inside the caller's transaction). */
export async function insertUpdates(conn: Kysely<Tables>, rows: readonly { convId: string; update: ConversationUpdate }[]): Promise<void> {
  if (rows.length === 0) return;
  const values = rows.map(
    ({ convId, update: u }) => sql`(${u.id}::uuid, ${u.tenantId}, ${convId}::uuid, ${u.version}::int, ${JSON.stringify(u)}::text::jsonb)`,
  );
  await sql`insert into conversation_outbox (id, tenant_id, conversation_id, version, summary)
            values ${sql.join(values)}`.execute(conn);
}
