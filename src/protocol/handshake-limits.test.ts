// Handshake limits: a per-IP token bucket on new Engine.IO sessions, a cap
// on sessions that have not completed CONNECT (per IP and in total) apart from maxConnections, a
// connect deadline, and the protocol details of the reference server (PUT → 400, a session closed by
// ping timeout is unknown to its next GET, `Connection: close` echoed). Real sockets from distinct
// loopback addresses (Linux routes all of 127/8 to lo), the real socket.io-client, node-fetch 3.
import http from 'node:http';
import { afterEach, describe, expect, it } from 'vitest';
import nodeFetch from 'node-fetch';
import { io, type Socket as ClientSocket, type ManagerOptions, type SocketOptions } from 'socket.io-client';
import WebSocket from 'ws';
import { startHarness, type Harness } from './harness.js';
import { eventually } from '../../test/helpers/eventually.js';
import { connected } from '../../test/helpers/socket-client.js';
import { rawHead, saysClose } from '../../test/helpers/raw-http.js';

const harnesses: Harness[] = [];
const clients: ClientSocket[] = [];
const agents: http.Agent[] = [];
afterEach(async () => {
  for (const c of clients.splice(0)) c.disconnect();
  for (const a of agents.splice(0)) a.destroy();
  for (const h of harnesses.splice(0)) await h.close();
});

async function harness(over: Parameters<typeof startHarness>[0] = {}) {
  const h = await startHarness(over);
  harnesses.push(h);
  return h;
}

function agentFrom(localAddress: string, maxSockets = 8): http.Agent {
  const a = new http.Agent({ keepAlive: true, maxSockets, localAddress });
  agents.push(a);
  return a;
}

/** A socket.io-client whose polling requests and websocket both leave from `localAddress`. */
function clientFrom(h: Harness, localAddress: string, opts: Partial<ManagerOptions & SocketOptions> = {}): ClientSocket {
  const agent = agentFrom(localAddress);
  const c = io(h.url, {
    auth: { token: 'good' },
    forceNew: true,
    reconnectionDelay: 50,
    reconnectionDelayMax: 200,
    agent: agent as unknown as string,
    localAddress,
    ...opts,
  } as Partial<ManagerOptions & SocketOptions>);
  clients.push(c);
  return c;
}

/** One HTTP request; resolves with status, headers and body. */
function request(url: string, opts: { agent?: http.Agent; localAddress?: string; method?: string; body?: string } = {}) {
  return new Promise<{ status: number; headers: http.IncomingHttpHeaders; body: string }>((resolve, reject) => {
    const req = http.request(
      url,
      {
        method: opts.method ?? 'GET',
        ...(opts.agent ? { agent: opts.agent } : {}),
        ...(opts.localAddress ? { localAddress: opts.localAddress } : {}),
      },
      (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (d: string) => (body += d));
        res.on('end', () => resolve({ status: res.statusCode!, headers: res.headers, body }));
      },
    );
    req.on('error', reject);
    req.end(opts.body);
  });
}

const handshakeUrl = (h: Harness) => `${h.url}/socket.io/?EIO=4&transport=polling`;
const sidOf = (open: string) => (JSON.parse(open.slice(1)) as { sid: string }).sid;

