// Two nodes behind a plain L4 load balancer (no gateway, no stickiness), as bare ws nodes and as
// `--role all` (the recommended layout): a long-polling request or a websocket upgrade can land on
// the node that does not own its Engine.IO session. The sid names its owner, so the node forwards
// the request there (an upgrade is piped through): the client never notices and ends on websocket.
// Real processes on Redis and PostgreSQL; the "load balancer" is the test sending each request to
// the other node, or a TCP balancer of its own that sends each connection to the backend the test
// chose (no stickiness at all).
import { mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { io, type Socket } from 'socket.io-client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runChatd, spawnChatd, type ChatdProcess } from '../helpers/chatd-process.js';
import { DATABASE_URL, dropSchema, hasPostgres, hasRedis, REDIS_URL, uniquePrefix, uniqueSchema } from '../helpers/services.js';
import { eventually } from '../helpers/eventually.js';
import { startBalancer, upgrade } from '../helpers/tcp-balancer.js';
import { sendMessage } from '../helpers/socket-client.js';

const PUB = 'ck_pub_l4tenant_0123456789abcdef';
const TENANT = 'l4';
const env = { JWT_SECRET: 'l4-test-secret-0123456789abcdef-xyz' };
const services = (await hasRedis()) && (await hasPostgres());

async function forwardedWebsockets(admin: number): Promise<number> {
  const text = await (await fetch(`http://127.0.0.1:${admin}/metrics`)).text();
  const line = text.split('\n').find((l) => l.startsWith('chatd_forwarded_websockets '));
  return Number(line?.split(' ')[1]);
}

/** The suite on two nodes of `role` (bare ws nodes, or `all` as the recommended layout runs them). */
function layout(role: 'ws' | 'all', listener: 'ws' | 'public') {
  describe.skipIf(!services)(`${role} nodes behind an L4 load balancer forward polling requests and upgrades to the sid owner`, () => {
    const prefix = uniquePrefix('l4');
    const schema = uniqueSchema('l4');
    const nodes: ChatdProcess[] = [];
    let cwdA = '';

    const configFor = async (name: string) => {
      const cwd = await mkdtemp(path.join(tmpdir(), `chatd-l4-${name}-`));
      const config = {
        nodeId: name,
        server: { host: '127.0.0.1', port: 0 },
        roles: { ws: { host: '127.0.0.1', port: 0 } },
        admin: { port: 0 },
        redis: { url: REDIS_URL, prefix },
        database: { url: DATABASE_URL, schema },
        tenants: [{ id: TENANT, apiKeys: [{ key: PUB }], allowedOrigins: ['*'] }],
      };
      await writeFile(path.join(cwd, 'chat-server.yaml'), JSON.stringify(config, null, 2));
      return cwd;
    };

    beforeAll(async () => {
      cwdA = await configFor('nodeA');
      const migrated = await runChatd(['migrate', 'up'], { cwd: cwdA, env });
      expect(migrated.code, migrated.stderr).toBe(0);
      for (const name of ['nodeA', 'nodeB']) {
        const cwd = name === 'nodeA' ? cwdA : await configFor(name);
        nodes.push(await spawnChatd({ cwd, env, args: ['serve', '--role', role], waitFor: [listener, 'admin'], timeoutMs: 120_000 }));
      }
      for (const n of nodes) {
        await eventually(async () => (await fetch(`http://127.0.0.1:${n.ports[listener]}/readyz`)).status === 200, `${role} node ready`, {
          timeoutMs: 120_000,
          retryOnError: true,
        });
      }
    }, 300_000);

    const sockets: Socket[] = [];
    let balancer: Awaited<ReturnType<typeof startBalancer>> | undefined;
    afterAll(async () => {
      for (const s of sockets) s.close();
      balancer?.close();
      await Promise.all(nodes.map((n) => n.stop('SIGTERM')));
      await dropSchema(schema);
    });

    const visitor = async (sessionId: string) => {
      const issued = await runChatd(['token', 'issue', '--tenant', TENANT, '--session', sessionId, '--json'], { cwd: cwdA, env });
      expect(issued.code, issued.stderr).toBe(0);
      const { token } = JSON.parse(issued.stdout) as { token: string };
      return { apiKey: PUB, token, sessionId, fingerprint: `fp-${sessionId}` };
    };
    const send = (socket: Socket, sessionId: string, text: string) => sendMessage(socket, TENANT, sessionId, text);
    /** The upgrade requests the balancer saw since connection `from`, with the backend each went to. */
    const upgradesSince = (from: number) => balancer!.connections.slice(from).filter((c) => c.requestLine.includes('transport=websocket'));

    it('a handshake on node A, then CONNECT and the poll on node B: B relays to A and the session works', async () => {
      const [a, b] = nodes.map((n) => `http://127.0.0.1:${n.ports[listener]}/socket.io/?EIO=4&transport=polling`);
      const open = await (await fetch(a!)).text();
      expect(open.startsWith('0')).toBe(true);
      const sid = (JSON.parse(open.slice(1)) as { sid: string }).sid;
      expect(sid.startsWith('nodeA.')).toBe(true);

      const issued = await runChatd(['token', 'issue', '--tenant', TENANT, '--session', 'l4-session-1', '--json'], { cwd: cwdA, env });
      expect(issued.code, issued.stderr).toBe(0);
      const { token } = JSON.parse(issued.stdout) as { token: string };
      const auth = { apiKey: PUB, token, sessionId: 'l4-session-1', fingerprint: 'fp-l4' };

      // Node B must know node A's address (advertised in the node registry) before it can forward.
      const post = await eventually(
        async () => {
          const r = await fetch(`${b}&sid=${encodeURIComponent(sid)}`, {
            method: 'POST',
            headers: { 'content-type': 'text/plain;charset=UTF-8' },
            body: `40${JSON.stringify(auth)}`,
          });
          return r.status === 200 ? r : undefined;
        },
        'node B forwards the CONNECT to node A',
        { timeoutMs: 60_000, retryOnError: true },
      );
      expect(await post!.text()).toBe('ok');

      // The poll on node B is answered by node A: the CONNECT ack names the session.
      const poll = await fetch(`${b}&sid=${encodeURIComponent(sid)}`);
      expect(poll.status).toBe(200);
      const packets = (await poll.text()).split('\x1e');
      const ack = packets.find((p) => p.startsWith('40'));
      expect(ack, `packets: ${JSON.stringify(packets)}`).toBeDefined();
      expect(JSON.parse(ack!.slice(2))).toHaveProperty('sid');

      // An unknown node's sid is Engine.IO's "Session ID unknown" (the client starts over).
      const unknown = await fetch(`${b}&sid=nodeZ.AAAAAAAAAAAAAAAAAAAAAA`);
      expect(unknown.status).toBe(400);
      expect(((await unknown.json()) as { code: number }).code).toBe(1);
    }, 180_000);

    it('an unmodified socket.io-client whose upgrade lands on the other node ends on websocket, sends with acks and recovers after a reconnect', async () => {
      const [a, b] = nodes;
      balancer = await startBalancer([a!.ports[listener]!, b!.ports[listener]!]);
      const sessionId = 'l4-upgrade-1';
      const auth = await visitor(sessionId);
      const received: string[] = [];

      // Node B must know node A's address before it can forward (both advertise within moments).
      const probe = await (await fetch(`http://127.0.0.1:${a!.ports[listener]}/socket.io/?EIO=4&transport=polling`)).text();
      const probeSid = (JSON.parse(probe.slice(1)) as { sid: string }).sid;
      await eventually(
        async () =>
          (await upgrade(
            `ws://127.0.0.1:${b!.ports[listener]}/socket.io/?EIO=4&transport=websocket&sid=${encodeURIComponent(probeSid)}`,
          )) === 'open',
        'node B pipes an upgrade to node A',
        { timeoutMs: 60_000, retryOnError: true },
      );
      await eventually(async () => (await forwardedWebsockets(b!.ports.admin!)) === 0, 'the probe pipe closed', { retryOnError: true });

      // The handshake goes to A; every later connection (the CONNECT, the polls, the upgrade) to B.
      balancer.plan(0, 1);
      const from = balancer.connections.length;
      const socket = io(balancer.url, { auth, reconnectionDelay: 200, reconnectionDelayMax: 1000 });
      sockets.push(socket);
      socket.on('meta_message_created', (p: { message: { id: string } }) => received.push(p.message.id));
      await new Promise<void>((resolve, reject) => {
        socket.once('connect', () => resolve());
        socket.once('connect_error', reject);
      });
      expect(socket.io.engine.id.startsWith('nodeA.')).toBe(true);
      await eventually(() => socket.io.engine.transport.name === 'websocket', 'the client upgraded to websocket', { retryOnError: true });
      // The upgrade request reached node B, which does not own the session: it was piped to A.
      const first = upgradesSince(from);
      expect(first.length).toBeGreaterThan(0);
      expect(first.every((c) => c.backend === 1 && c.requestLine.includes('sid=nodeA.'))).toBe(true);
      expect(await forwardedWebsockets(b!.ports.admin!)).toBe(1);

      const m1 = await send(socket, sessionId, 'over the piped websocket');
      await eventually(() => received.includes(m1), 'the message back on the stream');

      // The balancer drops every connection and refuses new ones for a while; meanwhile another tab
      // of the same session, connected to node B directly, sends a message the client misses.
      balancer.refuse();
      const gone = new Promise<string>((r) => socket.once('disconnect', r));
      balancer.cut();
      expect(await gone).toBe('transport close');
      const other = io(`http://127.0.0.1:${b!.ports[listener]}`, { auth, transports: ['websocket'] });
      sockets.push(other);
      await new Promise<void>((resolve, reject) => {
        other.once('connect', () => resolve());
        other.once('connect_error', reject);
      });
      const missed = await send(other, sessionId, 'sent while the first tab was away');
      other.close();

      // Back: this time the handshake goes to B and the upgrade to A.
      const again = balancer.connections.length;
      const reconnected = new Promise<void>((r) => socket.once('connect', () => r()));
      balancer.plan(1, 0);
      await reconnected;
      expect(socket.recovered).toBe(true);
      expect(socket.io.engine.id.startsWith('nodeB.')).toBe(true);
      await eventually(() => received.includes(missed), 'the missed message replayed');
      await eventually(() => socket.io.engine.transport.name === 'websocket', 'the client upgraded again', { retryOnError: true });
      const second = upgradesSince(again);
      expect(second.length).toBeGreaterThan(0);
      expect(second.every((c) => c.backend === 0 && c.requestLine.includes('sid=nodeB.'))).toBe(true);
      expect(await forwardedWebsockets(a!.ports.admin!)).toBe(1);
      const m2 = await send(socket, sessionId, 'after the reconnect');
      await eventually(() => received.includes(m2), 'the message after the reconnect');
      expect(received.filter((id) => id === m1 || id === missed || id === m2)).toEqual([m1, missed, m2]);
    }, 180_000);

    it("a forwarded upgrade is refused with credentials in the query; a sid no live node owns gets Engine.IO's unknown sid", async () => {
      const [a, b] = nodes;
      const open = await (await fetch(`http://127.0.0.1:${a!.ports[listener]}/socket.io/?EIO=4&transport=polling`)).text();
      const sid = (JSON.parse(open.slice(1)) as { sid: string }).sid;
      const at = (node: ChatdProcess, q: string) => `ws://127.0.0.1:${node.ports[listener]}/socket.io/?EIO=4&transport=websocket&${q}`;

      // A credential beside the sid: refused by node B before anything reaches node A.
      const refused = await upgrade(at(b!, `sid=${encodeURIComponent(sid)}&access_token=whatever`));
      expect(refused).toMatchObject({ status: 400, body: { code: 'credentials_in_query' } });
      const jwtShaped = await upgrade(at(b!, `sid=${encodeURIComponent(sid)}&t=eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJl`));
      expect(jwtShaped).toMatchObject({ status: 400, body: { code: 'credentials_in_query' } });
      expect(await forwardedWebsockets(b!.ports.admin!)).toBe(0);

      // A node nobody knows, and a session node A does not have (A's own refusal, relayed).
      expect(await upgrade(at(b!, 'sid=nodeZ.AAAAAAAAAAAAAAAAAAAAAA'))).toMatchObject({ status: 400, body: { code: 1 } });
      expect(await upgrade(at(b!, 'sid=nodeA.AAAAAAAAAAAAAAAAAAAAAA'))).toMatchObject({ status: 400, body: { code: 1 } });

      // The real session was not touched by the refusals: its upgrade through B still opens.
      expect(await upgrade(at(b!, `sid=${encodeURIComponent(sid)}`))).toBe('open');
    }, 120_000);
  });
}

layout('ws', 'ws');
layout('all', 'public');
