// The whole deployment on loopback, as separate processes: a gateway in front of an api node and
// two ws nodes, on real Redis and PostgreSQL. The widget flow goes through the gateway with
// socket.io-client (websocket, and polling with upgrade); the ws nodes take sessions in turn; one
// ws node is killed mid-test and its clients reconnect through the gateway to the other one and
// recover every message. The same suite runs on one Redis and on a Redis Cluster of this file's own
// (three masters, three replicas, on spare loopback ports, stopped by PID).
import { mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import pg from 'pg';
import pino from 'pino';
import { io, type Socket } from 'socket.io-client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openDatabase, type KyselyDatabase } from '../../src/db/index.js';
import { testDbConfig } from '../helpers/db/config.js';
import { runChatd, spawnChatd, type ChatdProcess } from '../helpers/chatd-process.js';
import { DeliveryChecker, readerFromDb, type ClientRecord } from '../helpers/delivery-checker.js';
import { DATABASE_URL, hasPostgres, hasRedis, REDIS_URL, uniquePrefix, uniqueSchema } from '../helpers/services.js';
import { RedisCluster, hasClusterBinaries } from '../helpers/redis-cluster.js';
import { eventually } from '../helpers/eventually.js';

const PUB = 'ck_pub_clusterA_0123456789abcdef';
const SEC = 'ck_sec_clusterA_0123456789abcdef';
const TENANT = 'acme';
const JWT_SECRET = 'cluster-test-secret-0123456789abcdef';

/** The suite, on the Redis `redisOf` describes (the `redis` config section, given the key prefix). */
function deployment(
  title: string,
  available: boolean,
  redisOf: (prefix: string) => Promise<Record<string, unknown>>,
  stop = async () => {},
) {
  describe.skipIf(!available)(title, () => {
    const prefix = uniquePrefix('gwc');
    const schema = uniqueSchema('gwc');
    const procs: Record<string, ChatdProcess> = {};
    const sockets: Socket[] = [];
    let gateway: string;
    let db: KyselyDatabase;
    // The oracle: every acknowledged message stored once and delivered once, in order, to every
    // socket of its stream (recovered across the node's death).
    const checker = new DeliveryChecker();
    const offsetOf = (o: string) => Number(String(o).split('~')[0]);
    const follow = (socket: Socket, record: ClientRecord) => {
      socket.on('meta_message_created', (p: { message: { id: string } }, offset: string) =>
        record.received(p.message.id, offsetOf(offset)),
      );
      let first = true;
      socket.on('connect', () => {
        if (!first) record.reconnected(socket.recovered);
        first = false;
      });
    };

    const configFor = async (name: string, extra: Record<string, unknown>) => {
      const cwd = await mkdtemp(path.join(tmpdir(), `chatd-gwc-${name}-`));
      const config = {
        nodeId: name,
        server: { host: '127.0.0.1', port: 0, trustedProxies: ['127.0.0.1'] },
        roles: { api: { host: '127.0.0.1', port: 0 }, ws: { host: '127.0.0.1', port: 0 } },
        admin: { port: 0 },
        redis: await redisOf(prefix),
        database: { url: DATABASE_URL, schema },
        tenants: [{ id: TENANT, apiKeys: [{ key: PUB }, { key: SEC }], allowedOrigins: ['*'] }],
        socketio: { pingIntervalMs: 2000, pingTimeoutMs: 3000 },
        presence: { offlineGraceMs: 500 },
        ...extra,
      };
      await writeFile(path.join(cwd, 'chat-server.yaml'), JSON.stringify(config, null, 2));
      return cwd;
    };
    const env = { JWT_SECRET };
    const start = async (name: string, role: string, listener: string, extra: Record<string, unknown> = {}) => {
      const cwd = await configFor(name, extra);
      procs[name] = await spawnChatd({ cwd, env, args: ['serve', '--role', role], waitFor: [listener, 'admin'], timeoutMs: 120_000 });
      return procs[name]!;
    };

    beforeAll(async () => {
      const migrateCwd = await configFor('migrate', {});
      const migrated = await runChatd(['migrate', 'up'], { cwd: migrateCwd, env });
      expect(migrated.code, migrated.stderr).toBe(0);
      db = await openDatabase(testDbConfig({ url: DATABASE_URL, schema }), pino({ level: 'silent' }));
      const [api, ws1, ws2] = await Promise.all([start('api1', 'api', 'api'), start('ws1', 'ws', 'ws'), start('ws2', 'ws', 'ws')]);
      const url = (p: ChatdProcess, l: string) => `http://127.0.0.1:${p.ports[l]}`;
      const gw = await start('gw1', 'gateway', 'gateway', {
        upstreams: { api: [url(api, 'api')], ws: [url(ws1, 'ws'), url(ws2, 'ws')], healthCheckIntervalMs: 300, requestTimeoutMs: 5000 },
      });
      gateway = url(gw, 'gateway');
      // Both ws nodes probed healthy and named before the first session.
      await eventually(
        async () => {
          const m = await (await fetch(`http://127.0.0.1:${gw.ports.admin}/metrics`)).text();
          return (m.match(/chatd_gateway_upstream_healthy\{group="ws",[^}]*\} 1/g) ?? []).length === 2;
        },
        'both ws nodes healthy at the gateway',
        { retryOnError: true },
      );
    }, 300_000);

    afterAll(async () => {
      for (const s of sockets) s.close();
      await Promise.all(Object.values(procs).map((p) => p.stop('SIGKILL')));
      await db?.close();
      const admin = new pg.Client({ connectionString: DATABASE_URL });
      await admin.connect();
      await admin.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`);
      await admin.end();
      await stop();
    });

    const post = async (p: string, key: string, body: unknown) => {
      const r = await fetch(`${gateway}${p}`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', authorization: `Bearer ${key}` },
        body: JSON.stringify(body),
      });
      return { status: r.status, body: (await r.json()) as Record<string, unknown> };
    };
    const visitorToken = async (sessionId: string) => {
      const r = await post('/api/chat/anonymous-token', PUB, { tenantId: TENANT, sessionId, fingerprint: `fp-${sessionId}` });
      expect(r.status, JSON.stringify(r.body)).toBe(200);
      return r.body.token as string;
    };
    const connected = (s: Socket) =>
      new Promise<void>((resolve, reject) => {
        s.once('connect', () => resolve());
        s.once('connect_error', reject);
      });

    interface Visitor {
      readonly sessionId: string;
      readonly token: string;
      readonly socket: Socket;
      readonly received: string[];
    }
    const visitors: Visitor[] = [];
    let agent: Socket;
    const agentReceived: string[] = [];

    it('the widget flow through the gateway; the two ws nodes take sessions in turn', { timeout: 180_000 }, async () => {
      const minted = await post('/api/chat/agent-token', SEC, { tenantId: TENANT, userId: 'agent-1' });
      expect(minted.status, JSON.stringify(minted.body)).toBe(200);
      agent = io(gateway, {
        auth: { token: minted.body.token },
        transports: ['websocket'],
        reconnectionDelay: 200,
        reconnectionDelayMax: 1000,
      });
      sockets.push(agent);
      agent.on('meta_message_created', (p: { message: { id: string } }) => agentReceived.push(p.message.id));
      await connected(agent);
      follow(agent, checker.client('agent', { kind: 'agents', tenantId: TENANT }));

      for (let i = 0; i < 4; i++) {
        const sessionId = `s-${i}`;
        const token = await visitorToken(sessionId);
        const socket = io(gateway, {
          auth: { apiKey: PUB, token, sessionId, fingerprint: `fp-${sessionId}` },
          // Half over websocket only, half over polling with upgrade.
          ...(i % 2 ? { transports: ['websocket'] } : {}),
          reconnectionDelay: 200,
          reconnectionDelayMax: 1000,
        });
        sockets.push(socket);
        const v: Visitor = { sessionId, token, socket, received: [] };
        socket.on('meta_message_created', (p: { message: { id: string } }) => v.received.push(p.message.id));
        visitors.push(v);
        await connected(socket);
        follow(socket, checker.client(`visitor-${sessionId}`, { kind: 'conversation', tenantId: TENANT, sessionId }));
      }
      await eventually(() => visitors.every((v) => v.socket.io.engine.transport.name === 'websocket'), 'every visitor on websocket', {
        retryOnError: true,
      });
      const nodes = [agent, ...visitors.map((v) => v.socket)].map((s) => s.io.engine.id.split('.')[0]);
      expect(new Set(nodes)).toEqual(new Set(['ws1', 'ws2']));

      for (const v of visitors) {
        const ack = (await v.socket.timeout(15_000).emitWithAck('message', {
          text: `hello from ${v.sessionId}`,
          tenantId: TENANT,
          sessionId: v.sessionId,
          fingerprint: `fp-${v.sessionId}`,
        })) as {
          success: boolean;
          messageId: string;
        };
        expect(ack).toMatchObject({ success: true, sessionId: v.sessionId });
        checker.acked(ack.messageId, TENANT, v.sessionId);
        await eventually(
          () => v.received.includes(ack.messageId) && agentReceived.includes(ack.messageId),
          `delivery of ${v.sessionId}'s message`,
          { retryOnError: true },
        );
      }
      // Over the edge links: one per ws node, every client carried by one, room frames once per link.
      const gwMetrics = await (await fetch(`http://127.0.0.1:${procs.gw1!.ports.admin}/metrics`)).text();
      expect(gwMetrics).toMatch(/chatd_link_connections\{side="gateway"\} 2\n/);
      expect(gwMetrics).toMatch(/chatd_link_clients\{side="gateway"\} 5\n/);
      expect(Number(/chatd_link_pub_frames_total\{direction="received"\} (\d+)/.exec(gwMetrics)?.[1] ?? 0)).toBeGreaterThan(0);
      let carried = 0;
      for (const n of ['ws1', 'ws2']) {
        const m = await (await fetch(`http://127.0.0.1:${procs[n]!.ports.admin}/metrics`)).text();
        expect(m).toMatch(/chatd_link_connections\{side="ws"\} 1\n/);
        carried += Number(/chatd_link_clients\{side="ws"\} (\d+)/.exec(m)?.[1] ?? 0);
      }
      expect(carried).toBe(5);

      // A wrong key on the socket is the ws node's final refusal (CONNECT_ERROR), relayed unchanged.
      const wrong = io(gateway, {
        auth: { apiKey: 'ck_pub_wrongwrongwrongwrong', token: visitors[0]!.token, sessionId: 's-0', fingerprint: 'fp-s-0' },
        transports: ['websocket'],
      });
      sockets.push(wrong);
      const refused = (await new Promise<Error>((resolve) => wrong.once('connect_error', resolve))) as Error & { data?: { code?: string } };
      expect([refused.message, refused.data?.code]).toEqual(['Invalid API key', 'invalid_api_key']);
      expect(wrong.active).toBe(false);

      // The HTTP door through the gateway reaches the visitor's socket wherever it lives.
      const v0 = visitors[0]!;
      const sent = await post('/webchat/message', v0.token, {
        text: 'over http',
        tenantId: TENANT,
        sessionId: v0.sessionId,
        fingerprint: `fp-${v0.sessionId}`,
      });
      expect(sent.status, JSON.stringify(sent.body)).toBe(200);
      checker.acked(sent.body.messageId as string, TENANT, v0.sessionId);
      await eventually(() => v0.received.includes(sent.body.messageId as string), 'the HTTP message on the socket', { retryOnError: true });
    });

    it(
      'a ws node killed mid-test: its clients reconnect through the gateway to the other node and lose nothing',
      { timeout: 180_000 },
      async () => {
        const onWs1 = visitors.filter((v) => v.socket.io.engine.id.startsWith('ws1.'));
        expect(onWs1.length).toBeGreaterThan(0);
        await procs.ws1!.stop('SIGKILL');
        // Messages sent while their node is down are stored; the reconnecting sockets recover them.
        const sentDuring: Record<string, string[]> = {};
        for (const v of visitors) {
          sentDuring[v.sessionId] = [];
          for (let i = 0; i < 3; i++) {
            const r = await post('/webchat/message', v.token, {
              text: `during ${i}`,
              tenantId: TENANT,
              sessionId: v.sessionId,
              fingerprint: `fp-${v.sessionId}`,
              clientMessageId: `d-${v.sessionId}-${i}`,
            });
            expect(r.status, JSON.stringify(r.body)).toBe(200);
            checker.acked(r.body.messageId as string, TENANT, v.sessionId);
            sentDuring[v.sessionId]!.push(r.body.messageId as string);
          }
        }
        await eventually(
          () => visitors.every((v) => v.socket.connected && v.socket.io.engine.id.startsWith('ws2.')),
          'every visitor reconnected to ws2',
          { timeoutMs: 60_000, retryOnError: true },
        );
        for (const v of visitors) {
          await eventually(() => sentDuring[v.sessionId]!.every((id) => v.received.includes(id)), `recovery of ${v.sessionId}`, {
            retryOnError: true,
          });
          // Exactly once: no message delivered twice to the same visitor.
          expect(new Set(v.received).size).toBe(v.received.length);
        }
        // Zero lost, duplicated or reordered, for the visitors and the agent, across the node's death.
        const report = await checker.settle(readerFromDb(db), { timeoutMs: 30_000 });
        expect(report.problems).toEqual([]);
        expect(checker.ackedCount).toBe(visitors.length * 4 + 1);
        expect(procs.gw1!.child.exitCode).toBeNull();
      },
    );
  });
}

deployment('gateway + api + two ws nodes (Redis, PostgreSQL)', (await hasRedis()) && (await hasPostgres()), async (prefix) => ({
  url: REDIS_URL,
  prefix,
}));

let redisCluster: Promise<RedisCluster> | undefined;
deployment(
  'gateway + api + two ws nodes (Redis Cluster, PostgreSQL)',
  hasClusterBinaries() && (await hasPostgres()),
  async (prefix) => ({ cluster: { nodes: (await (redisCluster ??= RedisCluster.start())).urls }, prefix }),
  async () => {
    await (await redisCluster)?.stop();
  },
);
