// Retention and erasure: the deletes that keep a tenant's data within its policy.
import { sql, type Kysely, type RawBuilder } from 'kysely';
import { toQueryError } from './db-errors.js';
import type { DatabaseErasure, EraseSubject } from './ports.js';
import type { Tables } from './schema.js';

export async function deleteMessagesBefore(db: Kysely<Tables>, tenantId: string, before: Date, limit: number): Promise<number> {
  try {
    return await db.transaction().execute(async (tx) => {
      // One node at a time per tenant: a node that finds the tenant's advisory lock
      // taken deletes nothing this round (0 ends its loop); the holder carries on. SKIP LOCKED
      // still keeps a batch from waiting on rows an erasure holds.
      const lock = await sql<{ ok: boolean }>`select pg_try_advisory_xact_lock(hashtext(${`chatd:retention:${tenantId}`})) as ok`.execute(
        tx,
      );
      if (!lock.rows[0]?.ok) return 0;
      const r = await sql`
        delete from messages where id in (
          select id from messages
          where tenant_id = ${tenantId} and created_at < ${before.toISOString()}::timestamptz
          limit ${Math.max(1, Math.floor(limit))}
          for update skip locked)`.execute(tx);
      return Number(r.numAffectedRows ?? 0);
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
