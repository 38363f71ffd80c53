// Two ws nodes behind a plain L4 load balancer (no gateway, no stickiness): a long-polling request
// can land on the node that does not own its Engine.IO session. The sid names its owner, so the
// node forwards the request there and relays the answer: the client never notices. Real processes
// on Redis and PostgreSQL; the "load balancer" is the test sending each request to the other node.
import { mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runChatd, spawnChatd, type ChatdProcess } from '../helpers/chatd-process.js';
import { DATABASE_URL, hasPostgres, hasRedis, REDIS_URL, uniquePrefix, uniqueSchema } from '../helpers/services.js';
import { eventually } from '../helpers/eventually.js';

const PUB = 'ck_pub_l4tenant_0123456789abcdef';
const TENANT = 'l4';
const env = { JWT_SECRET: 'l4-test-secret-0123456789abcdef-xyz' };
const services = (await hasRedis()) && (await hasPostgres());

describe.skipIf(!services)('ws nodes behind an L4 load balancer forward polling requests to the sid owner', () => {
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
      nodes.push(await spawnChatd({ cwd, env, args: ['serve', '--role', 'ws'], waitFor: ['ws', 'admin'], timeoutMs: 120_000 }));
    }
    for (const n of nodes) {
      await eventually(async () => (await fetch(`http://127.0.0.1:${n.ports.ws}/readyz`)).status === 200, 'ws node ready', {
        timeoutMs: 120_000,
        retryOnError: true,
      });
    }
  }, 300_000);

  afterAll(async () => {
    await Promise.all(nodes.map((n) => n.stop('SIGTERM')));
  });

  it('a handshake on node A, then CONNECT and the poll on node B: B relays to A and the session works', async () => {
    const [a, b] = nodes.map((n) => `http://127.0.0.1:${n.ports.ws}/socket.io/?EIO=4&transport=polling`);
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
});
