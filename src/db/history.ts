// Reads of a conversation's messages: history pages (by session, or across a verified user's
// conversations) and the recovery/gap-fill read after a seq. Every page reads along an index.
import { sql, type Kysely } from 'kysely';
import type { ChatMessage } from '../chat/message.js';
import { ChatdError } from '../errors.js';
import { decodeCursor, encodeCursor, type Cursor } from './cursor.js';
import { toQueryError } from './db-errors.js';
import type { HistoryPage, HistoryQuery } from './ports.js';
import { conversationOf, MESSAGE_COLUMNS, rowToMessage, type MessageRow } from './rows.js';
import type { Tables } from './schema.js';

/** Largest page of history or recovery a caller may ask for. */
export const MAX_PAGE = 1000;

export async function history(db: Kysely<Tables>, q: HistoryQuery): Promise<HistoryPage> {
  const limit = Number.isFinite(q.limit) ? Math.max(1, Math.min(MAX_PAGE, Math.floor(q.limit))) : MAX_PAGE;
  const cursor = q.before === undefined ? undefined : decodeCursor(q.before);
  try {
    if (q.sessionId !== undefined) {
      if (cursor && cursor.kind !== 'seq') throw invalidCursor();
      // The conversation as a scalar subquery: the page is then read backwards along
      // messages_conversation_seq_key, `limit` rows however long the conversation (as a join,
      // PostgreSQL read the whole conversation and sorted it for every page).
      const { rows } = await sql<MessageRow>`
        select ${MESSAGE_COLUMNS}
        from messages m
        where m.conversation_id = ${conversationOf(q.tenantId, q.sessionId)}
          ${cursor ? sql`and m.seq < ${cursor.value}::int` : sql``}
        order by m.seq desc
        limit ${limit + 1}`.execute(db);
      return pageOf(rows, limit, (oldest) => ({ kind: 'seq', value: Number(oldest.seq) }));
    }
    if (q.userId !== undefined) {
      if (cursor && cursor.kind !== 'pos') throw invalidCursor();
      const { rows } = await sql<MessageRow & { pos_text: string }>`
        select ${MESSAGE_COLUMNS}, m.pos::text as pos_text
        from conversations c join messages m on m.conversation_id = c.id
        where c.tenant_id = ${q.tenantId} and c.user_id = ${q.userId}
          ${cursor ? sql`and m.pos < ${cursor.value}::bigint` : sql``}
        order by m.pos desc
        limit ${limit + 1}`.execute(db);
      return pageOf(rows, limit, (oldest) => ({ kind: 'pos', value: Number(oldest.pos_text) }));
    }
  } catch (err) {
    throw toQueryError(err);
  }
  throw new ChatdError('validation_failed', 'History needs a sessionId or a userId', {
    details: [{ path: 'sessionId', message: 'sessionId or userId is required' }],
  });
}

/**
 * A page from up to `limit + 1` rows read newest first: the oldest `limit` of them in order, and,
 * when there were more, the cursor of the oldest one shown (the next page is before it).
 */
function pageOf<R extends MessageRow>(rows: R[], limit: number, cursorOf: (oldest: R) => Cursor): HistoryPage {
  const page = rows.slice(0, limit).reverse();
  return { messages: page.map(rowToMessage), nextCursor: rows.length > limit ? encodeCursor(cursorOf(page[0]!)) : null };
}

export async function since(
  db: Kysely<Tables>,
  tenantId: string,
  sessionId: string,
  afterSeq: number,
  limit: number,
): Promise<ChatMessage[]> {
  const n = Number.isFinite(limit) ? Math.max(1, Math.min(MAX_PAGE, Math.floor(limit))) : MAX_PAGE;
  // seq is an integer column: anything past its range means "nothing after it".
  const after = Number.isFinite(afterSeq) ? Math.max(0, Math.min(2_147_483_647, Math.floor(afterSeq))) : 0;
  try {
    const { rows } = await sql<MessageRow>`
      select ${MESSAGE_COLUMNS}
      from messages m
      where m.conversation_id = ${conversationOf(tenantId, sessionId)} and m.seq > ${after}::int
      order by m.seq
      limit ${n}`.execute(db);
    return rows.map(rowToMessage);
  } catch (err) {
    throw toQueryError(err);
  }
}

function invalidCursor(): ChatdError {
  return new ChatdError('validation_failed', 'Invalid cursor', {
    details: [{ path: 'before', message: 'not a cursor from this history' }],
  });
}
