// The gateway role as a real process (`chatd serve --role gateway`) in front of upstream
// stand-ins (gateway-standins.ts): credential pre-checks, round robin and health checks over api
// nodes, retries, 502/504, body limits, per-IP rate limits, Socket.IO routed by sid across two
// ws nodes with socket.io-client over polling+upgrade, websocket only and polling only (websockets
// over the edge link), and the slow-consumer cut at the gateway.
import { mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { io as ioClient, type Socket } from 'socket.io-client';
import WebSocket from 'ws';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { spawnChatd, type ChatdProcess } from '../helpers/chatd-process.js';
import { freePort, hasRedis, REDIS_URL, uniquePrefix } from '../helpers/services.js';
import { startApiStandIn, startWsStandIn, type ApiStandIn, type WsStandIn } from './gateway-standins.js';
import { eventually } from '../helpers/eventually.js';
import { connected } from '../helpers/socket-client.js';

const PUB_A = 'ck_pub_tenantA_0123456789abcdef';
const SEC_A = 'ck_sec_tenantA_0123456789abcdef';
const PUB_B = 'ck_pub_tenantB_0123456789abcdef';
const JWT = 'eyJhbGciOiJIUzI1NiJ9.eyJ0aWQiOiJhIn0.c2lnbmF0dXJl';

interface GatewayOptions {
  api: string[];
  ws: string[];
  extra?: string;
}

async function startGateway(opts: GatewayOptions): Promise<ChatdProcess> {
  const cwd = await mkdtemp(path.join(tmpdir(), 'chatd-gw-'));
  const yaml = [
    'server:',
    '  host: 127.0.0.1',
    '  port: 0',
    '  bodyLimitBytes: 2048',
    // The tests name their client IPs with X-Forwarded-For (buckets per IP).
    "  trustedProxies: ['127.0.0.1']",
    'admin:',
    '  port: 0',
    'upstreams:',
    `  api: ${JSON.stringify(opts.api)}`,
    `  ws: ${JSON.stringify(opts.ws)}`,
    '  healthCheckIntervalMs: 200',
    '  requestTimeoutMs: 5000',
    'socketio:',
    '  pingIntervalMs: 2000',
    '  pingTimeoutMs: 4000',
    'limits:',
    '  httpPerIp: { rate: 0.01, burst: 30 }',
    '  connectPerIp: { rate: 0.01, burst: 20 }',
    'tenants:',
    `  - id: a`,
    `    apiKeys: [{ key: ${PUB_A} }, { key: ${SEC_A} }]`,
    `  - id: b`,
    `    apiKeys: [{ key: ${PUB_B} }]`,
    opts.extra ?? '',
  ].join('\n');
  await writeFile(path.join(cwd, 'chat-server.yaml'), yaml);
  return spawnChatd({ cwd, args: ['serve', '--role', 'gateway'], waitFor: ['gateway', 'admin'], timeoutMs: 90_000 });
}

let ipSeq = 0;
/** A client IP of its own for each test (the gateway trusts X-Forwarded-For from loopback). */
const newIp = () => `198.51.100.${++ipSeq}`;

async function call(
  base: string,
  method: string,
  p: string,
  opts: { key?: string; body?: unknown; ip?: string; headers?: Record<string, string> } = {},
) {
  const headers: Record<string, string> = { 'x-forwarded-for': opts.ip ?? newIp(), ...opts.headers };
  if (opts.key) headers.authorization = `Bearer ${opts.key}`;
  let body: string | undefined;
  if (opts.body !== undefined) {
    headers['content-type'] = 'application/json';
    body = typeof opts.body === 'string' ? opts.body : JSON.stringify(opts.body);
  }
  const r = await fetch(`${base}${p}`, { method, headers, ...(body !== undefined ? { body } : {}) });
  const text = await r.text();
  let json: Record<string, unknown> = {};
  try {
    json = JSON.parse(text) as Record<string, unknown>;
  } catch {
    json = { text };
  }
  return { status: r.status, body: json, headers: r.headers };
}

describe('gateway: HTTP to api nodes', () => {
  let a1: ApiStandIn;
  let a2: ApiStandIn;
  let gw: ChatdProcess;
  let base: string;
  const hits = () => a1.hits.length + a2.hits.length;

  beforeAll(async () => {
    a1 = await startApiStandIn('api-1');
    a2 = await startApiStandIn('api-2');
    gw = await startGateway({ api: [a1.url, a2.url], ws: [] });
    base = `http://127.0.0.1:${gw.ports.gateway}`;
  }, 120_000);
  afterAll(async () => {
    await gw?.stop('SIGKILL');
    await Promise.all([a1?.close(), a2?.close()]);
  });

  it('refuses wrong, missing and foreign API keys before any upstream sees them', async () => {
    const before = hits();
    const cases: [string, string, { key?: string; body?: unknown }, number, string][] = [
      ['POST', '/api/chat/anonymous-token', { body: { tenantId: 'a' } }, 401, 'invalid_api_key'],
      ['POST', '/api/chat/anonymous-token', { key: 'ck_pub_wrongwrongwrongwrong', body: { tenantId: 'a' } }, 401, 'invalid_api_key'],
      ['POST', '/api/chat/anonymous-token', { key: 'not-a-key', body: { tenantId: 'a' } }, 401, 'invalid_api_key'],
      ['POST', '/api/chat/anonymous-token', { key: PUB_B, body: { tenantId: 'a' } }, 403, 'tenant_mismatch'],
      ['POST', '/api/chat/agent-token', { key: PUB_A, body: { tenantId: 'a', userId: 'u' } }, 403, 'key_not_allowed'],
      ['POST', '/api/chat/broadcast', { key: PUB_A, body: { tenantId: 'a', event: 'x', data: {} } }, 403, 'key_not_allowed'],
      ['GET', '/api/chat/online-users?tenantId=b', { key: SEC_A }, 403, 'tenant_mismatch'],
      ['GET', '/api/chat/messages?tenantId=a&sessionId=s', {}, 401, 'missing_credentials'],
      ['POST', '/webchat/message', { body: { tenantId: 'a', text: 'x', sessionId: 's' } }, 401, 'missing_credentials'],
      ['GET', `/api/chat/messages?tenantId=a&sessionId=s&token=${JWT}`, {}, 400, 'credentials_in_query'],
      ['GET', `/api/chat/messages?tenantId=a&apiKey=${PUB_A}`, { key: JWT }, 400, 'credentials_in_query'],
    ];
    for (const [method, p, opts, status, code] of cases) {
      const r = await call(base, method, p, opts);
      expect([method, p, r.status, r.body.code]).toEqual([method, p, status, code]);
      expect(typeof r.body.error).toBe('string');
      expect(r.headers.get('x-request-id')).toBeTruthy();
    }
    expect(hits()).toBe(before);
    // The refused query credentials are not in the gateway's logs either.
    expect(gw.logs()).not.toContain(JWT);
  });

  it('passes valid keys and JWT-shaped tokens on, with X-Forwarded-For, X-Request-Id and the body', async () => {
    const ip = newIp();
    const ok = await call(base, 'POST', '/api/chat/anonymous-token', {
      key: PUB_A,
      body: { tenantId: 'a' },
      ip,
      headers: { 'x-request-id': 'req-123' },
    });
    expect(ok.status).toBe(200);
    expect(ok.body).toMatchObject({ method: 'POST', url: '/api/chat/anonymous-token', body: '{"tenantId":"a"}', requestId: 'req-123' });
    expect(ok.body.xff).toBe(`${ip}, 127.0.0.1`);
    expect(ok.headers.get('x-request-id')).toBe('req-123');
    const jwt = await call(base, 'POST', '/webchat/message', { key: JWT, body: { tenantId: 'b', text: 'hi', sessionId: 's' } });
    expect(jwt.status).toBe(200);
    const hit = [...a1.hits, ...a2.hits].find((h) => h.url === '/webchat/message')!;
    expect(hit.headers.authorization).toBe(`Bearer ${JWT}`);
    const secret = await call(base, 'GET', '/api/chat/online-users?tenantId=a', { key: SEC_A });
    expect(secret.status).toBe(200);
  });

  it('round-robins over healthy api nodes; a draining node leaves the rotation and comes back', async () => {
    const upstreamsOf = async (n: number) => {
      const seen: string[] = [];
      for (let i = 0; i < n; i++)
        seen.push((await call(base, 'GET', '/api/chat/messages?tenantId=a', { key: JWT })).body.upstream as string);
      return seen;
    };
    // Both in rotation first (probes on a loaded machine may lag the gateway's start).
    await eventually(
      async () => (await upstreamsOf(2)).includes('api-2') && (await upstreamsOf(2)).includes('api-1'),
      'both api nodes in rotation',
      { retryOnError: true },
    );
    const seen = await upstreamsOf(6);
    expect(seen.filter((u) => u === 'api-1')).toHaveLength(3);
    expect(seen.filter((u) => u === 'api-2')).toHaveLength(3);
    a2.ready = false;
    await eventually(async () => (await upstreamsOf(4)).every((u) => u === 'api-1'), 'api-2 out of rotation', { retryOnError: true });
    const metrics = await (await fetch(`http://127.0.0.1:${gw.ports.admin}/metrics`)).text();
    expect(metrics).toMatch(new RegExp(`chatd_gateway_upstream_healthy\\{group="api",upstream="${a2.url}"\\} 0`));
    a2.ready = true;
    await eventually(async () => (await upstreamsOf(4)).includes('api-2'), 'api-2 back in rotation', { retryOnError: true });
  });

  it('answers 413 over the body limit, and 504 when an upstream does not answer in time', async () => {
    const big = await call(base, 'POST', '/webchat/message', { key: JWT, body: { tenantId: 'a', text: 'x'.repeat(4000) } });
    expect([big.status, big.body.code]).toEqual([413, 'payload_too_large']);
    const slow = await call(base, 'GET', '/api/chat/slow', { key: JWT });
    expect([slow.status, slow.body.code]).toEqual([504, 'upstream_timeout']);
  });

  it('limits HTTP requests per client IP with 429 and Retry-After; other IPs are unaffected', async () => {
    const ip = newIp();
    // burst 30 at 0.01/s: 30 pass, then refused.
    const statuses: number[] = [];
    for (let i = 0; i < 30; i++) statuses.push((await call(base, 'GET', '/api/chat/messages?tenantId=a', { key: JWT, ip })).status);
    expect(statuses.every((s) => s === 200)).toBe(true);
    const refused = await call(base, 'GET', '/api/chat/messages?tenantId=a', { key: JWT, ip });
    expect([refused.status, refused.body.code]).toEqual([429, 'rate_limited']);
    expect(Number(refused.headers.get('retry-after'))).toBeGreaterThanOrEqual(1);
    expect((await call(base, 'GET', '/api/chat/messages?tenantId=a', { key: JWT })).status).toBe(200);
  });
});

describe('gateway: upstream failures', () => {
  it(
    'retries a request that never reached a dead node on a live one, and answers 502 when none is left',
    { timeout: 180_000 },
    async () => {
      const alive = await startApiStandIn('alive');
      const dead = `http://127.0.0.1:${await freePort()}`;
      const gw = await startGateway({ api: [dead, alive.url], ws: [], extra: 'log:\n  level: info' });
      const gwOnlyDead = await startGateway({ api: [dead], ws: [] });
      try {
        const base = `http://127.0.0.1:${gw.ports.gateway}`;
        // Whatever the method: connection refused means the request was never sent.
        for (let i = 0; i < 4; i++) {
          const r = await call(base, i % 2 ? 'POST' : 'GET', '/api/chat/anonymous-token', {
            key: PUB_A,
            body: i % 2 ? { tenantId: 'a' } : undefined,
          });
          expect(r.status).toBe(200);
          expect(r.body.upstream).toBe('alive');
        }
        const none = await call(`http://127.0.0.1:${gwOnlyDead.ports.gateway}`, 'POST', '/api/chat/anonymous-token', {
          key: PUB_A,
          body: { tenantId: 'a' },
        });
        expect([none.status, none.body]).toEqual([502, { error: 'No healthy upstream', code: 'upstream_unavailable' }]);
        const ready = await fetch(`http://127.0.0.1:${gwOnlyDead.ports.gateway}/readyz`);
        expect(ready.status).toBe(503);
      } finally {
        await Promise.all([gw.stop('SIGKILL'), gwOnlyDead.stop('SIGKILL')]);
        await alive.close();
      }
    },
  );
});

describe.skipIf(!(await hasRedis()))('gateway: limits shared through Redis', () => {
  it('two gateways share one per-IP bucket; another IP is unaffected', { timeout: 180_000 }, async () => {
    const api = await startApiStandIn('shared');
    const extra = `redis:\n  url: ${REDIS_URL}\n  prefix: "${uniquePrefix('gwrl')}"`;
    const [g1, g2] = await Promise.all([startGateway({ api: [api.url], ws: [], extra }), startGateway({ api: [api.url], ws: [], extra })]);
    try {
      const bases = [g1, g2].map((g) => `http://127.0.0.1:${g.ports.gateway}`);
      const ip = newIp();
      // burst 30: alternate between the gateways; together they allow 30, not 60.
      for (let i = 0; i < 30; i++) {
        const r = await call(bases[i % 2]!, 'GET', '/api/chat/messages?tenantId=a', { key: JWT, ip });
        expect(r.status).toBe(200);
      }
      for (const base of bases) {
        const r = await call(base, 'GET', '/api/chat/messages?tenantId=a', { key: JWT, ip });
        expect([r.status, r.body.code]).toEqual([429, 'rate_limited']);
      }
      expect((await call(bases[1]!, 'GET', '/api/chat/messages?tenantId=a', { key: JWT })).status).toBe(200);
      // A gateway-only process never opens the database.
      expect(g1.logs()).not.toMatch(/pglite|postgres|migrat/i);
    } finally {
      await Promise.all([g1.stop('SIGKILL'), g2.stop('SIGKILL')]);
      await api.close();
    }
  });
});

describe('gateway: Socket.IO to ws nodes, sticky by sid', () => {
  let n1: WsStandIn;
  let n2: WsStandIn;
  let gw: ChatdProcess;
  let base: string;
  const sockets: Socket[] = [];

  beforeAll(async () => {
    n1 = await startWsStandIn('wsnode1');
    n2 = await startWsStandIn('wsnode2');
    gw = await startGateway({ api: [], ws: [n1.url, n2.url] });
    base = `http://127.0.0.1:${gw.ports.gateway}`;
  }, 120_000);
  afterAll(async () => {
    for (const s of sockets) s.disconnect();
    await gw?.stop('SIGKILL');
    await Promise.all([n1?.close(), n2?.close()]);
  });

  const connect = async (opts: Parameters<typeof ioClient>[1] = {}) => {
    const s = ioClient(base, { reconnection: false, extraHeaders: { 'x-forwarded-for': newIp() }, ...opts });
    sockets.push(s);
    await connected(s);
    return s;
  };
  const ask = (s: Socket, event: string, ...args: unknown[]) => s.timeout(10_000).emitWithAck(event, ...args);

  it('polling then upgrade: sessions alternate between the nodes and every request reaches the owner', async () => {
    const owners: string[] = [];
    for (let i = 0; i < 4; i++) {
      const s = await connect();
      await eventually(() => s.io.engine.transport.name === 'websocket', 'upgrade to websocket', { retryOnError: true });
      const owner = (await ask(s, 'whoami')) as string;
      expect(s.id).toBeDefined();
      expect(s.io.engine.id.startsWith(`${owner}.`)).toBe(true);
      owners.push(owner);
      expect(await ask(s, 'echo', { n: i, text: 'héllo' })).toEqual({ n: i, text: 'héllo' });
    }
    expect(owners.filter((o) => o === 'wsnode1')).toHaveLength(2);
    expect(owners.filter((o) => o === 'wsnode2')).toHaveLength(2);
    // Every request carrying a sid went to the node that the sid names.
    for (const node of [n1, n2]) {
      const withSid = node.requests.filter((r) => r.sid);
      expect(withSid.length).toBeGreaterThan(0);
      expect(withSid.every((r) => r.sid!.startsWith(`${node.nodeId}.`))).toBe(true);
    }
  });

  it('websocket only, and polling only, with many round trips', async () => {
    const ws = await connect({ transports: ['websocket'] });
    const poll = await connect({ transports: ['polling'] });
    expect(ws.io.engine.transport.name).toBe('websocket');
    expect(poll.io.engine.transport.name).toBe('polling');
    const big = 'x'.repeat(30_000);
    for (let i = 0; i < 20; i++) {
      expect(await ask(ws, 'echo', i)).toBe(i);
      expect(await ask(poll, 'echo', i)).toBe(i);
    }
    expect(await ask(ws, 'echo', big)).toBe(big);
    expect(await ask(poll, 'echo', big)).toBe(big);
    const binary = Buffer.from([1, 2, 3, 250]);
    expect(Buffer.from((await ask(ws, 'echo', binary)) as ArrayBuffer)).toEqual(binary);
  });

  it('an unknown sid gets Engine.IO\'s "Session ID unknown"; a credential in the query is refused', async () => {
    const r = await call(base, 'GET', '/socket.io/?EIO=4&transport=polling&sid=ghost.abcdefghijklmnopqrstuv');
    expect([r.status, r.body]).toEqual([400, { code: 1, message: 'Session ID unknown' }]);
    const q = await call(base, 'GET', `/socket.io/?EIO=4&transport=polling&token=${JWT}`);
    expect([q.status, q.body.code]).toEqual([400, 'credentials_in_query']);
  });

  it('limits new sessions per client IP (429 on the handshake, a transient refusal the client retries)', async () => {
    const ip = newIp();
    const handshake = () => call(base, 'GET', '/socket.io/?EIO=4&transport=polling', { ip });
    for (let i = 0; i < 20; i++) expect((await handshake()).status).toBe(200);
    const refused = await handshake();
    expect([refused.status, refused.body.code]).toEqual([429, 'rate_limited']);
    // A websocket handshake from that IP is refused too; a session's own requests are not limited.
    const s = ioClient(base, { reconnection: false, transports: ['websocket'], extraHeaders: { 'x-forwarded-for': ip } });
    sockets.push(s);
    const err = (await new Promise<Error>((resolve) => s.once('connect_error', resolve))) as Error & { data?: unknown };
    // A transport error (the client backs off and retries), not a CONNECT_ERROR with data.
    expect(err.message).toMatch(/websocket error/);
    expect(err.data).toBeUndefined();
  });

  it('a node that dies: its clients reconnect through the gateway to the other node', { timeout: 180_000 }, async () => {
    const n3 = await startWsStandIn('wsnode3');
    const gw2 = await startGateway({ api: [], ws: [n3.url, n2.url] });
    try {
      const url = `http://127.0.0.1:${gw2.ports.gateway}`;
      const clients: Socket[] = [];
      for (let i = 0; i < 4; i++) {
        const s = ioClient(url, {
          transports: ['websocket'],
          reconnectionDelay: 100,
          reconnectionDelayMax: 500,
          extraHeaders: { 'x-forwarded-for': newIp() },
        });
        sockets.push(s);
        clients.push(s);
        await new Promise<void>((r) => s.once('connect', () => r()));
      }
      const before = await Promise.all(clients.map((s) => ask(s, 'whoami')));
      expect(before).toContain('wsnode3');
      await n3.close();
      await eventually(
        async () => {
          const now = await Promise.all(clients.map(async (s) => (s.connected ? ask(s, 'whoami').catch(() => 'x') : 'x')));
          return now.every((n) => n === 'wsnode2');
        },
        'every client on wsnode2',
        { retryOnError: true },
      );
      expect(gw2.child.exitCode).toBeNull();
    } finally {
      await gw2.stop('SIGKILL');
    }
  });
});

describe('gateway: a ws node that drains', () => {
  it(
    'its clients are closed with 1001 "server shutting down" and reconnect through the gateway to another node',
    { timeout: 180_000 },
    async () => {
      const draining = await startWsStandIn('drainme');
      const other = await startWsStandIn('other');
      const gw = await startGateway({ api: [], ws: [draining.url, other.url] });
      const url = `http://127.0.0.1:${gw.ports.gateway}`;
      const clients: Socket[] = [];
      try {
        for (let i = 0; i < 4; i++) {
          const s = ioClient(url, {
            transports: ['websocket'],
            reconnectionDelay: 100,
            reconnectionDelayMax: 500,
            extraHeaders: { 'x-forwarded-for': newIp() },
          });
          clients.push(s);
          await new Promise<void>((r) => s.once('connect', () => r()));
        }
        // A raw client on the draining node too, to read the close frame (round robin: within a few).
        const rawClient = async () => {
          const ws = new WebSocket(`ws://127.0.0.1:${gw.ports.gateway}/socket.io/?EIO=4&transport=websocket`, {
            headers: { 'x-forwarded-for': newIp() },
          });
          const closed = new Promise<[number, string]>((r) => ws.once('close', (code, reason) => r([code, reason.toString('utf8')])));
          const first = await new Promise<string>((r) => ws.once('message', (d: Buffer) => r(d.toString('utf8'))));
          return { ws, closed, sid: (JSON.parse(first.slice(1)) as { sid: string }).sid };
        };
        const raws: Awaited<ReturnType<typeof rawClient>>[] = [];
        for (let i = 0; i < 4 && !raws.some((r) => r.sid.startsWith('drainme.')); i++) raws.push(await rawClient());
        const raw = raws.find((r) => r.sid.startsWith('drainme.'))!;
        expect(raw).toBeDefined();
        const ask = (s: Socket) => s.timeout(10_000).emitWithAck('whoami') as Promise<string>;
        expect(await Promise.all(clients.map(ask))).toContain('drainme');

        draining.drain();
        expect(await raw.closed).toEqual([1001, 'server shutting down']);
        await eventually(
          async () =>
            (await Promise.all(clients.map(async (s) => (s.connected ? ask(s).catch(() => 'x') : 'x')))).every((n) => n === 'other'),
          'every client on the other node',
          { retryOnError: true },
        );
        for (const r of raws) r.ws.terminate();
      } finally {
        for (const s of clients) s.disconnect();
        await gw.stop('SIGKILL');
        await Promise.all([draining.close(), other.close()]);
      }
    },
  );
});

describe("gateway: the heartbeat of link clients is the gateway's", () => {
  // pingInterval 2 s, pingTimeout 4 s on the gateway and the stand-in alike (startGateway, startWsStandIn).
  let node: WsStandIn;
  let gw: ChatdProcess;
  let base: string;
  const sockets: Socket[] = [];
  const ask = (s: Socket, event: string, ...args: unknown[]) => s.timeout(10_000).emitWithAck(event, ...args);

  beforeAll(async () => {
    node = await startWsStandIn('beat');
    gw = await startGateway({ api: [], ws: [node.url] });
    base = `http://127.0.0.1:${gw.ports.gateway}`;
  }, 120_000);
  afterAll(async () => {
    for (const s of sockets) s.disconnect();
    await gw?.stop('SIGKILL');
    await node?.close();
  });

  it('socket.io-client (websocket only, and polling then upgrade) stays connected across pings; no pong and no ping pub crosses the link', async () => {
    const pubsBefore = await metricValue(gw, 'chatd_link_pub_frames_total{direction="received"}');
    const open = async (opts: Parameters<typeof ioClient>[1]) => {
      const s = ioClient(base, { reconnection: false, extraHeaders: { 'x-forwarded-for': newIp() }, ...opts });
      sockets.push(s);
      await connected(s);
      return s;
    };
    const wsOnly = await open({ transports: ['websocket'] });
    const upgraded = await open({});
    await eventually(() => upgraded.io.engine.transport.name === 'websocket', 'upgrade to websocket', { retryOnError: true });
    const ids = [wsOnly.io.engine.id, upgraded.io.engine.id];
    const pings = [0, 0];
    wsOnly.io.engine.on('ping', () => pings[0]!++);
    upgraded.io.engine.on('ping', () => pings[1]!++);
    const dropped: string[] = [];
    for (const s of [wsOnly, upgraded]) s.on('disconnect', (reason) => dropped.push(reason));
    // Three pings each, all answered at the gateway (a missed pong would close them after 4 s).
    await eventually(() => pings[0]! >= 3 && pings[1]! >= 3, 'three pings to each client');
    expect(dropped).toEqual([]);
    expect([wsOnly.connected, upgraded.connected]).toEqual([true, true]);
    expect([wsOnly.io.engine.id, upgraded.io.engine.id]).toEqual(ids);
    expect(await ask(wsOnly, 'echo', 'still here')).toBe('still here');
    expect(await ask(upgraded, 'echo', 'still here')).toBe('still here');
    expect(node.disconnects).toEqual([]);
    // The node heard no pong from the websocket-only client, and none from the other after its `5`
    // (while it still polled, its pongs went over HTTP to the node, whose heartbeat it was then).
    const frames = (sid: string) => node.linkFrames.filter((f) => f.sid === sid).map((f) => f.text);
    expect(frames(ids[0]!)).not.toContain('3');
    const up = frames(ids[1]!);
    expect(up[0]).toBe('2probe');
    expect(up).toContain('5');
    expect(up.slice(up.indexOf('5'))).not.toContain('3');
    // No room frame was published and no ping pub crossed the link.
    expect(await metricValue(gw, 'chatd_link_pub_frames_total{direction="received"}')).toBe(pubsBefore);
  });

  it('a client that answers no ping is closed by the gateway (1000 "ping timeout"), and its session ends on the node with "ping timeout"', async () => {
    const timeoutsBefore = await metricValue(gw, 'chatd_gateway_ping_timeouts_total');
    const socketsBefore = await clientWebsockets(gw);
    const client = new WebSocket(`ws://127.0.0.1:${gw.ports.gateway}/socket.io/?EIO=4&transport=websocket`, {
      headers: { 'x-forwarded-for': newIp() },
      perMessageDeflate: false,
    });
    const texts: string[] = [];
    client.on('message', (data: Buffer) => texts.push(data.toString('utf8')));
    const closed = new Promise<[number, string]>((r) => client.once('close', (code, reason) => r([code, reason.toString('utf8')])));
    await new Promise<void>((r) => client.once('open', () => r()));
    await eventually(() => texts.some((t) => t.startsWith('0{')), 'the open packet', { retryOnError: true });
    const sid = (JSON.parse(texts.find((t) => t.startsWith('0{'))!.slice(1)) as { sid: string }).sid;
    client.send('40{}');
    await eventually(() => texts.some((t) => t.startsWith('40{')), 'the CONNECT ack', { retryOnError: true });
    const before = node.disconnects.length;
    // It never sends `3`.
    expect(await closed).toEqual([1000, 'ping timeout']);
    expect(texts).toContain('2');
    await eventually(() => node.disconnects.length > before, 'the session ended on the node', { retryOnError: true });
    expect(node.disconnects.slice(before)).toEqual(['ping timeout']);
    // The node never saw a frame of it besides its CONNECT (the pings were the gateway's).
    expect(node.linkFrames.filter((f) => f.sid === sid).map((f) => f.text)).toEqual(['40{}']);
    expect(await metricValue(gw, 'chatd_gateway_ping_timeouts_total')).toBe(timeoutsBefore + 1);
    // The gateway holds nothing for it any more (the first test's clients are still connected).
    expect(await clientWebsockets(gw)).toBe(socketsBefore);
  });
});

describe('gateway: slow consumers over the edge link', () => {
  let node: WsStandIn;
  let gw: ChatdProcess;
  let base: string;

  beforeAll(async () => {
    node = await startWsStandIn('slow');
    gw = await startGateway({ api: [], ws: [node.url] });
    base = `ws://127.0.0.1:${gw.ports.gateway}/socket.io/?EIO=4&transport=websocket`;
  }, 120_000);
  afterAll(async () => {
    await gw?.stop('SIGKILL');
    await node?.close();
  });

  it('a client that stops reading is cut off at the gateway, and its node ends the session as for a dropped socket', async () => {
    const client = new WebSocket(base, { headers: { 'x-forwarded-for': newIp() }, perMessageDeflate: false });
    const texts: string[] = [];
    let items = 0;
    client.on('message', (data: Buffer) => {
      const t = data.toString('utf8');
      if (t.startsWith('42["item"')) items++;
      else texts.push(t);
    });
    const closed = new Promise<number>((r) => client.once('close', (code) => r(code)));
    await new Promise<void>((r) => client.once('open', () => r()));
    await eventually(() => texts.some((t) => t.startsWith('0{')), 'the open packet', { retryOnError: true });
    client.send('40{}');
    await eventually(() => texts.some((t) => t.startsWith('40{')), 'the CONNECT ack', { retryOnError: true });
    const before = node.disconnects.length;
    // ~18 MB towards a client whose send buffer at the gateway is 1 MB (limits.sendBufferBytes),
    // while it reads nothing.
    client.pause();
    client.send('421["flood",300,60000]');
    await eventually(() => node.disconnects.length > before, 'the session ended on the node', { timeoutMs: 60_000, retryOnError: true });
    expect(node.disconnects.slice(before)).toEqual(['transport error']);
    client.resume();
    await closed;
    expect(items).toBeLessThan(300);
    // The gateway holds nothing for it any more.
    await eventually(async () => (await clientWebsockets(gw)) === 0, 'no client websocket left at the gateway', { retryOnError: true });
  });
});

describe('gateway: paced replays over the edge link', () => {
  let node: WsStandIn;
  let gw: ChatdProcess;

  beforeAll(async () => {
    node = await startWsStandIn('pace');
    gw = await startGateway({ api: [], ws: [node.url] });
  }, 120_000);
  afterAll(async () => {
    await gw?.stop('SIGKILL');
    await node?.close();
  });

  it('a replay paced by the send buffer reaches a client that stops reading for a while: every item, in order, no cut', async () => {
    const client = new WebSocket(`ws://127.0.0.1:${gw.ports.gateway}/socket.io/?EIO=4&transport=websocket`, {
      headers: { 'x-forwarded-for': newIp() },
      perMessageDeflate: false,
    });
    const texts: string[] = [];
    const items: number[] = [];
    let closed: number | undefined;
    client.on('message', (data: Buffer) => {
      const t = data.toString('utf8');
      const m = /^42\["item",(\d+),/.exec(t);
      if (m) items.push(Number(m[1]));
      else texts.push(t);
    });
    client.on('close', (code) => (closed = code));
    await new Promise<void>((r) => client.once('open', () => r()));
    await eventually(() => texts.some((t) => t.startsWith('0{')), 'the open packet', { retryOnError: true });
    client.send('40{}');
    await eventually(() => texts.some((t) => t.startsWith('40{')), 'the CONNECT ack', { retryOnError: true });
    // ~18 MB through a 1 MB send buffer at the gateway: only pacing keeps the client connected.
    client.pause();
    client.send('42["replay",300,60000]');
    // A fixed pause on purpose: the test is that a stalled reader stays connected, so the stall has to last.
    await new Promise((r) => setTimeout(r, 1500));
    client.resume();
    await eventually(() => items.length === 300 || closed !== undefined, 'every item or a close', {
      timeoutMs: 60_000,
      retryOnError: true,
    });
    expect(closed).toBeUndefined();
    expect(items).toEqual([...Array(300).keys()]);
    client.close();
  });
});

async function clientWebsockets(gw: ChatdProcess): Promise<number> {
  const text = await (await fetch(`http://127.0.0.1:${gw.ports.admin}/metrics`)).text();
  const line = text.split('\n').find((l) => l.startsWith('chatd_gateway_websockets '));
  return Number(line?.split(' ')[1]);
}

/** A metric's value at the gateway (a labelled name as written in the exposition); 0 when absent. */
async function metricValue(gw: ChatdProcess, name: string): Promise<number> {
  const text = await (await fetch(`http://127.0.0.1:${gw.ports.admin}/metrics`)).text();
  const line = text.split('\n').find((l) => l.startsWith(`${name} `));
  return line ? Number(line.split(' ')[1]) : 0;
}