describe('handshake limits', () => {
  it('a handshake flood from one address gets 429 while a client from another connects, chats and gets its messages', async () => {
    const pendingPerIp = 20;
    const h = await harness({
      handshakePerIp: { rate: 10, burst: 20 },
      pendingPerIp,
      maxPending: 100,
      maxConnections: 100,
      connectTimeoutMs: 2000,
    });
    const rssBefore = process.memoryUsage().rss;
    const flooder = agentFrom('127.0.0.2', 32);
    const statuses = new Map<number, number>();
    let maxPending = 0;
    let maxSessions = 0;
    let rateBody: unknown;
    const TOTAL = 3000;
    let sent = 0;
    let first429!: () => void;
    const limited = new Promise<void>((resolve) => (first429 = resolve));
    const worker = async () => {
      while (sent < TOTAL) {
        sent++;
        const r = await request(handshakeUrl(h), { agent: flooder });
        statuses.set(r.status, (statuses.get(r.status) ?? 0) + 1);
        if (r.status === 429) {
          rateBody ??= JSON.parse(r.body);
          first429();
        }
        maxPending = Math.max(maxPending, h.server.pendingSize);
        maxSessions = Math.max(maxSessions, h.server.size);
      }
    };
    // (Also released when the flood ends without a single 429, so that case fails on the assertions below.)
    const flood = Promise.all(Array.from({ length: 32 }, worker)).finally(() => first429());

    // Mid-flood, from another address: default options (polling, then upgrade).
    await limited;
    const c = clientFrom(h, '127.0.0.3', { auth: { token: 'good', join: 'room-1' } });
    const got: unknown[] = [];
    c.on('news', (n: unknown) => got.push(n));
    await connected(c);
    expect(h.connects.at(-1)!.ip).toBe('127.0.0.3');
    expect(await c.timeout(10000).emitWithAck('echo', 'hello')).toBe('hello');
    for (let i = 0; i < 5; i++) await c.timeout(10000).emitWithAck('publish', 'room-1', 'news', i);
    await eventually(() => got.length === 5, 'the client gets its room messages');
    expect(got).toEqual([0, 1, 2, 3, 4]);
    await flood;

    expect(sent).toBe(TOTAL);
    expect(statuses.get(429) ?? 0).toBeGreaterThan(0);
    expect([...statuses.keys()].sort()).toEqual([200, 429]);
    expect(rateBody).toEqual({ code: 3, message: 'Too many requests' });
    // Never more unauthenticated sessions than the per-IP cap (plus the one client mid-handshake).
    expect(maxPending).toBeLessThanOrEqual(pendingPerIp + 1);
    expect(maxSessions).toBeLessThanOrEqual(pendingPerIp + 1);
    // Loosely: thousands of refused handshakes do not grow the process by much.
    expect(process.memoryUsage().rss - rssBefore).toBeLessThan(200 * 1024 * 1024);
  });

  it('refuses a websocket handshake over the per-IP limit with 429, and serves other addresses', async () => {
    const h = await harness({ handshakePerIp: { rate: 0.001, burst: 2 } });
    const wsFrom = (localAddress: string) =>
      new Promise<number>((resolve, reject) => {
        const ws = new WebSocket(`ws://127.0.0.1:${h.port}/socket.io/?EIO=4&transport=websocket`, { localAddress });
        ws.once('open', () => {
          ws.close();
          resolve(101);
        });
        ws.once('unexpected-response', (_req, res) => {
          resolve(res.statusCode!);
          ws.terminate();
        });
        ws.once('error', (err) => (err.message.includes('Unexpected server response') ? undefined : reject(err)));
      });
    expect(await wsFrom('127.0.0.2')).toBe(101);
    expect(await wsFrom('127.0.0.2')).toBe(101);
    expect(await wsFrom('127.0.0.2')).toBe(429);
    // Polling and websocket share the bucket.
    expect((await request(handshakeUrl(h), { localAddress: '127.0.0.2' })).status).toBe(429);
    expect(await wsFrom('127.0.0.3')).toBe(101);
    const c = clientFrom(h, '127.0.0.3', { transports: ['websocket'] });
    await connected(c);
  });

  it('caps unauthenticated sessions per IP (429) and in total (503), apart from maxConnections', async () => {
    const h = await harness({ pendingPerIp: 2, maxPending: 3, maxConnections: 2 });
    const open = (ip: string) => request(handshakeUrl(h), { localAddress: ip });
    expect((await open('127.0.0.2')).status).toBe(200);
    expect((await open('127.0.0.2')).status).toBe(200);
    const perIp = await open('127.0.0.2');
    expect([perIp.status, JSON.parse(perIp.body)]).toEqual([
      429,
      { code: 3, message: 'Too many unauthenticated sessions from this address' },
    ]);
    expect((await open('127.0.0.3')).status).toBe(200);
    // Three pending in total: the next handshake from anywhere is a capacity refusal.
    const total = await open('127.0.0.4');
    expect([total.status, JSON.parse(total.body)]).toEqual([503, { code: 3, message: 'Server at capacity' }]);
    expect(h.server.pendingSize).toBe(3);
    // Pending sessions do not count toward maxConnections: three of them and a node of one
    // connection still take an authenticated client.
    const h2 = await harness({ pendingPerIp: 5, maxPending: 5, maxConnections: 1 });
    for (let i = 0; i < 3; i++) expect((await request(handshakeUrl(h2), { localAddress: '127.0.0.2' })).status).toBe(200);
    const a = clientFrom(h2, '127.0.0.3', { transports: ['websocket'] });
    await connected(a);
    expect(h2.server.pendingSize).toBe(3);
    // One authenticated socket fills maxConnections: the next handshake is refused.
    expect((await request(`${h2.url}/socket.io/?EIO=4&transport=polling`, { localAddress: '127.0.0.4' })).status).toBe(503);
  });

  it('closes a session that does not send CONNECT within connectTimeoutMs (polling and websocket)', async () => {
    // Ping rounds far longer than the test: only the connect deadline can close these sessions.
    const h = await harness({ connectTimeoutMs: 300, pingIntervalMs: 60_000, pingTimeoutMs: 60_000 });
    const sid = sidOf((await request(handshakeUrl(h))).body);
    expect(h.server.pendingSize).toBe(1);
    // The held long-poll is answered with a close packet at the deadline…
    const held = await request(`${handshakeUrl(h)}&sid=${sid}`);
    expect([held.status, held.body]).toEqual([200, '1']);
    // …and the session is gone.
    const after = await request(`${handshakeUrl(h)}&sid=${sid}`);
    expect([after.status, JSON.parse(after.body)]).toEqual([400, { code: 1, message: 'Session ID unknown' }]);

    const ws = new WebSocket(`ws://127.0.0.1:${h.port}/socket.io/?EIO=4&transport=websocket`);
    const code = await new Promise<number>((resolve) => ws.on('close', (c) => resolve(c)));
    expect(code).toBe(1000);
    expect(h.server.size).toBe(0);
    expect(h.server.pendingSize).toBe(0);
    // A client that does connect in time is not touched by the deadline.
    const c = clientFrom(h, '127.0.0.3');
    await connected(c);
    expect(h.server.pendingSize).toBe(0);
  });
});

