// The ws role on real Redis and PostgreSQL with the real socket.io-client, several nodes sharing
// them, checked by the delivery checker (every acknowledged message stored once, delivered once and
// in order to every client that stayed connected or recovered):
//   - an api+ws node A and a ws node B; messages over HTTP and over WS on A; a visitor and an agent
//     on B; the visitor drops and recovers mid-traffic;
//   - a SIGTERM'd node's clients reconnect to another node and recover;
//   - a slow consumer is cut off while the others keep receiving, and recovers;
//   - the bus loses its subscription during traffic (this file restarts its own redis-server).
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DATABASE_URL, REDIS_URL, freePort, dropSchema, has, uniquePrefix, uniqueSchema } from '../../../test/helpers/services.js';
import { DeliveryChecker, readerFromDb, type ClientRecord } from '../../../test/helpers/delivery-checker.js';
import { openDatabase, type KyselyDatabase } from '../../db/index.js';
import { testDbConfig } from '../../../test/helpers/db/config.js';
import { agentToken, connect, connected, emitAck, KEYS, startNode, type Node, type Recorder } from '../../../test/helpers/ws-harness.js';
import { hasRedisServerBinary, OwnRedis } from '../../../test/helpers/own-redis.js';
import { eventually } from '../../../test/helpers/eventually.js';

const silent = pino({ level: 'silent' });
const redisUp = await has('redis');
const postgresUp = await has('postgres');
const hasServerBinary = hasRedisServerBinary();
const TENANT = 'tenantA';

/** A visitor token bound to `sessionId` at mint (so the binding survives a Redis restart). */
async function boundVisitorToken(node: Node, sessionId: string, fingerprint: string): Promise<string> {
  const r = await node.http('POST', '/api/chat/anonymous-token', { token: KEYS.pubA, body: { tenantId: TENANT, sessionId, fingerprint } });
  if (r.status !== 200) throw new Error(`anonymous-token: ${r.status} ${JSON.stringify(r.body)}`);
  return r.body.token as string;
}

/** Wires a recorder's events into a checker record (and reconnects into segments). */
function checked(rec: Recorder, record: ClientRecord): Recorder {
  rec.socket.on('meta_message_created', (p: { message: { id: string } }, offset: string) =>
    record.received(p.message.id, Number(offset.split('~')[0])),
  );
  let first = true;
  rec.socket.on('connect', () => {
    if (!first) record.reconnected(rec.socket.recovered);
    first = false;
  });
  return rec;
}

interface Cluster {
  readonly nodes: Node[];
  readonly db: KyselyDatabase;
  close(): Promise<void>;
}

async function cluster(redisUrl: string, roles: Parameters<typeof startNode>[1][], extra: Record<string, unknown> = {}): Promise<Cluster> {
  const schema = uniqueSchema('ws');
  const prefix = uniquePrefix('ws');
  const base = {
    database: { url: DATABASE_URL, schema, autoMigrate: true },
    redis: { url: redisUrl, prefix },
    presence: { offlineGraceMs: 500, heartbeatMs: 500, nodeTimeoutMs: 5000 },
    ...extra,
  };
  const nodes: Node[] = [];
  for (const r of roles) nodes.push(await startNode(base, r));
  // Open every node's services now (the first CONNECT would otherwise pay for it): a CONNECT with no
  // credentials makes the node open them, then refuses it.
  for (const n of nodes) await warm(n);
  const db = await openDatabase(testDbConfig({ url: DATABASE_URL, schema }), silent);
  return {
    nodes,
    db,
    async close() {
      await Promise.allSettled(nodes.map((n) => n.srv.stop()));
      await db.close();
      await dropSchema(schema);
    },
  };
}

async function warm(node: Node): Promise<void> {
  const r = connect(node.ws, {}, { transports: ['websocket'], reconnection: false });
  const err = await new Promise<Error & { data?: { code?: string } }>((resolve) => r.socket.once('connect_error', resolve));
  r.socket.disconnect();
  expect(err.data?.code).toBe('missing_credentials');
}

async function visitorOn(node: Node, api: Node, sessionId: string, opts: Parameters<typeof connect>[2] = {}): Promise<Recorder> {
  const fingerprint = `fp-${sessionId}`;
  const token = await boundVisitorToken(api, sessionId, fingerprint);
  const r = connect(node.ws, { apiKey: KEYS.pubA, token, sessionId, fingerprint }, opts);
  await connected(r);
  return r;
}

