// The widget flow and faults under sustained mixed traffic on a real Redis Cluster (three masters,
// three replicas, AOF on, started by this file on spare loopback ports and stopped by PID): a
// gateway, two api nodes and two ws nodes (separate bin/chatd processes) on the cluster and the
// shared PostgreSQL (a schema of its own). Visitors send over websocket, polling and HTTP through
// the gateway while an agent follows the tenant's agent stream, and every message is POSTed to a
// webhook receiver. After each fault the traffic stops, unknown outcomes are settled by retrying
// with their clientMessageId, the delivery checker must report nothing lost, duplicated, reordered
// or misrouted, and every acknowledged message must have reached the webhook receiver:
//   - kill -9 of the master serving the busiest stream (the tenant's agent stream): its replica
//     is promoted; the killed node is restarted and rejoins as a replica;
//   - kill -9 of the master holding the tenant's presence (`online_users:tenant-a` and its tagged
//     keys) as a visitor leaves: presence converges (the visitor goes offline, agents are told);
//   - the busiest stream's slot migrated to another master mid-load (MOVED/ASK; the sharded
//     subscriptions follow the slot);
//   - the whole cluster killed and restarted (AOF: the data comes back);
//   - the whole cluster killed and restarted without its data (the webhook jobs are re-appended
//     from the outbox by the loss guard; agent streams restart and agents recover).
// After each, presence converges: the tenant's online users are exactly the connected visitors.
import pg from 'pg';
import pino from 'pino';
import { io, type Socket } from 'socket.io-client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openDatabase, type KyselyDatabase } from '../../src/db/index.js';
import { testDbConfig } from '../helpers/db/config.js';
import { DeliveryChecker, readerFromDb } from '../helpers/delivery-checker.js';
import { eventually } from '../helpers/eventually.js';
import { RedisCluster, hasClusterBinaries } from '../helpers/redis-cluster.js';
import { DATABASE_URL, dropSchema, hasPostgres, uniquePrefix, uniqueSchema } from '../helpers/services.js';
import { startWebhookReceiver, type WebhookReceiver } from '../helpers/webhook-receiver.js';
import { call, Cluster, connected, RELIABILITY_FULL, TENANT_A, Traffic } from './cluster.js';

const available = hasClusterBinaries() && (await hasPostgres());
const silent = pino({ level: 'silent' });
const VISITORS = RELIABILITY_FULL ? 10 : 4;
const SENDS = RELIABILITY_FULL ? 150 : 20;

