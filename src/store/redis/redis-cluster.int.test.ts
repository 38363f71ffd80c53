// The store contract and the webhook queue contract on a real Redis Cluster of this file's own
// (three masters, three replicas, started on free loopback ports and stopped by PID), plus what
// only a cluster shows: every script and multi-key command runs in one slot (a cross-slot call
// would fail with CROSSSLOT or "non local key"), the guide's names stay exact, and the bus
// publishes on sharded channels (SPUBLISH), which a plain SUBSCRIBE does not see.
import { Cluster } from 'ioredis';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { RedisCluster, hasClusterBinaries } from '../../../test/helpers/redis-cluster.js';
import { uniquePrefix } from '../../../test/helpers/services.js';
import { eventually } from '../../../test/helpers/eventually.js';
import { queueContract } from '../../webhooks/queue.contract.js';
import { connection, message, storeContract, uid } from '../store.contract.js';
import type { TenantEvent } from '../ports.js';
import { redisKeys } from './keys.js';
import { RedisStore } from './redis-store.js';
import { RedisWebhookQueue, webhookKeys } from './redis-webhook-queue.js';
import { clusterSetup } from './connection.js';

const logger = pino({ level: 'silent' });

describe.skipIf(!hasClusterBinaries())('redis cluster store', () => {
  let starting: Promise<RedisCluster> | undefined;
  const cluster = () => (starting ??= RedisCluster.start());
  const seeds = async () => ({ nodes: (await cluster()).urls });
  afterAll(async () => {
    await (await starting)?.stop();
  });

  const prefix = uniquePrefix('cluster');
  storeContract('redis cluster', () => {
    const opened: RedisStore[] = [];
    return {
      async open(opts) {
        const s = new RedisStore({ cluster: await seeds(), prefix, ...opts }, logger);
        opened.push(s);
        await s.connect(15_000);
        return s;
      },
      async close() {
        await Promise.all(opened.map((s) => s.close()));
      },
    };
  });

  describe('webhook queue', () => {
    queueContract(async () => {
      const p = uniquePrefix('cwhq');
      const setup = clusterSetup(await seeds());
      const admin = new Cluster(setup.startupNodes, setup.options);
      const blocking = new Cluster(setup.startupNodes, {
        ...setup.options,
        redisOptions: { ...setup.options.redisOptions, commandTimeout: undefined },
      });
      const redis = new Cluster(setup.startupNodes, setup.options);
      await Promise.all([admin.connect(), blocking.connect(), redis.connect()]);
      const queue = new RedisWebhookQueue({ redis, blocking, prefix: p, layout: 'cluster', deadMaxLen: 1000 });
      const keys = webhookKeys(p, 'cluster');
      return {
        queue,
        async append(tenantId, messageId) {
          return (await admin.xadd(keys.jobs, '*', 'type', 'message.created', 'tenantId', tenantId, 'sessionId', 's1', 'messageId', messageId,
            'createdAt', new Date().toISOString(), 'payload', '{}'))!; // prettier-ignore
        },
        async close() {
          await queue.close();
          await Promise.all([keys.jobs, keys.retry, keys.dead, keys.epoch].map((k) => admin.del(k)));
          admin.disconnect();
        },
      };
    });
  });

  describe('layout', () => {
    let store: RedisStore;
    let raw: Cluster;
    beforeAll(async () => {
      store = new RedisStore({ cluster: await seeds(), prefix }, logger);
      await store.connect(15_000);
      const setup = clusterSetup(await seeds());
      raw = new Cluster(setup.startupNodes, { ...setup.options, shardedSubscribers: true });
      await raw.connect();
    });
    afterAll(async () => {
      await store.close();
      raw.disconnect();
    });

    it("puts each script's keys in one slot, and keeps the guide's names exact", async () => {
      const k = redisKeys(prefix, 'cluster');
      const t = 'tenant-123';
      // The slots as the cluster computes them (CLUSTER KEYSLOT).
      const slot = async (key: string) => Number(await raw.cluster('KEYSLOT', key));
      const same = async (...keys: string[]) => new Set(await Promise.all(keys.map(slot))).size === 1;
      expect(k.onlineUsers(t)).toBe(`${prefix}online_users:${t}`);
      expect(k.session('s1')).toBe(`${prefix}session:s1`);
      expect(k.webhookJobs).toBe(`${prefix}meta:webhook_jobs`);
      expect(await same(k.onlineUsers(t), k.presenceExpiry(t), k.presenceConns(t), k.presenceUser(t, 'u'), k.presenceNode(t, 'n'))).toBe(
        true,
      );
      expect(await same(k.agentStream(t), k.agentOffset(t), k.published(t, 'm1'), k.tenantChannel(t))).toBe(true);
      const q = webhookKeys(prefix, 'cluster');
      expect(await same(q.jobs, q.retry, q.dead, q.epoch, k.webhookMarker('m1'))).toBe(true);
      expect(k.webhookMarker('m1')).toBe(`${prefix}x:{${prefix}meta:webhook_jobs}:m:m1`);
      expect(k.presenceNode(t, 'n1')).toBe(`${prefix}t:{${prefix}online_users:${t}}:node:n1`);
      // A tenant's conversations spread over several slots (so over the shards), not one.
      const convSlots = new Set(await Promise.all(Array.from({ length: 64 }, (_, i) => slot(k.conversationChannel(t, `s${i}`)))));
      expect(convSlots.size).toBeGreaterThan(1);
      // The standalone names are unchanged.
      const s = redisKeys(prefix);
      expect(s.presenceExpiry(t)).toBe(`${prefix}t:${t}:presence:exp`);
      expect(s.webhookRetry).toBe(`${prefix}meta:webhook_retry`);
    });

    it("erases a tenant's sessions across the shards: records, bindings (SCAN on every master), presence, jobs, retries", async () => {
      const t = uid('tenant');
      const other = uid('tenant');
      const sids = Array.from({ length: 12 }, () => uid('sess'));
      for (const sid of sids) {
        await store.sessions.upsert(sid, { tenantId: t, userId: sid, fingerprint: 'fp' }, 3600);
        // Token bindings in many slots, so on every master.
        await store.sessions.bind(t, uid('jti'), sid, 3600);
        await store.events.publishMessage(message(t, sid));
      }
      await store.presence.add('n1', connection(t, 'erin', { sessionId: sids[0] }), 60_000);
      const keep = uid('sess');
      await store.sessions.upsert(keep, { tenantId: other, userId: 'u', fingerprint: 'fp' }, 3600);
      const keptJti = uid('jti');
      await store.sessions.bind(other, keptJti, keep, 3600);
      const masters = raw.nodes('master');
      expect(masters.length).toBe(3);

      const dry = await store.erasure.eraseSessions(t, sids, { dryRun: true });
      expect(dry).toMatchObject({ sessionRecords: 12, tokenBindings: 12, presenceEntries: 1, webhookJobs: 12 });
      const done = await store.erasure.eraseSessions(t, sids, { dryRun: false });
      expect(done).toEqual(dry);
      for (const sid of sids) expect(await store.sessions.get(sid)).toBeNull();
      expect(await store.presence.isOnline(t, 'erin')).toBe(false);
      expect((await store.webhooks.range('-', '+', 100_000)).filter((j) => j.tenantId === t)).toEqual([]);
      // Another tenant's data is untouched.
      expect(await store.sessions.get(keep)).not.toBeNull();
      expect(await store.sessions.getBinding(other, keptJti)).toBe(keep);
      expect(await store.erasure.eraseSessions(t, sids, { dryRun: true })).toMatchObject({ sessionRecords: 0, tokenBindings: 0 });
    });

    it('writes the guide names and publishes on sharded channels only', async () => {
      const t = uid('tenant');
      const sid = uid('sess');
      await store.sessions.upsert(sid, { tenantId: t, userId: 'u1', fingerprint: 'fp' }, 3600);
      expect(JSON.parse((await raw.get(`${prefix}session:${sid}`))!)).toMatchObject({ tenantId: t });
      await store.presence.add('n1', connection(t, 'alice'), 60_000);
      expect(Object.keys(await raw.hgetall(`${prefix}online_users:${t}`))).toEqual(['alice']);
      expect(await raw.sismember(`${prefix}presence:node_tenants:n1`, t)).toBe(1);

      const sharded: string[] = [];
      const plain: string[] = [];
      raw.on('smessage', (ch: string) => sharded.push(ch));
      raw.on('message', (ch: string) => plain.push(ch));
      const k = redisKeys(prefix, 'cluster');
      await raw.ssubscribe(k.tenantChannel(t));
      await raw.subscribe(`${prefix}t:${t}:events`);
      const jobsBefore = await raw.xlen(`${prefix}meta:webhook_jobs`);
      await store.events.publishMessage(message(t, sid));
      expect(await raw.xlen(`${prefix}meta:webhook_jobs`)).toBe(jobsBefore + 1);
      const got: TenantEvent[] = [];
      const stop = await store.bus.subscribe(t, (e) => got.push(e));
      const typing: TenantEvent = { type: 'typing', sessionId: sid, sender: { type: 'visitor', id: sid }, isTyping: true };
      await store.bus.publish(t, typing);
      await eventually(() => got.length === 1 && sharded.length === 1, 'the sharded deliveries');
      expect(got).toEqual([typing]);
      expect(sharded).toEqual([k.tenantChannel(t)]);
      expect(plain).toEqual([]);
      await stop();
    });
  });

  // Last: it kills a master of this file's cluster.
  describe('failover', () => {
    it("re-creates a channel's shard subscriber after its master is killed, tells the listeners, and delivers again", async () => {
      const c = await cluster();
      const s = new RedisStore({ cluster: await seeds(), prefix }, logger);
      await s.connect(15_000);
      const t = uid('tenant');
      const got: TenantEvent[] = [];
      let resubscribed = 0;
      s.bus.onResubscribed(() => resubscribed++);
      const stop = await s.bus.subscribe(t, (e) => got.push(e));
      await s.bus.publish(t, { type: 'broadcast', event: 'before', data: null });
      await eventually(() => got.length === 1, 'the event before the failover');

      const slot = await c.keyslot(redisKeys(prefix, 'cluster').tenantChannel(t));
      const victim = await c.masterOf(slot);
      await c.kill(victim);
      await eventually(async () => (await c.masterOf(slot)) !== victim, 'a replica promoted for the slot', {
        timeoutMs: 60_000,
        intervalMs: 100,
        retryOnError: true,
      });
      await eventually(() => resubscribed > 0, 'the bus told its listeners it re-subscribed', { timeoutMs: 60_000 });
      // What was published while the subscription moved is lost on the wire (the listeners re-read
      // their streams); events published from now on arrive.
      let n = 0;
      await eventually(
        async () => {
          await s.bus.publish(t, { type: 'broadcast', event: `after-${n++}`, data: null });
          return got.some((e) => e.type === 'broadcast' && e.event.startsWith('after-'));
        },
        'an event after the failover',
        { timeoutMs: 60_000, intervalMs: 200, retryOnError: true },
      );
      await stop();
      await s.close();
    });

    it('subscribes again after the whole cluster was restarted (every node away at once), and tells the listeners', async () => {
      const c = await cluster();
      const s = new RedisStore({ cluster: await seeds(), prefix }, logger);
      await s.connect(15_000);
      const t = uid('tenant');
      const got: TenantEvent[] = [];
      let resubscribed = 0;
      s.bus.onResubscribed(() => resubscribed++);
      const stop = await s.bus.subscribe(t, (e) => got.push(e));
      await c.restartAll();
      await eventually(() => resubscribed > 0, 'the bus told its listeners it re-subscribed', { timeoutMs: 60_000 });
      let n = 0;
      await eventually(
        async () => {
          await s.bus.publish(t, { type: 'broadcast', event: `after-${n++}`, data: null });
          return got.length > 0;
        },
        'an event after the restart',
        { timeoutMs: 60_000, intervalMs: 200, retryOnError: true },
      );
      await stop();
      await s.close();
    });
  });
});