describe.skipIf(!redisUp || !postgresUp)('ws role on Redis and PostgreSQL, two nodes', () => {
  let c: Cluster;
  const sockets: Recorder[] = [];
  beforeAll(async () => {
    c = await cluster(REDIS_URL, [['api', 'ws'], ['ws'], ['ws']], {
      // A small send buffer and big messages, so a reader that stops reading overflows it quickly
      // (the kernel's socket buffers on loopback absorb a few MB first).
      limits: {
        sendBufferBytes: 65536,
        maxPayloadBytes: 262144,
        messageMaxChars: 100000,
        messagesPerSocket: { rate: 10000, burst: 10000 },
      },
    });
  }, 180_000);
  afterAll(async () => {
    for (const s of sockets) s.socket.disconnect();
    await c?.close();
  });

  it('HTTP and WS senders on A, a client on B dropping and recovering mid-traffic: zero lost, duplicated or reordered', async () => {
    const [a, b] = c.nodes as [Node, Node];
    const checker = new DeliveryChecker();
    const s = `conv-${Date.now().toString(36)}`;
    const fingerprint = `fp-${s}`;
    const stream = { kind: 'conversation' as const, tenantId: TENANT, sessionId: s };
    // Readers on B: the visitor (default transports) and an agent (websocket).
    const reader = await visitorOn(b, a, s);
    sockets.push(reader);
    checked(reader, checker.client('visitor-on-B', stream));
    const agent = connect(b.ws, { token: await agentToken(a, TENANT, KEYS.secA) }, { transports: ['websocket'] });
    sockets.push(agent);
    await connected(agent);
    checked(agent, checker.client('agent-on-B', { kind: 'agents', tenantId: TENANT }));
    // Writers on A: a second tab over WS, and HTTP.
    const tab = await visitorOn(a, a, s, { transports: ['websocket'] });
    sockets.push(tab);
    const httpToken = await boundVisitorToken(a, s, fingerprint);

    let drops = 0;
    for (let i = 0; i < 120; i++) {
      if (i % 2 === 0) {
        const r = await a.http('POST', '/webchat/message', {
          token: httpToken,
          body: { text: `http ${i}`, tenantId: TENANT, sessionId: s, fingerprint },
        });
        expect(r.status).toBe(200);
        checker.acked(r.body.messageId, TENANT, s);
      } else {
        const ack = await emitAck(tab, 'message', { text: `ws ${i}` });
        expect(ack.success).toBe(true);
        if (ack.success) checker.acked(ack.messageId, TENANT, s);
      }
      if (i === 30 || i === 70) {
        drops++;
        reader.socket.io.engine.close(); // the transport drops; the client reconnects and recovers
      }
    }
    await eventually(() => reader.connects.length === 1 + drops && reader.socket.connected, 'reader reconnected');
    expect(reader.connects.slice(1)).toEqual(Array(drops).fill(true));
    const report = await checker.settle(readerFromDb(c.db), { timeoutMs: 30_000 });
    expect(report.problems).toEqual([]);
    expect(report.ok).toBe(true);
  });

  it("a SIGTERM'd node's clients reconnect to another node and recover", async () => {
    const [a, , spare] = c.nodes as [Node, Node, Node];
    // A node of its own to stop.
    const doomed = await startNode(
      { database: spare.srv.config.database as object, redis: spare.srv.config.redis, presence: spare.srv.config.presence },
      ['ws'],
    );
    await warm(doomed);
    const checker = new DeliveryChecker();
    const s = `term-${Date.now().toString(36)}`;
    const v = await visitorOn(doomed, a, s, { transports: ['websocket'] });
    sockets.push(v);
    checked(v, checker.client('visitor', { kind: 'conversation', tenantId: TENANT, sessionId: s }));
    const writer = await visitorOn(a, a, s, { transports: ['websocket'] });
    sockets.push(writer);
    const send = async (text: string) => {
      const ack = await emitAck(writer, 'message', { text });
      if (!ack.success) throw new Error(JSON.stringify(ack));
      checker.acked(ack.messageId, TENANT, s);
    };
    for (let i = 0; i < 10; i++) await send(`before ${i}`);
    await eventually(() => v.messages.length === 10, 'first 10');
    // The load balancer now sends reconnects to the spare node.
    const disconnected = new Promise<string>((resolve) => v.socket.once('disconnect', resolve));
    (v.socket.io as unknown as { uri: string }).uri = spare.ws;
    const stopping = doomed.srv.stop();
    expect(await disconnected).toBe('transport close');
    for (let i = 0; i < 20; i++) await send(`during ${i}`);
    await stopping;
    await eventually(() => v.connects.length === 2, 'reconnected elsewhere');
    expect(v.connects[1]).toBe(true);
    const report = await checker.settle(readerFromDb(c.db));
    expect(report.problems).toEqual([]);
    expect(v.messages).toHaveLength(30);
  });

  it('a slow consumer is cut off while the others keep receiving, and recovers', async () => {
    const [a, b] = c.nodes as [Node, Node];
    const checker = new DeliveryChecker();
    const s = `slow-${Date.now().toString(36)}`;
    const stream = { kind: 'conversation' as const, tenantId: TENANT, sessionId: s };
    const fast = await visitorOn(b, a, s, { transports: ['websocket'] });
    sockets.push(fast);
    checked(fast, checker.client('fast', stream));
    const slow = await visitorOn(b, a, s, { transports: ['websocket'] });
    sockets.push(slow);
    checked(slow, checker.client('slow', stream));
    // Stop reading: the kernel buffers fill, then the server's send buffer (64 KB here).
    const raw = (slow.socket.io.engine.transport as unknown as { ws: { _socket: { pause(): void; resume(): void } } }).ws._socket;
    raw.pause();
    const writer = await visitorOn(a, a, s, { transports: ['websocket'] });
    sockets.push(writer);
    const big = 'y'.repeat(60_000);
    for (let i = 0; i < 150; i++) {
      const ack = await emitAck(writer, 'message', { text: `${i} ${big}` });
      if (!ack.success) throw new Error(JSON.stringify(ack));
      checker.acked(ack.messageId, TENANT, s);
    }
    await eventually(() => fast.messages.length === 150, 'the fast reader got everything');
    raw.resume();
    // The slow one was cut off (its connection ends once it reads again) and recovers.
    await eventually(() => slow.connects.length === 2 && slow.socket.connected, 'slow consumer reconnected');
    expect(slow.connects[1]).toBe(true);
    const report = await checker.settle(readerFromDb(c.db));
    expect(report.problems).toEqual([]);
    expect(slow.messages.length).toBe(150);
  });
});

