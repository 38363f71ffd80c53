// Erasure and revocation on real Redis and PostgreSQL: erase removes exactly what it reports
// (checked with SQL and Redis commands) and nothing of other sessions or tenants; a revoked agent's
// older tokens are refused, newer ones accepted, and every node hears the `revoke` event.
import { randomUUID } from 'node:crypto';
import pg from 'pg';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DATABASE_URL, REDIS_URL, hasPostgres, hasRedis, uniquePrefix, uniqueSchema } from '../../test/helpers/services.js';
import { createAuth } from '../auth/index.js';
import { eraseSubject } from '../chat/erase.js';
import { emptyMeta } from '../chat/message.js';
import { loadConfig } from '../config/load.js';
import type { Config } from '../config/schema.js';
import { openDatabase } from '../db/index.js';
import type { Database } from '../db/ports.js';
import { ChatdError } from '../errors.js';
import { createStore } from '../store/index.js';
import type { Store, TenantEvent } from '../store/ports.js';
import type { RedisStore } from '../store/redis/redis-store.js';
import { createRevocationCheck, revokeSubject } from './revocation.js';
import { eventually } from '../../test/helpers/eventually.js';

const ready = (await hasRedis()) && (await hasPostgres());
const log = pino({ level: 'silent' });
const sid = (label: string) => `${label}-${randomUUID().slice(0, 8)}`;

