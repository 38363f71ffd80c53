// The gateway co-located with one role, on one public listener (the gateway's server.port):
//   gateway,ws  — Socket.IO served in process (a session another node owns is forwarded to it, the
//                 upgrade piped), the HTTP API proxied to an `api` process through the gateway's checks;
//   gateway,api — the API served in process behind the gateway's guards, Socket.IO proxied to a `ws`
//                 process.
// Real processes on Redis and PostgreSQL, an unmodified socket.io-client, and a TCP balancer with no
// stickiness in front of two edge nodes.
import { mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { io, type Socket } from 'socket.io-client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runChatd, spawnChatd, type ChatdProcess } from '../helpers/chatd-process.js';
import { DATABASE_URL, dropSchema, hasPostgres, hasRedis, REDIS_URL, uniquePrefix, uniqueSchema } from '../helpers/services.js';
import { eventually } from '../helpers/eventually.js';
import { startBalancer, upgrade } from '../helpers/tcp-balancer.js';
import { connected, sendMessage } from '../helpers/socket-client.js';

const PUB = 'ck_pub_edgetenant_0123456789abcdef';
const PUB_OTHER = 'ck_pub_edgeother_0123456789abcdef';
const TENANT = 'edge';
const env = { JWT_SECRET: 'edge-test-secret-0123456789abcdef-xyz' };
const services = (await hasRedis()) && (await hasPostgres());

/** One process's config folder: shared Redis prefix and schema, its own node id and upstreams. */
async function configFor(name: string, shared: { prefix: string; schema: string }, upstreams?: { api?: string[]; ws?: string[] }) {
  const cwd = await mkdtemp(path.join(tmpdir(), `chatd-edge-${name}-`));
  const config = {
    nodeId: name,
    // The other processes on loopback are peers: their X-Forwarded-For is believed, and a gateway may
    // open an edge link to a ws node.
    server: { host: '127.0.0.1', port: 0, trustedProxies: ['127.0.0.1'] },
    roles: { api: { host: '127.0.0.1', port: 0 }, ws: { host: '127.0.0.1', port: 0 } },
    admin: { port: 0 },
    redis: { url: REDIS_URL, prefix: shared.prefix },
    database: { url: DATABASE_URL, schema: shared.schema },
    tenants: [
      { id: TENANT, apiKeys: [{ key: PUB }], allowedOrigins: ['*'] },
      { id: 'other', apiKeys: [{ key: PUB_OTHER }], allowedOrigins: ['*'] },
    ],
    ...(upstreams ? { upstreams: { api: upstreams.api ?? [], ws: upstreams.ws ?? [], healthCheckIntervalMs: 500 } } : {}),
  };
  await writeFile(path.join(cwd, 'chat-server.yaml'), JSON.stringify(config, null, 2));
  return cwd;
}

async function start(cwd: string, role: string, listener: string): Promise<ChatdProcess> {
  const p = await spawnChatd({ cwd, env, args: ['serve', '--role', role], waitFor: [listener, 'admin'], timeoutMs: 120_000 });
  await eventually(async () => (await fetch(`http://127.0.0.1:${p.ports[listener]}/readyz`)).status === 200, `${role} ready`, {
    timeoutMs: 120_000,
    retryOnError: true,
  });
  return p;
}

const mint = (base: string, key: string | undefined, tenantId = TENANT, sessionId?: string) =>
  fetch(`${base}/api/chat/anonymous-token`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...(key ? { authorization: `Bearer ${key}` } : {}) },
    body: JSON.stringify({ tenantId, ...(sessionId ? { sessionId } : {}) }),
  }).then(async (r) => ({ status: r.status, body: (await r.json()) as Record<string, unknown> }));

/** A visitor's CONNECT auth, its token minted through `base` (the edge listener). */
async function visitor(base: string, sessionId: string) {
  const r = await mint(base, PUB, TENANT, sessionId);
  expect(r.status, JSON.stringify(r.body)).toBe(200);
  return { apiKey: PUB, token: r.body.token as string, sessionId, fingerprint: `fp-${sessionId}` };
}

