// The Database contract on the shared PostgreSQL (each suite in its own schema), plus what needs
// PostgreSQL: two processes writing the same conversations, a relay process killed between commit
// and publish, and start-up refusing pending migrations.
import { sql } from 'kysely';
import pg from 'pg';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DATABASE_URL, dropSchema, has, uniqueSchema } from '../../test/helpers/services.js';
import { describeDatabaseContract, msg } from './database.contract.js';
import { openDatabase, type KyselyDatabase } from './index.js';
import { inboxPageQuery } from './inbox.js';
import { MigrationError } from './migrations.js';
import { DbOutboxRelay } from './outbox-relay.js';
import { spawnChild } from '../../test/helpers/db/child.js';
import { testDbConfig } from '../../test/helpers/db/config.js';
import { RecordingEventLog } from '../../test/helpers/db/recording-event-log.js';
import { eventually } from '../../test/helpers/eventually.js';

const silent = pino({ level: 'silent' });

/** A parameter as an SQL literal, for EXPLAIN of a compiled query. */
const literal = (v: unknown) =>
  v === null || v === undefined ? 'null' : typeof v === 'number' ? String(v) : `'${String(v).replace(/'/g, "''")}'`;
const available = await has('postgres');

describe.skipIf(!available)('PostgreSQL', () => {
  describeDatabaseContract('PostgreSQL', () => {
    const schema = uniqueSchema('dbc');
    return {
      open: (onFlush) => openDatabase(testDbConfig({ url: DATABASE_URL, schema, autoMigrate: true }), silent, { onFlush }),
      cleanup: () => dropSchema(schema),
    };
  });

  describe('start-up and processes', () => {
    const schema = uniqueSchema('dbp');
    const config = testDbConfig({ url: DATABASE_URL, schema, autoMigrate: true });
    let db: KyselyDatabase;
    beforeAll(async () => {
      db = await openDatabase(config, silent);
    });
    afterAll(async () => {
      await db?.close();
      await dropSchema(schema);
    });

    it('refuses to start on pending migrations unless autoMigrate is set, and says what to run', async () => {
      const fresh = uniqueSchema('dbm');
      try {
        const err = await openDatabase(testDbConfig({ url: DATABASE_URL, schema: fresh }), silent).catch((e: unknown) => e);
        expect(err).toBeInstanceOf(MigrationError);
        expect((err as Error).message).toMatch(
          /8 pending migration\(s\): 0001_init, 0002_retention_index, 0003_conversations_inbox, 0004_offline_email, 0005_tenant_notify, 0006_accept_batch, 0007_conversation_version, 0008_revocations; run `chatd migrate up`/,
        );
        const migrated = await openDatabase(testDbConfig({ url: DATABASE_URL, schema: fresh, autoMigrate: true }), silent);
        await migrated.close();
        // Now up to date: starts without autoMigrate.
        const again = await openDatabase(testDbConfig({ url: DATABASE_URL, schema: fresh }), silent);
        await again.ping();
        await again.close();
      } finally {
        await dropSchema(fresh);
      }
    });

    it('an unreachable PostgreSQL is a DependencyError naming it (password redacted)', async () => {
      const err = await openDatabase(testDbConfig({ url: 'postgres://chatd:s3cret@127.0.0.1:1/x', connectTimeoutMs: 2000 }), silent).catch(
        (e: unknown) => e,
      );
      expect((err as Error).name).toBe('DependencyError');
      expect((err as Error).message).toContain('postgres://chatd:***@127.0.0.1:1/x');
      expect((err as Error).message).not.toContain('s3cret');
    });

    it('two processes writing the same conversations get gapless seqs, each in its own submission order, in commit order', async () => {
      const child = await spawnChild('db-child', { CHATD_TEST_DB: JSON.stringify(config) });
      try {
        await child.next((m) => m.event === 'ready');
        const tenant = 'two-proc';
        const sessions = ['tp-a', 'tp-b', 'tp-c'].map((s) => `${s}-${schema}`);
        const count = 240;
        child.send({ op: 'write', tenant, sessions, count, concurrency: 16, label: 'child' });
        // The parent writes at the same time, through its own pool and group commit.
        const parent: { i: number; sessionId: string; seq: number }[] = [];
        let next = 0;
        await Promise.all(
          Array.from({ length: 16 }, async () => {
            while (next < count) {
              const i = next++;
              const sessionId = sessions[i % sessions.length]!;
              const r = await db.messages.accept(msg(tenant, sessionId, `parent ${i}`));
              if (r.kind !== 'created') throw new Error(r.kind);
              parent.push({ i, sessionId, seq: r.message.seq });
            }
          }),
        );
        const { results: fromChild } = await child.next<{ results: { i: number; sessionId: string; seq: number }[] }>(
          (m) => m.event === 'written',
        );
        for (const sid of sessions) {
          const p = parent.filter((r) => r.sessionId === sid).sort((a, b) => a.i - b.i);
          const c = fromChild.filter((r) => r.sessionId === sid).sort((a, b) => a.i - b.i);
          // Gapless and unique across both processes.
          const all = [...p, ...c].map((r) => r.seq).sort((a, b) => a - b);
          expect(all).toEqual(Array.from({ length: all.length }, (_, k) => k + 1));
          // Each process's messages are numbered in the order it submitted them.
          for (const mine of [p, c]) expect(mine.map((r) => r.seq)).toEqual([...mine.map((r) => r.seq)].sort((a, b) => a - b));
          // Insert position (taken under the conversation's row lock, so in commit order) follows seq.
          const rows = await db.kysely.selectFrom('messages').select(['seq', 'pos']).where('session_id', '=', sid).orderBy('pos').execute();
          expect(rows.map((r) => r.seq)).toEqual(all);
        }
      } finally {
        await child.kill();
      }
    });

    it("a status change and an agents' read queued behind a message's commit summarise the conversation after it", async () => {
      // Another session holds the conversation's row lock; a message, then a change and a read queue
      // behind it. When it lets go the message commits first (row-lock waiters go in turn), and the
      // two after it must read it: their summaries name it as lastMessage. In one statement that
      // waited for the lock (select … join messages … for update, update … from … join messages)
      // the row was re-read but the joined last message came from the snapshot before the wait.
      const tenant = 'queued';
      const sid = `q-${schema}`;
      // Its own handle, with a statement timeout far above any wait here (the default 10 s would
      // cancel the queued statements on a machine busy enough).
      const db = await openDatabase({ ...config, database: { ...config.database, statementTimeoutMs: 600_000 } }, silent);
      const first = await db.messages.accept(msg(tenant, sid, 'first'));
      if (first.kind !== 'created') throw new Error(first.kind);
      const holder = new pg.Client({ connectionString: DATABASE_URL });
      await holder.connect();
      try {
        await holder.query(`set search_path to ${schema}`);
        await holder.query('begin');
        await holder.query('select id from conversations where session_id = $1 for update', [sid]);
        const holderPid = (await holder.query('select pg_backend_pid() as pid')).rows[0].pid as number;
        // Backends waiting for the holder, or for one that waits for it (later waiters queue on the
        // first one's tuple lock).
        const blocked = async () =>
          Number(
            (
              await sql<{ n: string }>`
                with first as (select array_agg(pid) as p from pg_stat_activity where ${holderPid}::int = any(pg_blocking_pids(pid)))
                select count(*) as n from pg_stat_activity, first
                where pg_blocking_pids(pid) && (array[${holderPid}::int] || coalesce(first.p, '{}'::int[]))`.execute(db.kysely)
            ).rows[0]!.n,
          );
        const second = db.messages.accept(msg(tenant, sid, 'second'));
        await eventually(async () => (await blocked()) === 1, 'the message waiting for the lock');
        const change = db.conversations.change(tenant, sid, { status: 'pending' }, { type: 'agent', id: 'ag-1' });
        const read = db.messages.markRead(tenant, sid, 'agent:ag-1', first.message.id);
        await eventually(async () => (await blocked()) === 3, 'the change and the read waiting too');
        await holder.query('rollback');
        const [m, c, r] = await Promise.all([second, change, read]);
        if (m.kind !== 'created' || c.kind !== 'changed' || !r.found || !r.update) throw new Error('all three commit');
        // Each summary agrees with the commit order its version gives.
        for (const u of [c.update, r.update]) {
          const after = u.version > m.update.version;
          expect(u.conversation.lastMessage!.id).toBe(after ? m.message.id : first.message.id);
          expect(u.conversation.messageCount).toBe(after ? 2 : 1);
        }
        expect(new Set([m.update.version, c.update.version, r.update.version]).size).toBe(3);
        const newest = [m.update, c.update, r.update].sort((x, y) => y.version - x.version)[0]!;
        expect(await db.conversations.summary(tenant, sid)).toEqual({ conversation: newest.conversation, version: newest.version });
      } finally {
        await holder.end();
        await db.close();
      }
    });

    it('overlapping flushes of two nodes take shared conversations in opposite orders: no deadlock, gapless seqs, each node in its own order', async () => {
      // Two databases on the same schema, each with several flushes in flight (poolSize 10 → 9):
      // node A writes conversations 0…23, node B 23…0, so their batches contend for the same rows in
      // opposite submission orders. The function locks in session-id order: they queue, never deadlock.
      // A deadlock would be retried row by row (and hidden); the warning it logs is counted instead.
      const fallbacks: string[] = [];
      const log = pino({ level: 'warn' }, { write: (line: string) => void (line.includes('one by one') && fallbacks.push(line)) });
      const other = await openDatabase(config, log);
      const flushes: number[] = [];
      const a = await openDatabase(config, log, { onFlush: (n) => flushes.push(n) });
      try {
        const tenant = 'overlap';
        const sessions = Array.from({ length: 24 }, (_, k) => `ov-${k}-${schema}`);
        const perNode = 960;
        const write = (node: KyselyDatabase, label: string, order: string[]) => {
          const out: { i: number; sessionId: string; seq: number; outboxId: string; version: number }[] = [];
          let next = 0;
          return Promise.all(
            Array.from({ length: 32 }, async () => {
              while (next < perNode) {
                const i = next++;
                const sessionId = order[i % order.length]!;
                const r = await node.messages.accept(msg(tenant, sessionId, `${label} ${i}`, { clientMessageId: `${label}-${i}` }));
                if (r.kind !== 'created') throw new Error(r.kind);
                out.push({ i, sessionId, seq: r.message.seq, outboxId: r.outboxId, version: r.update.version });
              }
            }),
          ).then(() => out);
        };
        const [fromA, fromB] = await Promise.all([write(a, 'a', sessions), write(other, 'b', [...sessions].reverse())]);
        expect(fallbacks).toEqual([]);
        // Flushes did overlap and batch: fewer flushes than messages.
        expect(flushes.length).toBeLessThan(perNode);
        for (const sid of sessions) {
          const mineA = fromA.filter((r) => r.sessionId === sid).sort((x, y) => x.i - y.i);
          const mineB = fromB.filter((r) => r.sessionId === sid).sort((x, y) => x.i - y.i);
          const all = [...mineA, ...mineB].map((r) => r.seq).sort((x, y) => x - y);
          expect(all).toEqual(Array.from({ length: all.length }, (_, k) => k + 1));
          for (const mine of [mineA, mineB]) expect(mine.map((r) => r.seq)).toEqual([...mine.map((r) => r.seq)].sort((x, y) => x - y));
          const head = await db.kysely
            .selectFrom('conversations')
            .select(['last_seq', 'message_count', 'unread_by_agents'])
            .where('session_id', '=', sid)
            .executeTakeFirstOrThrow();
          expect(head).toEqual({ last_seq: all.length, message_count: all.length, unread_by_agents: all.length });
        }
        // Every message has its outbox row; a retry of any returns the original.
        const count = await sql<{ n: string }>`select count(*) as n from outbox o join messages m on m.id = o.message_id
          where m.tenant_id = ${tenant}`.execute(db.kysely);
        expect(Number(count.rows[0]!.n)).toBe(2 * perNode);
        const first = fromB.find((r) => r.i === 5)!;
        const retry = await a.messages.accept(msg(tenant, first.sessionId, 'b 5', { clientMessageId: 'b-5' }));
        expect(retry.kind === 'duplicate' && retry.message.seq).toBe(first.seq);
      } finally {
        await a.close();
        await other.close();
      }
    });

    it('two nodes sending the same clientMessageIds at once: one message per key, the other node gets it as a duplicate', async () => {
      // The second flush to lock a conversation reads with a snapshot taken after the lock: it sees
      // the first one's message and answers a duplicate, without a unique violation (no fallback).
      const fallbacks: string[] = [];
      const log = pino({ level: 'warn' }, { write: (line: string) => void (line.includes('one by one') && fallbacks.push(line)) });
      const a = await openDatabase(config, log);
      const b = await openDatabase(config, log);
      try {
        const tenant = 'same-key';
        const sessions = Array.from({ length: 6 }, (_, k) => `sk-${k}-${schema}`);
        const keys = 180;
        const send = (node: KyselyDatabase) =>
          Promise.all(
            Array.from({ length: keys }, (_, i) =>
              node.messages.accept(msg(tenant, sessions[i % sessions.length]!, `text ${i}`, { clientMessageId: `k-${i}` })),
            ),
          );
        const [fromA, fromB] = await Promise.all([send(a), send(b)]);
        expect(fallbacks).toEqual([]);
        for (let i = 0; i < keys; i++) {
          const kinds = [fromA[i]!.kind, fromB[i]!.kind].sort();
          expect(kinds).toEqual(['created', 'duplicate']);
          const id = (r: (typeof fromA)[number]) => (r.kind === 'created' || r.kind === 'duplicate' ? r.message.id : r.kind);
          expect(id(fromA[i]!)).toBe(id(fromB[i]!));
        }
        for (const sid of sessions) {
          const rows = await db.kysely.selectFrom('messages').select('seq').where('session_id', '=', sid).orderBy('seq').execute();
          expect(rows.map((r) => r.seq)).toEqual(Array.from({ length: keys / sessions.length }, (_, k) => k + 1));
        }
      } finally {
        await a.close();
        await b.close();
      }
    });

    it('re-publishes outbox rows after the process that committed them is killed before publishing', async () => {
      const child = await spawnChild('db-child', { CHATD_TEST_DB: JSON.stringify(config) });
      let ids: string[];
      try {
        await child.next((m) => m.event === 'ready');
        child.send({ op: 'commit-no-publish', tenant: 'killed', session: `killed-${schema}`, count: 5 });
        ({ ids } = await child.next<{ ids: string[] }>((m) => m.event === 'committed'));
      } finally {
        await child.kill('SIGKILL');
      }
      expect((await child.exited).signal).toBe('SIGKILL');
      const events = new RecordingEventLog();
      const relay = new DbOutboxRelay(db.outbox, events, silent, { staleAfterMs: 100, sweepIntervalMs: 50 }).start();
      try {
        await expect.poll(() => ids.every((id) => events.published.some((m) => m.id === id)), { timeout: 30_000, interval: 50 }).toBe(true);
        // In seq order, each once, and the outbox drained.
        expect(events.published.filter((m) => ids.includes(m.id)).map((m) => m.seq)).toEqual([1, 2, 3, 4, 5]);
        await expect.poll(() => db.outbox.pendingCount(), { timeout: 10_000 }).toBe(0);
      } finally {
        await relay.stop();
      }
    });

    it('reads every inbox filter shape along an index starting with the tenant, in index order (no sort, no other tenant)', async () => {
      for (let i = 0; i < 30; i++) await db.messages.accept(msg(i % 3 ? 'plan-other' : 'plan', `plan-${schema}-${i}`, `m${i}`));
      const cursor = { at: new Date().toISOString(), id: '00000000-0000-4000-8000-000000000000' };
      const shapes = [
        {},
        { status: 'open' as const },
        { assignee: 'agent-1' },
        { assignee: null },
        { status: 'pending' as const, assignee: 'agent-1' },
        { status: 'resolved' as const, assignee: null },
      ];
      await db.kysely.connection().execute(async (conn) => {
        // The table is tiny here, where a sequential or bitmap scan and a sort win on cost (which of
        // them depends on the statistics of the moment: CI saw a bitmap scan). With those off the
        // planner shows which index serves each shape; a disabled node is still used when nothing
        // else can answer, so a Sort node here means no index gives the page's order.
        await sql`set enable_seqscan = off`.execute(conn);
        await sql`set enable_bitmapscan = off`.execute(conn);
        await sql`set enable_sort = off`.execute(conn);
        try {
          for (const shape of shapes) {
            for (const c of [undefined, cursor]) {
              const q = inboxPageQuery({ tenantId: 'plan', ...shape }, c, 51).compile(conn);
              const { rows } = await sql
                .raw<{ 'QUERY PLAN': string }>(
                  `explain ${q.sql.replace(/\$(\d+)/g, (_, n: string) => literal(q.parameters[Number(n) - 1]))}`,
                )
                .execute(conn);
              const plan = rows.map((r) => r['QUERY PLAN']).join('\n');
              expect(plan, JSON.stringify(shape)).toMatch(/Index (Only )?Scan using conversations_inbox_\w+ on conversations c/);
              expect(plan, JSON.stringify(shape)).not.toMatch(/Sort|Seq Scan on conversations/);
            }
          }
        } finally {
          await sql`reset enable_seqscan`.execute(conn);
          await sql`reset enable_bitmapscan`.execute(conn);
          await sql`reset enable_sort`.execute(conn);
        }
      });
    });

    it('two relays sweeping at once publish each row once (FOR UPDATE SKIP LOCKED)', async () => {
      await db.outbox.claimStale(0, 10_000, async (e) => e.map((x) => x.id));
      const other = await openDatabase(config, silent);
      try {
        for (let i = 0; i < 60; i++) await db.messages.accept(msg('sweep', `sw-${schema}-${i % 4}`, `m${i}`));
        // Separate logs on purpose: a doubled publish would show up in both.
        const e1 = new RecordingEventLog();
        const e2 = new RecordingEventLog();
        const r1 = new DbOutboxRelay(db.outbox, e1, silent, { staleAfterMs: 0, batchSize: 7 });
        const r2 = new DbOutboxRelay(other.outbox, e2, silent, { staleAfterMs: 0, batchSize: 7 });
        await Promise.all([r1.sweep(), r2.sweep(), r1.sweep(), r2.sweep()]);
        await Promise.all([r1.sweep(), r2.sweep()]);
        const ids = [...e1.published, ...e2.published].map((m) => m.id);
        expect(ids).toHaveLength(60);
        expect(new Set(ids).size).toBe(60);
        await Promise.all([r1.stop(), r2.stop()]);
      } finally {
        await other.close();
      }
    });
  });
});
