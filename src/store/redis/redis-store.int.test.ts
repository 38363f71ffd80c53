// The store contract against real Redis (shared 127.0.0.1:6379, isolated by a unique prefix), plus
// what only Redis can show: the guide's key names appear exactly under the prefix, every channel is
// prefixed, and an idempotent re-publish adds nothing.
import { Redis } from 'ioredis';
import { deletePrefix } from '../../../test/helpers/redis-keys.js';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { REDIS_URL, freePort, hasRedis, uniquePrefix } from '../../../test/helpers/services.js';
import { DependencyError } from '../../errors.js';
import { connection, message, storeContract, uid } from '../store.contract.js';
import { RedisStore } from './redis-store.js';
import { eventually } from '../../../test/helpers/eventually.js';

const logger = pino({ level: 'silent' });
const available = await hasRedis();

describe.skipIf(!available)('redis store', () => {
  const prefix = uniquePrefix('store');
  // The shared Redis keeps nothing of this file: delete every key under its prefix.
  afterAll(async () => {
    await deletePrefix(REDIS_URL, prefix);
  });

  storeContract('redis', () => {
    const opened: RedisStore[] = [];
    return {
      async open(opts) {
        const s = new RedisStore({ url: REDIS_URL, prefix, ...opts }, logger);
        opened.push(s);
        await s.connect();
        return s;
      },
      async close() {
        await Promise.all(opened.map((s) => s.close()));
      },
    };
  });

  describe('names under redis.prefix', () => {
    let store: RedisStore;
    let raw: Redis;
    let rawSub: Redis;
    beforeAll(async () => {
      store = new RedisStore({ url: REDIS_URL, prefix }, logger);
      await store.connect();
      raw = new Redis(REDIS_URL);
      rawSub = new Redis(REDIS_URL);
    });
    afterAll(async () => {
      await store.close();
      raw.disconnect();
      rawSub.disconnect();
    });

    it("keeps the guide's key names exactly after the prefix, and tenant data under t:{tid}:", async () => {
      const t = uid('tenant');
      const sid = uid('sess');
      await store.sessions.upsert(sid, { tenantId: t, userId: 'u1', fingerprint: 'fp' }, 3600);
      const rec = JSON.parse((await raw.get(`${prefix}session:${sid}`))!);
      expect(rec).toMatchObject({ userId: 'u1', fingerprint: 'fp', tenantId: t });
      const ttl = await raw.ttl(`${prefix}session:${sid}`);
      expect(ttl).toBeGreaterThan(3000);
      expect(ttl).toBeLessThanOrEqual(3600);

      const c = connection(t, 'alice');
      await store.presence.add('n1', c, 60000);
      const online = await raw.hgetall(`${prefix}online_users:${t}`);
      expect(Object.keys(online)).toEqual(['alice']);
      expect(JSON.parse(online.alice!)).toEqual({
        sessionId: c.sessionId,
        connectedAt: c.connectedAt,
        domain: c.domain,
        origin: c.origin,
        url: c.url,
      });

      const before = await raw.xlen(`${prefix}meta:webhook_jobs`);
      const m = message(t, sid);
      await store.events.publishMessage(m);
      expect(await raw.xlen(`${prefix}meta:webhook_jobs`)).toBe(before + 1);
      const newest = (await raw.xrevrange(`${prefix}meta:webhook_jobs`, '+', '-', 'COUNT', 1)) as [string, string[]][];
      expect(newest[0]?.[1]).toEqual([
        'type',
        'message.created',
        'tenantId',
        t,
        'sessionId',
        sid,
        'messageId',
        m.id,
        'createdAt',
        m.createdAt,
        'payload',
        JSON.stringify(m),
      ]);
      await store.sessions.bind(t, 'jti1', sid, 60);
      expect(await raw.get(`${prefix}t:${t}:bind:jti1`)).toBe(sid);

      // Every key that mentions this tenant is under the prefix, and besides the guide's names
      // under `t:{tid}:` (nothing global carries the tenant's data in its name).
      const keys: string[] = [];
      let cursor = '0';
      do {
        const [next, batch] = await raw.scan(cursor, 'MATCH', `*${t}*`, 'COUNT', 1000);
        cursor = next;
        keys.push(...batch);
      } while (cursor !== '0');
      expect(keys.length).toBeGreaterThan(5);
      for (const k of keys) {
        expect(k.startsWith(prefix)).toBe(true);
        const rest = k.slice(prefix.length);
        expect(rest === `online_users:${t}` || rest.startsWith(`t:${t}:`)).toBe(true);
      }
    });

    it('prefixes every channel; a raw subscriber sees one event for two publishes', async () => {
      const t = uid('tenant');
      const received: string[] = [];
      await rawSub.subscribe(`${prefix}t:${t}:events`);
      rawSub.on('message', (ch, msg) => ch === `${prefix}t:${t}:events` && received.push(msg));
      const stop = await store.bus.subscribe(t, () => undefined);
      const channels = await raw.pubsub('CHANNELS', `${prefix}*`);
      expect(channels).toContain(`${prefix}t:${t}:events`);
      expect(await raw.pubsub('CHANNELS', `t:${t}:*`)).toEqual([]);

      const m = message(t, 's');
      const jobs = await raw.xlen(`${prefix}meta:webhook_jobs`);
      expect((await store.events.publishMessage(m)).duplicate).toBe(false);
      expect((await store.events.publishMessage(m)).duplicate).toBe(true);
      await store.bus.publish(t, { type: 'broadcast', event: 'end', data: null });
      await eventually(() => received.length === 2, 'two raw messages', { retryOnError: true });
      expect(JSON.parse(received[0]!)).toEqual({ type: 'message', agentOffset: 1, message: m });
      expect(JSON.parse(received[1]!)).toMatchObject({ type: 'broadcast' });
      expect(await raw.xlen(`${prefix}meta:webhook_jobs`)).toBe(jobs + 1);
      expect(await raw.xlen(`${prefix}t:${t}:agent`)).toBe(1);
      expect(await raw.ttl(`${prefix}t:${t}:pub:${m.id}`)).toBeGreaterThan(24 * 3600);
      await rawSub.unsubscribe(`${prefix}t:${t}:events`);
      expect(await raw.pubsub('CHANNELS', `${prefix}t:${t}:*`)).toEqual([`${prefix}t:${t}:events`]);
      await stop();
      expect(await raw.pubsub('CHANNELS', `${prefix}t:${t}:*`)).toEqual([]);
    });

    it('keeps offsets increasing when the counter key is lost but the stream survives', async () => {
      const t = uid('tenant');
      for (let i = 0; i < 3; i++) await store.events.publishMessage(message(t, 's'));
      await raw.del(`${prefix}t:${t}:agent:offset`);
      expect((await store.events.publishMessage(message(t, 's'))).agentOffset).toBe(4);
      expect(await store.events.agentHead(t)).toBe(4);
    });
  });

  it('fails fast with DependencyError when Redis is unreachable, and never rejects unhandled', async () => {
    const port = await freePort();
    const s = new RedisStore({ url: `redis://127.0.0.1:${port}`, prefix, connectTimeoutMs: 500 }, logger);
    await expect(s.connect(500)).rejects.toBeInstanceOf(DependencyError);
    await expect(s.sessions.get('x')).rejects.toBeInstanceOf(DependencyError);
    await expect(s.events.publishMessage(message('t', 's'))).rejects.toBeInstanceOf(DependencyError);
    await expect(s.bus.subscribe('t', () => undefined)).rejects.toBeInstanceOf(DependencyError);
    await expect(s.presence.add('n', connection('t', 'u'), 1000)).rejects.toBeInstanceOf(DependencyError);
    await expect(s.ping()).rejects.toBeInstanceOf(DependencyError);
    await s.close();
  });
});
