// The Database contract, run against every dialect (postgres.int.test.ts on a real PostgreSQL in
// its own schema, pglite.test.ts on a copy of the embedded template). Whatever one dialect
// guarantees, the other must too.
import { randomBytes } from 'node:crypto';
import { sql, type Kysely } from 'kysely';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { emptyMeta, type Sender } from '../chat/message.js';
import { ChatdError } from '../errors.js';
import type { KyselyDatabase } from './database.js';
import { Migrations } from './migrations.js';
import { DbOutboxRelay } from './outbox-relay.js';
import { RetentionSweeper } from './retention.js';
import type { AcceptResult, NewMessage, Outbox } from './ports.js';
import { RecordingEventLog } from '../../test/helpers/db/recording-event-log.js';
import { eventually } from '../../test/helpers/eventually.js';

export interface ContractTarget {
  /** Opens the database under test; `onFlush` sees each group-commit flush's size. */
  open(onFlush: (size: number) => void): Promise<KyselyDatabase>;
  cleanup(): Promise<void>;
}

const silent = pino({ level: 'silent' });
const uid = (p: string) => `${p}-${randomBytes(5).toString('hex')}`;
const visitor = (sessionId: string): Sender => ({ type: 'visitor', id: sessionId, verified: false });

export function msg(tenantId: string, sessionId: string, text: string, extra: Partial<NewMessage> = {}): NewMessage {
  return {
    tenantId,
    sessionId,
    sender: visitor(sessionId),
    text,
    meta: { ...emptyMeta(), domain: 'shop.example', url: 'https://shop.example/p' },
    conversation: { fingerprint: 'fp-1' },
    ...extra,
  };
}

function created(r: AcceptResult) {
  if (r.kind !== 'created') throw new Error(`expected created, got ${JSON.stringify(r)}`);
  return r;
}