describe.skipIf(!hasServerBinary || !postgresUp)('ws role when the bus loses its subscription (own redis-server)', () => {
  let redis: OwnRedis;
  let c: Cluster;
  const sockets: Recorder[] = [];
  beforeAll(async () => {
    redis = new OwnRedis(await freePort());
    await redis.start();
    c = await cluster(`redis://127.0.0.1:${redis.port}`, [['api', 'ws'], ['ws']]);
  }, 180_000);
  afterAll(async () => {
    for (const s of sockets) s.socket.disconnect();
    await c?.close();
    await redis?.kill();
  });

  it('a restart of Redis during traffic: the checker still reports zero', async () => {
    const [a, b] = c.nodes as [Node, Node];
    const checker = new DeliveryChecker();
    const s = `bus-${Date.now().toString(36)}`;
    const fingerprint = `fp-${s}`;
    const reader = await visitorOn(b, a, s, { transports: ['websocket'] });
    sockets.push(reader);
    checked(reader, checker.client('reader-on-B', { kind: 'conversation', tenantId: TENANT, sessionId: s }));
    const token = await boundVisitorToken(a, s, fingerprint);
    const send = (i: number) =>
      a.http('POST', '/webchat/message', { token, body: { text: `m${i}`, tenantId: TENANT, sessionId: s, fingerprint } });
    for (let i = 0; i < 30; i++) {
      const r = await send(i);
      expect(r.status).toBe(200);
      checker.acked(r.body.messageId, TENANT, s);
    }
    await redis.kill();
    await redis.start();
    // Sends go on at once, while the node reconnects. A refused send (503) is not acknowledged, so
    // not owed; after one, wait for the node to say it is ready again rather than for some time.
    let ackedAfter = 0;
    for (let i = 30; ackedAfter < 30; i++) {
      expect(i, 'sends after the restart').toBeLessThan(1000);
      const r = await send(i);
      if (r.status === 200) {
        checker.acked(r.body.messageId, TENANT, s);
        ackedAfter++;
      } else {
        expect(r.status).toBe(503);
        await eventually(async () => (await fetch(`${a.api}/readyz`)).status === 200, 'ready again after the Redis restart');
      }
    }
    const report = await checker.settle(readerFromDb(c.db), { timeoutMs: 60_000 });
    expect(report.problems).toEqual([]);
    expect(checker.ackedCount).toBe(60);
  });
});
