// Operations end to end on the embedded defaults, one real chatd process:
// - SIGHUP: a key added by the reload works, a removed one is refused, sockets stay connected;
// - a bad reload (SIGHUP and `chatd config reload`) changes nothing and names the key path;
// - `chatd token revoke`: the agent's socket is closed, its token refused on HTTP and at CONNECT;
// - `chatd erase` through the admin listener removes one session's history and not another's;
// - a reload applies business hours and the away message: GET /api/chat/availability answers them
//   and an open widget is told with `availability_changed`.
import { mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { io, type Socket } from 'socket.io-client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runChatd, spawnChatd, type ChatdProcess } from '../helpers/chatd-process.js';
import { DATABASE_URL, REDIS_URL, freePort, hasPostgres, hasRedis, uniquePrefix, uniqueSchema } from '../helpers/services.js';
import { pino } from 'pino';
import { loadConfig } from '../../src/config/load.js';
import { openDatabase } from '../../src/db/index.js';
import { createStore } from '../../src/store/index.js';
import { emptyMeta } from '../../src/chat/message.js';
import { eventually } from '../helpers/eventually.js';

const SLOW = 300_000;
const PUB_A = 'ck_pub_ops_a_0123456789abcdef';
const PUB_B = 'ck_pub_ops_b_0123456789abcdef';
const SEC = 'ck_sec_ops_0123456789abcdefghij';

const yaml = (adminPort: number, keys: string[], extra = '') =>
  `server:\n  port: 0\nadmin:\n  port: ${adminPort}\npresence:\n  offlineGraceMs: 300\nauth:\n  jwtSecret: ops-e2e-secret-0123456789abcdef\ntenants:\n  - id: acme\n    allowedOrigins: ['*']\n    apiKeys:\n${keys
    .map((k) => `      - key: ${k}\n`)
    .join('')}${extra}`;

describe('operations on the embedded defaults', () => {
  let cwd: string;
  let file: string;
  let adminPort: number;
  let chatd: ChatdProcess;
  let base: string;
  const sockets: Socket[] = [];

  const post = async (p: string, auth: string, body: unknown) => {
    const r = await fetch(`${base}${p}`, {
      method: 'POST',
      headers: { authorization: `Bearer ${auth}`, 'content-type': 'application/json' },
      body: JSON.stringify(body),
    });
    return { status: r.status, body: (await r.json()) as Record<string, unknown> };
  };
  const visitorToken = async (key: string, sessionId: string) => post('/api/chat/anonymous-token', key, { tenantId: 'acme', sessionId });
  const connect = (auth: Record<string, unknown>) =>
    new Promise<Socket>((resolve, reject) => {
      const s = io(base, { transports: ['websocket'], reconnection: false, auth });
      sockets.push(s);
      s.once('connect', () => resolve(s));
      s.once('connect_error', (e) => reject(Object.assign(e, { data: (e as { data?: unknown }).data })));
    });

  beforeAll(async () => {
    cwd = await mkdtemp(path.join(tmpdir(), 'chatd-ops-'));
    adminPort = await freePort();
    file = path.join(cwd, 'chat-server.yaml');
    await writeFile(file, yaml(adminPort, [PUB_A, SEC]));
    chatd = await spawnChatd({ cwd, timeoutMs: 90_000 });
    base = `http://127.0.0.1:${chatd.ports.public}`;
    await eventually(async () => (await fetch(`${base}/readyz`)).status === 200, 'readiness', { timeoutMs: 120_000, intervalMs: 100 });
  }, 120_000);
  afterAll(async () => {
    for (const s of sockets) s.close();
    await chatd?.stop('SIGKILL');
  });

  it(
    'SIGHUP applies a key added and a key removed; connected sockets stay; a bad file changes nothing',
    async () => {
      const t = await visitorToken(PUB_A, 's-reload');
      expect(t.status).toBe(200);
      const visitor = await connect({ apiKey: PUB_A, token: t.body.token, sessionId: 's-reload', fingerprint: 'fp-reload' });
      let dropped = false;
      visitor.on('disconnect', () => (dropped = true));
      expect((await visitorToken(PUB_B, 's-x')).status).toBe(401);

      await writeFile(file, yaml(adminPort, [PUB_B, SEC]));
      chatd.child.kill('SIGHUP');
      await eventually(async () => (await visitorToken(PUB_B, 's-b')).status === 200, 'the added key to work', {
        timeoutMs: 120_000,
        intervalMs: 100,
      });
      expect((await visitorToken(PUB_A, 's-a')).status).toBe(401);
      expect(chatd.logs()).toContain('config reloaded');
      // The socket admitted under the old key is still there and still works.
      expect(visitor.connected).toBe(true);
      const ack = await visitor.timeout(30_000).emitWithAck('message', { text: 'still here', clientMessageId: 'c-1' });
      expect(ack).toMatchObject({ success: true });
      expect(dropped).toBe(false);

      // A bad file: SIGHUP logs the refusal with the key path; the keys in force stay.
      await writeFile(file, yaml(adminPort, [PUB_A, SEC]).replace("allowedOrigins: ['*']", 'allowedOrigins: 5'));
      chatd.child.kill('SIGHUP');
      await eventually(() => chatd.logs().includes('config reload refused'), 'the refusal in the log', {
        timeoutMs: 120_000,
        intervalMs: 100,
      });
      expect(chatd.logs()).toMatch(/allowedOrigins/);
      expect((await visitorToken(PUB_B, 's-b2')).status).toBe(200);
      expect((await visitorToken(PUB_A, 's-a2')).status).toBe(401);
      // The same through the CLI: non-zero exit, the key path printed.
      const cli = await runChatd(['config', 'reload'], { cwd });
      expect(cli.code).not.toBe(0);
      expect(cli.stderr).toMatch(/allowedOrigins/);
      expect((await visitorToken(PUB_B, 's-b3')).status).toBe(200);

      // A good file through the CLI: applied, restart-only changes reported as ignored.
      await writeFile(
        file,
        yaml(adminPort, [PUB_A, PUB_B, SEC]).replace('server:\n  port: 0', 'server:\n  port: 0\n  bodyLimitBytes: 70000'),
      );
      const ok = await runChatd(['config', 'reload', '--json'], { cwd });
      expect(ok.code, ok.stderr).toBe(0);
      expect(JSON.parse(ok.stdout)).toMatchObject({ ignored: ['server'], tenants: ['acme'] });
      expect((await visitorToken(PUB_A, 's-a3')).status).toBe(200);
      expect(visitor.connected).toBe(true);
    },
    SLOW,
  );

  it(
    'token revoke closes the agent socket and refuses its token on HTTP and at CONNECT',
    async () => {
      // A visitor of the tenant sees the agent come and, once revoked, go (availability_changed):
      // the departure is announced after presence.offlineGraceMs, and this test waits for it so that
      // it does not reach a later test's widget.
      const v = await visitorToken(PUB_A, 's-revoke-watch');
      const watcher = await connect({ apiKey: PUB_A, token: v.body.token, sessionId: 's-revoke-watch', fingerprint: 'fp-rw' });
      const agentsSeen: number[] = [];
      watcher.on('availability_changed', (p: { agentsOnline: number }) => agentsSeen.push(p.agentsOnline));
      const minted = await post('/api/chat/agent-token', SEC, { tenantId: 'acme', userId: 'agent-7' });
      expect(minted.status).toBe(200);
      const token = minted.body.token as string;
      const agent = await connect({ token });
      await eventually(() => agentsSeen.includes(1), 'the agent announced online');
      const closed = new Promise<void>((r) => agent.once('disconnect', () => r()));
      const online = async () =>
        (await fetch(`${base}/api/chat/online-users?tenantId=acme`, { headers: { authorization: `Bearer ${token}` } })).status;
      expect(await online()).toBe(200);
      // A fixed wait on purpose: the node caches "not revoked" for 1 s and nothing signals its expiry.
      await new Promise((r) => setTimeout(r, 1100)); // past the node's 1 s cache of "not revoked"

      const r = await runChatd(['token', 'revoke', '--tenant', 'acme', '--user', 'agent-7', '--json'], { cwd });
      expect(r.code, r.stderr).toBe(0);
      expect(JSON.parse(r.stdout)).toMatchObject({ tenantId: 'acme', userId: 'agent-7' });
      await closed;
      const refused = await fetch(`${base}/api/chat/online-users?tenantId=acme`, { headers: { authorization: `Bearer ${token}` } });
      expect(refused.status).toBe(401);
      expect(((await refused.json()) as { code?: string }).code).toBe('token_revoked');
      const err = await connect({ token }).then(
        () => undefined,
        (e: { data?: { code?: string } }) => e,
      );
      expect(err?.data?.code).toBe('token_revoked');
      await eventually(() => agentsSeen.at(-1) === 0, 'the revoked agent announced gone');
      watcher.close();
    },
    SLOW,
  );

  it(
    'chatd erase removes one session and nothing of another',
    async () => {
      const tokens = new Map<string, string>();
      const send = async (sessionId: string, text: string) => {
        if (!tokens.has(sessionId)) {
          const t = await post('/api/chat/anonymous-token', PUB_B, { tenantId: 'acme', sessionId, fingerprint: `fp-${sessionId}` });
          expect(t.status, JSON.stringify(t.body)).toBe(200);
          tokens.set(sessionId, t.body.token as string);
        }
        const r = await post('/webchat/message', tokens.get(sessionId)!, {
          text,
          tenantId: 'acme',
          sessionId,
          fingerprint: `fp-${sessionId}`,
        });
        expect(r.status, JSON.stringify(r.body)).toBe(200);
        return tokens.get(sessionId)!;
      };
      await send('s-erase', 'one');
      await send('s-erase', 'two');
      const keepToken = await send('s-keep', 'kept');

      const dry = await runChatd(['erase', '--tenant', 'acme', '--session', 's-erase', '--dry-run', '--json'], { cwd });
      expect(dry.code, dry.stderr).toBe(0);
      expect(JSON.parse(dry.stdout)).toMatchObject({ dryRun: true, removed: { conversations: 1, messages: 2 } });
      const done = await runChatd(['erase', '--tenant', 'acme', '--session', 's-erase', '--json'], { cwd });
      expect(done.code, done.stderr).toBe(0);
      expect(JSON.parse(done.stdout)).toMatchObject({
        dryRun: false,
        sessionIds: ['s-erase'],
        removed: { conversations: 1, messages: 2, sessionRecords: 1 },
      });
      const again = await runChatd(['erase', '--tenant', 'acme', '--session', 's-erase', '--json'], { cwd });
      expect(JSON.parse(again.stdout)).toMatchObject({ removed: { conversations: 0, messages: 0, sessionRecords: 0 } });

      const history = await fetch(`${base}/api/chat/messages?tenantId=acme&sessionId=s-keep`, {
        headers: { authorization: `Bearer ${keepToken}` },
      });
      expect(history.status).toBe(200);
      expect(((await history.json()) as { messages: { text: string }[] }).messages.map((m) => m.text)).toEqual(['kept']);

      // The tenant's backend: the secret key may erase, a publishable key may not.
      expect((await post('/api/chat/erase', PUB_B, { tenantId: 'acme', sessionId: 's-keep' })).status).toBe(403);
      const api = await post('/api/chat/erase', SEC, { tenantId: 'acme', sessionId: 's-keep', dryRun: true });
      expect(api.status).toBe(200);
      expect(api.body).toMatchObject({ dryRun: true, removed: { messages: 1 } });
      const bad = await post('/api/chat/erase', SEC, { tenantId: 'acme' });
      expect(bad.status).toBe(400);
    },
    SLOW,
  );

  it(
    'a reload applies business hours and the away message to GET /api/chat/availability and to open widgets',
    async () => {
      const keys = [PUB_A, PUB_B, SEC];
      const availability = async () => {
        const r = await fetch(`${base}/api/chat/availability?tenantId=acme`, { headers: { authorization: `Bearer ${PUB_A}` } });
        expect(r.status).toBe(200);
        return (await r.json()) as Record<string, unknown>;
      };
      await writeFile(file, yaml(adminPort, keys));
      expect((await runChatd(['config', 'reload'], { cwd })).code).toBe(0);
      const t = await visitorToken(PUB_A, 's-hours');
      const widget = await connect({ apiKey: PUB_A, token: t.body.token, sessionId: 's-hours', fingerprint: 'fp-hours' });
      const seen: Record<string, unknown>[] = [];
      widget.on('availability_changed', (p: Record<string, unknown>) => seen.push(p));
      // No hours configured: always open, unavailable only for want of agents.
      expect(await availability()).toEqual({ available: false, agentsOnline: 0, inBusinessHours: true, repliesByEmail: false });

      // Closed all week (no weekly range), with an away message and a reply time.
      const closed = `    businessHours: { timeZone: Europe/Paris, weekly: [] }\n    awayMessage: Closed for inventory.\n    expectedReplySeconds: 7200\n`;
      await writeFile(file, yaml(adminPort, keys, closed));
      const reloaded = await runChatd(['config', 'reload', '--json'], { cwd });
      expect(reloaded.code, reloaded.stderr).toBe(0);
      const away = {
        available: false,
        agentsOnline: 0,
        inBusinessHours: false,
        awayMessage: 'Closed for inventory.',
        expectedReplySeconds: 7200,
      };
      expect(await availability()).toEqual({ ...away, repliesByEmail: false });
      // The widget already open learns it without asking (the node checks every 10 s).
      await eventually(() => seen.length > 0, 'availability_changed after the reload');
      expect(seen).toEqual([away]);

      // Back to no hours: open again, the away message gone from the answer.
      await writeFile(file, yaml(adminPort, keys));
      expect((await runChatd(['config', 'reload'], { cwd })).code).toBe(0);
      expect(await availability()).toEqual({ available: false, agentsOnline: 0, inBusinessHours: true, repliesByEmail: false });
      await eventually(() => seen.length > 1, 'availability_changed after the second reload');
      expect(seen[1]).toEqual({ available: false, agentsOnline: 0, inBusinessHours: true });
    },
    SLOW,
  );
});

describe.skipIf(!((await hasRedis()) && (await hasPostgres())))('erase and revoke from the CLI directly on Redis + PostgreSQL', () => {
  it(
    'chatd erase and chatd token revoke act on the shared services without a server',
    async () => {
      const cwd = await mkdtemp(path.join(tmpdir(), 'chatd-ops-direct-'));
      const prefix = uniquePrefix('opscli');
      const schema = uniqueSchema('opscli');
      const text = `auth:\n  jwtSecret: ops-direct-secret-0123456789abcdef\nredis:\n  url: ${REDIS_URL}\n  prefix: '${prefix}'\ndatabase:\n  url: ${DATABASE_URL}\n  schema: ${schema}\n  autoMigrate: true\ntenants:\n  - id: acme\n    apiKeys: []\n`;
      await writeFile(path.join(cwd, 'chat-server.yaml'), text);
      const { config } = await loadConfig({ cwd, env: {} });
      const log = pino({ level: 'silent' });
      const db = await openDatabase(config, log);
      const store = await createStore(config, log, 'ops-cli');
      try {
        for (const [sessionId, n] of [
          ['d-1', 2],
          ['d-2', 1],
        ] as const) {
          for (let i = 0; i < n; i++) {
            const r = await db.messages.accept({
              tenantId: 'acme',
              sessionId,
              sender: { type: 'visitor', id: sessionId, verified: false },
              text: `m${i}`,
              meta: emptyMeta(),
              conversation: { fingerprint: 'fp' },
            });
            if (r.kind === 'created') await store.events.publishMessage(r.message);
          }
          await store.sessions.upsert(sessionId, { tenantId: 'acme', userId: sessionId, fingerprint: 'fp' }, 3600);
        }
        const r = await runChatd(['erase', '--tenant', 'acme', '--session', 'd-1', '--json'], { cwd });
        expect(r.code, r.stderr).toBe(0);
        expect(JSON.parse(r.stdout)).toMatchObject({ removed: { conversations: 1, messages: 2, sessionRecords: 1, webhookJobs: 2 } });
        expect(await db.messages.getConversation('acme', 'd-1')).toBeNull();
        expect(await store.sessions.get('d-1')).toBeNull();
        expect((await db.messages.since('acme', 'd-2', 0, 10)).length).toBe(1);
        expect(await store.sessions.get('d-2')).not.toBeNull();

        const v = await runChatd(['token', 'revoke', '--tenant', 'acme', '--user', 'agent-9'], { cwd });
        expect(v.code, v.stderr).toBe(0);
        expect(await store.revocations.revokedAt('acme', 'agent-9')).toBeGreaterThan(Date.now() - 120_000);
        const bad = await runChatd(['erase', '--tenant', 'acme'], { cwd });
        expect(bad.code).not.toBe(0);
        expect(bad.stderr).toMatch(/--session/);
      } finally {
        await store.close();
        await db.close();
      }
    },
    SLOW,
  );
});