describe.skipIf(!available)('Redis Cluster: the widget flow and faults under mixed traffic (separate processes)', () => {
  let redis: RedisCluster;
  let cluster: Cluster;
  let db: KyselyDatabase;
  let traffic: Traffic;
  let agent: Socket;
  let receiver: WebhookReceiver;
  const schema = uniqueSchema('rcluster');
  const prefix = uniquePrefix('rcluster');
  const checker = new DeliveryChecker();
  const faults: string[] = [];
  const gateway = () => cluster.url('gw', 'gateway');
  // The slot of the busiest stream: tenant A's agent stream carries every message of the tenant.
  const busiestKey = `${prefix}t:{${TENANT_A.id}}:agent`;

  const outboxRows = async () => {
    const c = new pg.Client({ connectionString: DATABASE_URL });
    await c.connect();
    try {
      return Number((await c.query(`select count(*)::int as n from "${schema}".outbox`)).rows[0].n);
    } finally {
      await c.end();
    }
  };

  const sendsResume = (what: string) => traffic.sendsResume(SENDS, what);

  /** The session ids of the tenant's online users, as the API answers them. */
  const online = async () => {
    const r = await call(gateway(), 'GET', `/api/chat/online-users?tenantId=${TENANT_A.id}`, TENANT_A.sec);
    if (r.status !== 200) throw new Error(`online-users ${r.status} ${JSON.stringify(r.body)}`);
    return ((r.body.users ?? []) as { sessionId: string }[]).map((u) => u.sessionId).sort();
  };

  /**
   * Stops the traffic, settles unknown outcomes, runs the delivery checker, checks the webhooks, and
   * waits for presence to converge: every visitor connected again and the tenant's online users
   * exactly the visitors (nothing left of a departed one, nothing lost with a shard or the data).
   */
  const checkpoint = async (what: string) => {
    await traffic.checkpoint(what, { reader: readerFromDb(db), outboxRows, webhooks: { stored, received: () => receiver.received } });
    const visitors = traffic.visitors.map((v) => v.sessionId).sort();
    await eventually(
      async () => traffic.visitors.every((v) => v.socket.connected) && JSON.stringify(await online()) === JSON.stringify(visitors),
      `presence converges to the connected visitors (${what})`,
      { timeoutMs: 60_000, intervalMs: 250, retryOnError: true },
    );
  };

  /** Every message stored for the tenant (acknowledged ones are a subset; settled unknowns included). */
  const stored = async () => {
    const c = new pg.Client({ connectionString: DATABASE_URL });
    await c.connect();
    try {
      const r = await c.query(`select id from "${schema}".messages where tenant_id = $1`, [TENANT_A.id]);
      return new Set(r.rows.map((x: { id: string }) => x.id));
    } finally {
      await c.end();
    }
  };

  beforeAll(async () => {
    redis = await RedisCluster.start({ appendonly: true });
    receiver = await startWebhookReceiver();
    cluster = new Cluster({
      redisClusterNodes: redis.urls,
      redisPrefix: prefix,
      databaseUrl: DATABASE_URL,
      schema,
      webhook: { url: `${receiver.url}/hooks`, secret: 'cluster-webhook-secret-0123456789' },
    });
    await cluster.migrate();
    db = await openDatabase(testDbConfig({ url: DATABASE_URL, schema }), silent);
    const fastWebhooks = { webhooks: { retryBaseMs: 100, retryMaxDelayMs: 500 } };
    await Promise.all([
      cluster.start('api1', 'api', fastWebhooks),
      cluster.start('api2', 'api', fastWebhooks),
      cluster.start('ws1', 'ws'),
      cluster.start('ws2', 'ws'),
    ]);
    await cluster.start('gw', 'gateway', {
      upstreams: {
        api: [cluster.url('api1', 'api'), cluster.url('api2', 'api')],
        ws: [cluster.url('ws1', 'ws'), cluster.url('ws2', 'ws')],
        healthCheckIntervalMs: 300,
        requestTimeoutMs: 10_000,
      },
    });
    await eventually(
      async () => {
        const m = await (await fetch(`http://127.0.0.1:${cluster.procs.get('gw')!.ports.admin}/metrics`)).text();
        return (m.match(/chatd_gateway_upstream_healthy\{[^}]*\} 1/g) ?? []).length === 4;
      },
      'all four upstreams healthy at the gateway',
      { timeoutMs: 120_000, intervalMs: 100, retryOnError: true },
    );
    traffic = new Traffic(gateway, checker, TENANT_A);
    agent = await traffic.addAgent('agent-1');
    for (let i = 0; i < VISITORS; i++) await traffic.addVisitor(`cv-${i}`, i % 2 ? 'websocket' : 'polling');
  }, 300_000);

  afterAll(async () => {
    traffic?.close();
    await cluster?.dumpLogs().catch(() => undefined);
    await cluster?.stopAll();
    await db?.close().catch(() => undefined);
    await receiver?.close();
    await redis?.stop();
    await dropSchema(schema).catch(() => undefined);
    console.log(
      `[reliability] redis cluster faults: ${faults.join(', ')}; sends: ${JSON.stringify(traffic?.stats)}; acked and checked: ${checker.ackedCount}`,
    );
  });

  it('the widget flow through two ws nodes and two api nodes on the cluster: every message delivered once, in order, and to its webhook', async () => {
    // Sockets on both ws nodes (sids start with the node id): the bus carries the messages between them.
    expect(new Set(traffic.sockets.map((s) => s.io.engine.id.split('.')[0])).size).toBe(2);
    traffic.start();
    await traffic.runFor(SENDS, 'steady state');
    await checkpoint('steady state');
    expect(checker.ackedCount).toBeGreaterThan(0);
    expect(agent.connected).toBe(true);
  }, 300_000);

  it('kill -9 of the master serving the busiest stream: its replica is promoted, nothing acknowledged is lost', async () => {
    const slot = await redis.keyslot(busiestKey);
    const victim = await redis.masterOf(slot);
    traffic.start();
    await traffic.runFor(SENDS / 2, 'before the master kill');
    await redis.kill(victim);
    faults.push(`kill -9 master :${victim} (slot ${slot})`);
    await eventually(async () => (await redis.masterOf(slot)) !== victim, 'a replica promoted for the slot', {
      timeoutMs: 60_000,
      intervalMs: 100,
      retryOnError: true,
    });
    await sendsResume('the failover');
    await checkpoint('after the master was killed');
    // The old master comes back as a replica of the promoted one.
    await redis.restart(victim);
    await redis.waitHealthy();
    expect((await redis.role(victim)).role).toBe('slave');
  }, 400_000);

  it("kill -9 of the master holding the tenant's presence as a visitor leaves: presence converges, nothing acknowledged is lost", async () => {
    const presence: { sessionId: string; status: string }[] = [];
    const onPresence = (p: { sessionId: string; status: string }) => presence.push(p);
    agent.on('presence_update', onPresence);
    // A visitor that will leave while the presence shard has no master.
    const minted = await call(gateway(), 'POST', '/api/chat/anonymous-token', TENANT_A.pub, {
      tenantId: TENANT_A.id,
      sessionId: 'leaver',
      fingerprint: 'fp-leaver',
    });
    expect(minted.status).toBe(200);
    const leaver = io(gateway(), {
      auth: { apiKey: TENANT_A.pub, token: minted.body.token, sessionId: 'leaver', fingerprint: 'fp-leaver' },
      transports: ['websocket'],
      reconnection: false,
    });
    await connected(leaver);
    await eventually(async () => (await online()).includes('leaver'), 'the leaving visitor online', {
      timeoutMs: 60_000,
      intervalMs: 100,
      retryOnError: true,
    });
    const slot = await redis.keyslot(`${prefix}online_users:${TENANT_A.id}`);
    const victim = await redis.masterOf(slot);
    traffic.start();
    await traffic.runFor(SENDS / 2, 'before the presence master kill');
    await redis.kill(victim);
    leaver.disconnect();
    faults.push(`kill -9 presence master :${victim} (slot ${slot}) + a visitor leaving`);
    await eventually(async () => (await redis.masterOf(slot)) !== victim, 'a replica promoted for the slot', {
      timeoutMs: 60_000,
      intervalMs: 100,
      retryOnError: true,
    });
    await sendsResume('the presence failover');
    await checkpoint('after the presence master was killed');
    expect(await online()).not.toContain('leaver');
    await eventually(() => presence.some((p) => p.sessionId === 'leaver' && p.status === 'offline'), 'the agent told the visitor left', {
      timeoutMs: 60_000,
    });
    agent.off('presence_update', onPresence);
    await redis.restart(victim);
    await redis.waitHealthy();
  }, 400_000);

  it("the busiest stream's slot migrated to another master mid-load: MOVED/ASK followed, nothing lost", async () => {
    const slot = await redis.keyslot(busiestKey);
    const from = await redis.masterOf(slot);
    const to = (await redis.masters()).find((p) => p !== from)!;
    traffic.start();
    await traffic.runFor(SENDS / 2, 'before the slot migration');
    await redis.moveSlot(slot, to);
    faults.push(`slot ${slot} :${from} → :${to}`);
    expect(await redis.masterOf(slot)).toBe(to);
    await sendsResume('the slot migration');
    await checkpoint('after the slot migration');
  }, 400_000);

  it('the whole cluster killed and restarted: service resumes by itself, nothing acknowledged is lost', async () => {
    traffic.start();
    await traffic.runFor(SENDS / 2, 'before the cluster restart');
    await redis.restartAll();
    faults.push('whole cluster kill -9 + restart');
    await sendsResume('the cluster restart');
    await checkpoint('after the whole-cluster restart');
    expect(checker.ackedCount).toBeGreaterThan(SENDS * 3);
  }, 400_000);

  it('the whole cluster restarted without its data: service resumes, nothing acknowledged is lost, every webhook delivered', async () => {
    let agentRecovered: boolean | undefined;
    agent.once('connect', () => (agentRecovered = agent.recovered));
    traffic.start();
    await traffic.runFor(SENDS / 2, 'before the wiped restart');
    await redis.restartAll({ wipe: true });
    faults.push('whole cluster kill -9 + restart without data');
    await sendsResume('the wiped restart');
    await checkpoint('after the whole-cluster restart without data');
    // The agent stream restarted from offset 1: the agent reconnected and could not recover it.
    await eventually(() => agentRecovered !== undefined, 'the agent reconnected', { timeoutMs: 60_000 });
    expect(agentRecovered).toBe(false);
  }, 400_000);
});
