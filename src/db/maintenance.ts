// Retention and erasure: the deletes that keep a tenant's data within its policy.
import { sql, type Kysely, type RawBuilder } from 'kysely';
import { toQueryError } from './db-errors.js';
import type { DatabaseErasure, EraseSubject } from './ports.js';
import type { Tables } from './schema.js';
import { insertUpdates, SUMMARY_COLUMNS, toSummary, updateOf, type SummaryRow } from './summary.js';

/**
 * One retention batch: up to `limit` of a tenant's messages created before `before`, and in the same
 * transaction the inbox state of their conversations brought in line with what is stored (the
 * conversation row stays: its seq and version keep counting). messageCount and both unread counts
 * lose the deleted messages they counted (a deleted visitor message after the agents' pointer is no
 * longer unread); a deleted lastMessage becomes the newest stored message other than a system
 * message, or null; each conversation whose summary changed gets a conversation_updated event at its
 * next version (published by the relay's sweep). lastActivityAt, status, assignee and the read
 * pointers (positions, by seq) stay.
 */
export async function deleteMessagesBefore(db: Kysely<Tables>, tenantId: string, before: Date, limit: number): Promise<number> {
  try {
    return await db.transaction().execute(async (tx) => {
      // One node at a time per tenant: a node that finds the tenant's advisory lock
      // taken deletes nothing this round (0 ends its loop); the holder carries on.
      const lock = await sql<{ ok: boolean }>`select pg_try_advisory_xact_lock(hashtext(${`chatd:retention:${tenantId}`})) as ok`.execute(
        tx,
      );
      if (!lock.rows[0]?.ok) return 0;
      const cutoff = before.toISOString();
      const picked = await sql<{ id: string; conversation_id: string }>`
        select id, conversation_id from messages
        where tenant_id = ${tenantId} and created_at < ${cutoff}::timestamptz
        limit ${Math.max(1, Math.floor(limit))}`.execute(tx);
      if (picked.rows.length === 0) return 0;
      const convIds = [...new Set(picked.rows.map((r) => r.conversation_id))];
      // The conversations' row locks first, in session-id order like a group commit takes them: the
      // counters below cannot race a message, a read or a change, and no lock cycle forms.
      await sql`select id from conversations where id = any(${convIds}::uuid[]) order by session_id for update`.execute(tx);
      const { rows } = await sql<{ id: string; total: number | string; n: number | string; lost_last: boolean }>`
        with deleted as (
          delete from messages
          where id = any(${picked.rows.map((r) => r.id)}::uuid[]) and tenant_id = ${tenantId} and created_at < ${cutoff}::timestamptz
          returning id, conversation_id, seq, sender_type
        ), lost as (
          select d.conversation_id as id,
                 count(*) as total,
                 count(*) filter (where d.sender_type <> 'system') as n,
                 count(*) filter (where d.sender_type in ('visitor', 'user') and d.seq > c.agents_read_seq) as by_agents,
                 count(*) filter (where d.sender_type = 'agent' and d.seq > c.visitor_read_seq) as by_visitor,
                 coalesce(bool_or(d.id = c.last_message_id), false) as lost_last
          from deleted d join conversations c on c.id = d.conversation_id
          group by d.conversation_id
        )
        update conversations c set
          message_count = greatest(0, c.message_count - l.n::int),
          unread_by_agents = greatest(0, c.unread_by_agents - l.by_agents::int),
          unread_by_visitor = greatest(0, c.unread_by_visitor - l.by_visitor::int),
          last_message_id = case when l.lost_last then null else c.last_message_id end,
          version = c.version + case when l.n > 0 then 1 else 0 end
        from lost l
        where c.id = l.id
        returning c.id, l.total, l.n, l.lost_last`.execute(tx);
      const lostLast = rows.filter((r) => r.lost_last).map((r) => r.id);
      if (lostLast.length > 0) {
        // This statement sees the delete: the newest message left, other than a system message.
        await sql`
          update conversations c set last_message_id = (
            select m.id from messages m where m.conversation_id = c.id and m.sender_type <> 'system' order by m.seq desc limit 1)
          where c.id = any(${lostLast}::uuid[])`.execute(tx);
      }
      // Only system messages gone: the summary is as it was (no event, no version).
      const changed = rows.filter((r) => Number(r.n) > 0).map((r) => r.id);
      if (changed.length > 0) {
        const summaries = await sql<SummaryRow>`
          select ${SUMMARY_COLUMNS}
          from conversations c left join messages lm on lm.id = c.last_message_id
          where c.id = any(${changed}::uuid[])`.execute(tx);
        const at = new Date().toISOString();
        await insertUpdates(
          tx,
          summaries.rows.map((r) => ({ convId: r.id, update: updateOf(r, toSummary(r, r), at) })),
        );
      }
      return rows.reduce((sum, r) => sum + Number(r.total), 0);
    });
  } catch (err) {
    throw toQueryError(err);
  }
}

export async function eraseSubject(
  db: Kysely<Tables>,
  tenantId: string,
  subject: EraseSubject,
  opts: { dryRun: boolean },
): Promise<DatabaseErasure> {
  try {
    return await db.transaction().execute(async (tx) => {
      const bySession = 'sessionId' in subject;
      const convs = await sql<{ id: string; session_id: string }>`
        select id, session_id from conversations
        where tenant_id = ${tenantId} and ${bySession ? sql`session_id = ${subject.sessionId}` : sql`user_id = ${subject.userId}`}
        order by session_id
        for update`.execute(tx);
      const ids = convs.rows.map((r) => r.id);
      const count = async (q: RawBuilder<{ n: string | number }>) => Number((await q.execute(tx)).rows[0]?.n ?? 0);
      const inConvs = ids.length > 0 ? sql`conversation_id in (${sql.join(ids)})` : sql`false`;
      const messages = await count(sql`select count(*) as n from messages where ${inConvs}`);
      const outboxRows = await count(sql`select count(*) as n from outbox o join messages m on m.id = o.message_id where ${inConvs}`);
      // A user's read pointers in conversations that stay (e.g. an agent's reads elsewhere).
      const readerFilter = bySession ? sql`false` : sql`(tenant_id = ${tenantId} and reader_id = ${subject.userId})`;
      const readPointers = await count(sql`select count(*) as n from read_pointers where ${inConvs} or ${readerFilter}`);
      if (!opts.dryRun) {
        await sql`delete from read_pointers where ${inConvs} or ${readerFilter}`.execute(tx);
        // messages, their outbox rows and read pointers go with them (on delete cascade).
        if (ids.length > 0) await sql`delete from conversations where id in (${sql.join(ids)})`.execute(tx);
      }
      return { sessionIds: convs.rows.map((r) => r.session_id), conversations: ids.length, messages, readPointers, outboxRows };
    });
  } catch (err) {
    throw toQueryError(err);
  }
}