export function describeDatabaseContract(name: string, target: () => ContractTarget): void {
  describe(`Database contract: ${name}`, () => {
    let t: ContractTarget;
    let db: KyselyDatabase;
    const flushes: number[] = [];

    beforeAll(async () => {
      t = target();
      db = await t.open((n) => flushes.push(n));
    });
    afterAll(async () => {
      await db?.close();
      await t?.cleanup();
    });

    it('accepts messages with seq 1, 2, 3 and creates the conversation with its owner', async () => {
      const tenant = uid('t');
      const sid = uid('s');
      const a = created(await db.messages.accept(msg(tenant, sid, 'hello', { conversation: { fingerprint: 'fp-a', userId: 'u@x' } })));
      const b = created(await db.messages.accept(msg(tenant, sid, 'again')));
      const c = created(await db.messages.accept(msg(tenant, sid, 'third')));
      expect([a.message.seq, b.message.seq, c.message.seq]).toEqual([1, 2, 3]);
      expect(a.outboxId).toBe(a.message.id);
      expect(a.message).toMatchObject({ tenantId: tenant, sessionId: sid, text: 'hello', sender: visitor(sid) });
      expect(a.message.meta.domain).toBe('shop.example');
      expect(new Date(a.message.createdAt).toISOString()).toBe(a.message.createdAt);
      const conv = await db.messages.getConversation(tenant, sid);
      expect(conv).toMatchObject({ tenantId: tenant, sessionId: sid, userId: 'u@x', fingerprint: 'fp-a', lastSeq: 3, status: 'open' });
      // What is stored is what was returned.
      const page = await db.messages.history({ tenantId: tenant, sessionId: sid, limit: 10 });
      expect(page.messages).toEqual([a.message, b.message, c.message]);
    });

    it('migration 0003 turns closed into resolved and fills the inbox columns from the messages and read pointers', async () => {
      const tenant = uid('t');
      const [s1, s2] = [uid('s'), uid('s')];
      const agent = { type: 'agent' as const, id: 'ag-1', verified: true };
      const v1 = created(await db.messages.accept(msg(tenant, s1, 'v1')));
      created(await db.messages.accept(msg(tenant, s1, 'v2')));
      created(await db.messages.accept(msg(tenant, s1, 'a1', { sender: agent })));
      const last = created(await db.messages.accept(msg(tenant, s1, 'v3')));
      created(await db.messages.accept(msg(tenant, s2, 'only')));
      const migrations = await Migrations.open(db.kysely as Kysely<unknown>);
      const inbox = async () => (await migrations.status()).migrations.find((m) => m.name === '0003_conversations_inbox')!.status;
      while ((await inbox()) === 'applied') await migrations.down();
      // As a database before 0003 had them: a closed conversation, an agent's and the visitor's pointers.
      await sql`update conversations set status = 'closed' where session_id = ${s2}`.execute(db.kysely);
      const convId = (await db.kysely.selectFrom('conversations').select('id').where('session_id', '=', s1).executeTakeFirstOrThrow()).id;
      await sql`insert into read_pointers (conversation_id, reader_id, tenant_id, message_id, seq)
                values (${convId}::uuid, 'agent:ag-1', ${tenant}, ${v1.message.id}::uuid, 1),
                       (${convId}::uuid, ${`visitor:${s1}`}, ${tenant}, ${v1.message.id}::uuid, 1)`.execute(db.kysely);
      await migrations.up();
      const rows = await db.kysely.selectFrom('conversations').selectAll().where('tenant_id', '=', tenant).orderBy('session_id').execute();
      const bySession = new Map(rows.map((r) => [r.session_id, r]));
      expect(bySession.get(s1)).toMatchObject({
        status: 'open',
        message_count: 4,
        last_message_id: last.message.id,
        agents_read_seq: 1,
        visitor_read_seq: 1,
        unread_by_agents: 2,
        unread_by_visitor: 1,
        assignee: null,
      });
      expect(new Date(bySession.get(s1)!.last_activity_at!).toISOString()).toBe(last.message.createdAt);
      expect(bySession.get(s2)).toMatchObject({ status: 'resolved', message_count: 1, unread_by_agents: 1, agents_read_seq: 0 });
    });

    describe('conversations (the inbox)', () => {
      const agent = (id: string): Sender => ({ type: 'agent', id, verified: true });
      const byAgent = { type: 'agent' as const, id: 'ag-1' };

      it('keeps the summary in the transaction of each message: counts, last message cut to 200, unread on both sides', async () => {
        const tenant = uid('t');
        const sid = uid('s');
        const long = 'é'.repeat(150) + '😀'.repeat(100);
        const v1 = created(await db.messages.accept(msg(tenant, sid, 'hello')));
        expect(v1.before).toEqual([]);
        expect(v1.update).toMatchObject({ tenantId: tenant, sessionId: sid, version: 1 });
        expect(v1.update.conversation).toMatchObject({
          sessionId: sid,
          status: 'open',
          assignee: null,
          visitor: { type: 'visitor', id: sid, verified: false },
          lastMessage: { id: v1.message.id, text: 'hello', sender: visitor(sid) },
          unreadCount: 1,
          messageCount: 1,
          lastActivityAt: v1.message.createdAt,
        });
        const v2 = created(await db.messages.accept(msg(tenant, sid, long)));
        expect([...v2.update.conversation.lastMessage!.text]).toHaveLength(200);
        expect(v2.update.conversation.lastMessage!.text).toBe([...long].slice(0, 200).join(''));
        expect(v2.update.conversation.unreadCount).toBe(2);
        expect(await db.conversations.visitorUnread(tenant, sid)).toBe(0);
        // An agent's reply: the agents have read everything before it; the visitor has one unread.
        const a1 = created(await db.messages.accept(msg(tenant, sid, 'reply', { sender: agent('ag-1') })));
        expect(a1.update.conversation).toMatchObject({ unreadCount: 0, messageCount: 3 });
        expect(await db.conversations.visitorUnread(tenant, sid)).toBe(1);
        const one = await db.conversations.summary(tenant, sid);
        expect(one).toEqual({ conversation: { ...a1.update.conversation }, version: 3 });
        expect(one!.conversation.lastMessage!.text).toBe('reply');
        // Another tenant cannot see it.
        expect(await db.conversations.summary(uid('t'), sid)).toBeNull();
      });

      it('records a status change as a system message at the next seq, with meta.event, once', async () => {
        const tenant = uid('t');
        const sid = uid('s');
        created(await db.messages.accept(msg(tenant, sid, 'hi')));
        const r = await db.conversations.change(tenant, sid, { status: 'resolved' }, byAgent);
        if (r.kind !== 'changed') throw new Error(r.kind);
        expect(r.message).toMatchObject({
          seq: 2,
          sender: { type: 'system', id: 'chatd', verified: true },
          text: 'Conversation marked resolved by agent ag-1',
          meta: { event: { type: 'conversation.status_changed', from: 'open', to: 'resolved', by: byAgent } },
        });
        expect(r.update).toMatchObject({ version: 2, conversation: { status: 'resolved', messageCount: 1, unreadCount: 1 } });
        // Already resolved: nothing written.
        const again = await db.conversations.change(tenant, sid, { status: 'resolved' }, byAgent);
        expect(again).toMatchObject({ kind: 'unchanged', version: 2, conversation: { status: 'resolved' } });
        const assigned = await db.conversations.change(tenant, sid, { assignee: 'ag-2' }, byAgent);
        expect(assigned).toMatchObject({
          kind: 'changed',
          message: { seq: 3, meta: { event: { type: 'conversation.assigned', from: null, to: 'ag-2' } } },
          update: { version: 3, conversation: { assignee: 'ag-2', status: 'resolved' } },
        });
        // In history like any message; the outbox has a row for each (published like messages).
        const h = await db.messages.history({ tenantId: tenant, sessionId: sid, limit: 10 });
        expect(h.messages.map((m) => [m.seq, m.sender.type])).toEqual([
          [1, 'visitor'],
          [2, 'system'],
          [3, 'system'],
        ]);
        expect(await db.conversations.change(uid('t'), sid, { status: 'open' }, byAgent)).toEqual({ kind: 'not_found' });
        expect(await db.conversations.change(tenant, uid('s'), { status: 'open' }, byAgent)).toEqual({ kind: 'not_found' });
      });

      it("a visitor's message reopens a resolved conversation: the system message takes seq n, the message n+1; a retry adds nothing", async () => {
        const tenant = uid('t');
        const sid = uid('s');
        created(await db.messages.accept(msg(tenant, sid, 'hi')));
        await db.conversations.change(tenant, sid, { status: 'resolved' }, byAgent);
        // An agent's message does not reopen.
        const reply = created(await db.messages.accept(msg(tenant, sid, 'anything else?', { sender: agent('ag-1') })));
        expect(reply.before).toEqual([]);
        expect(reply.update.conversation.status).toBe('resolved');
        const back = created(await db.messages.accept(msg(tenant, sid, 'one more thing', { clientMessageId: 'k1' })));
        expect(back.before).toHaveLength(1);
        expect(back.before[0]).toMatchObject({
          seq: 4,
          sender: { type: 'system' },
          meta: { event: { type: 'conversation.status_changed', from: 'resolved', to: 'open', by: { type: 'visitor', id: sid } } },
        });
        expect(back.message.seq).toBe(5);
        // One event for the flush: the reopen and the message (versions count events, not seqs).
        expect(back.update).toMatchObject({ version: 4, conversation: { status: 'open', lastMessage: { id: back.message.id } } });
        const retry = await db.messages.accept(msg(tenant, sid, 'one more thing', { clientMessageId: 'k1' }));
        expect(retry).toEqual({ kind: 'duplicate', message: back.message });
        expect((await db.messages.getConversation(tenant, sid))!.lastSeq).toBe(5);
        // Turned off by the tenant: the message is stored, the conversation stays resolved.
        await db.conversations.change(tenant, sid, { status: 'resolved' }, byAgent);
        const kept = created(await db.messages.accept(msg(tenant, sid, 'thanks', { reopenResolved: false })));
        expect(kept.before).toEqual([]);
        expect(kept.message.seq).toBe(7);
        expect(kept.update.conversation.status).toBe('resolved');
      });

      it('lists newest activity first with status and assignee filters, keyset-paged, one tenant only', async () => {
        const tenant = uid('t');
        const other = uid('t');
        const sids = Array.from({ length: 5 }, () => uid('s'));
        for (const s of sids) created(await db.messages.accept(msg(tenant, s, `from ${s}`)));
        created(await db.messages.accept(msg(other, uid('s'), 'elsewhere')));
        // A conversation that never had a message is not in the inbox.
        await db.messages.ensureConversation(tenant, uid('s'), { fingerprint: 'fp' });
        await db.conversations.change(tenant, sids[1]!, { status: 'pending' }, byAgent);
        await db.conversations.change(tenant, sids[3]!, { assignee: 'ag-1' }, byAgent);
        const order = [sids[3], sids[1], sids[4], sids[2], sids[0]];
        const all = await db.conversations.list({ tenantId: tenant, limit: 50 });
        expect(all.conversations.map((c) => c.sessionId)).toEqual(order);
        expect(all.nextCursor).toBeNull();
        const p1 = await db.conversations.list({ tenantId: tenant, limit: 2 });
        const p2 = await db.conversations.list({ tenantId: tenant, limit: 2, before: p1.nextCursor! });
        const p3 = await db.conversations.list({ tenantId: tenant, limit: 2, before: p2.nextCursor! });
        expect([...p1.conversations, ...p2.conversations, ...p3.conversations].map((c) => c.sessionId)).toEqual(order);
        expect(p3.nextCursor).toBeNull();
        expect(
          (await db.conversations.list({ tenantId: tenant, status: 'pending', limit: 50 })).conversations.map((c) => c.sessionId),
        ).toEqual([sids[1]]);
        expect((await db.conversations.list({ tenantId: tenant, status: 'open', limit: 50 })).conversations).toHaveLength(4);
        expect(
          (await db.conversations.list({ tenantId: tenant, assignee: 'ag-1', limit: 50 })).conversations.map((c) => c.sessionId),
        ).toEqual([sids[3]]);
        expect((await db.conversations.list({ tenantId: tenant, assignee: 'ag-1', status: 'resolved', limit: 50 })).conversations).toEqual(
          [],
        );
        expect((await db.conversations.list({ tenantId: tenant, assignee: null, limit: 50 })).conversations).toHaveLength(4);
        await expect(db.conversations.list({ tenantId: tenant, limit: 2, before: 'nope' })).rejects.toMatchObject({
          code: 'validation_failed',
        });
      });

      it("an agent's read moves the agents' shared pointer and writes an event; a visitor's moves the visitor's", async () => {
        const tenant = uid('t');
        const sid = uid('s');
        created(await db.messages.accept(msg(tenant, sid, 'a')));
        const b = created(await db.messages.accept(msg(tenant, sid, 'b')));
        created(await db.messages.accept(msg(tenant, sid, 'c')));
        const read = await db.messages.markRead(tenant, sid, 'agent:ag-1', b.message.id);
        // A version of its own: after the three messages' 1, 2, 3.
        expect(read).toMatchObject({ found: true, update: { version: 4, conversation: { unreadCount: 1 } } });
        // Another agent reading an older message does not move the shared pointer back.
        expect(
          await db.messages.markRead(tenant, sid, 'agent:ag-2', created(await db.messages.accept(msg(tenant, uid('s'), 'x'))).message.id),
        ).toEqual({
          found: false,
        });
        const a = (await db.messages.history({ tenantId: tenant, sessionId: sid, limit: 3 })).messages[0]!;
        expect(await db.messages.markRead(tenant, sid, 'agent:ag-2', a.id)).toEqual({ found: true });
        expect((await db.conversations.summary(tenant, sid))!.conversation.unreadCount).toBe(1);
        const r1 = created(await db.messages.accept(msg(tenant, sid, 'reply 1', { sender: agent('ag-1') })));
        created(await db.messages.accept(msg(tenant, sid, 'reply 2', { sender: agent('ag-1') })));
        expect(await db.conversations.visitorUnread(tenant, sid)).toBe(2);
        expect(await db.messages.markRead(tenant, sid, `visitor:${sid}`, r1.message.id)).toEqual({ found: true });
        expect(await db.conversations.visitorUnread(tenant, sid)).toBe(1);
      });

      it('two agents assigning at once: one order, the last commit is the final state everyone reads', async () => {
        const tenant = uid('t');
        const sid = uid('s');
        created(await db.messages.accept(msg(tenant, sid, 'help')));
        const [x, y] = await Promise.all([
          db.conversations.change(tenant, sid, { assignee: 'ag-x' }, { type: 'agent', id: 'ag-x' }),
          db.conversations.change(tenant, sid, { assignee: 'ag-y' }, { type: 'agent', id: 'ag-y' }),
        ]);
        if (x!.kind !== 'changed' || y!.kind !== 'changed') throw new Error('both change: they are serialised by the row lock');
        expect([x!.message.seq, y!.message.seq].sort()).toEqual([2, 3]);
        const last = x!.message.seq > y!.message.seq ? x! : y!;
        const final = await db.conversations.summary(tenant, sid);
        expect(final).toEqual({ conversation: last.update.conversation, version: 3 });
        // The later one records the earlier as its `from`.
        const first = last === x ? y! : x!;
        expect(last.message.meta.event).toMatchObject({ from: first.update.conversation.assignee });
      });

      it("a status change racing a visitor's message: one order in history, the summary agrees with it", async () => {
        const tenant = uid('t');
        const sid = uid('s');
        created(await db.messages.accept(msg(tenant, sid, 'first')));
        await db.conversations.change(tenant, sid, { status: 'pending' }, byAgent);
        const [resolved, sent] = await Promise.all([
          db.conversations.change(tenant, sid, { status: 'resolved' }, byAgent),
          db.messages.accept(msg(tenant, sid, 'racing')),
        ]);
        const h = (await db.messages.history({ tenantId: tenant, sessionId: sid, limit: 10 })).messages;
        expect(h.map((m) => m.seq)).toEqual(h.map((_, i) => i + 1));
        const final = (await db.conversations.summary(tenant, sid))!;
        if (resolved!.kind !== 'changed') throw new Error(resolved!.kind);
        const s = created(sent!);
        // Four events (message, pending, then the two racers in commit order): the later one is final.
        expect([resolved!.update.version, s.update.version].sort()).toEqual([3, 4]);
        const later = resolved!.update.version > s.update.version ? resolved!.update : s.update;
        expect(final).toEqual({ conversation: later.conversation, version: 4 });
        if (s.message.seq > resolved!.message.seq) {
          // The message came after the resolve: it reopened the conversation.
          expect(s.before).toHaveLength(1);
          expect(final.conversation.status).toBe('open');
        } else {
          expect(s.before).toEqual([]);
          expect(final.conversation.status).toBe('resolved');
        }
      });

      it('auto-assigns round robin among the candidates, skipping those at their cap, only unassigned open conversations', async () => {
        const tenant = uid('t');
        const sids = Array.from({ length: 5 }, () => uid('s'));
        for (const s of sids) created(await db.messages.accept(msg(tenant, s, 'new')));
        const got: (string | null)[] = [];
        for (const s of sids.slice(0, 4)) {
          const r = await db.conversations.autoAssign(tenant, s, ['ag-b', 'ag-a'], 2);
          got.push(r.kind === 'changed' ? r.update.conversation.assignee : null);
          if (r.kind === 'changed') expect(r.message.meta.event).toMatchObject({ type: 'conversation.assigned', by: { type: 'system' } });
        }
        expect(got).toEqual(['ag-a', 'ag-b', 'ag-a', 'ag-b']);
        // Both at the cap of 2: nobody gets the fifth.
        expect((await db.conversations.autoAssign(tenant, sids[4]!, ['ag-a', 'ag-b'], 2)).kind).toBe('unchanged');
        // Already assigned: left alone.
        expect(await db.conversations.autoAssign(tenant, sids[0]!, ['ag-c'], 2)).toMatchObject({
          kind: 'unchanged',
          conversation: { assignee: 'ag-a' },
        });
        // A resolved conversation no longer counts against the cap.
        await db.conversations.change(tenant, sids[0]!, { status: 'resolved' }, byAgent);
        expect(await db.conversations.autoAssign(tenant, sids[4]!, ['ag-a', 'ag-b'], 2)).toMatchObject({
          kind: 'changed',
          update: { conversation: { assignee: 'ag-a' } },
        });
      });

      it('the relay publishes conversation_updated events after commit and sweeps those left undone', async () => {
        await db.outbox.claimStale(0, 10_000, async (entries) => entries.map((e) => e.id));
        await db.conversationOutbox.claimStale(0, 10_000, async (u) => u.map((x) => x.id));
        const events = new RecordingEventLog();
        const relay = new DbOutboxRelay(db.outbox, events, silent, {
          staleAfterMs: 0,
          sweepIntervalMs: 60_000,
          updates: db.conversationOutbox,
        });
        try {
          const tenant = uid('t');
          const sid = uid('s');
          const a = created(await db.messages.accept(msg(tenant, sid, 'x')));
          // A message and its event, published together, retire both rows.
          relay.publishNow(a.message, a.outboxId);
          relay.publishUpdateNow(a.update);
          await eventually(
            async () => (await db.conversationOutbox.pendingCount()) === 0 && (await db.outbox.pendingCount()) === 0,
            'the message and event rows to be done',
          );
          expect(events.updates.map((u) => u.id)).toEqual([a.update.id]);
          expect(events.published.map((m) => m.id)).toEqual([a.message.id]);
          // Left undone (a crash before publishing): the sweep publishes it, once.
          const c = await db.conversations.change(tenant, sid, { status: 'pending' }, byAgent);
          expect(await db.conversationOutbox.pendingCount()).toBe(1);
          await relay.sweep();
          await relay.sweep();
          expect(events.updates.map((u) => u.version)).toEqual([1, 2]);
          expect(events.updates[1]).toEqual(c.kind === 'changed' ? c.update : undefined);
          expect(await db.conversationOutbox.pendingCount()).toBe(0);
        } finally {
          await relay.stop();
        }
      });

      it('the relay retires what it published meanwhile with one statement: messages and their events together', async () => {
        await db.outbox.claimStale(0, 10_000, async (entries) => entries.map((e) => e.id));
        await db.conversationOutbox.claimStale(0, 10_000, async (u) => u.map((x) => x.id));
        const events = new RecordingEventLog();
        const statements: [number, number][] = [];
        const o = db.outbox;
        // The real outbox, counting its retire statements.
        const counted: Outbox = {
          claimStale: (...a) => o.claimStale(...a),
          markDone: (ids) => o.markDone(ids),
          markAllDone: (m, u) => (statements.push([m.length, u.length]), o.markAllDone(m, u)),
          pendingCount: () => o.pendingCount(),
          createdSince: (...a) => o.createdSince(...a),
          activeSince: (...a) => o.activeSince(...a),
        };
        // A delay no publish outlasts: the batch is retired by stop().
        const relay = new DbOutboxRelay(counted, events, silent, {
          staleAfterMs: 60_000,
          sweepIntervalMs: 60_000,
          retireDelayMs: 600_000,
          updates: db.conversationOutbox,
        });
        const tenant = uid('t');
        const accepted = [];
        for (let i = 0; i < 5; i++) accepted.push(created(await db.messages.accept(msg(tenant, uid('s'), `m${i}`))));
        for (const a of accepted) {
          relay.publishNow(a.message, a.outboxId);
          relay.publishUpdateNow(a.update);
        }
        await eventually(() => events.published.length === 5 && events.updates.length === 5, 'the publishes');
        expect(statements).toEqual([]);
        expect([await db.outbox.pendingCount(), await db.conversationOutbox.pendingCount()]).toEqual([5, 5]);
        await relay.stop();
        expect(statements).toEqual([[5, 5]]);
        expect([await db.outbox.pendingCount(), await db.conversationOutbox.pendingCount()]).toEqual([0, 0]);
      });

      it("announce writes the conversation's current summary as an event, at the next version, once it is in the inbox", async () => {
        const tenant = uid('t');
        const sid = uid('s');
        await db.messages.ensureConversation(tenant, sid, { fingerprint: 'fp' });
        expect(await db.conversations.announce(tenant, sid)).toBeNull();
        created(await db.messages.accept(msg(tenant, sid, 'hi')));
        await db.kysely
          .updateTable('conversations')
          .set({ contact_email: 'ann@example.com', contact_name: 'Ann' })
          .where('session_id', '=', sid)
          .execute();
        const u = await db.conversations.announce(tenant, sid);
        expect(u).toMatchObject({ version: 2, conversation: { visitor: { email: 'ann@example.com', name: 'Ann' }, messageCount: 1 } });
        expect((await db.conversations.summary(tenant, sid))!.version).toBe(2);
        expect(await db.conversations.announce(uid('t'), sid)).toBeNull();
        const row = await db.kysely.selectFrom('conversation_outbox').select('id').where('id', '=', u!.id).executeTakeFirst();
        expect(row).toEqual({ id: u!.id });
      });

      it("activeSince re-makes a conversation_updated per conversation active since a time, one tenant's, keyset-paged", async () => {
        const tenant = uid('t');
        const before = new Date(Date.now() - 1000).toISOString();
        const sids = [uid('s'), uid('s'), uid('s')];
        for (const s of sids) created(await db.messages.accept(msg(tenant, s, `hi ${s}`)));
        created(await db.messages.accept(msg(uid('t'), uid('s'), 'elsewhere')));
        const p1 = await db.outbox.activeSince(tenant, before, undefined, 2);
        const last = p1.at(-1)!;
        const p2 = await db.outbox.activeSince(
          tenant,
          before,
          { lastActivityAt: last.conversation.lastActivityAt, sessionId: last.sessionId },
          2,
        );
        const all = [...p1, ...p2];
        expect(all.map((u) => u.sessionId).sort()).toEqual([...sids].sort());
        expect(all.every((u) => u.tenantId === tenant && u.version === 1 && u.conversation.messageCount === 1)).toBe(true);
        expect(await db.outbox.activeSince(tenant, new Date(Date.now() + 60_000).toISOString(), undefined, 10)).toEqual([]);
      });

      it('erasure removes the conversation with its system messages, pointers and pending events', async () => {
        const tenant = uid('t');
        const sid = uid('s');
        const m = created(await db.messages.accept(msg(tenant, sid, 'x')));
        await db.conversations.change(tenant, sid, { status: 'resolved' }, byAgent);
        await db.messages.markRead(tenant, sid, 'agent:ag-1', m.message.id);
        await db.messages.markRead(tenant, sid, `visitor:${sid}`, m.message.id);
        const report = await db.messages.eraseSubject(tenant, { sessionId: sid }, { dryRun: false });
        expect(report).toMatchObject({ conversations: 1, messages: 2, readPointers: 2 });
        expect(await db.conversations.summary(tenant, sid)).toBeNull();
        const left = await db.kysely.selectFrom('conversation_outbox').select('id').where('tenant_id', '=', tenant).execute();
        expect(left).toEqual([]);
        expect(await db.kysely.selectFrom('read_pointers').select('reader_id').where('tenant_id', '=', tenant).execute()).toEqual([]);
        expect(await db.kysely.selectFrom('messages').select('id').where('tenant_id', '=', tenant).execute()).toEqual([]);
      });

      it('every change that writes conversation_updated has a version of its own, in commit order: reads and contacts too', async () => {
        const tenant = uid('t');
        const sid = uid('s');
        const versions: number[] = [];
        const summaries: unknown[] = [];
        const keep = (u: { version: number; conversation: unknown } | undefined) => {
          if (!u) throw new Error('expected an event');
          versions.push(u.version);
          summaries.push(u.conversation);
        };
        const m1 = created(await db.messages.accept(msg(tenant, sid, 'hello')));
        keep(m1.update);
        // The agents' read changes unreadCount and nothing else the message's event knew: before,
        // both carried the last seq (1), and a client keeping the highest kept whichever came last.
        const read = await db.messages.markRead(tenant, sid, 'agent:ag-1', m1.message.id);
        keep(read.found ? read.update : undefined);
        expect(summaries.at(-1)).toMatchObject({ unreadCount: 0 });
        // A read that moves nothing writes no event and takes no version.
        expect(await db.messages.markRead(tenant, sid, 'agent:ag-2', m1.message.id)).toEqual({ found: true });
        // The visitor's own read is not in the summary: no event.
        expect(await db.messages.markRead(tenant, sid, `visitor:${sid}`, m1.message.id)).toEqual({ found: true });
        await db.kysely.updateTable('conversations').set({ contact_email: 'bo@example.com' }).where('session_id', '=', sid).execute();
        keep((await db.conversations.announce(tenant, sid)) ?? undefined);
        const change = await db.conversations.change(tenant, sid, { status: 'pending' }, byAgent);
        keep(change.kind === 'changed' ? change.update : undefined);
        keep(created(await db.messages.accept(msg(tenant, sid, 'still there?'))).update);
        const read2 = await db.messages.markRead(
          tenant,
          sid,
          'agent:ag-2',
          (await db.conversations.summary(tenant, sid))!.conversation.lastMessage!.id,
        );
        keep(read2.found ? read2.update : undefined);
        expect(versions).toEqual([1, 2, 3, 4, 5, 6]);
        // No two events share a version, and the highest is the conversation as it is.
        expect(new Set(summaries.map((c) => JSON.stringify(c))).size).toBe(summaries.length);
        expect(await db.conversations.summary(tenant, sid)).toEqual({ conversation: summaries.at(-1), version: 6 });
        // The outbox rows carry the same versions (the relay and the loss guard publish these).
        const rows = await db.kysely
          .selectFrom('conversation_outbox')
          .innerJoin('conversations', 'conversations.id', 'conversation_outbox.conversation_id')
          .select('conversation_outbox.version')
          .where('conversations.session_id', '=', sid)
          .orderBy('conversation_outbox.version')
          .execute();
        expect(rows.map((r) => r.version)).toEqual(versions);
        // The loss guard's re-made event is the current state at the current version.
        const remade = (await db.outbox.activeSince(tenant, new Date(0).toISOString(), undefined, 10)).find((u) => u.sessionId === sid);
        expect(remade).toMatchObject({ version: 6, conversation: summaries.at(-1) });
      });

      it("retention brings a conversation's summary in line with what is stored, in the delete's transaction, with an event", async () => {
        const tenant = uid('t');
        const other = uid('t');
        const [s1, s2, s3] = [uid('s'), uid('s'), uid('s')];
        const old: string[] = [];
        const say = async (tenantId: string, sid: string, text: string, extra: Partial<NewMessage> = {}, aged = true) => {
          const r = created(await db.messages.accept(msg(tenantId, sid, text, extra)));
          if (aged) old.push(r.message.id, ...r.before.map((b) => b.id));
          return r;
        };
        // s1: visitor 1, agent 2, visitor 3, pending (system) 4, visitor 5; seqs 1-4 old.
        await say(tenant, s1, 'old 1');
        await say(tenant, s1, 'old reply', { sender: agent('ag-1') });
        await say(tenant, s1, 'old 3');
        const pending = await db.conversations.change(tenant, s1, { status: 'pending' }, byAgent);
        if (pending.kind !== 'changed') throw new Error(pending.kind);
        old.push(pending.message.id);
        const new5 = await say(tenant, s1, 'new 5', {}, false);
        // s2: the visitor's message is recent, the two agent replies after it are old (clocks differ).
        const keep1 = await say(tenant, s2, 'keep', {}, false);
        await say(tenant, s2, 'r1', { sender: agent('ag-1') });
        await say(tenant, s2, 'r2', { sender: agent('ag-1') });
        // s3: all old. Another tenant's old message stays.
        await say(tenant, s3, 'gone');
        const elsewhere = await say(other, uid('s'), 'other tenant');
        await db.kysely
          .updateTable('messages')
          .set({ created_at: new Date(Date.now() - 2 * 86_400_000) })
          .where('id', 'in', old)
          .execute();
        const before = {
          s1: (await db.conversations.summary(tenant, s1))!,
          s2: (await db.conversations.summary(tenant, s2))!,
          s3: (await db.conversations.summary(tenant, s3))!,
        };
        expect(before.s1.conversation).toMatchObject({ messageCount: 4, unreadCount: 2, lastMessage: { id: new5.message.id } });
        expect(await db.conversations.visitorUnread(tenant, s2)).toBe(2);

        const sweeper = new RetentionSweeper(db.messages, () => [{ tenantId: tenant, maxAgeMs: 86_400_000 }], silent, { batchSize: 3 });
        expect(await sweeper.sweep()).toBe(old.length - 1);
        await sweeper.stop();

        const after = {
          s1: (await db.conversations.summary(tenant, s1))!,
          s2: (await db.conversations.summary(tenant, s2))!,
          s3: (await db.conversations.summary(tenant, s3))!,
        };
        // s1: three messages other than system ones went, one of them unread (seq 3, after the
        // agents' pointer at 2); the last message stays.
        expect(after.s1.conversation).toMatchObject({
          messageCount: 1,
          unreadCount: 1,
          status: 'pending',
          lastMessage: { id: new5.message.id },
        });
        // s2: its last message went: the newest stored one (the visitor's, which the agents read by
        // replying) takes its place; the visitor's unread agent replies are gone.
        expect(after.s2.conversation).toMatchObject({
          messageCount: 1,
          unreadCount: 0,
          lastMessage: { id: keep1.message.id, text: 'keep' },
        });
        expect(await db.conversations.visitorUnread(tenant, s2)).toBe(0);
        // s3: nothing left: no last message, no counts; still in the inbox at its last activity.
        expect(after.s3.conversation).toMatchObject({ messageCount: 0, unreadCount: 0, lastMessage: null });
        expect(after.s3.conversation.lastActivityAt).toBe(before.s3.conversation.lastActivityAt);
        // No conversation names a message that is gone.
        const dangling = await sql<{ n: string | number }>`
          select count(*) as n from conversations c
          where c.tenant_id = ${tenant} and c.last_message_id is not null
            and not exists (select 1 from messages m where m.id = c.last_message_id)`.execute(db.kysely);
        expect(Number(dangling.rows[0]!.n)).toBe(0);
        // Each change is an event at the conversation's next version, written with the delete
        // (the relay's sweep publishes it).
        for (const k of ['s1', 's2', 's3'] as const) {
          expect(after[k].version).toBeGreaterThan(before[k].version);
          const sid = { s1, s2, s3 }[k];
          const events = await db.kysely
            .selectFrom('conversation_outbox')
            .innerJoin('conversations', 'conversations.id', 'conversation_outbox.conversation_id')
            .select(['conversation_outbox.version', 'conversation_outbox.summary'])
            .where('conversations.session_id', '=', sid)
            .orderBy('conversation_outbox.version', 'desc')
            .execute();
          const newest = events[0]!;
          const summary = (typeof newest.summary === 'string' ? JSON.parse(newest.summary) : newest.summary) as { conversation: unknown };
          expect([newest.version, summary.conversation]).toEqual([after[k].version, after[k].conversation]);
        }
        expect((await db.messages.since(other, elsewhere.message.sessionId, 0, 10)).map((m) => m.id)).toEqual([elsewhere.message.id]);
        // Counting goes on from what is stored.
        const next = created(await db.messages.accept(msg(tenant, s3, 'back again')));
        expect(next.update.conversation).toMatchObject({ messageCount: 1, unreadCount: 1, lastMessage: { id: next.message.id } });
        expect(next.update.version).toBe(after.s3.version + 1);
      });
    });

    it('gives consecutive seqs in arrival order to concurrent callers (group commit batches them)', async () => {
      const tenant = uid('t');
      const sids = [uid('s'), uid('s'), uid('s')];
      flushes.length = 0;
      const n = 120;
      const results = await Promise.all(Array.from({ length: n }, (_, i) => db.messages.accept(msg(tenant, sids[i % 3]!, `m${i}`))));
      for (const [k, sid] of sids.entries()) {
        const mine = results.filter((_, i) => i % 3 === k).map((r) => created(r).message.seq);
        expect(mine).toEqual(Array.from({ length: n / 3 }, (_, i) => i + 1));
        expect((await db.messages.getConversation(tenant, sid))!.lastSeq).toBe(n / 3);
      }
      // Batches formed: fewer transactions than messages.
      expect(flushes.length).toBeLessThan(n);
      expect(Math.max(...flushes)).toBeGreaterThan(1);
    });

    it('answers a retry with the same clientMessageId and content with the first message, and a different content with a conflict', async () => {
      const tenant = uid('t');
      const sid = uid('s');
      const first = created(await db.messages.accept(msg(tenant, sid, 'hi', { clientMessageId: 'c1' })));
      const again = await db.messages.accept(msg(tenant, sid, 'hi', { clientMessageId: 'c1', meta: { ...emptyMeta(), url: 'changed' } }));
      expect(again).toEqual({ kind: 'duplicate', message: first.message });
      const other = await db.messages.accept(msg(tenant, sid, 'something else', { clientMessageId: 'c1' }));
      expect(other).toEqual({ kind: 'conflict', messageId: first.message.id });
      // Neither took a seq or wrote an outbox row.
      expect((await db.messages.getConversation(tenant, sid))!.lastSeq).toBe(1);
      const next = created(await db.messages.accept(msg(tenant, sid, 'next', { clientMessageId: 'c2' })));
      expect(next.message.seq).toBe(2);
      // The key is per sender: another sender may reuse the id.
      const agent = created(
        await db.messages.accept(msg(tenant, sid, 'hi', { clientMessageId: 'c1', sender: { type: 'agent', id: 'ag1', verified: true } })),
      );
      expect(agent.message.seq).toBe(3);
    });

    it('handles the same clientMessageId twice within one batch', async () => {
      const tenant = uid('t');
      const sid = uid('s');
      const [a, b, c] = await Promise.all([
        db.messages.accept(msg(tenant, sid, 'same', { clientMessageId: 'k' })),
        db.messages.accept(msg(tenant, sid, 'same', { clientMessageId: 'k' })),
        db.messages.accept(msg(tenant, sid, 'different', { clientMessageId: 'k' })),
      ]);
      const first = created(a!);
      expect(b).toEqual({ kind: 'duplicate', message: first.message });
      expect(c).toEqual({ kind: 'conflict', messageId: first.message.id });
      expect((await db.messages.getConversation(tenant, sid))!.lastSeq).toBe(1);
    });

    it('answers concurrent conversation lookups (grouped into shared queries) each for its own tenant and session', async () => {
      const a = uid('ta');
      const b = uid('tb');
      const sids = Array.from({ length: 6 }, () => uid('s'));
      for (const [i, sid] of sids.entries()) {
        for (let k = 0; k <= i; k++) await db.messages.accept(msg(i % 2 ? b : a, sid, `m${k}`));
      }
      // 60 lookups at once: existing, another tenant's, never seen, repeated.
      const asks = Array.from({ length: 60 }, (_, j) => {
        const i = j % sids.length;
        const tenant = j % 3 === 0 ? (i % 2 ? a : b) : i % 2 ? b : a; // every third asks as the wrong tenant
        const sid = j % 10 === 9 ? uid('none') : sids[i]!;
        return { tenant, sid, expect: j % 10 === 9 || j % 3 === 0 ? null : i + 1 };
      });
      const got = await Promise.all(asks.map((q) => db.messages.getConversation(q.tenant, q.sid)));
      expect(got.map((c) => c?.lastSeq ?? null)).toEqual(asks.map((q) => q.expect));
      for (const [j, c] of got.entries()) if (c) expect([c.tenantId, c.sessionId]).toEqual([asks[j]!.tenant, asks[j]!.sid]);
    });

    it('refuses a session id owned by another tenant, without writing or revealing anything', async () => {
      const a = uid('ta');
      const b = uid('tb');
      const sid = uid('s');
      const mine = created(await db.messages.accept(msg(a, sid, 'tenant A')));
      expect(await db.messages.accept(msg(b, sid, 'tenant B'))).toEqual({ kind: 'foreign' });
      // Mixed in one batch with a legitimate message: only the foreign one is refused.
      const [x, y] = await Promise.all([db.messages.accept(msg(b, sid, 'again B')), db.messages.accept(msg(a, sid, 'again A'))]);
      expect(x).toEqual({ kind: 'foreign' });
      expect(created(y!).message.seq).toBe(2);
      expect(await db.messages.ensureConversation(b, sid, { fingerprint: 'fp' })).toEqual({ kind: 'foreign' });
      expect(await db.messages.getConversation(b, sid)).toBeNull();
      expect((await db.messages.history({ tenantId: b, sessionId: sid, limit: 50 })).messages).toEqual([]);
      expect(await db.messages.since(b, sid, 0, 50)).toEqual([]);
      expect(await db.messages.markRead(b, sid, 'reader', mine.message.id)).toEqual({ found: false });
      const history = await db.messages.history({ tenantId: a, sessionId: sid, limit: 50 });
      expect(history.messages.map((m) => m.text)).toEqual(['tenant A', 'again A']);
    });

    it('ensureConversation creates once, then finds the existing conversation', async () => {
      const tenant = uid('t');
      const sid = uid('s');
      const first = await db.messages.ensureConversation(tenant, sid, { fingerprint: 'fp-owner' });
      expect(first.kind).toBe('created');
      const second = await db.messages.ensureConversation(tenant, sid, { fingerprint: 'fp-other' });
      expect(second).toMatchObject({ kind: 'existing', conversation: { fingerprint: 'fp-owner', lastSeq: 0 } });
      const m = created(await db.messages.accept(msg(tenant, sid, 'x')));
      expect(m.message.seq).toBe(1);
      // The owner's fingerprint is kept: a later message does not overwrite it.
      expect((await db.messages.getConversation(tenant, sid))!.fingerprint).toBe('fp-owner');
    });

    it('fails only the bad row of a batch and keeps the seqs of the others gapless', async () => {
      const tenant = uid('t');
      const sid = uid('s');
      flushes.length = 0;
      // The first call flushes alone; the rest queue behind it and go together in the next flush.
      const calls = [
        db.messages.accept(msg(tenant, sid, 'first')),
        ...Array.from({ length: 8 }, (_, i) => db.messages.accept(msg(tenant, sid, i === 4 ? 'bad \u0000 byte' : `ok ${i}`))),
      ];
      const settled = await Promise.allSettled(calls);
      expect(flushes.some((n) => n > 1)).toBe(true);
      const bad = settled[5]!;
      expect(bad.status).toBe('rejected');
      expect((bad as PromiseRejectedResult).reason).toBeInstanceOf(ChatdError);
      expect(((bad as PromiseRejectedResult).reason as ChatdError).code).toBe('validation_failed');
      const seqs = settled
        .filter((s) => s.status === 'fulfilled')
        .map((s) => created((s as PromiseFulfilledResult<AcceptResult>).value).message.seq);
      expect(seqs).toEqual([1, 2, 3, 4, 5, 6, 7, 8]);
      const stored = await db.messages.history({ tenantId: tenant, sessionId: sid, limit: 50 });
      expect(stored.messages.map((m) => m.seq)).toEqual([1, 2, 3, 4, 5, 6, 7, 8]);
      expect(stored.messages.some((m) => m.text.includes('bad'))).toBe(false);
    });

    it('pages history by cursor: newest first page in chronological order, `before` goes back', async () => {
      const tenant = uid('t');
      const sid = uid('s');
      for (let i = 1; i <= 7; i++) created(await db.messages.accept(msg(tenant, sid, `m${i}`)));
      const p1 = await db.messages.history({ tenantId: tenant, sessionId: sid, limit: 3 });
      expect(p1.messages.map((m) => m.text)).toEqual(['m5', 'm6', 'm7']);
      expect(p1.nextCursor).toEqual(expect.any(String));
      const p2 = await db.messages.history({ tenantId: tenant, sessionId: sid, limit: 3, before: p1.nextCursor! });
      expect(p2.messages.map((m) => m.text)).toEqual(['m2', 'm3', 'm4']);
      const p3 = await db.messages.history({ tenantId: tenant, sessionId: sid, limit: 3, before: p2.nextCursor! });
      expect(p3.messages.map((m) => m.text)).toEqual(['m1']);
      expect(p3.nextCursor).toBeNull();
      const exact = await db.messages.history({ tenantId: tenant, sessionId: sid, limit: 7 });
      expect(exact.nextCursor).toBeNull();
      await expect(db.messages.history({ tenantId: tenant, sessionId: sid, limit: 3, before: 'garbage!' })).rejects.toMatchObject({
        code: 'validation_failed',
      });
      await expect(db.messages.history({ tenantId: tenant, limit: 3 })).rejects.toMatchObject({ code: 'validation_failed' });
      expect((await db.messages.history({ tenantId: tenant, sessionId: uid('nobody'), limit: 3 })).messages).toEqual([]);
    });

    it("pages a user's history across their conversations, and only theirs", async () => {
      const tenant = uid('t');
      const [s1, s2, s3] = [uid('s'), uid('s'), uid('s')];
      const owner = { conversation: { userId: 'alice@example.com' } };
      created(await db.messages.accept(msg(tenant, s1, 'a1', owner)));
      created(await db.messages.accept(msg(tenant, s2, 'b1', owner)));
      created(await db.messages.accept(msg(tenant, s3, 'other user', { conversation: { userId: 'bob' } })));
      created(await db.messages.accept(msg(tenant, s1, 'a2')));
      created(await db.messages.accept(msg(tenant, s2, 'b2')));
      const p1 = await db.messages.history({ tenantId: tenant, userId: 'alice@example.com', limit: 3 });
      expect(p1.messages.map((m) => m.text)).toEqual(['b1', 'a2', 'b2']);
      const p2 = await db.messages.history({ tenantId: tenant, userId: 'alice@example.com', limit: 3, before: p1.nextCursor! });
      expect(p2.messages.map((m) => m.text)).toEqual(['a1']);
      expect(p2.nextCursor).toBeNull();
      // Another tenant with the same userId sees nothing.
      expect((await db.messages.history({ tenantId: uid('t'), userId: 'alice@example.com', limit: 3 })).messages).toEqual([]);
      // A conversation cursor is not a user cursor.
      const conv = await db.messages.history({ tenantId: tenant, sessionId: s1, limit: 1 });
      await expect(
        db.messages.history({ tenantId: tenant, userId: 'alice@example.com', limit: 3, before: conv.nextCursor! }),
      ).rejects.toMatchObject({
        code: 'validation_failed',
      });
    });

    it('since() returns what follows a seq, ascending and bounded', async () => {
      const tenant = uid('t');
      const sid = uid('s');
      for (let i = 1; i <= 5; i++) created(await db.messages.accept(msg(tenant, sid, `m${i}`)));
      expect((await db.messages.since(tenant, sid, 2, 100)).map((m) => m.seq)).toEqual([3, 4, 5]);
      expect((await db.messages.since(tenant, sid, 0, 2)).map((m) => m.seq)).toEqual([1, 2]);
      expect(await db.messages.since(tenant, sid, 5, 100)).toEqual([]);
    });

    it('markRead moves a reader pointer forward only, within the conversation', async () => {
      const tenant = uid('t');
      const sid = uid('s');
      const m1 = created(await db.messages.accept(msg(tenant, sid, 'one')));
      const m2 = created(await db.messages.accept(msg(tenant, sid, 'two')));
      const elsewhere = created(await db.messages.accept(msg(tenant, uid('s'), 'elsewhere')));
      expect((await db.messages.markRead(tenant, sid, 'agent-1', m2.message.id)).found).toBe(true);
      expect((await db.messages.markRead(tenant, sid, 'agent-1', m1.message.id)).found).toBe(true);
      expect(await db.messages.markRead(tenant, sid, 'agent-1', elsewhere.message.id)).toEqual({ found: false });
      expect(await db.messages.markRead(tenant, sid, 'agent-1', 'not-a-uuid')).toEqual({ found: false });
      expect(await db.messages.readPointers(tenant, sid)).toEqual([
        { readerId: 'agent-1', messageId: m2.message.id, seq: 2, at: expect.any(String) },
      ]);
    });

    it("retention deletes a tenant's old messages only, and the conversation keeps counting", async () => {
      const old = uid('t');
      const other = uid('t');
      const sid = uid('s');
      for (let i = 0; i < 5; i++) created(await db.messages.accept(msg(old, sid, `old ${i}`)));
      const kept = created(await db.messages.accept(msg(other, uid('s'), 'other tenant')));
      const sweeper = new RetentionSweeper(db.messages, () => [{ tenantId: old, maxAgeMs: 60_000 }], silent, { batchSize: 2 });
      // Not old enough yet.
      expect(await sweeper.sweep(Date.now())).toBe(0);
      // An hour later: all five go, in batches of two.
      expect(await sweeper.sweep(Date.now() + 3_600_000)).toBe(5);
      expect((await db.messages.history({ tenantId: old, sessionId: sid, limit: 10 })).messages).toEqual([]);
      expect((await db.messages.getConversation(old, sid))!.lastSeq).toBe(5);
      expect(created(await db.messages.accept(msg(old, sid, 'new'))).message.seq).toBe(6);
      expect((await db.messages.since(kept.message.tenantId, kept.message.sessionId, 0, 10)).map((m) => m.id)).toEqual([kept.message.id]);
      await sweeper.stop();
    });

    it('writes an outbox row per created message; claimStale hands them out and marks the published ones done', async () => {
      // Drain what earlier tests left so counts are this test's own.
      await db.outbox.claimStale(0, 10_000, async (entries) => entries.map((e) => e.id));
      const tenant = uid('t');
      const sid = uid('s');
      const a = created(await db.messages.accept(msg(tenant, sid, 'x', { clientMessageId: 'o1' })));
      await db.messages.accept(msg(tenant, sid, 'x', { clientMessageId: 'o1' })); // a duplicate writes no row
      const b = created(await db.messages.accept(msg(tenant, sid, 'y')));
      expect(await db.outbox.pendingCount()).toBe(2);
      // Too young for a sweep that waits a minute.
      expect(await db.outbox.claimStale(60_000, 10, async () => [])).toBe(0);
      const seen: string[] = [];
      const claimed = await db.outbox.claimStale(0, 10, async (entries) => {
        seen.push(...entries.map((e) => `${e.message.seq}:${e.message.text}`));
        return [entries[0]!.id]; // only the first was "published"
      });
      expect(claimed).toBe(2);
      expect(seen).toEqual(['1:x', '2:y']);
      expect(await db.outbox.pendingCount()).toBe(1);
      await db.outbox.markDone([b.outboxId, a.outboxId]);
      expect(await db.outbox.pendingCount()).toBe(0);
    });

    it('markAllDone retires message rows and conversation_updated rows in one call, each table only its own ids', async () => {
      await db.outbox.claimStale(0, 10_000, async (entries) => entries.map((e) => e.id));
      await db.conversationOutbox.claimStale(0, 10_000, async (u) => u.map((x) => x.id));
      const tenant = uid('t');
      const sid = uid('s');
      const a = created(await db.messages.accept(msg(tenant, sid, 'a')));
      const b = created(await db.messages.accept(msg(tenant, sid, 'b')));
      expect([await db.outbox.pendingCount(), await db.conversationOutbox.pendingCount()]).toEqual([2, 2]);
      await db.outbox.markAllDone([a.outboxId], [a.update.id]);
      expect([await db.outbox.pendingCount(), await db.conversationOutbox.pendingCount()]).toEqual([1, 1]);
      // An id of the other table retires nothing.
      await db.outbox.markAllDone([b.update.id], [b.outboxId]);
      expect([await db.outbox.pendingCount(), await db.conversationOutbox.pendingCount()]).toEqual([1, 1]);
      await db.outbox.markAllDone([b.outboxId], []);
      await db.outbox.markAllDone([], [b.update.id]);
      expect([await db.outbox.pendingCount(), await db.conversationOutbox.pendingCount()]).toEqual([0, 0]);
    });

    it('the relay publishes after commit, and its sweep re-publishes rows left undone', async () => {
      await db.outbox.claimStale(0, 10_000, async (entries) => entries.map((e) => e.id));
      const events = new RecordingEventLog();
      const relay = new DbOutboxRelay(db.outbox, events, silent, { staleAfterMs: 0, sweepIntervalMs: 60_000 });
      try {
        const tenant = uid('t');
        const sid = uid('s');
        const a = created(await db.messages.accept(msg(tenant, sid, 'published now')));
        relay.publishNow(a.message, a.outboxId);
        await eventually(async () => (await db.outbox.pendingCount()) === 0, 'the outbox row to be done');
        expect(events.published.map((m) => m.id)).toEqual([a.message.id]);

        // "Redis down": the publish fails, the row stays.
        events.mode = 'fail';
        const b = created(await db.messages.accept(msg(tenant, sid, 'late')));
        const c = created(await db.messages.accept(msg(tenant, sid, 'later')));
        relay.publishNow(b.message, b.outboxId);
        relay.publishNow(c.message, c.outboxId);
        await eventually(() => events.calls >= 3, 'the failing publishes');
        expect(await relay.sweep()).toBe(0);
        expect(await db.outbox.pendingCount()).toBe(2);

        // Back up: the sweep publishes both, in seq order, and the outbox drains.
        events.mode = 'ok';
        expect(await relay.sweep()).toBe(2);
        expect(events.published.map((m) => m.seq)).toEqual([1, 2, 3]);
        expect(await db.outbox.pendingCount()).toBe(0);
      } finally {
        await relay.stop();
      }
    });
  });
}