const send = (socket: Socket, sessionId: string, text: string) => sendMessage(socket, TENANT, sessionId, text);

/**
 * A socket.io-client through the balancer, its handshake sent to edge A and its upgrade to edge B:
 * asserts the sid's owner and where the upgrades went, a message acked and back on the stream, and a
 * message sent over HTTP through edge B delivered on the socket too.
 */
async function handshakeOnAUpgradeOnB(
  state: ReturnType<typeof edgePair>,
  auth: Awaited<ReturnType<typeof visitor>>,
  expected: { sidPrefix: string; upgradeSid?: string; text: string },
) {
  const b = state.edges[1]!;
  const balancer = state.balancer!;
  balancer.plan(0, 1);
  const from = balancer.connections.length;
  const socket = io(balancer.url, { auth, reconnectionDelay: 200 });
  state.sockets.push(socket);
  const received: string[] = [];
  socket.on('meta_message_created', (p: { message: { id: string } }) => received.push(p.message.id));
  await connected(socket);
  expect(socket.io.engine.id.startsWith(expected.sidPrefix)).toBe(true);
  await eventually(() => socket.io.engine.transport.name === 'websocket', 'the client upgraded to websocket', { retryOnError: true });
  const upgrades = balancer.connections.slice(from).filter((c) => c.requestLine.includes('transport=websocket'));
  expect(upgrades.length).toBeGreaterThan(0);
  expect(upgrades.every((c) => c.backend === 1 && c.requestLine.includes(expected.upgradeSid ?? ''))).toBe(true);

  const id = await send(socket, auth.sessionId, expected.text);
  await eventually(() => received.includes(id), 'the message back on the stream');
  const http = await fetch(`http://127.0.0.1:${b.ports.public}/webchat/message`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: `Bearer ${auth.token}` },
    body: JSON.stringify({ text: 'over HTTP', tenantId: TENANT, sessionId: auth.sessionId, fingerprint: auth.fingerprint }),
  });
  expect(http.status).toBe(200);
  const { messageId } = (await http.json()) as { messageId: string };
  await eventually(() => received.includes(messageId), 'the HTTP message on the socket');
}

/** What every edge node must refuse itself: a wrong key, another tenant's key, credentials in a query. */
async function expectGatewayChecks(base: string) {
  expect(await mint(base, 'ck_pub_wrongwrongwrongwrong')).toMatchObject({ status: 401, body: { code: 'invalid_api_key' } });
  expect(await mint(base, undefined)).toMatchObject({ status: 401, body: { code: 'invalid_api_key' } });
  expect(await mint(base, PUB_OTHER)).toMatchObject({ status: 403, body: { code: 'tenant_mismatch' } });
  const q = await fetch(`${base}/api/chat/messages?tenantId=${TENANT}&access_token=x`);
  expect([q.status, ((await q.json()) as { code: string }).code]).toEqual([400, 'credentials_in_query']);
  const jwt = 'eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJl';
  const poll = await fetch(`${base}/socket.io/?EIO=4&transport=polling&token=${jwt}`);
  expect([poll.status, ((await poll.json()) as { code: string }).code]).toEqual([400, 'credentials_in_query']);
  const ws = await upgrade(`${base.replace('http', 'ws')}/socket.io/?EIO=4&transport=websocket&access_token=x`);
  expect(ws).toMatchObject({ status: 400, body: { code: 'credentials_in_query' } });
}

/**
 * Two edge nodes (`edgeRole`, one public listener each) in front of one backend process (`backend`),
 * all on one Redis prefix and schema, stopped and dropped after the describe; and the checks every
 * edge node makes itself. Sockets and the balancer a test opens are closed with it.
 */
