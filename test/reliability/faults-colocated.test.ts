// Faults under sustained mixed traffic in the recommended co-located layout: two `--role all` nodes
// (gateway, api and ws in one process each) behind a plain L4 round-robin balancer with no
// stickiness (TcpForwarder + RoundRobin, which takes a node out of the rotation when its /readyz
// fails), over a redis-server and a PostgreSQL cluster this file starts itself on spare ports.
// Visitors connect with socket.io-client's default transports (polling, then the upgrade): an
// upgrade or a poll that lands on the node that does not own its sid is forwarded there
// (src/cluster/sid-forwarder.ts). They send over their socket and over HTTP while an agent follows
// the tenant's stream, and every message is POSTed to a webhook receiver. After each fault the
// traffic stops, every unknown outcome is settled by retrying it with its clientMessageId, the
// delivery checker must report nothing lost, duplicated, reordered or misrouted, and every
// acknowledged message must have reached the webhook receiver:
//   - a node SIGKILLed: its clients (direct and piped through the other node) reconnect through
//     the balancer to the survivor and recover;
//   - a node drained (SIGTERM): its websocket clients are closed with 1001 and move to the other node.
import pg from 'pg';
import pino from 'pino';
import type { Socket } from 'socket.io-client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openDatabase, type KyselyDatabase } from '../../src/db/index.js';
import { startCluster, type Cluster as PgCluster } from '../helpers/db/pg-cluster.js';
import { testDbConfig } from '../helpers/db/config.js';
import { DeliveryChecker, readerFromDb } from '../helpers/delivery-checker.js';
import { eventually } from '../helpers/eventually.js';
import { OwnRedis } from '../helpers/own-redis.js';
import { upgrade } from '../helpers/tcp-balancer.js';
import { startWebhookReceiver, type WebhookReceiver } from '../helpers/webhook-receiver.js';
import { Cluster, ownServicesAvailable, RELIABILITY_FULL, RoundRobin, TcpForwarder, TENANT_A, Traffic } from './cluster.js';

const available = ownServicesAvailable();
const silent = pino({ level: 'silent' });
// CI: 4 visitors and a few dozen sends around each fault; CHATD_FULL_RELIABILITY=1: more of both.
const VISITORS = RELIABILITY_FULL ? 10 : 4;
const SENDS = RELIABILITY_FULL ? 150 : 20;
const NODES = ['node1', 'node2'] as const;

