// Faults under sustained mixed traffic, on a deployment of separate processes (gateway, two api
// nodes, two ws nodes) over a redis-server and a PostgreSQL cluster this file starts itself on
// spare ports. Visitors send over websocket, polling and HTTP through the gateway while an agent
// follows the tenant's stream; after each fault the traffic stops, every unknown outcome is settled
// by retrying it with its clientMessageId, and the delivery checker must report nothing lost,
// duplicated, reordered or misrouted.
//   - an api node SIGKILLed between commit and publish (its Redis connection goes through a tap that
//     kills it when the publish command arrives): another node's outbox relay publishes the message;
//   - Redis killed (its data gone) and restarted on the same port;
//   - PostgreSQL stopped and started: sends are refused with typed errors meanwhile, service resumes
//     by itself, the outbox drains;
//   - a ws node drained (SIGTERM): its clients move to the other node and recover; it comes back;
//   - a ws node SIGKILLed: its clients fail over through the gateway (over its edge links) and
//     recover; its presence entries are swept and the agent sees `offline`;
//   - the gateway SIGKILLed and restarted: the ws node ends the dead link's sessions, the clients
//     reconnect through the new gateway and recover.
import pg from 'pg';
import pino from 'pino';
import { io, type Socket } from 'socket.io-client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openDatabase, type KyselyDatabase } from '../../src/db/index.js';
import { startCluster, type Cluster as PgCluster } from '../helpers/db/pg-cluster.js';
import { testDbConfig } from '../helpers/db/config.js';
import { DeliveryChecker, readerFromDb } from '../helpers/delivery-checker.js';
import { OwnRedis } from '../helpers/own-redis.js';
import { call, Cluster, connected, ownServicesAvailable, RedisTap, RELIABILITY_FULL, TcpForwarder, TENANT_A, Traffic } from './cluster.js';
import { eventually } from '../helpers/eventually.js';

const available = ownServicesAvailable();
const silent = pino({ level: 'silent' });
// CI: 4 visitors and a few dozen sends around each fault; CHATD_FULL_RELIABILITY=1: more of both.
const VISITORS = RELIABILITY_FULL ? 10 : 4;
const SENDS = RELIABILITY_FULL ? 150 : 20;

