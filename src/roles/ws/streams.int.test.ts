// StreamHub scenarios on the real adapters: the memory store with embedded PGlite, and Redis (shared,
// unique prefix) with PostgreSQL (unique schema). Then what only a real Redis shows, on a
// redis-server this file starts itself: the bus losing its subscription during traffic (CLIENT KILL,
// and a restart that loses Redis's data), checked with the delivery checker.
import fs from 'node:fs';
import { Redis } from 'ioredis';
import { deletePrefix } from '../../../test/helpers/redis-keys.js';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DATABASE_URL, REDIS_URL, freePort, dropSchema, has, uniquePrefix, uniqueSchema } from '../../../test/helpers/services.js';
import { DeliveryChecker, readerFromDb } from '../../../test/helpers/delivery-checker.js';
import type { ChatMessage } from '../../chat/message.js';
import { openDatabase, type KyselyDatabase } from '../../db/index.js';
import { testDbConfig } from '../../../test/helpers/db/config.js';
import { freshPgliteDir } from '../../../test/helpers/db/pglite-template.js';
import { MemoryStore } from '../../store/memory/memory-store.js';
import { RedisStore } from '../../store/redis/redis-store.js';
import { harness, store, streamScenarios, uid, type StreamEnv, type TestSocket } from './streams.scenarios.js';
import { agentStream, conversationStream, offsetToken } from './streams.js';
import { hasRedisServerBinary, OwnRedis } from '../../../test/helpers/own-redis.js';
import { eventually } from '../../../test/helpers/eventually.js';

const silent = pino({ level: 'silent' });
const HISTORY = 100;
const redisUp = await has('redis');
const postgresUp = await has('postgres');
const hasServerBinary = hasRedisServerBinary();

describe('StreamHub on the memory store and PGlite', () => {
  let env: StreamEnv;
  let dir = '';
  let db: KyselyDatabase;
  let mem: MemoryStore;
  beforeAll(async () => {
    dir = await freshPgliteDir('streams');
    db = await openDatabase(testDbConfig({ embeddedDir: dir }), silent);
    mem = new MemoryStore({ agentHistorySize: HISTORY });
    env = { bus: mem.bus, events: mem.events, messages: db.messages, agentHistorySize: HISTORY, close: async () => undefined };
  });
  afterAll(async () => {
    await mem?.close();
    await db?.close();
    if (dir) fs.rmSync(dir, { recursive: true, force: true });
  });
  streamScenarios(() => env);
});

describe.skipIf(!redisUp || !postgresUp)('StreamHub on Redis and PostgreSQL', () => {
  let env: StreamEnv;
  const prefix = uniquePrefix('streams');
  const schema = uniqueSchema('streams');
  let db: KyselyDatabase;
  let redis: RedisStore;
  beforeAll(async () => {
    db = await openDatabase(testDbConfig({ url: DATABASE_URL, schema, autoMigrate: true }), silent);
    redis = new RedisStore({ url: REDIS_URL, prefix, agentHistorySize: HISTORY }, silent);
    await redis.connect();
    env = { bus: redis.bus, events: redis.events, messages: db.messages, agentHistorySize: HISTORY, close: async () => undefined };
  });
  afterAll(async () => {
    await redis?.close();
    await db?.close();
    await dropSchema(schema);
    await deletePrefix(REDIS_URL, prefix);
  });
  streamScenarios(() => env);
});