describe.skipIf(!ready)('erase and revoke (Redis + PostgreSQL)', () => {
  let config: Config;
  let store: Store;
  let redis: RedisStore;
  let db: Database;
  let sql: pg.Client;
  const schema = uniqueSchema('ops');

  beforeAll(async () => {
    config = (
      await loadConfig({
        env: {},
        cwd: '/',
        overrides: (r) =>
          Object.assign(r, {
            auth: { jwtSecret: 'ops-test-secret-0123456789abcdef' },
            redis: { url: REDIS_URL, prefix: uniquePrefix('ops') },
            database: { url: DATABASE_URL, schema, autoMigrate: true },
            tenants: [
              { id: 'tA', apiKeys: [] },
              { id: 'tB', apiKeys: [] },
            ],
          }),
      })
    ).config;
    store = await createStore(config, log, 'ops-test');
    redis = store as RedisStore;
    db = await openDatabase(config, log);
    sql = new pg.Client({ connectionString: DATABASE_URL });
    await sql.connect();
    await sql.query(`set search_path to ${schema}`);
  });
  afterAll(async () => {
    await sql?.query(`drop schema if exists ${schema} cascade`).catch(() => undefined);
    await sql?.end();
    await db?.close();
    await store?.close();
  });

  /** A conversation with `n` messages, read pointer, session record, token binding, presence and webhook jobs. */
  async function seed(tenantId: string, sessionId: string, userId: string, n = 3) {
    for (let i = 0; i < n; i++) {
      const r = await db.messages.accept({
        tenantId,
        sessionId,
        sender: { type: 'user', id: userId, verified: true },
        text: `hello ${i}`,
        meta: emptyMeta(),
        conversation: { userId, fingerprint: 'fp' },
      });
      if (r.kind !== 'created') throw new Error(r.kind);
      await store.events.publishMessage(r.message);
      if (i === n - 1) await db.messages.markRead(tenantId, sessionId, 'agent-1', r.message.id);
    }
    await store.sessions.upsert(sessionId, { tenantId, userId, fingerprint: 'fp' }, 3600);
    await store.sessions.bind(tenantId, `jti-${sessionId}`, sessionId, 3600);
    await store.presence.add(
      'node-x',
      {
        connId: `c-${sessionId}`,
        tenantId,
        userId,
        sessionId,
        role: 'user',
        connectedAt: new Date().toISOString(),
        domain: 'd',
        origin: 'o',
        url: 'u',
      },
      60_000,
    );
    // A scheduled webhook retry as the dispatcher writes it (member = self-contained JSON).
    await redis.client.zadd(
      redis.keys.webhookRetry,
      Date.now() + 60_000,
      JSON.stringify({ v: 1, deliveryId: randomUUID(), tenantId, sessionId, messageId: randomUUID(), endpointId: 'e' }),
    );
  }

  const dbCounts = async (sessionId: string) => {
    const q = async (text: string) => Number((await sql.query(text, [sessionId])).rows[0].n);
    return {
      conversations: await q('select count(*) as n from conversations where session_id = $1'),
      messages: await q('select count(*) as n from messages where session_id = $1'),
      readPointers: await q(
        'select count(*) as n from read_pointers r join conversations c on c.id = r.conversation_id where c.session_id = $1',
      ),
    };
  };
  const storeCounts = async (tenantId: string, sessionId: string) => {
    const jobs = (await store.webhooks.range('-', '+', 100000)).filter((j) => j.tenantId === tenantId && j.sessionId === sessionId).length;
    const retries = (await redis.client.zrange(redis.keys.webhookRetry, 0, -1)).filter((m) => {
      const x = JSON.parse(m) as { tenantId: string; sessionId: string };
      return x.tenantId === tenantId && x.sessionId === sessionId;
    }).length;
    return {
      session: (await store.sessions.get(sessionId)) ? 1 : 0,
      binding: (await store.sessions.getBinding(tenantId, `jti-${sessionId}`)) ? 1 : 0,
      online: (await store.presence.list(tenantId)).filter((u) => u.sessionId === sessionId).length,
      jobs,
      retries,
    };
  };

  it('erase --session removes exactly what it reports, and a dry run removes nothing', async () => {
    const [s1, s2, sB] = [sid('s1'), sid('s2'), sid('sB')];
    await seed('tA', s1, 'u1');
    await seed('tA', s2, 'u2', 2);
    await seed('tB', sB, 'u1', 2);
    const deps = { messages: db.messages, erasure: store.erasure };

    const dry = await eraseSubject(deps, { tenantId: 'tA', sessionId: s1, dryRun: true });
    expect(dry.removed).toEqual({
      conversations: 1,
      messages: 3,
      readPointers: 1,
      outboxRows: 3, // seed() never marks outbox rows done
      sessionRecords: 1,
      tokenBindings: 1,
      presenceEntries: 1,
      webhookJobs: 3,
      webhookRetries: 1,
    });
    expect(await dbCounts(s1)).toEqual({ conversations: 1, messages: 3, readPointers: 1 });
    expect(await storeCounts('tA', s1)).toEqual({ session: 1, binding: 1, online: 1, jobs: 3, retries: 1 });

    const done = await eraseSubject(deps, { tenantId: 'tA', sessionId: s1 });
    expect(done.removed).toEqual(dry.removed);
    expect(done.sessionIds).toEqual([s1]);
    expect(await dbCounts(s1)).toEqual({ conversations: 0, messages: 0, readPointers: 0 });
    expect(await storeCounts('tA', s1)).toEqual({ session: 0, binding: 0, online: 0, jobs: 0, retries: 0 });
    // Other sessions and the other tenant keep everything.
    expect(await dbCounts(s2)).toEqual({ conversations: 1, messages: 2, readPointers: 1 });
    expect(await storeCounts('tA', s2)).toEqual({ session: 1, binding: 1, online: 1, jobs: 2, retries: 1 });
    expect(await dbCounts(sB)).toEqual({ conversations: 1, messages: 2, readPointers: 1 });
    expect(await storeCounts('tB', sB)).toEqual({ session: 1, binding: 1, online: 1, jobs: 2, retries: 1 });

    // Again: nothing left to remove.
    const again = await eraseSubject(deps, { tenantId: 'tA', sessionId: s1 });
    expect(Object.values(again.removed).every((n) => n === 0)).toBe(true);
  });

  it('erase covers the inbox: system messages (status history), both read pointers, conversation.updated jobs, pending events', async () => {
    const s = sid('inbox');
    await seed('tA', s, 'u30', 1);
    const change = await db.conversations.change('tA', s, { status: 'resolved' }, { type: 'agent', id: 'ag-1' });
    if (change.kind !== 'changed') throw new Error(change.kind);
    await store.events.publishMessage(change.message);
    await store.events.publishUpdate(change.update);
    const first = (await db.messages.history({ tenantId: 'tA', sessionId: s, limit: 10 })).messages[0]!;
    const read = await db.messages.markRead('tA', s, 'agent:ag-1', change.message.id);
    expect(read).toMatchObject({ found: true, update: { sessionId: s } });
    await db.messages.markRead('tA', s, 'user:u30', first.id);
    const pendingEvents = async () =>
      Number((await sql.query("select count(*) as n from conversation_outbox where summary->>'sessionId' = $1", [s])).rows[0].n);
    expect(await pendingEvents()).toBe(3); // the message's, the resolve's, the read's (nothing marked them done)
    const deps = { messages: db.messages, erasure: store.erasure };
    const r = await eraseSubject(deps, { tenantId: 'tA', sessionId: s });
    expect(r.removed).toMatchObject({
      conversations: 1,
      messages: 2, // the user's and the system message recording the resolve
      readPointers: 3, // seed()'s, the agents', the user's
      webhookJobs: 3, // message.created for both messages, conversation.updated for the resolve
    });
    expect(await dbCounts(s)).toEqual({ conversations: 0, messages: 0, readPointers: 0 });
    expect(await storeCounts('tA', s)).toEqual({ session: 0, binding: 0, online: 0, jobs: 0, retries: 0 });
    expect(await pendingEvents()).toBe(0);
    expect(await db.conversations.summary('tA', s)).toBeNull();
  });

  it("erase --user removes every conversation that user owns in that tenant only; another tenant's session id is not touched", async () => {
    const [a1, a2, other, b1] = [sid('a1'), sid('a2'), sid('o'), sid('b1')];
    await seed('tA', a1, 'u9');
    await seed('tA', a2, 'u9', 1);
    await seed('tA', other, 'u10', 1);
    await seed('tB', b1, 'u9', 1);
    const deps = { messages: db.messages, erasure: store.erasure };
    const r = await eraseSubject(deps, { tenantId: 'tA', userId: 'u9' });
    expect(r.sessionIds).toEqual([a1, a2].sort());
    expect(r.removed).toMatchObject({
      conversations: 2,
      messages: 4,
      readPointers: 2,
      sessionRecords: 2,
      tokenBindings: 2,
      presenceEntries: 2,
      webhookJobs: 4,
      webhookRetries: 2,
    });
    for (const s of [a1, a2]) expect(await dbCounts(s)).toEqual({ conversations: 0, messages: 0, readPointers: 0 });
    expect(await dbCounts(other)).toEqual({ conversations: 1, messages: 1, readPointers: 1 });
    expect(await dbCounts(b1)).toEqual({ conversations: 1, messages: 1, readPointers: 1 });
    expect(await storeCounts('tB', b1)).toEqual({ session: 1, binding: 1, online: 1, jobs: 1, retries: 1 });
    // tA asking to erase tB's session id removes nothing anywhere.
    const foreign = await eraseSubject(deps, { tenantId: 'tA', sessionId: b1 });
    expect(Object.values(foreign.removed).every((n) => n === 0)).toBe(true);
    expect(await storeCounts('tB', b1)).toEqual({ session: 1, binding: 1, online: 1, jobs: 1, retries: 1 });
  });

  it('retention purge: one node at a time (advisory lock), deletes exactly the expired messages of its tenant', async () => {
    const [p1, pB] = [sid('p1'), sid('pB')];
    await seed('tA', p1, 'u20', 4);
    await seed('tB', pB, 'u20', 2);
    const later = new Date(Date.now() + 3_600_000);
    // Another node holds tA's retention lock: this one deletes nothing.
    const other = new pg.Client({ connectionString: DATABASE_URL });
    await other.connect();
    await other.query('begin');
    await other.query("select pg_advisory_xact_lock(hashtext('chatd:retention:tA'))");
    expect(await db.messages.deleteMessagesBefore('tA', later, 100)).toBe(0);
    expect((await dbCounts(p1)).messages).toBe(4);
    await other.query('rollback');
    await other.end();
    // Lock free: small batches delete tA's expired messages only.
    const tAbefore = Number((await sql.query("select count(*) as n from messages where tenant_id = 'tA'")).rows[0].n);
    let deleted = 0;
    for (let n = -1; n !== 0; deleted += n) n = await db.messages.deleteMessagesBefore('tA', later, 3);
    expect(deleted).toBe(tAbefore);
    expect(Number((await sql.query("select count(*) as n from messages where tenant_id = 'tA'")).rows[0].n)).toBe(0);
    expect((await dbCounts(pB)).messages).toBe(2);
  });

  it('a bad erase request is refused with the field named', async () => {
    const deps = { messages: db.messages, erasure: store.erasure };
    await expect(eraseSubject(deps, { tenantId: 'tA' })).rejects.toThrow(/exactly one of sessionId and userId/);
    await expect(eraseSubject(deps, { tenantId: 'tA', sessionId: 'x', userId: 'y' })).rejects.toBeInstanceOf(ChatdError);
  });

  it("revoke: the agent's older tokens are refused on every node, newer ones pass, and the revoke event is published", async () => {
    // Two "nodes": two token services over the same Redis.
    const nodes = [0, 1].map(() => createAuth(config, { isRevoked: createRevocationCheck(store.revocations).isRevoked }));
    const old = await nodes[0]!.tokens.mint({ tenantId: 'tA', role: 'agent', subject: 'agent-7', ttlSeconds: 600 });
    const bystander = await nodes[0]!.tokens.mint({ tenantId: 'tA', role: 'agent', subject: 'agent-8', ttlSeconds: 600 });
    for (const n of nodes) expect((await n.tokens.verify(old.token)).subject).toBe('agent-7');

    const events: TenantEvent[] = [];
    const unsubscribe = await store.bus.subscribe('tA', (e) => events.push(e));
    // A fixed wait on purpose: the nodes cache "not revoked" for 1 s and nothing signals its expiry.
    await new Promise((r) => setTimeout(r, 1100)); // past the nodes' 1 s cache of "not revoked"
    const { revokedAt } = await revokeSubject({ log: db.revocations, revocations: store.revocations, bus: store.bus }, 'tA', 'agent-7');
    // Recorded in PostgreSQL (the durable record) and in Redis (what the nodes read).
    const row = await sql.query(`select revoked_at from revocations where tenant_id = 'tA' and user_id = 'agent-7'`);
    expect(new Date(row.rows[0].revoked_at).toISOString()).toBe(revokedAt);
    expect(await store.revocations.revokedAt('tA', 'agent-7')).toBe(Date.parse(revokedAt));
    for (const n of nodes) {
      await expect(n.tokens.verify(old.token)).rejects.toMatchObject({ code: 'token_revoked' });
      expect((await n.tokens.verify(bystander.token)).subject).toBe('agent-8');
    }
    await eventually(() => events.some((e) => e.type === 'revoke'), 'the revoke event on the bus', { timeoutMs: 10_000 });
    expect(events).toContainEqual({ type: 'revoke', userId: 'agent-7' });
    await unsubscribe();

    // A token minted in a later second is accepted (iat has one-second resolution): the clock's
    // second has to turn, which is time itself, so this wait stays fixed.
    await new Promise((r) => setTimeout(r, 1100));
    const fresh = await nodes[1]!.tokens.mint({ tenantId: 'tA', role: 'agent', subject: 'agent-7', ttlSeconds: 600 });
    for (const n of nodes) expect((await n.tokens.verify(fresh.token)).subject).toBe('agent-7');
    // Same agent id in another tenant: not revoked.
    const otherTenant = await nodes[0]!.tokens.mint({ tenantId: 'tB', role: 'agent', subject: 'agent-7', ttlSeconds: 600 });
    expect((await nodes[0]!.tokens.verify(otherTenant.token)).tenantId).toBe('tB');

    // Erasing the subject's data keeps its revocation (a security record), in both places.
    await eraseSubject({ messages: db.messages, erasure: store.erasure }, { tenantId: 'tA', userId: 'agent-7' });
    expect(await db.revocations.revokedAt('tA', 'agent-7')).toBe(Date.parse(revokedAt));
    expect(await store.revocations.revokedAt('tA', 'agent-7')).toBe(Date.parse(revokedAt));
    await expect(nodes[1]!.tokens.verify(old.token)).rejects.toMatchObject({ code: 'token_revoked' });
  });
});