describe.skipIf(!available)('faults under mixed traffic (own Redis and PostgreSQL, separate processes)', () => {
  let redis: OwnRedis;
  let pgc: PgCluster;
  let tap: RedisTap;
  let cluster: Cluster;
  let db: KyselyDatabase;
  let traffic: Traffic;
  let agent: Socket;
  const agentPresence: { sessionId: string; status: string }[] = [];
  const agentConnects: string[] = [];
  const checker = new DeliveryChecker();
  const faults: string[] = [];
  // Clients reach the gateway through a plain L4 forwarder, so they keep one address when it restarts.
  let lb: TcpForwarder;
  let lbUrl: string;
  // ws2 is reached through one too, so that it can be restarted (on a new port) behind the same address.
  let ws2lb: TcpForwarder;
  const wsLog = { log: { level: process.env.CHATD_RELIABILITY_LOG ?? 'info', format: 'json' } };
  const gateway = () => lbUrl;

  const outboxRows = async () => {
    const c = new pg.Client({ connectionString: pgc.url });
    await c.connect();
    try {
      return Number((await c.query('select count(*)::int as n from outbox')).rows[0].n);
    } finally {
      await c.end();
    }
  };

  /** Sends refused because a dependency is down (or its outcome unknown), so far. */
  const refusedAsDown = () => (traffic.stats.refused.dependency_unavailable ?? 0) + (traffic.stats.refused.outcome_unknown ?? 0);

  const sendsResume = (what: string) => traffic.sendsResume(SENDS, `${what} came back`);
  const checkpoint = (what: string) =>
    traffic.checkpoint(what, { reader: readerFromDb(db), outboxRows, context: () => `agent: ${agentConnects.join('\n')}` });

  beforeAll(async () => {
    redis = await OwnRedis.start();
    pgc = await startCluster();
    tap = new RedisTap(redis.port);
    const tapUrl = await tap.listen();
    cluster = new Cluster({ redisUrl: redis.url, databaseUrl: pgc.url });
    await cluster.migrate();
    db = await openDatabase(testDbConfig({ url: pgc.url }), silent);
    await Promise.all([
      cluster.start('api1', 'api', { redis: { url: tapUrl } }),
      cluster.start('api2', 'api'),
      cluster.start('ws1', 'ws', wsLog),
      cluster.start('ws2', 'ws', wsLog),
    ]);
    ws2lb = new TcpForwarder(() => cluster.procs.get('ws2')!.ports.ws!);
    const ws2Url = await ws2lb.listen();
    await cluster.start('gw', 'gateway', {
      upstreams: {
        api: [cluster.url('api1', 'api'), cluster.url('api2', 'api')],
        ws: [cluster.url('ws1', 'ws'), ws2Url],
        healthCheckIntervalMs: 300,
        requestTimeoutMs: 10_000,
      },
    });
    lb = new TcpForwarder(() => cluster.procs.get('gw')!.ports.gateway!);
    lbUrl = await lb.listen();
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
    agent.on('presence_update', (p: { sessionId: string; status: string }) => agentPresence.push(p));
    agent.on('connect', () => agentConnects.push(`${new Date().toISOString()} ${agent.io.engine.id} recovered=${agent.recovered}`));
    agent.on('disconnect', (reason) => agentConnects.push(`${new Date().toISOString()} disconnect ${reason}`));
    for (let i = 0; i < VISITORS; i++) await traffic.addVisitor(`fv-${i}`, i % 2 ? 'websocket' : 'polling');
  }, 300_000);

  afterAll(async () => {
    traffic?.close();
    await cluster?.dumpLogs().catch(() => undefined);
    await cluster?.stopAll();
    await lb?.close();
    await ws2lb?.close();
    await db?.close().catch(() => undefined);
    await tap?.close();
    await redis?.kill();
    await pgc?.destroy();

    console.log(
      `[reliability] faults injected: ${faults.length} (${faults.join(', ')}); sends: ${JSON.stringify(traffic?.stats)}; acked and checked: ${checker.ackedCount}`,
    );
  });

  it('an api node SIGKILLed between commit and publish: another node relays the committed message', async () => {
    traffic.start();
    await traffic.runFor(SENDS, 'warm-up');
    const v = traffic.visitors[0]!;
    const api1 = cluster.procs.get('api1')!;
    // The publish command carries the message JSON, so its clientMessageId picks exactly this message.
    tap.arm('kill-between', () => api1.child.kill('SIGKILL'));
    const body = {
      text: 'committed, then the node dies',
      tenantId: v.tenant.id,
      sessionId: v.sessionId,
      fingerprint: v.fingerprint,
      clientMessageId: 'kill-between',
    };
    const direct = await call(cluster.url('api1', 'api'), 'POST', '/webchat/message', v.token, body);
    await api1.exited;
    faults.push('api SIGKILL between commit and publish');
    expect(tap.fired).toBe(1);
    // The committed row is there (whether or not the answer got out before the kill) …
    const stored = async () =>
      (await readerFromDb(db).conversation(v.tenant.id, v.sessionId)).filter((m) => m.clientMessageId === 'kill-between');
    expect(await stored()).toHaveLength(1);
    // … and a retry with the same clientMessageId, through the surviving api node, gets its id.
    const retry = (await eventually(
      async () => {
        const r = await call(gateway(), 'POST', '/webchat/message', v.token, body);
        return r.status === 200 ? r : undefined;
      },
      'the retry through the gateway',
      { timeoutMs: 60_000, intervalMs: 100, retryOnError: true },
    ))!;
    if (direct.status === 200) expect(direct.body.messageId).toBe(retry.body.messageId);
    checker.acked(retry.body.messageId as string, v.tenant.id, v.sessionId);
    // Delivered to the visitor's socket and the agent by another node's relay (checker: exactly once).
    await checkpoint('after the api node was killed between commit and publish');
  }, 300_000);

  it('Redis killed (data lost) and restarted: sends resume, nothing acknowledged is lost', async () => {
    traffic.start();
    await traffic.runFor(SENDS / 2, 'before the Redis kill');
    await redis.kill();
    faults.push('redis SIGKILL + restart');
    await traffic.runFor(SENDS / 2, 'while Redis is down');
    await redis.start();
    await sendsResume('Redis');
    await checkpoint('after the Redis restart');
  }, 400_000);

  it('PostgreSQL stopped and started: typed refusals meanwhile, service resumes by itself, the outbox drains', async () => {
    traffic.start();
    await traffic.runFor(SENDS / 2, 'before the PostgreSQL stop');
    const refusedBefore = refusedAsDown();
    await pgc.stop('fast');
    faults.push('postgres stop + start');
    await eventually(
      () => refusedAsDown() >= refusedBefore + 5,
      'five sends refused with dependency_unavailable or outcome_unknown while PostgreSQL is down',
      { timeoutMs: 120_000, intervalMs: 100, retryOnError: true },
    );
    await pgc.start();
    await sendsResume('PostgreSQL');
    await checkpoint('after the PostgreSQL restart');
  }, 400_000);

  it('a ws node drained (SIGTERM) under load: its clients move to the other node over the edge link and recover', async () => {
    const gwAdmin = `http://127.0.0.1:${cluster.procs.get('gw')!.ports.admin}/metrics`;
    const onWs2 = () => traffic.sockets.filter((s) => s.io.engine?.id?.startsWith('ws2.'));
    await eventually(() => onWs2().length > 0, 'some clients on ws2', { timeoutMs: 60_000, intervalMs: 100, retryOnError: true });
    traffic.start();
    await traffic.runFor(SENDS / 2, 'before the ws drain');
    await cluster.procs.get('ws2')!.stop('SIGTERM');
    faults.push('ws SIGTERM (drain) + restart');
    await traffic.runFor(SENDS / 2, 'after the ws drain');
    await eventually(() => traffic.sockets.every((s) => s.connected && s.io.engine.id.startsWith('ws1.')), 'every client on ws1', {
      timeoutMs: 120_000,
      intervalMs: 100,
      retryOnError: true,
    });
    // Back (a new process behind the same address), and in the gateway's rotation again.
    await cluster.start('ws2', 'ws', wsLog);
    await eventually(
      async () => ((await (await fetch(gwAdmin)).text()).match(/chatd_gateway_upstream_healthy\{group="ws",[^}]*\} 1/g) ?? []).length === 2,
      'ws2 healthy at the gateway again',
      { timeoutMs: 60_000, intervalMs: 100, retryOnError: true },
    );
    await checkpoint('after the ws node was drained');
  }, 400_000);

  it('a ws node SIGKILLed: clients fail over and recover; its presence is swept after the grace period', async () => {
    // A canary connected straight to ws1 that will not reconnect: its presence must go away.
    const minted = await call(gateway(), 'POST', '/api/chat/anonymous-token', TENANT_A.pub, {
      tenantId: TENANT_A.id,
      sessionId: 'canary',
      fingerprint: 'fp-canary',
    });
    expect(minted.status).toBe(200);
    const canary = io(cluster.url('ws1', 'ws'), {
      auth: { apiKey: TENANT_A.pub, token: minted.body.token, sessionId: 'canary', fingerprint: 'fp-canary' },
      transports: ['websocket'],
      reconnection: false,
    });
    traffic.sockets.push(canary);
    await connected(canary);
    const online = async () => {
      const r = await call(gateway(), 'GET', `/api/chat/online-users?tenantId=${TENANT_A.id}`, TENANT_A.sec);
      return ((r.body.users ?? []) as { sessionId: string }[]).map((u) => u.sessionId);
    };
    await eventually(async () => (await online()).includes('canary'), 'the canary online', {
      timeoutMs: 60_000,
      intervalMs: 100,
      retryOnError: true,
    });
    const onWs1 = traffic.visitors.filter((v) => v.socket.io.engine?.id?.startsWith('ws1.'));

    traffic.start();
    await traffic.runFor(SENDS / 2, 'before the ws kill');
    await cluster.procs.get('ws1')!.stop('SIGKILL');
    faults.push('ws SIGKILL');
    await traffic.runFor(SENDS, 'after the ws kill');
    await eventually(
      () => traffic.sockets.filter((s) => s !== canary).every((s) => s.connected && s.io.engine.id.startsWith('ws2.')),
      'every client on ws2',
      { timeoutMs: 120_000, intervalMs: 100, retryOnError: true },
    );
    await eventually(async () => !(await online()).includes('canary'), "the killed node's presence swept", {
      timeoutMs: 120_000,
      intervalMs: 250,
      retryOnError: true,
    });
    await eventually(
      () => agentPresence.some((p) => p.sessionId === 'canary' && p.status === 'offline'),
      'the agent told the canary is offline',
      { timeoutMs: 60_000, intervalMs: 100, retryOnError: true },
    );
    expect(onWs1.length, 'some visitors lived on the killed node').toBeGreaterThan(0);
    await checkpoint('after the ws node was killed');
    expect(checker.ackedCount).toBeGreaterThan(100);
  }, 400_000);

  it('the gateway SIGKILLed under load and restarted: its links drop, the ws node ends their sessions, clients come back and recover', async () => {
    const gw = cluster.procs.get('gw')!;
    const ws2Clients = async () => {
      const m = await (await fetch(`http://127.0.0.1:${cluster.procs.get('ws2')!.ports.admin}/metrics`)).text();
      return Number(/chatd_link_clients\{side="ws"\} (\d+)/.exec(m)?.[1] ?? -1);
    };
    // Every client through the gateway (all but the canary) is a client of ws2's edge link.
    const throughGateway = traffic.sockets.length - 1;
    await eventually(async () => (await ws2Clients()) === throughGateway, 'every client on the edge link', {
      timeoutMs: 60_000,
      intervalMs: 100,
      retryOnError: true,
    });
    traffic.start();
    await traffic.runFor(SENDS / 2, 'before the gateway kill');
    await gw.stop('SIGKILL');
    faults.push('gateway SIGKILL + restart');
    // The node ends the dead link's sessions (presence disconnects, streams released).
    await eventually(async () => (await ws2Clients()) === 0, "the dead gateway's sessions ended on the ws node", {
      timeoutMs: 60_000,
      intervalMs: 100,
      retryOnError: true,
    });
    // A new gateway behind the same address (the forwarder).
    await cluster.start('gw', 'gateway', {
      upstreams: {
        api: [cluster.url('api2', 'api')],
        ws: [cluster.url('ws2', 'ws')],
        healthCheckIntervalMs: 300,
        requestTimeoutMs: 10_000,
      },
    });
    await traffic.runFor(SENDS, 'after the gateway restart');
    await eventually(
      // All but the canary (which does not reconnect).
      () => traffic.sockets.filter((s) => s.io.reconnection()).every((s) => s.connected),
      'every client reconnected',
      { timeoutMs: 120_000, intervalMs: 100, retryOnError: true },
    );
    await eventually(async () => (await ws2Clients()) === throughGateway, 'every client back on the edge link', {
      timeoutMs: 120_000,
      intervalMs: 100,
      retryOnError: true,
    });
    await checkpoint('after the gateway was killed and restarted');
  }, 400_000);
});
