// The OfflineStore port over Kysely (both dialects): contact capture on the conversation row, and
// the email jobs of offline continuity — one row per conversation, leased by one node at a time
// (an UPDATE over a FOR UPDATE SKIP LOCKED selection, so two nodes never take the same job), whose
// `emailed_seq` records what was sent so a retry never sends it again.
import { randomUUID } from 'node:crypto';
import { sql, type Kysely } from 'kysely';
import type { ChatMessage } from '../chat/message.js';
import { toQueryError } from './db-errors.js';
import type { ClaimedEmailJob, Contact, EmailDelivery, EmailKind, EmailOutcome, OfflineStore } from './ports.js';
import { conversationOf, iso, MESSAGE_COLUMNS, rowToMessage, type MessageRow } from './rows.js';
import type { Tables } from './schema.js';

const guard = async <T>(fn: () => Promise<T>): Promise<T> => {
  try {
    return await fn();
  } catch (err) {
    throw toQueryError(err);
  }
};

interface ClaimedRow {
  conversation_id: string;
  kind: EmailKind;
  tenant_id: string;
  session_id: string;
  user_id: string | null;
  attempts: number;
  emailed_seq: number;
  requests: number;
  visitor_read_seq: number;
  contact_email: string | null;
  contact_name: string | null;
}

export class KyselyOfflineStore implements OfflineStore {
  constructor(private readonly db: Kysely<Tables>) {}

  setContact(tenantId: string, sessionId: string, contact: Contact): Promise<boolean> {
    return guard(async () => {
      const r = await this.db
        .updateTable('conversations')
        .set({ contact_email: contact.email, contact_name: contact.name ?? null, updated_at: sql`now()` })
        .where('session_id', '=', sessionId)
        .where('tenant_id', '=', tenantId)
        .executeTakeFirst();
      return Number(r.numUpdatedRows) > 0;
    });
  }

  scheduleEmail(tenantId: string, sessionId: string, dueAt: Date, kind: EmailKind = 'visitor'): Promise<void> {
    return guard(async () => {
      await sql`
        insert into email_jobs (conversation_id, kind, tenant_id, pending, due_at, requests)
        select id, ${kind}, tenant_id, true, ${dueAt.toISOString()}::timestamptz, 1 from conversations
        where session_id = ${sessionId} and tenant_id = ${tenantId}
        on conflict (conversation_id, kind) do update set
          due_at = case when email_jobs.pending then email_jobs.due_at else excluded.due_at end,
          attempts = case when email_jobs.pending then email_jobs.attempts else 0 end,
          pending = true,
          requests = email_jobs.requests + 1,
          updated_at = now()`.execute(this.db);
    });
  }

  claimDueEmails(limit: number, leaseMs: number): Promise<ClaimedEmailJob[]> {
    const leaseId = randomUUID();
    return guard(async () => {
      const { rows } = await sql<ClaimedRow>`
        with claimed as (
          update email_jobs j set lease_id = ${leaseId}::uuid,
            lease_until = now() + ${leaseMs} * interval '1 millisecond',
            attempts = j.attempts + 1, updated_at = now()
          where (j.conversation_id, j.kind) in (
            select conversation_id, kind from email_jobs
            where pending and due_at <= now() and (lease_until is null or lease_until < now())
            order by due_at limit ${limit}
            for update skip locked)
          returning j.conversation_id, j.kind, j.tenant_id, j.attempts, j.emailed_seq, j.requests)
        select claimed.conversation_id, claimed.kind, claimed.tenant_id, c.session_id, c.user_id, claimed.attempts, claimed.emailed_seq, claimed.requests,
               c.visitor_read_seq, c.contact_email, c.contact_name
        from claimed join conversations c on c.id = claimed.conversation_id`.execute(this.db);
      return rows.map((r) => ({
        leaseId,
        kind: r.kind,
        conversationId: r.conversation_id,
        tenantId: r.tenant_id,
        sessionId: r.session_id,
        userId: r.user_id,
        attempts: Number(r.attempts),
        emailedSeq: Number(r.emailed_seq),
        requests: Number(r.requests),
        visitorReadSeq: Number(r.visitor_read_seq),
        contact: r.contact_email ? { email: r.contact_email, ...(r.contact_name ? { name: r.contact_name } : {}) } : null,
      }));
    });
  }

  agentMessagesAfter(tenantId: string, sessionId: string, afterSeq: number, limit: number): Promise<ChatMessage[]> {
    return guard(async () => {
      const { rows } = await sql<MessageRow>`
        select ${MESSAGE_COLUMNS} from messages m
        where m.conversation_id = ${conversationOf(tenantId, sessionId)} and m.seq > ${afterSeq} and m.sender_type = 'agent'
        order by m.seq limit ${limit}`.execute(this.db);
      return rows.map(rowToMessage);
    });
  }

  unansweredVisitorMessagesAfter(tenantId: string, sessionId: string, afterSeq: number, limit: number): Promise<ChatMessage[]> {
    const conversationId = conversationOf(tenantId, sessionId);
    return guard(async () => {
      const { rows } = await sql<MessageRow>`
        select ${MESSAGE_COLUMNS} from messages m
        where m.conversation_id = ${conversationId} and m.seq > ${afterSeq} and m.sender_type in ('visitor', 'user')
          and m.seq > coalesce((select max(a.seq) from messages a where a.conversation_id = ${conversationId} and a.sender_type = 'agent'), 0)
        order by m.seq limit ${limit}`.execute(this.db);
      return rows.map(rowToMessage);
    });
  }

