// An acknowledged `chatd token revoke` survives what the store loses, end to end with real chatd
// processes: the revoked agent's older token stays refused on HTTP (401 token_revoked) and at the
// Socket.IO CONNECT (connect_error token_revoked)
// - after its Redis (a redis-server of the test's own, no persistence) is SIGKILLed and restarted
//   empty under a running chatd on PostgreSQL: the data epoch shows the loss and the node writes
//   the revocations back from PostgreSQL;
// - after an embedded `chatd serve --role all` (memory store, PGlite) is SIGKILLed and started again
//   on the same data folder: the new process fills its memory store from PGlite before serving.
// A token minted a second after the revocation is accepted in both, so the refusals are the
// revocation's, not a server that refuses everything.
import fs from 'node:fs';
import { mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Redis } from 'ioredis';
import { io, type Socket } from 'socket.io-client';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { runChatd, spawnChatd, whenReady, type ChatdProcess } from '../helpers/chatd-process.js';
import { freshPgliteDir } from '../helpers/db/pglite-template.js';
import { eventually } from '../helpers/eventually.js';
import { hasRedisServerBinary, OwnRedis } from '../helpers/own-redis.js';
import { DATABASE_URL, IN_CI, dropSchema, hasPostgres, uniquePrefix, uniqueSchema } from '../helpers/services.js';
import { redisKeys } from '../../src/store/redis/keys.js';

const SLOW = 300_000;
const SEC = 'ck_sec_revoke_restart_0123456789ab';
const TENANT = 'acme';
const AGENT = 'agent-7';

const tenantYaml = (extra = '') =>
  `server:\n  port: 0\nadmin:\n  port: 0\nlog:\n  format: json\nauth:\n  jwtSecret: revoke-restart-secret-0123456789abcdef\n${extra}tenants:\n  - id: ${TENANT}\n    allowedOrigins: ['*']\n    apiKeys:\n      - key: ${SEC}\n`;

/** What a client of one chatd sees: mint an agent token, use it on HTTP and at CONNECT. */
function client(chatd: ChatdProcess) {
  const base = `http://127.0.0.1:${chatd.ports.public}`;
  const sockets: Socket[] = [];
  return {
    sockets,
    async mint(): Promise<string> {
      const r = await fetch(`${base}/api/chat/agent-token`, {
        method: 'POST',
        headers: { authorization: `Bearer ${SEC}`, 'content-type': 'application/json' },
        body: JSON.stringify({ tenantId: TENANT, userId: AGENT }),
      });
      expect(r.status).toBe(200);
      return ((await r.json()) as { token: string }).token;
    },
    /** The HTTP status and error code of an agent request with `token`. */
    async http(token: string): Promise<{ status: number; code?: string }> {
      const r = await fetch(`${base}/api/chat/online-users?tenantId=${TENANT}`, { headers: { authorization: `Bearer ${token}` } });
      const body = (await r.json()) as { code?: string };
      return { status: r.status, ...(body.code ? { code: body.code } : {}) };
    },
    /** 'connected', or the code of the CONNECT refusal. */
    connect(token: string): Promise<string> {
      return new Promise((resolve) => {
        const s = io(base, { transports: ['websocket'], reconnection: false, auth: { token } });
        sockets.push(s);
        s.once('connect', () => resolve('connected'));
        s.once('connect_error', (e) => resolve((e as { data?: { code?: string } }).data?.code ?? `error: ${e.message}`));
      });
    },
    close() {
      for (const s of sockets) s.close();
    },
  };
}

/** Waits until the wall clock is in the second after `ms` (a token's `iat` has one-second resolution). */
async function pastTheSecondOf(ms: number): Promise<void> {
  const next = (Math.floor(ms / 1000) + 1) * 1000;
  // The clock's second has to turn: time itself, so this wait is fixed.
  while (Date.now() < next) await new Promise((r) => setTimeout(r, next - Date.now() + 5));
}

/** Not a server refusing everything: a token minted after the revocation's second passes. */
async function expectFreshTokenPasses(c: ReturnType<typeof client>, revokedAt: number): Promise<void> {
  await pastTheSecondOf(revokedAt);
  const fresh = await c.mint();
  expect(await c.http(fresh)).toEqual({ status: 200 });
  expect(await c.connect(fresh)).toBe('connected');
}

/** Past the node's 1 s cache of "not revoked" (nothing signals its expiry, so the wait is fixed). */
const pastTheCache = () => new Promise((r) => setTimeout(r, 1100));

const redisServer = hasRedisServerBinary();
if (!redisServer && IN_CI) throw new Error('redis-server binary not found: CI=true, so this test fails instead of skipping');

