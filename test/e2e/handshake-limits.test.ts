// The per-IP handshake limit on a bare ws node (`chatd serve --role ws`) and through a separate
// gateway (`--role gateway`), as real processes: the ws node limits every client by its own IP —
// behind the gateway by X-Forwarded-For (the gateway is in the node's server.trustedProxies), not
// all of the gateway's clients together by the gateway's address. Also `Connection: close` on the
// ws node's and the gateway's own and proxied answers. Client addresses are distinct loopback
// addresses (Linux routes all of 127/8 to lo).
import { mkdtemp, writeFile } from 'node:fs/promises';
import http from 'node:http';
import { tmpdir } from 'node:os';
import path from 'node:path';
import nodeFetch from 'node-fetch';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { spawnChatd, type ChatdProcess } from '../helpers/chatd-process.js';
import { eventually } from '../helpers/eventually.js';
import { rawHead, saysClose } from '../helpers/raw-http.js';

const BURST = 5;

function get(url: string, localAddress: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    http
      .get(url, { localAddress, agent: false }, (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (d: string) => (body += d));
        res.on('end', () => resolve({ status: res.statusCode!, body }));
      })
      .on('error', reject);
  });
}

describe('handshake limits on a bare ws node and behind a gateway', () => {
  let ws: ChatdProcess;
  let gw: ChatdProcess;
  let wsBase: string;
  let gwBase: string;

  beforeAll(async () => {
    const wsCwd = await mkdtemp(path.join(tmpdir(), 'chatd-hs-ws-'));
    await writeFile(
      path.join(wsCwd, 'chat-server.yaml'),
      [
        "server: { host: 127.0.0.1, port: 0, trustedProxies: ['127.0.0.1'] }",
        'roles: { ws: { host: 127.0.0.1, port: 0 } }',
        'admin: { port: 0 }',
        `limits: { handshakePerIp: { rate: 0.001, burst: ${BURST} } }`,
      ].join('\n'),
    );
    ws = await spawnChatd({ cwd: wsCwd, args: ['serve', '--role', 'ws'], waitFor: ['ws', 'admin'], timeoutMs: 120_000 });
    wsBase = `http://127.0.0.1:${ws.ports.ws}`;
    const gwCwd = await mkdtemp(path.join(tmpdir(), 'chatd-hs-gw-'));
    await writeFile(
      path.join(gwCwd, 'chat-server.yaml'),
      [
        'server: { host: 127.0.0.1, port: 0 }',
        'admin: { port: 0 }',
        `upstreams: { api: [], ws: [${JSON.stringify(wsBase)}], healthCheckIntervalMs: 200 }`,
        // The gateway's own per-IP connect limit out of the way: the ws node's limit is under test.
        'limits: { connectPerIp: { rate: 1000000, burst: 1000000 } }',
      ].join('\n'),
    );
    gw = await spawnChatd({ cwd: gwCwd, args: ['serve', '--role', 'gateway'], waitFor: ['gateway', 'admin'], timeoutMs: 120_000 });
    gwBase = `http://127.0.0.1:${gw.ports.gateway}`;
    await eventually(async () => (await fetch(`${gwBase}/readyz`)).status === 200, 'gateway ready', {
      timeoutMs: 120_000,
      retryOnError: true,
    });
  }, 300_000);

  afterAll(async () => {
    await Promise.all([gw?.stop('SIGKILL'), ws?.stop('SIGKILL')]);
  });

  const handshake = (base: string) => `${base}/socket.io/?EIO=4&transport=polling`;

  it('a bare ws node answers 429 to one address over its burst and still serves another', async () => {
    for (let i = 0; i < BURST; i++) expect((await get(handshake(wsBase), '127.0.0.2')).status).toBe(200);
    const refused = await get(handshake(wsBase), '127.0.0.2');
    expect([refused.status, JSON.parse(refused.body)]).toEqual([429, { code: 3, message: 'Too many requests' }]);
    expect((await get(handshake(wsBase), '127.0.0.3')).status).toBe(200);
  });

  it('a bare ws node refuses credentials in the query string (polling and websocket), as the gateway does', async () => {
    // Checked before the handshake limit: a refused request spends no handshake token. Its own
    // address, so the limit test above is not affected.
    const where = '127.0.0.6';
    for (const q of ['token=eyJhbGciOiJIUzI1NiJ9.e30.x', 'apiKey=ck_pub_tenantA_0123456789abcdef', 'password=hunter2']) {
      const r = await get(`${handshake(wsBase)}&${q}`, where);
      expect([r.status, (JSON.parse(r.body) as { code: string }).code], q).toEqual([400, 'credentials_in_query']);
    }
    const upgrade = await new Promise<{ status: number; body: string }>((resolve, reject) => {
      const req = http.request(`${wsBase}/socket.io/?EIO=4&transport=websocket&token=eyJhbGciOiJIUzI1NiJ9.e30.x`, {
        localAddress: where,
        agent: false,
        headers: {
          Connection: 'Upgrade',
          Upgrade: 'websocket',
          'Sec-WebSocket-Version': '13',
          'Sec-WebSocket-Key': 'dGhlIHNhbXBsZSBub25jZQ==',
        },
      });
      req.on('upgrade', (_res, socket) => {
        socket.destroy();
        reject(new Error('upgraded with a token in the query string'));
      });
      req.on('response', (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (d: string) => (body += d));
        res.on('end', () => resolve({ status: res.statusCode!, body }));
      });
      req.on('error', reject);
      req.end();
    });
    expect([upgrade.status, (JSON.parse(upgrade.body) as { code: string }).code]).toEqual([400, 'credentials_in_query']);
    // The sid is the one parameter allowed; a plain handshake still works.
    expect((await get(handshake(wsBase), where)).status).toBe(200);
  });

  it("behind the gateway each client is limited by its own forwarded IP, not by the gateway's", async () => {
    for (let i = 0; i < BURST; i++) expect((await get(handshake(gwBase), '127.0.0.4')).status).toBe(200);
    expect((await get(handshake(gwBase), '127.0.0.4')).status).toBe(429);
    // Another client through the same gateway is not refused with the first one.
    expect((await get(handshake(gwBase), '127.0.0.5')).status).toBe(200);
  });

  it('answers Connection: close with Connection: close on the ws node, the admin listener and the gateway (own and proxied answers)', async () => {
    const cases: [number, string][] = [
      [ws.ports.ws!, 'GET /readyz HTTP/1.1'],
      [ws.ports.admin!, 'GET /healthz HTTP/1.1'],
      [gw.ports.gateway!, 'GET /healthz HTTP/1.1'],
      [gw.ports.admin!, 'GET /metrics HTTP/1.1'],
      // The gateway's own refusal (no credential) and a proxied Engine.IO answer from the ws node.
      [gw.ports.gateway!, 'GET /api/chat/messages?tenantId=a&sessionId=s HTTP/1.1'],
      [gw.ports.gateway!, 'GET /socket.io/?EIO=4&transport=polling&sid=nobody.x HTTP/1.1'],
      [gw.ports.gateway!, 'GET /socket.io/?EIO=3&transport=polling HTTP/1.1'],
    ];
    for (const [port, line] of cases) {
      const head = await rawHead(port, line);
      expect([line, saysClose(head)], head).toEqual([line, true]);
    }
    // node-fetch 3 with Connection: close and Node's keep-alive pool: sequential requests all work.
    for (let i = 0; i < 4; i++) {
      for (const url of [`${gwBase}/healthz`, `${gwBase}/api/chat/messages?tenantId=a&sessionId=s`, `${wsBase}/readyz`]) {
        const r = await nodeFetch(url, { headers: { connection: 'close' } });
        await r.text();
        expect(r.headers.get('connection')).toBe('close');
      }
    }
  });
});