describe('Engine.IO details of the reference server', () => {
  it('answers another method than GET/POST/OPTIONS on the Socket.IO path with 400 "Bad handshake method"', async () => {
    const h = await harness();
    for (const method of ['PUT', 'DELETE', 'PATCH']) {
      const r = await request(handshakeUrl(h), { method });
      expect([method, r.status, JSON.parse(r.body)]).toEqual([method, 400, { code: 2, message: 'Bad handshake method' }]);
    }
  });

  it('a polling session closed by ping timeout is unknown to its next GET (400), not answered with buffered frames', async () => {
    const h = await harness({ pingIntervalMs: 100, pingTimeoutMs: 100 });
    const sid = sidOf((await request(handshakeUrl(h))).body);
    const url = `${handshakeUrl(h)}&sid=${sid}`;
    expect((await request(url, { method: 'POST', body: '40{"token":"good"}' })).body).toBe('ok');
    expect((await request(url)).body).toMatch(/^40\{/);
    // No more GETs and no pongs: the ping that goes unanswered sits in the buffer.
    await eventually(() => h.disconnects.length === 1, 'ping timeout');
    expect(h.disconnects[0]!.reason).toBe('ping timeout');
    const next = await request(url);
    expect([next.status, JSON.parse(next.body)]).toEqual([400, { code: 1, message: 'Session ID unknown' }]);
  });
});

describe('Connection: close', () => {
  it('is answered with Connection: close by the router and the protocol layer (raw sockets)', async () => {
    const h = await harness();
    const sid = sidOf((await request(handshakeUrl(h))).body);
    const cases = [
      'GET /hello HTTP/1.1', // a route
      'GET /nope HTTP/1.1', // the catch-all 404
      'OPTIONS /hello HTTP/1.1', // a preflight
      'GET /socket.io/?EIO=4&transport=polling HTTP/1.1', // a handshake
      'GET /socket.io/?EIO=3&transport=polling HTTP/1.1', // an Engine.IO error
      `POST /socket.io/?EIO=4&transport=polling&sid=${sid} HTTP/1.1`, // a polling POST (empty)
      'OPTIONS /socket.io/ HTTP/1.1', // the Engine.IO preflight
      'PUT /socket.io/ HTTP/1.1', // a bad method
    ];
    for (const head of cases) {
      const response = await rawHead(h.port, head);
      expect([head, saysClose(response)], response).toEqual([head, true]);
    }
  });

  it('node-fetch 3 asking Connection: close makes sequential requests without "socket hang up"', async () => {
    // node-fetch 3 on Node ≥ 19 keeps the socket in the global keep-alive agent's pool unless the
    // answer says `Connection: close`; uWS closes it anyway, so the next request hit a dead socket.
    const h = await harness();
    const headers = { connection: 'close' };
    for (let i = 0; i < 6; i++) {
      const hello = await nodeFetch(`${h.url}/hello`, { headers });
      expect(hello.status).toBe(200);
      await hello.text();
      const open = await nodeFetch(handshakeUrl(h), { headers });
      expect(open.status).toBe(200);
      expect(open.headers.get('connection')).toBe('close');
      expect((await open.text()).startsWith('0{')).toBe(true);
    }
  });
});