  /** Releases a leased job: caught up, unless a reply came meanwhile (then due after `nextDelayMs`). */
  private release(trx: Kysely<Tables>, job: ClaimedEmailJob, emailedSeq: number, nextDelayMs: number) {
    return sql<{ conversation_id: string }>`
      update email_jobs set lease_id = null, lease_until = null, attempts = 0, last_error = null,
        emailed_seq = greatest(emailed_seq, ${emailedSeq}),
        pending = requests <> ${job.requests},
        due_at = case when requests <> ${job.requests} then now() + ${nextDelayMs} * interval '1 millisecond' else due_at end,
        updated_at = now()
      where conversation_id = ${conversationOf(job.tenantId, job.sessionId)} and kind = ${job.kind} and lease_id = ${job.leaseId}::uuid
      returning conversation_id`.execute(trx);
  }

  recordEmail(job: ClaimedEmailJob, outcome: EmailOutcome, nextDelayMs: number): Promise<boolean> {
    return guard(() =>
      this.db.transaction().execute(async (trx) => {
        const { rows } = await this.release(trx, job, outcome.upToSeq, nextDelayMs);
        const conversationId = rows[0]?.conversation_id;
        if (!conversationId) return false;
        if (outcome.kind !== 'nothing') {
          await trx
            .insertInto('email_deliveries')
            .values({
              id: randomUUID(),
              kind: job.kind,
              tenant_id: job.tenantId,
              conversation_id: conversationId,
              session_id: job.sessionId,
              recipient: outcome.recipient,
              status: outcome.kind,
              first_seq: outcome.firstSeq,
              last_seq: outcome.upToSeq,
              messages: outcome.messages,
              attempts: job.attempts,
              error: outcome.kind === 'failed' ? outcome.error.slice(0, 1000) : null,
            })
            .execute();
        }
        return true;
      }),
    );
  }

  retryEmail(job: ClaimedEmailJob, dueAt: Date, error: string): Promise<boolean> {
    return guard(async () => {
      const r = await sql`
        update email_jobs set lease_id = null, lease_until = null, due_at = ${dueAt.toISOString()}::timestamptz,
          last_error = ${error.slice(0, 1000)}, updated_at = now()
        where conversation_id = ${conversationOf(job.tenantId, job.sessionId)} and kind = ${job.kind} and lease_id = ${job.leaseId}::uuid`.execute(
        this.db,
      );
      return Number(r.numAffectedRows ?? 0) > 0;
    });
  }

  cancelEmail(job: ClaimedEmailJob, nextDelayMs: number): Promise<boolean> {
    return guard(async () => (await this.release(this.db, job, job.emailedSeq, nextDelayMs)).rows.length > 0);
  }

  listDeliveries(opts: { limit: number; tenantId?: string; status?: 'sent' | 'failed' }): Promise<EmailDelivery[]> {
    return guard(async () => {
      let q = this.db.selectFrom('email_deliveries').selectAll();
      if (opts.tenantId) q = q.where('tenant_id', '=', opts.tenantId);
      if (opts.status) q = q.where('status', '=', opts.status);
      const rows = await q.orderBy('created_at', 'desc').orderBy('id', 'desc').limit(opts.limit).execute();
      return rows.map((r) => ({
        id: r.id,
        kind: r.kind,
        tenantId: r.tenant_id,
        sessionId: r.session_id,
        recipient: r.recipient,
        status: r.status,
        firstSeq: Number(r.first_seq),
        lastSeq: Number(r.last_seq),
        messages: Number(r.messages),
        attempts: Number(r.attempts),
        error: r.error,
        at: iso(r.created_at as unknown as Date | string),
      }));
    });
  }

  pendingEmails(): Promise<number> {
    return guard(async () => {
      const r = await this.db
        .selectFrom('email_jobs')
        .select((eb) => eb.fn.countAll<string>().as('n'))
        .where('pending', '=', true)
        .executeTakeFirst();
      return Number(r?.n ?? 0);
    });
  }

  conversationById(id: string): Promise<{ tenantId: string; sessionId: string; userId: string | null; fingerprint: string | null } | null> {
    return guard(async () => {
      const r = await this.db
        .selectFrom('conversations')
        .select(['tenant_id', 'session_id', 'user_id', 'fingerprint'])
        .where('id', '=', id)
        .executeTakeFirst();
      return r ? { tenantId: r.tenant_id, sessionId: r.session_id, userId: r.user_id, fingerprint: r.fingerprint } : null;
    });
  }

  unsubscribe(tenantId: string, email: string): Promise<void> {
    return guard(async () => {
      await this.db
        .insertInto('email_unsubscribes')
        .values({ tenant_id: tenantId, email: email.toLowerCase() })
        .onConflict((oc) => oc.columns(['tenant_id', 'email']).doNothing())
        .execute();
    });
  }

  isUnsubscribed(tenantId: string, email: string): Promise<boolean> {
    return guard(async () => {
      const r = await this.db
        .selectFrom('email_unsubscribes')
        .select('email')
        .where('tenant_id', '=', tenantId)
        .where('email', '=', email.toLowerCase())
        .executeTakeFirst();
      return r !== undefined;
    });
  }
}