describe.skipIf(!(redisServer && (await hasPostgres())))('a revocation across a Redis restart without its data (own redis-server)', () => {
  const schema = uniqueSchema('revrestart');
  const prefix = uniquePrefix('revrestart');
  let redis: OwnRedis | undefined;
  let chatd: ChatdProcess | undefined;
  let cwd: string | undefined;
  let c: ReturnType<typeof client> | undefined;

  afterAll(async () => {
    c?.close();
    await chatd?.stop('SIGKILL');
    await redis?.kill();
    await dropSchema(schema);
    if (cwd) fs.rmSync(cwd, { recursive: true, force: true });
  });

  it(
    'the old token is still refused on HTTP and at CONNECT once the node has restored the revocation from PostgreSQL',
    async () => {
      redis = await OwnRedis.start();
      cwd = await mkdtemp(path.join(tmpdir(), 'chatd-revoke-redis-'));
      await writeFile(
        path.join(cwd, 'chat-server.yaml'),
        tenantYaml(
          `redis:\n  url: ${redis.url}\n  prefix: '${prefix}'\ndatabase:\n  url: ${DATABASE_URL}\n  schema: ${schema}\n  autoMigrate: true\n`,
        ),
      );
      chatd = await spawnChatd({ cwd, timeoutMs: 120_000 });
      await whenReady(chatd.ports.public!);
      c = client(chatd);
      const old = await c.mint();
      expect(await c.http(old)).toEqual({ status: 200 });
      await pastTheCache();

      // Redis and PostgreSQL configured: the CLI acts on them directly (no server involved).
      const r = await runChatd(['token', 'revoke', '--tenant', TENANT, '--user', AGENT, '--json'], { cwd });
      expect(r.code, r.stderr).toBe(0);
      const revokedAt = Date.parse((JSON.parse(r.stdout) as { revokedAt: string }).revokedAt);
      expect(await c.http(old)).toEqual({ status: 401, code: 'token_revoked' });

      // A crash of Redis without persistence: every key, the revocation's too, is gone.
      await redis.kill();
      await redis.start();
      const key = redisKeys(prefix, 'standalone').revoked(TENANT, AGENT);
      const probe = new Redis(redis.url, { lazyConnect: true, maxRetriesPerRequest: 1 });
      try {
        await probe.connect();
        await eventually(
          () => chatd!.logs().includes('redis restarted without data; restored 1 revocations from the database'),
          'the node to restore the revocation after the restart',
          { timeoutMs: 60_000 },
        );
        expect(Number(await probe.get(key))).toBe(revokedAt);
      } finally {
        probe.disconnect();
      }
      await pastTheCache();
      expect(await c.http(old)).toEqual({ status: 401, code: 'token_revoked' });
      expect(await c.connect(old)).toBe('token_revoked');

      await expectFreshTokenPasses(c, revokedAt);
    },
    SLOW,
  );
});

describe('a revocation across a restart of the embedded server (memory store, PGlite)', () => {
  let chatd: ChatdProcess | undefined;
  let cwd: string | undefined;
  let c: ReturnType<typeof client> | undefined;

  afterEach(async () => {
    c?.close();
    await chatd?.stop('SIGKILL');
    if (cwd) fs.rmSync(cwd, { recursive: true, force: true });
  });

  it(
    'the old token is still refused on HTTP and at CONNECT after the process is killed and started again on the same folder',
    async () => {
      cwd = await mkdtemp(path.join(tmpdir(), 'chatd-revoke-embedded-'));
      // A copy of the migrated template instead of a 5 s initdb.
      const template = await freshPgliteDir('revoke-restart');
      fs.mkdirSync(path.join(cwd, '.chatd'), { recursive: true });
      fs.renameSync(template, path.join(cwd, '.chatd', 'data'));
      await writeFile(path.join(cwd, 'chat-server.yaml'), tenantYaml());

      chatd = await spawnChatd({ cwd, timeoutMs: 120_000 });
      await whenReady(chatd.ports.public!);
      c = client(chatd);
      const old = await c.mint();
      expect(await c.http(old)).toEqual({ status: 200 });
      await pastTheCache();

      // The embedded defaults: the CLI goes through the server's admin listener.
      const r = await runChatd(
        ['token', 'revoke', '--tenant', TENANT, '--user', AGENT, '--json', '--admin-url', `http://127.0.0.1:${chatd.ports.admin}`],
        { cwd },
      );
      expect(r.code, r.stderr).toBe(0);
      const revokedAt = Date.parse((JSON.parse(r.stdout) as { revokedAt: string }).revokedAt);
      expect(await c.http(old)).toEqual({ status: 401, code: 'token_revoked' });

      // A crash: the memory store is gone with the process; PGlite's folder stays.
      c.close();
      expect(await chatd.stop('SIGKILL')).toBeNull();
      chatd = await spawnChatd({ cwd, timeoutMs: 120_000 });
      await whenReady(chatd.ports.public!);
      c = client(chatd);
      expect(await c.http(old)).toEqual({ status: 401, code: 'token_revoked' });
      expect(await c.connect(old)).toBe('token_revoked');

      await expectFreshTokenPasses(c, revokedAt);
    },
    SLOW,
  );
});