describe.skipIf(!available)('faults under mixed traffic (own Redis and PostgreSQL, two --role all nodes behind an L4 balancer)', () => {
  let redis: OwnRedis;
  let pgc: PgCluster;
  let cluster: Cluster;
  let db: KyselyDatabase;
  let traffic: Traffic;
  let agent: Socket;
  let receiver: WebhookReceiver;
  let rr: RoundRobin;
  let lb: TcpForwarder;
  let lbUrl: string;
  const agentConnects: string[] = [];
  const checker = new DeliveryChecker();
  const faults: string[] = [];
  const nodeConfig = {
    log: { level: process.env.CHATD_RELIABILITY_LOG ?? 'info', format: 'json' },
    webhooks: { retryBaseMs: 100, retryMaxDelayMs: 500 },
  };

  const query = async <T>(sql: string, params: unknown[] = []): Promise<T[]> => {
    const c = new pg.Client({ connectionString: pgc.url });
    await c.connect();
    try {
      return (await c.query(sql, params)).rows as T[];
    } finally {
      await c.end();
    }
  };
  const outboxRows = async () => (await query<{ n: number }>('select count(*)::int as n from outbox'))[0]!.n;
  /** Every message stored for the tenant (acknowledged ones are a subset; settled unknowns included). */
  const stored = async () =>
    new Set((await query<{ id: string }>('select id from messages where tenant_id = $1', [TENANT_A.id])).map((r) => r.id));

  const nodeOf = (s: Socket) => s.io.engine?.id?.split('.')[0];
  const metric = async (name: string, node: string) => {
    const text = await (await fetch(`http://127.0.0.1:${cluster.procs.get(node)!.ports.admin}/metrics`)).text();
    return Number(
      text
        .split('\n')
        .find((l) => l.startsWith(`${name} `))
        ?.split(' ')[1] ?? 0,
    );
  };

  /** The balancer's connections since `from`, each named by the node it went to (ports of the running nodes). */
  const routed = (from = 0) => {
    const portOf = new Map(NODES.map((n) => [cluster.procs.get(n)!.ports.public!, n]));
    return lb.connections.slice(from).map((c) => ({ node: portOf.get(c.port), requestLine: c.requestLine }));
  };
  const routing = (from = 0) =>
    routed(from)
      .map((c) => `${c.node} ${c.requestLine}`)
      .join('\n');
  /** Requests of `transport` that reached the node not owning their sid (so forwarded to the owner). */
  const crossed = (transport: 'polling' | 'websocket', from = 0) =>
    routed(from).filter((c) => {
      const owner = /[?&]sid=([^.&]+)\./.exec(c.requestLine)?.[1];
      return c.requestLine.includes(`transport=${transport}`) && owner !== undefined && c.node !== owner;
    }).length;

  const sendsResume = (what: string) => traffic.sendsResume(SENDS, what);
  const checkpoint = (what: string) =>
    traffic.checkpoint(what, {
      reader: readerFromDb(db),
      outboxRows,
      webhooks: { stored, received: () => receiver.received },
      context: () => `agent: ${agentConnects.join('\n')}`,
    });

  /** Both nodes in the balancer's rotation, each able to pipe an upgrade to the other (node registry). */
  const bothServing = async () => {
    await eventually(() => NODES.every((n) => rr.ready.has(n)), 'both nodes ready at the balancer', {
      timeoutMs: 120_000,
      intervalMs: 100,
    });
    for (const [owner, via] of [NODES, [...NODES].reverse()] as const) {
      const base = (n: string) => `127.0.0.1:${cluster.procs.get(n)!.ports.public}`;
      await eventually(
        async () => {
          const probe = await (await fetch(`http://${base(owner)}/socket.io/?EIO=4&transport=polling`)).text();
          const sid = (JSON.parse(probe.slice(1)) as { sid: string }).sid;
          return (await upgrade(`ws://${base(via)}/socket.io/?EIO=4&transport=websocket&sid=${encodeURIComponent(sid)}`)) === 'open';
        },
        `${via} pipes an upgrade to ${owner}`,
        { timeoutMs: 60_000, intervalMs: 200, retryOnError: true },
      );
    }
  };

  beforeAll(async () => {
    [redis, pgc, receiver] = await Promise.all([OwnRedis.start(), startCluster(), startWebhookReceiver()]);
    cluster = new Cluster({
      redisUrl: redis.url,
      databaseUrl: pgc.url,
      webhook: { url: `${receiver.url}/hooks`, secret: 'colocated-webhook-secret-0123456789' },
    });
    await cluster.migrate();
    db = await openDatabase(testDbConfig({ url: pgc.url }), silent);
    await Promise.all(NODES.map((n) => cluster.start(n, 'all', nodeConfig)));
    // Weighted 1:2, so the rotation's period (3) does not divide socket.io-client's connection
    // pattern (handshake, POST, upgrade): with a strict alternation every upgrade lands on its owner.
    rr = new RoundRobin(cluster, [NODES[0], NODES[1], NODES[1]]);
    rr.start();
    lb = new TcpForwarder(rr.target);
    lbUrl = await lb.listen();
    await bothServing();

    traffic = new Traffic(() => lbUrl, checker, TENANT_A);
    agent = await traffic.addAgent('agent-1');
    agent.on('connect', () => agentConnects.push(`${new Date().toISOString()} ${agent.io.engine.id} recovered=${agent.recovered}`));
    agent.on('disconnect', (reason) => agentConnects.push(`${new Date().toISOString()} disconnect ${reason}`));
    // 'polling': socket.io-client's default transports (polling first, then the upgrade).
    for (let i = 0; i < VISITORS; i++) await traffic.addVisitor(`cv-${i}`, 'polling');
    await eventually(() => traffic.visitors.every((v) => v.socket.io.engine.transport.name === 'websocket'), 'every visitor upgraded', {
      timeoutMs: 60_000,
      intervalMs: 100,
      retryOnError: true,
    });
  }, 300_000);

  afterAll(async () => {
    traffic?.close();
    rr?.stop();
    await cluster?.dumpLogs().catch(() => undefined);
    await cluster?.stopAll();
    await lb?.close();
    await db?.close().catch(() => undefined);
    await receiver?.close();
    await redis?.kill();
    await pgc?.destroy();
    console.log(
      `[reliability] co-located faults: ${faults.length} (${faults.join(', ')}); sends: ${JSON.stringify(traffic?.stats)}; acked and checked: ${checker.ackedCount}`,
    );
  });

  it('a node SIGKILLed under load: its clients reconnect through the balancer to the other node and recover', async () => {
    // The victim owns some sessions; round robin put some upgrades on the node that does not own
    // their sid, which pipes them to the owner.
    const counts = NODES.map((n) => traffic.sockets.filter((s) => nodeOf(s) === n).length);
    const victim = counts[0]! >= counts[1]! ? NODES[0] : NODES[1];
    const survivor = victim === NODES[0] ? NODES[1] : NODES[0];
    expect(crossed('polling'), `polling requests forwarded to their sid owner\n${routing()}`).toBeGreaterThan(0);
    expect(crossed('websocket'), `upgrades forwarded to their sid owner\n${routing()}`).toBeGreaterThan(0);
    const piped = (await metric('chatd_forwarded_websockets', NODES[0])) + (await metric('chatd_forwarded_websockets', NODES[1]));
    expect(piped, 'websockets piped to their sid owner').toBeGreaterThan(0);
    const onVictim = traffic.visitors.filter((v) => nodeOf(v.socket) === victim);
    expect(onVictim.length, `visitors on ${victim}`).toBeGreaterThan(0);

    traffic.start();
    await traffic.runFor(SENDS, 'before the kill');
    await cluster.procs.get(victim)!.stop('SIGKILL');
    faults.push(`${victim} SIGKILL`);
    await traffic.runFor(SENDS, 'after the kill');
    await eventually(() => traffic.sockets.every((s) => s.connected && nodeOf(s) === survivor), `every client on ${survivor}`, {
      timeoutMs: 120_000,
      intervalMs: 100,
      retryOnError: true,
    });
    await sendsResume('the kill');
    await checkpoint('after a node was killed');
    expect(onVictim.every((v) => v.socket.connected)).toBe(true);
  }, 300_000);

  it('a node drained (SIGTERM) under load: its websocket clients get 1001 and move to the other node', async () => {
    // The killed node comes back (a new process on a new port, behind the same balancer address).
    const restarted = NODES.find((n) => cluster.procs.get(n)!.child.exitCode !== null || cluster.procs.get(n)!.child.signalCode !== null)!;
    const drained = restarted === NODES[0] ? NODES[1] : NODES[0];
    await cluster.start(restarted, 'all', nodeConfig);
    await bothServing();
    // Every client moved to `drained` (the survivor of the kill); new visitors join through the
    // balancer. Which node each new session lands on depends on where the round robin stands after
    // the token requests and health probes (CI saw all of them on one node), so it is not asserted
    // here: forwarding between the nodes is asserted in the kill test above.
    expect(traffic.sockets.every((s) => nodeOf(s) === drained)).toBe(true);
    const from = lb.connections.length;
    for (let i = VISITORS; i < VISITORS + VISITORS / 2; i++) await traffic.addVisitor(`cv-${i}`, 'polling');
    await eventually(() => traffic.visitors.every((v) => v.socket.io.engine.transport.name === 'websocket'), 'every visitor upgraded', {
      timeoutMs: 60_000,
      intervalMs: 100,
      retryOnError: true,
    });
    const upgrades = lb.connections.slice(from).filter((c) => c.requestLine.includes('transport=websocket&'));
    expect(upgrades.length).toBeGreaterThanOrEqual(VISITORS / 2);
    const owned = traffic.sockets.filter((s) => nodeOf(s) === drained);
    // How each websocket was closed (1001 "going away" from a draining node).
    const codes = new Map<Socket, number | undefined>();
    for (const s of traffic.sockets) {
      s.once('disconnect', (_reason, details) => codes.set(s, (details as { context?: { code?: number } } | undefined)?.context?.code));
    }

    traffic.start();
    await traffic.runFor(SENDS, 'before the drain');
    await cluster.procs.get(drained)!.stop('SIGTERM');
    faults.push(`${drained} SIGTERM (drain)`);
    await traffic.runFor(SENDS, 'after the drain');
    await eventually(() => traffic.sockets.every((s) => s.connected && nodeOf(s) === restarted), `every client on ${restarted}`, {
      timeoutMs: 120_000,
      intervalMs: 100,
      retryOnError: true,
    });
    // Every session the drained node owned was closed, and every websocket closed got 1001 (the
    // ones piped through the drained node to the other one too).
    expect(owned.every((s) => codes.has(s))).toBe(true);
    expect([...new Set(codes.values())]).toEqual([1001]);
    await sendsResume('the drain');
    await checkpoint('after a node was drained');
    expect(checker.ackedCount).toBeGreaterThan(SENDS * 4);
  }, 300_000);
});
