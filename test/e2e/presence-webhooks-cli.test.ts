// `chatd presence ls` and `chatd webhooks tail` end to end: with the embedded defaults through the
// running server's admin listener (messages sent over the real HTTP API), and on Redis directly
// (entries written through the real Redis store under the test's own prefix).
import { mkdtemp, readFile, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { deletePrefix } from '../helpers/redis-keys.js';
import { pino } from 'pino';
import { io } from 'socket.io-client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runChatd, spawnChatd, startChatdCommand, type ChatdProcess } from '../helpers/chatd-process.js';
import { REDIS_URL, freePort, hasRedis, uniquePrefix } from '../helpers/services.js';
import { emptyMeta, type ChatMessage } from '../../src/chat/message.js';
import { RedisStore } from '../../src/store/redis/redis-store.js';
import { eventually } from '../helpers/eventually.js';

const fresh = () => mkdtemp(path.join(tmpdir(), 'chatd-cli-pw-'));
// Every CLI run is a process start (several seconds on a loaded 2-core machine): generous limits.
const SLOW = 480_000;

/** Starts `chatd webhooks tail --follow …` and collects its stdout lines. */
function follow(args: string[], opts: { cwd: string; env?: NodeJS.ProcessEnv }) {
  return startChatdCommand(['webhooks', 'tail', '--follow', ...args], opts);
}

describe('presence ls and webhooks tail on the embedded defaults (through the admin listener)', () => {
  let cwd: string;
  let chatd: ChatdProcess;
  let base: string;
  let key: string;

  beforeAll(async () => {
    cwd = await fresh();
    // The CLI finds the admin listener from the same config, so it gets a fixed (free) port.
    await writeFile(path.join(cwd, 'chat-server.yaml'), `server:\n  port: 0\nadmin:\n  port: ${await freePort()}\n`);
    // A first start creates the embedded database; on a loaded machine that can take minutes.
    chatd = await spawnChatd({ cwd, timeoutMs: 240_000 });
    base = `http://127.0.0.1:${chatd.ports.public}`;
    key = JSON.parse(await readFile(path.join(cwd, '.chatd', 'secrets.json'), 'utf8')).gatewayApiKey;
  }, 300_000);
  afterAll(async () => {
    await chatd?.stop('SIGKILL');
  });

  /** The admin endpoint the CLI uses, called directly (polling the CLI would start a process each time). */
  async function adminUsers(): Promise<unknown[]> {
    const token = JSON.parse(await readFile(path.join(cwd, '.chatd', 'secrets.json'), 'utf8')).adminToken as string;
    const r = await fetch(`http://127.0.0.1:${chatd.ports.admin}/admin/presence?tenantId=demo`, {
      headers: { authorization: `Bearer ${token}` },
    });
    return ((await r.json()) as { users: unknown[] }).users;
  }

  async function adminAgents(): Promise<unknown[]> {
    const token = JSON.parse(await readFile(path.join(cwd, '.chatd', 'secrets.json'), 'utf8')).adminToken as string;
    const r = await fetch(`http://127.0.0.1:${chatd.ports.admin}/admin/presence?tenantId=demo&agents=1`, {
      headers: { authorization: `Bearer ${token}` },
    });
    return ((await r.json()) as { agents: unknown[] }).agents;
  }

  async function sendMessage(sessionId: string, text: string): Promise<string> {
    const post = async (p: string, auth: string, body: unknown) => {
      const r = await fetch(`${base}${p}`, {
        method: 'POST',
        headers: { authorization: `Bearer ${auth}`, 'content-type': 'application/json' },
        body: JSON.stringify(body),
      });
      const json = (await r.json()) as Record<string, unknown>;
      expect(r.status, JSON.stringify(json)).toBe(200);
      return json;
    };
    const { token } = await post('/api/chat/anonymous-token', key, { tenantId: 'demo', sessionId });
    const sent = await post('/webchat/message', token as string, { text, tenantId: 'demo', sessionId, fingerprint: `fp-${sessionId}` });
    return sent.messageId as string;
  }

  it(
    "presence ls lists a connected visitor from the server's memory store, and no one once it left",
    async () => {
      const r = await fetch(`${base}/api/chat/anonymous-token`, {
        method: 'POST',
        headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
        body: JSON.stringify({ tenantId: 'demo', sessionId: 's-online' }),
      });
      const { token } = (await r.json()) as { token: string };
      const socket = io(base, {
        transports: ['websocket'],
        reconnection: false,
        auth: {
          apiKey: key,
          token,
          sessionId: 's-online',
          fingerprint: 'fp-online',
          domain: 'shop.example',
          origin: 'https://shop.example',
          url: 'https://shop.example/cart',
        },
      });
      try {
        await new Promise<void>((resolve, reject) => {
          socket.once('connect', () => resolve());
          socket.once('connect_error', reject);
        });
        // Presence is written just after CONNECT: wait for it on the admin endpoint (cheap), then ask the CLI.
        await eventually(async () => (await adminUsers()).length > 0, 'the visitor in presence', { timeoutMs: 300_000 });
        const json = await runChatd(['presence', 'ls', 'demo', '--json'], { cwd });
        expect(json.code, json.stderr).toBe(0);
        const listed = JSON.parse(json.stdout) as { users: unknown[] };
        expect(listed.users).toEqual([
          expect.objectContaining({ userId: 's-online', sessionId: 's-online', domain: 'shop.example', url: 'https://shop.example/cart' }),
        ]);
        const table = await runChatd(['presence', 'ls', 'demo'], { cwd });
        expect(table.stdout).toMatch(
          /^USERID\s+SESSIONID\s+CONNECTEDAT\s+DOMAIN\s+ORIGIN\s+URL\ns-online\s+s-online\s+\S+\s+shop\.example\s+https:\/\/shop\.example\s+https:\/\/shop\.example\/cart\n$/,
        );
      } finally {
        socket.disconnect();
      }
      await eventually(async () => (await adminUsers()).length === 0, 'the visitor to leave presence', { timeoutMs: 300_000 });
      expect((await runChatd(['presence', 'ls', 'demo'], { cwd })).stdout).toBe('no one is online in tenant demo\n');
    },
    SLOW,
  );

  it(
    'presence ls --agents lists a connected agent (its own set: not among the users), and no agent once it left',
    async () => {
      const issued = await runChatd(['token', 'issue', '--tenant', 'demo', '--admin', '--user', 'agent-ann', '--json'], { cwd });
      expect(issued.code, issued.stderr).toBe(0);
      const { token } = JSON.parse(issued.stdout) as { token: string };
      const socket = io(base, { transports: ['websocket'], reconnection: false, auth: { token } });
      try {
        await new Promise<void>((resolve, reject) => {
          socket.once('connect', () => resolve());
          socket.once('connect_error', reject);
        });
        await eventually(async () => (await adminAgents()).length > 0, 'the agent in agent presence', { timeoutMs: 300_000 });
        const json = await runChatd(['presence', 'ls', 'demo', '--agents', '--json'], { cwd });
        expect(json.code, json.stderr).toBe(0);
        expect(JSON.parse(json.stdout)).toEqual({ tenantId: 'demo', agents: [{ agentId: 'agent-ann', connectedAt: expect.any(String) }] });
        const table = await runChatd(['presence', 'ls', 'demo', '--agents'], { cwd });
        expect(table.stdout).toMatch(/^AGENTID\s+CONNECTEDAT\nagent-ann\s+\S+\n$/);
        expect(await adminUsers()).toEqual([]);
      } finally {
        socket.disconnect();
      }
      await eventually(async () => (await adminAgents()).length === 0, 'the agent to leave agent presence', { timeoutMs: 300_000 });
      expect((await runChatd(['presence', 'ls', 'demo', '--agents'], { cwd })).stdout).toBe('no agent is online in tenant demo\n');
    },
    SLOW,
  );

  it(
    'presence ls answers for a tenant with no one online, as a line and as JSON',
    async () => {
      const table = await runChatd(['presence', 'ls', 'demo'], { cwd });
      expect(table.code, table.stderr).toBe(0);
      expect(table.stdout).toBe('no one is online in tenant demo\n');
      const json = await runChatd(['presence', 'ls', 'demo', '--json'], { cwd });
      expect(json.code, json.stderr).toBe(0);
      expect(JSON.parse(json.stdout)).toEqual({ tenantId: 'demo', users: [] });
      const bad = await runChatd(['presence', 'ls', 'not a tenant!'], { cwd });
      expect(bad.code).toBe(1);
      expect(bad.stderr).toBe('chatd: tenant "not a tenant!" must match [A-Za-z0-9_-]{1,128}\n');
    },
    SLOW,
  );

  it(
    'webhooks tail shows the newest jobs (table and JSON) and --follow prints new ones until interrupted',
    async () => {
      const ids: string[] = [];
      for (let i = 1; i <= 3; i++) ids.push(await sendMessage(`s-tail-${i}`, `hello number ${i}`));
      // Each message makes two jobs: message.created and its conversation's conversation.updated.
      await eventually(
        async () => {
          const r = await runChatd(['webhooks', 'tail', '-n', '6', '--json'], { cwd });
          return (JSON.parse(r.stdout) as { sessionId: string }[]).filter((j) => j.sessionId.startsWith('s-tail-')).length === 6;
        },
        'the six jobs',
        { timeoutMs: 300_000 },
      );
      const json = await runChatd(['webhooks', 'tail', '-n', '6', '--json'], { cwd });
      expect(json.code, json.stderr).toBe(0);
      const jobs = JSON.parse(json.stdout) as {
        messageId: string;
        type: string;
        tenantId: string;
        sessionId: string;
        payload: ChatMessage;
      }[];
      const created = jobs.filter((j) => j.type === 'message.created');
      expect(created.map((j) => j.messageId)).toEqual(ids);
      expect(created[2]).toMatchObject({
        type: 'message.created',
        tenantId: 'demo',
        sessionId: 's-tail-3',
        payload: { text: 'hello number 3', seq: 1 },
      });
      expect(
        jobs
          .filter((j) => j.type === 'conversation.updated')
          .map((j) => j.sessionId)
          .sort(),
      ).toEqual(['s-tail-1', 's-tail-2', 's-tail-3']);
      const table = await runChatd(['webhooks', 'tail', '-n', '6'], { cwd });
      expect(table.code, table.stderr).toBe(0);
      const lines = table.stdout.trimEnd().split('\n');
      expect(lines[0]).toMatch(/^ID\s+CREATEDAT\s+TYPE\s+TENANTID\s+SESSIONID\s+MESSAGEID\s+TEXT$/);
      const messageRows = lines.slice(1).filter((l) => l.split(/\s+/)[2] === 'message.created');
      expect(messageRows.map((l) => l.split(/\s+/)[5])).toEqual(ids);
      expect(messageRows[2]).toMatch(/hello number 3$/);
      expect(lines.slice(1).filter((l) => l.split(/\s+/)[2] === 'conversation.updated')).toHaveLength(3);
      expect(lines.find((l) => l.includes('conversation.updated') && l.includes('s-tail-1'))).toMatch(/open v1$/);

      const f = follow(['-n', '1', '--json'], { cwd });
      await eventually(() => f.out().includes('s-tail-3'), 'the newest job first', { timeoutMs: 300_000 });
      const live = await sendMessage('s-tail-live', 'live one');
      await eventually(
        () => f.out().includes(`"messageId": "${live}"`) || f.out().includes(`"messageId":"${live}"`),
        `the live job ${live}`,
        {
          timeoutMs: 300_000,
        },
      );
      const printed = f
        .out()
        .trimEnd()
        .split('\n')
        .map((l) => JSON.parse(l) as { messageId: string; sessionId: string; type: string });
      // The newest job before (one of s-tail-3's two), then the live message's (and its conversation's).
      expect(printed[0]!.sessionId).toBe('s-tail-3');
      expect(printed.slice(1).every((p) => p.sessionId === 's-tail-live')).toBe(true);
      expect(printed.filter((p) => p.type === 'message.created').map((p) => p.messageId)).toContain(live);
      f.child.kill('SIGINT');
      expect(await f.exited).toBe(0);
      expect(f.err()).toBe('');
    },
    SLOW,
  );

  it(
    'says clearly when no server is running for the embedded store',
    async () => {
      const other = await fresh();
      await writeFile(path.join(other, 'chat-server.yaml'), `admin:\n  port: ${await freePort()}\n`);
      const r = await runChatd(['presence', 'ls', 'demo'], { cwd: other });
      expect(r.code).toBe(1);
      expect(r.stderr).toMatch(/^chatd: no admin token: none configured and .*secrets\.json has none/);
      await writeFile(path.join(other, 'chat-server.yaml'), `admin:\n  port: ${await freePort()}\n  token: an-admin-token-0123456789\n`);
      const down = await runChatd(['webhooks', 'tail'], { cwd: other });
      expect(down.code).toBe(1);
      expect(down.stderr).toMatch(/^chatd: cannot reach the running chatd's admin listener at http:\/\/127\.0\.0\.1:\d+ \(ECONNREFUSED\)/);
    },
    SLOW,
  );
});

describe.skipIf(!(await hasRedis()))('presence ls and webhooks tail on Redis', () => {
  const prefix = uniquePrefix('clipw');
  let cwd: string;
  let store: RedisStore;
  const env = { REDIS_URL };
  beforeAll(async () => {
    cwd = await fresh();
    await writeFile(path.join(cwd, 'chat-server.yaml'), `redis:\n  prefix: "${prefix}"\nadmin:\n  enabled: false\n`);
    store = new RedisStore({ url: REDIS_URL, prefix }, pino({ level: 'silent' }));
    await store.connect();
  });
  afterAll(async () => {
    await store?.close();
    await deletePrefix(REDIS_URL, prefix);
  });

  const message = (i: number): ChatMessage => ({
    id: `00000000-0000-4000-8000-${String(i).padStart(12, '0')}`,
    tenantId: 'acme',
    sessionId: `s-${i}`,
    seq: 1,
    sender: { type: 'visitor', id: `s-${i}`, verified: false },
    text: `redis message ${i}`,
    createdAt: new Date().toISOString(),
    meta: emptyMeta(),
  });

  it(
    'presence ls reads online_users from Redis (table and JSON)',
    async () => {
      await store.presence.add(
        'node-x',
        {
          connId: 'c1',
          tenantId: 'acme',
          userId: 'alice@example.com',
          sessionId: 's-alice',
          role: 'user',
          connectedAt: '2026-01-01T00:00:00.000Z',
          domain: 'shop.example',
          origin: 'https://shop.example',
          url: 'https://shop.example/cart',
        },
        60_000,
      );
      const json = await runChatd(['presence', 'ls', 'acme', '--json'], { cwd, env });
      expect(json.code, json.stderr).toBe(0);
      expect(JSON.parse(json.stdout)).toEqual({
        tenantId: 'acme',
        users: [
          {
            userId: 'alice@example.com',
            sessionId: 's-alice',
            connectedAt: '2026-01-01T00:00:00.000Z',
            domain: 'shop.example',
            origin: 'https://shop.example',
            url: 'https://shop.example/cart',
          },
        ],
      });
      const table = await runChatd(['presence', 'ls', 'acme'], { cwd, env });
      expect(table.stdout.split('\n')[0]).toMatch(/^USERID\s+SESSIONID\s+CONNECTEDAT\s+DOMAIN\s+ORIGIN\s+URL$/);
      expect(table.stdout).toMatch(
        /alice@example\.com\s+s-alice\s+2026-01-01T00:00:00\.000Z\s+shop\.example\s+https:\/\/shop\.example\s+https:\/\/shop\.example\/cart/,
      );
    },
    SLOW,
  );

  it(
    'webhooks tail reads meta:webhook_jobs from Redis and follows it',
    async () => {
      for (let i = 1; i <= 3; i++) await store.events.publishMessage(message(i));
      const json = await runChatd(['webhooks', 'tail', '-n', '2', '--json'], { cwd, env });
      expect(json.code, json.stderr).toBe(0);
      expect((JSON.parse(json.stdout) as { messageId: string }[]).map((j) => j.messageId)).toEqual([message(2).id, message(3).id]);
      const f = follow(['-n', '0', '--json'], { cwd, env });
      // Nothing shown first; follow starts at the current end. Publish until the follower has started.
      let i = 4;
      let lastPublish = 0;
      await eventually(
        () => {
          if (Date.now() - lastPublish > 1000) {
            lastPublish = Date.now();
            void store.events.publishMessage(message(++i)).catch(() => undefined);
          }
          return f.out().length > 0;
        },
        'the follower to print a new job',
        { timeoutMs: 300_000 },
      );
      f.child.kill('SIGINT');
      expect(await f.exited).toBe(0);
      const printed = f
        .out()
        .trimEnd()
        .split('\n')
        .map((l) => (JSON.parse(l) as { messageId: string }).messageId);
      expect(printed.length).toBeGreaterThan(0);
      // Only entries published after it started, in order, none of the first three.
      expect(printed.every((id) => ![1, 2, 3].some((k) => message(k).id === id))).toBe(true);
      expect([...printed].sort()).toEqual(printed);
    },
    SLOW,
  );
});
