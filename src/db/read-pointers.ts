// The read pointers: one per reader and conversation, moving only forward.
import { sql, type Kysely } from 'kysely';
import { toQueryError } from './db-errors.js';
import type { ReadPointer, ReadResult } from './ports.js';
import { iso } from './rows.js';
import type { Tables } from './schema.js';
import { insertUpdates, SUMMARY_COLUMNS, toSummary, updateOf, type SummaryRow } from './summary.js';

const UUID_RE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

export async function markRead(
  db: Kysely<Tables>,
  tenantId: string,
  sessionId: string,
  readerId: string,
  messageId: string,
): Promise<ReadResult> {
  if (!UUID_RE.test(messageId)) return { found: false };
  const agents = readerId.startsWith('agent:');
  try {
    return await db.transaction().execute(async (tx) => {
      const target = await sql<{ conversation_id: string; seq: number }>`
        select m.conversation_id, m.seq
        from conversations c join messages m on m.conversation_id = c.id
        where c.session_id = ${sessionId} and c.tenant_id = ${tenantId} and m.id = ${messageId}::uuid`.execute(tx);
      const row = target.rows[0];
      if (!row) return { found: false };
      // The conversation's row lock first (before the pointer's, in the order erasure takes them):
      // the statements below then read after any message that committed meanwhile (in one UPDATE …
      // FROM, a wait for that commit re-read the row but kept the joined last message from before
      // it: a summary with new counts and an old lastMessage).
      const locked = await sql`select id from conversations where id = ${row.conversation_id}::uuid for update`.execute(tx);
      if (locked.rows.length === 0) return { found: false };
      // A pointer only moves forward: a late "read" of an older message does not move it back.
      await sql`
        insert into read_pointers (conversation_id, reader_id, tenant_id, message_id, seq, updated_at)
        values (${row.conversation_id}::uuid, ${readerId}, ${tenantId}, ${messageId}::uuid, ${row.seq}::int, now())
        on conflict (conversation_id, reader_id) do update
          set message_id = excluded.message_id, seq = excluded.seq, updated_at = excluded.updated_at
          where read_pointers.seq < excluded.seq`.execute(tx);
      // The side's shared pointer and what is still unread after it (system messages never count;
      // the count reads only the messages after the pointer, along messages_conversation_seq_key).
      const seq = Number(row.seq);
      const moved = agents
        ? await sql<SummaryRow>`
            update conversations c set agents_read_seq = ${seq}::int, version = c.version + 1,
              unread_by_agents = (select count(*) from messages m where m.conversation_id = c.id and m.seq > ${seq}::int
                                  and m.sender_type in ('visitor', 'user'))
            from conversations c0 left join messages lm on lm.id = c0.last_message_id
            where c.id = ${row.conversation_id}::uuid and c0.id = c.id and c.agents_read_seq < ${seq}::int
            returning ${SUMMARY_COLUMNS}`.execute(tx)
        : await sql<SummaryRow>`
            update conversations c set visitor_read_seq = ${seq}::int,
              unread_by_visitor = (select count(*) from messages m where m.conversation_id = c.id and m.seq > ${seq}::int
                                   and m.sender_type = 'agent')
            from conversations c0 left join messages lm on lm.id = c0.last_message_id
            where c.id = ${row.conversation_id}::uuid and c0.id = c.id and c.visitor_read_seq < ${seq}::int
            returning ${SUMMARY_COLUMNS}`.execute(tx);
      const r = moved.rows[0];
      // The agents' unread count is in the inbox summary: tell the agents, at the version the update
      // above moved on (RETURNING reads the new row). The visitor's is not in it: no event, no version.
      if (!agents || !r) return { found: true };
      const update = updateOf(r, toSummary(r, r), new Date().toISOString());
      await insertUpdates(tx, [{ convId: r.id, update }]);
      return { found: true, update };
    });
  } catch (err) {
    throw toQueryError(err);
  }
}

export async function readPointers(db: Kysely<Tables>, tenantId: string, sessionId: string): Promise<ReadPointer[]> {
  try {
    const { rows } = await sql<{ reader_id: string; message_id: string; seq: number; updated_at: Date | string }>`
      select r.reader_id, r.message_id, r.seq, r.updated_at
      from conversations c join read_pointers r on r.conversation_id = c.id
      where c.session_id = ${sessionId} and c.tenant_id = ${tenantId}
      order by r.reader_id`.execute(db);
    return rows.map((r) => ({ readerId: r.reader_id, messageId: r.message_id, seq: Number(r.seq), at: iso(r.updated_at) }));
  } catch (err) {
    throw toQueryError(err);
  }
}
