// The OfflineStore contract (contact capture and email jobs), run against PGlite
// (offline-store.test.ts) and PostgreSQL (offline-store.int.test.ts).
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { KyselyDatabase } from './database.js';
import { msg } from './database.contract.js';

const uid = (p: string) => `${p}-${randomBytes(5).toString('hex')}`;
const agent = { type: 'agent' as const, id: 'ag-1', verified: true };
const past = () => new Date(Date.now() - 1000);

export function describeOfflineContract(name: string, open: () => Promise<{ db: KyselyDatabase; cleanup(): Promise<void> }>): void {
  describe(`OfflineStore contract: ${name}`, () => {
    let db: KyselyDatabase;
    let cleanup: () => Promise<void>;
    beforeAll(async () => {
      ({ db, cleanup } = await open());
    });
    afterAll(async () => {
      await db?.close();
      await cleanup?.();
    });

    /** A conversation with a visitor message, then agent replies; returns the session id. */
    async function conversation(tenant: string, agentReplies: number): Promise<string> {
      const s = uid('s');
      await db.messages.accept(msg(tenant, s, 'hello'));
      for (let i = 1; i <= agentReplies; i++) await db.messages.accept(msg(tenant, s, `reply ${i}`, { sender: agent }));
      return s;
    }
    /** Claims until the job of session `s` comes (other files' jobs may be due in the same database). */
    const claimOf = async (s: string, leaseMs = 60_000) => (await db.offline.claimDueEmails(100, leaseMs)).find((j) => j.sessionId === s);

    it("stores a contact on the tenant's own conversation only", async () => {
      const t = uid('t');
      const s = await conversation(t, 0);
      expect(await db.offline.setContact(t, s, { email: 'ann@example.com', name: 'Ann' })).toBe(true);
      expect(await db.offline.setContact(uid('t'), s, { email: 'evil@example.com' })).toBe(false);
      expect(await db.offline.setContact(t, uid('s'), { email: 'nobody@example.com' })).toBe(false);
      const row = await db.kysely
        .selectFrom('conversations')
        .select(['contact_email', 'contact_name'])
        .where('session_id', '=', s)
        .executeTakeFirst();
      expect(row).toEqual({ contact_email: 'ann@example.com', contact_name: 'Ann' });
    });

    it('leases a due job to one claimer at a time, with what the email needs', async () => {
      const t = uid('t');
      const s = await conversation(t, 2);
      await db.offline.setContact(t, s, { email: 'ann@example.com' });
      await db.offline.scheduleEmail(t, s, new Date(Date.now() + 60_000));
      expect(await claimOf(s)).toBeUndefined(); // not due yet
      await db.offline.scheduleEmail(t, s, past());
      // Still pending with its first (later) due time: the delay runs from the first reply.
      expect(await claimOf(s)).toBeUndefined();
      const t2 = uid('t');
      const s2 = await conversation(t2, 1);
      await db.offline.scheduleEmail(t2, s2, past());
      const [a, b] = await Promise.all([db.offline.claimDueEmails(100, 60_000), db.offline.claimDueEmails(100, 60_000)]);
      const mine = [...a, ...b].filter((j) => j.sessionId === s2);
      expect(mine).toHaveLength(1);
      expect(mine[0]).toMatchObject({
        tenantId: t2,
        sessionId: s2,
        attempts: 1,
        emailedSeq: 0,
        visitorReadSeq: 1,
        contact: null,
        requests: 1,
      });
      // (visitorReadSeq 1: a visitor has read its own message.) Leased: nobody else gets it until the lease expires.
      expect(await claimOf(s2)).toBeUndefined();
      const messages = await db.offline.agentMessagesAfter(t2, s2, 0, 10);
      expect(messages.map((m) => [m.seq, m.text])).toEqual([[2, 'reply 1']]);
      expect(await db.offline.agentMessagesAfter(uid('t'), s2, 0, 10)).toEqual([]);
    });

    it('records a sent email once: emailed_seq moves, the lease ends, a stale lease records nothing', async () => {
      const t = uid('t');
      const s = await conversation(t, 2);
      await db.offline.setContact(t, s, { email: 'bob@example.com', name: 'Bob' });
      await db.offline.scheduleEmail(t, s, past());
      const job = (await claimOf(s))!;
      expect(job.contact).toEqual({ email: 'bob@example.com', name: 'Bob' });
      // An agent replies while the email is being sent: the job is due again after the delay.
      await db.messages.accept(msg(t, s, 'reply 3', { sender: agent }));
      await db.offline.scheduleEmail(t, s, past());
      const sent = { kind: 'sent' as const, recipient: 'bob@example.com', firstSeq: 2, upToSeq: 3, messages: 2 };
      expect(await db.offline.recordEmail(job, sent, 60_000)).toBe(true);
      expect(await db.offline.recordEmail(job, sent, 60_000)).toBe(false);
      expect(await claimOf(s)).toBeUndefined();
      const deliveries = await db.offline.listDeliveries({ limit: 10, tenantId: t });
      expect(deliveries).toEqual([
        expect.objectContaining({
          sessionId: s,
          recipient: 'bob@example.com',
          status: 'sent',
          firstSeq: 2,
          lastSeq: 3,
          messages: 2,
          attempts: 1,
          error: null,
        }),
      ]);
      const jobRow = await db.kysely
        .selectFrom('email_jobs')
        .select(['pending', 'emailed_seq', 'lease_id'])
        .where('tenant_id', '=', t)
        .executeTakeFirst();
      expect(jobRow).toEqual({ pending: true, emailed_seq: 3, lease_id: null });
      expect(await db.offline.pendingEmails()).toBeGreaterThanOrEqual(1);
    });

    it('retries with a later due time, records a permanent failure, and cancels', async () => {
      const t = uid('t');
      const s = await conversation(t, 1);
      await db.offline.scheduleEmail(t, s, past());
      const first = (await claimOf(s))!;
      expect(await db.offline.retryEmail(first, past(), 'ECONNREFUSED')).toBe(true);
      const second = (await claimOf(s))!;
      expect(second.attempts).toBe(2);
      expect(await db.offline.retryEmail(first, past(), 'stale')).toBe(false);
      const failed = {
        kind: 'failed' as const,
        recipient: 'x@example.com',
        firstSeq: 2,
        upToSeq: 2,
        messages: 1,
        error: '550 mailbox unavailable',
      };
      expect(await db.offline.recordEmail(second, failed, 60_000)).toBe(true);
      expect(await db.offline.listDeliveries({ limit: 10, tenantId: t, status: 'failed' })).toEqual([
        expect.objectContaining({ status: 'failed', error: '550 mailbox unavailable', attempts: 2 }),
      ]);
      expect(await db.offline.listDeliveries({ limit: 10, tenantId: t, status: 'sent' })).toEqual([]);
      // Caught up: nothing pending until the next reply, which starts a fresh count of attempts.
      expect(await claimOf(s)).toBeUndefined();
      await db.offline.scheduleEmail(t, s, past());
      const third = (await claimOf(s))!;
      expect(third).toMatchObject({ attempts: 1, emailedSeq: 2 });
      expect(await db.offline.cancelEmail(third, 60_000)).toBe(true);
      expect(await claimOf(s)).toBeUndefined();
    });

    it("a tenant notification is a job of its own kind: leased, recorded and released apart from the visitor's", async () => {
      const t = uid('t');
      const s = uid('s');
      await db.messages.accept(msg(t, s, 'one'));
      await db.messages.accept(msg(t, s, 'two'));
      await db.offline.scheduleEmail(t, s, past(), 'tenant');
      await db.offline.scheduleEmail(t, s, past(), 'tenant');
      await db.offline.scheduleEmail(t, s, past());
      const jobs = (await db.offline.claimDueEmails(100, 60_000)).filter((j) => j.sessionId === s);
      expect(jobs.map((j) => [j.kind, j.requests]).sort()).toEqual([
        ['tenant', 2],
        ['visitor', 1],
      ]);
      const tenant = jobs.find((j) => j.kind === 'tenant')!;
      const visitor = jobs.find((j) => j.kind === 'visitor')!;
      expect((await db.offline.unansweredVisitorMessagesAfter(t, s, 0, 10)).map((m) => [m.seq, m.text])).toEqual([
        [1, 'one'],
        [2, 'two'],
      ]);
      expect(await db.offline.unansweredVisitorMessagesAfter(uid('t'), s, 0, 10)).toEqual([]);
      const sent = { kind: 'sent' as const, recipient: 'ops@example.com', firstSeq: 1, upToSeq: 2, messages: 2 };
      expect(await db.offline.recordEmail(tenant, sent, 60_000)).toBe(true);
      // The visitor job's lease is untouched by the tenant job's record (same lease id, other kind).
      expect(await db.offline.retryEmail(visitor, past(), 'ECONNREFUSED')).toBe(true);
      expect(await db.offline.listDeliveries({ limit: 10, tenantId: t })).toEqual([
        expect.objectContaining({ kind: 'tenant', recipient: 'ops@example.com', firstSeq: 1, lastSeq: 2 }),
      ]);
      // Notified lines are not notified again; an agent's answer covers the lines before it.
      await db.messages.accept(msg(t, s, 'three'));
      expect((await db.offline.unansweredVisitorMessagesAfter(t, s, 2, 10)).map((m) => m.text)).toEqual(['three']);
      await db.messages.accept(msg(t, s, 'answer', { sender: agent }));
      expect(await db.offline.unansweredVisitorMessagesAfter(t, s, 2, 10)).toEqual([]);
      await db.messages.accept(msg(t, s, 'four'));
      expect((await db.offline.unansweredVisitorMessagesAfter(t, s, 2, 10)).map((m) => m.text)).toEqual(['four']);
    });

    it('keeps unsubscribed addresses per tenant, case-insensitively', async () => {
      const t = uid('t');
      await db.offline.unsubscribe(t, 'Ann@Example.com');
      await db.offline.unsubscribe(t, 'ann@example.com');
      expect(await db.offline.isUnsubscribed(t, 'ann@example.COM')).toBe(true);
      expect(await db.offline.isUnsubscribed(uid('t'), 'ann@example.com')).toBe(false);
    });
  });
}