function edgePair(tag: string, backend: { name: string; role: 'api' | 'ws' }, edgeRole: string, edgeNames: [string, string]) {
  const shared = { prefix: uniquePrefix(tag), schema: uniqueSchema(tag.replace('-', '_')) };
  const procs: ChatdProcess[] = [];
  const state = {
    edges: [] as ChatdProcess[],
    sockets: [] as Socket[],
    balancer: undefined as Awaited<ReturnType<typeof startBalancer>> | undefined,
  };

  beforeAll(async () => {
    const backendCwd = await configFor(backend.name, shared);
    const migrated = await runChatd(['migrate', 'up'], { cwd: backendCwd, env });
    expect(migrated.code, migrated.stderr).toBe(0);
    const b = await start(backendCwd, backend.role, backend.role);
    procs.push(b);
    for (const name of edgeNames) {
      const edge = await start(
        await configFor(name, shared, { [backend.role]: [`http://127.0.0.1:${b.ports[backend.role]}`] }),
        edgeRole,
        'public',
      );
      procs.push(edge);
      state.edges.push(edge);
    }
  }, 400_000);
  afterAll(async () => {
    for (const s of state.sockets) s.close();
    state.balancer?.close();
    await Promise.all(procs.map((p) => p.stop('SIGTERM')));
    await dropSchema(shared.schema);
  });

  it('one public listener per node; the gateway checks refuse bad keys and query credentials there', async () => {
    for (const edge of state.edges) {
      expect(Object.keys(edge.ports).sort()).toEqual(['admin', 'public']);
      await expectGatewayChecks(`http://127.0.0.1:${edge.ports.public}`);
    }
  }, 60_000);
  return state;
}

describe.skipIf(!services)('gateway,ws on one listener (HTTP API proxied to an api process) behind an L4 balancer', () => {
  const state = edgePair('edge-ws', { name: 'api1', role: 'api' }, 'gateway,ws', ['edgeA', 'edgeB']);

  it('socket.io-client through the balancer: handshake on A, upgrade on B (piped to A), acks and delivery', async () => {
    const [a, b] = state.edges;
    const balancer = (state.balancer = await startBalancer([a!.ports.public!, b!.ports.public!]));
    // B must know A's address (the node registry) before it can pipe: wait for a probe upgrade.
    const probe = await (await fetch(`http://127.0.0.1:${a!.ports.public}/socket.io/?EIO=4&transport=polling`)).text();
    const probeSid = (JSON.parse(probe.slice(1)) as { sid: string }).sid;
    await eventually(
      async () =>
        (await upgrade(`ws://127.0.0.1:${b!.ports.public}/socket.io/?EIO=4&transport=websocket&sid=${encodeURIComponent(probeSid)}`)) ===
        'open',
      'edge B pipes an upgrade to edge A',
      { timeoutMs: 60_000, retryOnError: true },
    );

    const sessionId = 'edge-ws-1';
    const auth = await visitor(balancer.url, sessionId); // the HTTP API through the edge (proxied to api1)
    // The HTTP message goes through the other edge, proxied to the api process.
    await handshakeOnAUpgradeOnB(state, auth, { sidPrefix: 'edgeA.', upgradeSid: 'sid=edgeA.', text: 'over the co-located edge' });
  }, 180_000);
});

describe.skipIf(!services)('gateway,api on one listener (Socket.IO proxied to a ws process)', () => {
  const state = edgePair('edge-api', { name: 'ws1', role: 'ws' }, 'gateway,api', ['gwapiA', 'gwapiB']);

  it('socket.io-client through the balancer: handshake on A, upgrade on B, both proxied to the ws node; acks and delivery', async () => {
    const [a, b] = state.edges;
    state.balancer = await startBalancer([a!.ports.public!, b!.ports.public!]);
    const sessionId = 'edge-api-1';
    const auth = await visitor(`http://127.0.0.1:${a!.ports.public}`, sessionId); // served in process
    // The HTTP message is served by edge B's own api role and delivered by the ws node.
    await handshakeOnAUpgradeOnB(state, auth, { sidPrefix: 'ws1.', text: 'through the gateway,api edge' });
  }, 180_000);
});