describe.skipIf(!hasServerBinary || !postgresUp)('StreamHub when the bus loses its subscription (own redis-server)', () => {
  let own: OwnRedis;
  let db: KyselyDatabase;
  const schema = uniqueSchema('streamsbus');
  const stores: RedisStore[] = [];
  beforeAll(async () => {
    own = new OwnRedis(await freePort());
    await own.start();
    db = await openDatabase(testDbConfig({ url: DATABASE_URL, schema, autoMigrate: true }), silent);
  });
  afterAll(async () => {
    await Promise.all(stores.map((s) => s.close()));
    await own?.kill();
    await db?.close();
    await dropSchema(schema);
  });

  const open = async () => {
    const s = new RedisStore({ url: own.url, prefix: uniquePrefix('bus'), agentHistorySize: 10000, connectTimeoutMs: 2000 }, silent);
    stores.push(s);
    await s.connect(10000);
    return s;
  };

  /** The outbox relay's promise: publish until it succeeds (Redis may be down meanwhile). */
  async function publishEventually(s: RedisStore, m: ChatMessage): Promise<void> {
    await eventually(() => s.events.publishMessage(m).then(() => true), `the publish of ${m.id}`, {
      timeoutMs: 120_000,
      intervalMs: 50,
      retryOnError: true,
    });
  }

  /** Sends `count` messages round-robin over the sessions, acknowledging each in the checker. */
  async function traffic(
    s: RedisStore,
    env: StreamEnv,
    checker: DeliveryChecker,
    t: string,
    sessions: string[],
    count: number,
    during?: (i: number) => Promise<void>,
  ) {
    for (let i = 0; i < count; i++) {
      const m = await store(env, t, sessions[i % sessions.length]!, `m ${i}`);
      checker.acked(m.id, t, m.sessionId);
      await publishEventually(s, m);
      await during?.(i);
    }
  }

  function record(sockets: Watched[]) {
    for (const { sock, rec } of sockets) {
      const seg = rec.segments[rec.segments.length - 1]!;
      for (const e of sock.got.slice(seg.receipts.length)) {
        if (e.event === 'meta_message_created') rec.received(e.payload.message.id, e.offset);
        else rec.receivedOther(e.offset);
      }
    }
  }

  /** A store on the own Redis, and a hub over it. */
  async function openHub() {
    const s = await open();
    const env: StreamEnv = { bus: s.bus, events: s.events, messages: db.messages, agentHistorySize: 10000, close: async () => undefined };
    return { s, env, h: harness(env) };
  }

  type Watched = { sock: TestSocket; rec: ReturnType<DeliveryChecker['client']> };

  /** A visitor socket on each session's conversation stream, each with its checker record. */
  async function connectVisitors(
    h: ReturnType<typeof harness>,
    checker: DeliveryChecker,
    t: string,
    sessions: string[],
  ): Promise<Watched[]> {
    const sockets: Watched[] = [];
    for (const sid of sessions) {
      sockets.push({
        sock: await h.connect(conversationStream(t, sid)),
        rec: checker.client(`visitor-${sid}`, { kind: 'conversation', tenantId: t, sessionId: sid }),
      });
    }
    return sockets;
  }

  /** Waits (bounded) for the checker to be satisfied with what the sockets got, then asserts it clean. */
  async function assertClean(checker: DeliveryChecker, sockets: Watched[], reader: ReturnType<typeof readerFromDb>): Promise<void> {
    await eventually(async () => (record(sockets), (await checker.verify(reader)).ok), 'a clean report').catch(() => undefined);
    await checker.assertClean(reader);
  }

  it('delivers everything exactly once in order when the subscription is killed mid-traffic', async () => {
    const { s, env, h } = await openHub();
    let resubscribed = 0;
    s.bus.onResubscribed(() => resubscribed++);
    const t = uid('t');
    const sessions = [uid('s'), uid('s'), uid('s')];
    const checker = new DeliveryChecker();
    const sockets = await connectVisitors(h, checker, t, sessions);
    sockets.push({
      sock: await h.connect(agentStream(t)),
      rec: checker.client('agent', { kind: 'agents', tenantId: t }, { contiguous: true }),
    });
    const admin = new Redis(own.url);
    await traffic(s, env, checker, t, sessions, 60, async (i) => {
      if (i % 20 === 10) await admin.client('KILL', 'TYPE', 'pubsub');
    });
    admin.disconnect();
    await eventually(() => resubscribed >= 1, 'the bus to resubscribe');
    await assertClean(checker, sockets, readerFromDb(db, s.events));
    expect(checker.ackedCount).toBe(60);
    await h.close();
  });

  it('keeps conversations exact across a Redis restart that loses its data; agents are told to recover', async () => {
    const { s, env, h } = await openHub();
    const t = uid('t');
    const sessions = [uid('s'), uid('s')];
    const checker = new DeliveryChecker();
    const sockets = await connectVisitors(h, checker, t, sessions);
    const agent = await h.connect(agentStream(t));
    await traffic(s, env, checker, t, sessions, 40, async (i) => {
      if (i === 14) {
        await own.kill();
        await own.start();
      }
    });
    await assertClean(checker, sockets, readerFromDb(db));
    // The agent stream restarted at 1 with Redis's data gone: the hub says so, and follows the new numbering.
    await eventually(() => h.broken.some((b) => b.reason === 'stream_reset'), 'the agent stream reset');
    const head = await s.events.agentHead(t);
    await eventually(() => h.hub.head(agentStream(t)) === head, 'the agent stream to follow the new head');
    // The last event the agent got before the numbering restarted (the kill may have lost the
    // publish of the newest one).
    const drop = agent.got.findIndex((e, i) => i > 0 && e.offset <= agent.got[i - 1]!.offset);
    expect(drop).toBeGreaterThan(0);
    const old = agent.got[drop - 1]!;
    // A client holding an offset from before the restart cannot recover from the agent history,
    // even though the new numbering has passed that offset again: the token names another event.
    expect(head).toBeGreaterThan(old.offset);
    const stale = await h.connect(agentStream(t), offsetToken(agentStream(t), old!));
    expect(stale.result?.complete).toBe(false);
    // One from after the restart recovers.
    const fresh = agent.got.at(-1)!;
    const recent = await h.connect(agentStream(t), offsetToken(agentStream(t), agent.got.at(-3)!));
    expect(recent.result?.complete).toBe(true);
    expect(recent.got.map((e) => e.offset)).toEqual([fresh.offset - 1, fresh.offset]);
    await h.close();
  });

  it('notices a restarted agent numbering even when it has passed the delivered offset unseen', async () => {
    const { s, env, h } = await openHub();
    const t = uid('t');
    const sid = uid('s');
    const agent = await h.connect(agentStream(t));
    const checker = new DeliveryChecker();
    await traffic(s, env, checker, t, [sid], 5);
    await eventually(() => agent.got.length === 5, 'five agent events');
    // This node hears nothing while Redis restarts empty and the new numbering passes offset 5.
    h.tap.verdict = () => 'drop';
    h.tap.muteResubscribed = true;
    await own.kill();
    await own.start();
    await traffic(s, env, checker, t, [sid], 8);
    expect(await s.events.agentHead(t)).toBe(8);
    expect(h.broken).toEqual([]);
    h.tap.verdict = () => 'pass';
    h.tap.muteResubscribed = false;
    h.tap.fireResubscribed();
    await eventually(() => h.broken.some((b) => b.reason === 'stream_reset'), 'the reset to be noticed');
    await eventually(() => h.hub.head(agentStream(t)) === 8, 'the new head');
    // The old offset token is refused even though offset 5 exists again.
    const stale = await h.connect(agentStream(t), offsetToken(agentStream(t), agent.got[4]!));
    expect(stale.result).toEqual({ events: [], complete: false, offset: 8 });
    await h.close();
  });
});
