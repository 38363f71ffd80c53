// `chatd conversations ls` end to end: with the embedded defaults through the running server's admin
// listener (conversations made over the real HTTP API), and on PostgreSQL + Redis directly (rows
// written through the real database under the test's own schema).
import { mkdtemp, readFile, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runChatd, spawnChatd, type ChatdProcess } from '../helpers/chatd-process.js';
import { DATABASE_URL, REDIS_URL, dropSchema, freePort, hasPostgres, hasRedis, uniquePrefix, uniqueSchema } from '../helpers/services.js';
import { emptyMeta } from '../../src/chat/message.js';
import { openDatabase } from '../../src/db/index.js';
import { testDbConfig } from '../helpers/db/config.js';

const fresh = () => mkdtemp(path.join(tmpdir(), 'chatd-cli-conv-'));
// Every CLI run is a process start (several seconds on a loaded 2-core machine): generous limits.
const SLOW = 480_000;

interface Listed {
  tenantId: string;
  conversations: {
    sessionId: string;
    status: string;
    assignee: string | null;
    unreadCount: number;
    lastMessage: { text: string } | null;
  }[];
  nextCursor: string | null;
}

describe('conversations ls on the embedded defaults (through the admin listener)', () => {
  let cwd: string;
  let chatd: ChatdProcess;
  let base: string;
  let secrets: Record<string, string>;

  beforeAll(async () => {
    cwd = await fresh();
    await writeFile(path.join(cwd, 'chat-server.yaml'), `server:\n  port: 0\nadmin:\n  port: ${await freePort()}\n`);
    chatd = await spawnChatd({ cwd, timeoutMs: 240_000 });
    base = `http://127.0.0.1:${chatd.ports.public}`;
    secrets = JSON.parse(await readFile(path.join(cwd, '.chatd', 'secrets.json'), 'utf8')) as Record<string, string>;
  }, 300_000);
  afterAll(async () => {
    await chatd?.stop('SIGKILL');
  });

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
  const say = async (sessionId: string, text: string) => {
    const { token } = await post('/api/chat/anonymous-token', secrets.gatewayApiKey!, { tenantId: 'demo', sessionId });
    await post('/webchat/message', token as string, { text, tenantId: 'demo', sessionId, fingerprint: `fp-${sessionId}` });
  };

  it(
    'prints the inbox as a table and as JSON, with the status and assignee filters, newest first',
    async () => {
      await say('cli-a', 'First question');
      await say('cli-b', 'Second\nquestion on two lines');
      await post('/api/chat/conversations/cli-a/assign', secrets.secretApiKey!, { tenantId: 'demo', assignee: 'agent-7' });
      const table = await runChatd(['conversations', 'ls', 'demo'], { cwd });
      expect(table.code, table.stderr).toBe(0);
      const lines = table.stdout.trim().split('\n');
      expect(lines[0]).toMatch(/^SESSIONID\s+STATUS\s+ASSIGNEE\s+VISITOR\s+UNREAD\s+MESSAGES\s+ONLINE\s+LASTACTIVITYAT\s+LASTMESSAGE$/);
      // cli-a changed last (its assignment): first.
      expect(lines[1]).toMatch(/^cli-a\s+open\s+agent-7\s+-\s+1\s+1\s+no\s+\S+\s+First question$/);
      expect(lines[2]).toMatch(/^cli-b\s+open\s+-\s+-\s+1\s+1\s+no\s+\S+\s+Second question on two lines$/);

      const json = await runChatd(['--json', 'conversations', 'ls', 'demo', '--assignee', 'none', '--status', 'open'], { cwd });
      expect(json.code, json.stderr).toBe(0);
      const listed = JSON.parse(json.stdout) as Listed;
      expect(listed.tenantId).toBe('demo');
      expect(listed.conversations.map((c) => c.sessionId)).toEqual(['cli-b']);

      const none = await runChatd(['conversations', 'ls', 'demo', '--status', 'resolved'], { cwd });
      expect(none.stdout).toBe('no conversation in tenant demo matches\n');

      const paged = await runChatd(['--json', 'conversations', 'ls', 'demo', '--limit', '1'], { cwd });
      const first = JSON.parse(paged.stdout) as Listed;
      expect(first.conversations.map((c) => c.sessionId)).toEqual(['cli-a']);
      const next = await runChatd(['--json', 'conversations', 'ls', 'demo', '--limit', '1', '--before', first.nextCursor!], { cwd });
      expect((JSON.parse(next.stdout) as Listed).conversations.map((c) => c.sessionId)).toEqual(['cli-b']);

      const bad = await runChatd(['conversations', 'ls', 'demo', '--status', 'closed'], { cwd });
      expect(bad.code).toBe(1);
      expect(bad.stderr).toContain('status');
      const me = await runChatd(['conversations', 'ls', 'demo', '--assignee', 'me'], { cwd });
      expect(me.code).toBe(1);
      expect(me.stderr.trim()).toBe('chatd: --assignee me means the calling agent: give an agent id (or none)');
    },
    SLOW,
  );
});

describe.skipIf(!((await hasPostgres()) && (await hasRedis())))('conversations ls on PostgreSQL + Redis (directly)', () => {
  const schema = uniqueSchema('cliconv');
  let cwd: string;
  afterAll(async () => {
    await dropSchema(schema);
  });

  it(
    "reads the tenant's conversations from the database, another tenant's never",
    async () => {
      cwd = await fresh();
      await writeFile(
        path.join(cwd, 'chat-server.yaml'),
        `database:\n  url: "${DATABASE_URL}"\n  schema: ${schema}\n  autoMigrate: true\nredis:\n  url: "${REDIS_URL}"\n  prefix: "${uniquePrefix('cliconv')}"\n`,
      );
      const db = await openDatabase(testDbConfig({ url: DATABASE_URL, schema, autoMigrate: true }), pino({ level: 'silent' }));
      try {
        const send = (tenantId: string, sessionId: string, text: string) =>
          db.messages.accept({
            tenantId,
            sessionId,
            sender: { type: 'visitor', id: sessionId, verified: false },
            text,
            meta: emptyMeta(),
            conversation: { fingerprint: 'fp' },
          });
        await send('acme', 'pg-1', 'hello from acme');
        await send('other', 'pg-2', 'not acme');
        await db.conversations.change('acme', 'pg-1', { status: 'pending' }, { type: 'agent', id: 'a1' });
      } finally {
        await db.close();
      }
      const r = await runChatd(['--json', 'conversations', 'ls', 'acme'], { cwd });
      expect(r.code, r.stderr).toBe(0);
      const listed = JSON.parse(r.stdout) as Listed;
      expect(listed.conversations).toEqual([
        expect.objectContaining({
          sessionId: 'pg-1',
          status: 'pending',
          assignee: null,
          unreadCount: 1,
          lastMessage: expect.objectContaining({ text: 'hello from acme' }),
        }),
      ]);
    },
    SLOW,
  );
});
