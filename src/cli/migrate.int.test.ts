// `chatd migrate` as a user runs it (bin/chatd in a child process): status, up, down, --json,
// --check, exit codes, and what it says about the embedded database.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { runChatd } from '../../test/helpers/chatd-process.js';
import { DATABASE_URL, dropSchema, has, uniqueSchema } from '../../test/helpers/services.js';
import { lockDir } from '../db/dir-lock.js';

const cwd = fs.mkdtempSync(path.join(os.tmpdir(), 'chatd-migrate-'));
afterAll(() => fs.rmSync(cwd, { recursive: true, force: true }));

describe.skipIf(!(await has('postgres')))('chatd migrate (PostgreSQL)', () => {
  const schema = uniqueSchema('cli');
  const env = { DATABASE_URL };
  const args = (...a: string[]) => [...a];
  fs.writeFileSync(path.join(cwd, 'chat-server.yaml'), `database:\n  schema: ${schema}\n`);
  afterAll(async () => {
    await dropSchema(schema);
  });

  it('lists pending migrations, applies them, reverts the last, with tables and JSON', async () => {
    const before = await runChatd(args('migrate', 'status'), { cwd, env });
    expect(before.code).toBe(0);
    expect(before.stdout).toMatch(/0001_init\s+pending/);
    expect(before.stdout).toMatch(/0002_retention_index\s+pending/);
    expect(before.stdout).toMatch(/0003_conversations_inbox\s+pending/);
    expect(before.stdout).toMatch(/0004_offline_email\s+pending/);
    expect(before.stdout).toMatch(/0005_tenant_notify\s+pending/);
    expect(before.stdout).toMatch(/0006_accept_batch\s+pending/);
    expect(before.stdout).toMatch(/0007_conversation_version\s+pending/);
    expect(before.stdout).toMatch(/0008_revocations\s+pending/);
    expect(before.stdout).toContain('run `chatd migrate up`');
    expect((await runChatd(args('migrate', 'status', '--check'), { cwd, env })).code).toBe(2);

    const up = await runChatd(args('migrate', 'up'), { cwd, env });
    expect(up.code).toBe(0);
    expect(up.stdout).toMatch(
      /0001_init\s+up\s+done\n0002_retention_index\s+up\s+done\n0003_conversations_inbox\s+up\s+done\n0004_offline_email\s+up\s+done\n0005_tenant_notify\s+up\s+done\n0006_accept_batch\s+up\s+done\n0007_conversation_version\s+up\s+done\n0008_revocations\s+up\s+done/,
    );

    const status = await runChatd(args('--json', 'migrate', 'status', '--check'), { cwd, env });
    expect(status.code).toBe(0);
    const parsed = JSON.parse(status.stdout) as {
      dialect: string;
      schema: string;
      pending: number;
      migrations: { name: string; status: string }[];
    };
    expect(parsed).toMatchObject({ dialect: 'postgres', schema, pending: 0 });
    expect(parsed.migrations).toEqual([
      expect.objectContaining({ name: '0001_init', status: 'applied' }),
      expect.objectContaining({ name: '0002_retention_index', status: 'applied' }),
      expect.objectContaining({ name: '0003_conversations_inbox', status: 'applied' }),
      expect.objectContaining({ name: '0004_offline_email', status: 'applied' }),
      expect.objectContaining({ name: '0005_tenant_notify', status: 'applied' }),
      expect.objectContaining({ name: '0006_accept_batch', status: 'applied' }),
      expect.objectContaining({ name: '0007_conversation_version', status: 'applied' }),
      expect.objectContaining({ name: '0008_revocations', status: 'applied' }),
    ]);

    expect((await runChatd(args('migrate', 'up'), { cwd, env })).stdout).toContain('nothing to apply: up to date');

    const down = await runChatd(args('--json', 'migrate', 'down'), { cwd, env });
    expect(down.code).toBe(0);
    // Down reverts the last one only.
    expect(JSON.parse(down.stdout).steps).toEqual([{ name: '0008_revocations', direction: 'down', status: 'done' }]);
    const after = (await runChatd(args('migrate', 'status'), { cwd, env })).stdout;
    expect(after).toMatch(/0007_conversation_version\s+applied/);
    expect(after).toMatch(/0008_revocations\s+pending/);
  }, 300_000);

  it('serve refuses to start on pending migrations and names the command to run', async () => {
    const fresh = uniqueSchema('cliserve');
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'chatd-migrate-serve-'));
    fs.writeFileSync(path.join(dir, 'chat-server.yaml'), `database:\n  schema: ${fresh}\nserver:\n  port: 0\nadmin:\n  port: 0\n`);
    try {
      const r = await runChatd(['serve', '--role', 'api'], { cwd: dir, env });
      expect(r.code).toBe(1);
      expect(r.stderr).toContain(
        `chatd: the database postgres://postgres@127.0.0.1:5432/test (schema ${fresh}) has 8 pending migration(s): 0001_init, 0002_retention_index, 0003_conversations_inbox, 0004_offline_email, 0005_tenant_notify, 0006_accept_batch, 0007_conversation_version, 0008_revocations; run \`chatd migrate up\``,
      );
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
      await dropSchema(fresh);
    }
  }, 300_000);

  it('an unreachable database is one clear line and exit code 1', async () => {
    const r = await runChatd(['migrate', 'status'], { cwd, env: { DATABASE_URL: 'postgres://u:secret@127.0.0.1:1/x' } });
    expect(r.code).toBe(1);
    expect(r.stderr.trim()).toBe('chatd: postgres: cannot connect to postgres://u:***@127.0.0.1:1/x: connect ECONNREFUSED 127.0.0.1:1');
  }, 300_000);
});

describe('chatd migrate (embedded)', () => {
  const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'chatd-migrate-emb-'));
  afterAll(() => fs.rmSync(dataDir, { recursive: true, force: true }));
  const env = { CHATD_TEST: '1' };
  const withDir = (...a: string[]) => ['--config', path.join(dataDir, 'c.yaml'), ...a];
  fs.writeFileSync(path.join(dataDir, 'c.yaml'), `dataDir: ${dataDir}\n`);

  it('explains that the embedded database is created and migrated by serve, and leaves a running server alone', async () => {
    const none = await runChatd(withDir('migrate', 'status'), { cwd, env });
    expect(none.code).toBe(0);
    expect(none.stdout).toContain('creates and migrates it at its first start');
    expect(fs.existsSync(path.join(dataDir, 'data', 'PG_VERSION'))).toBe(false);

    // A server holds the folder (played by this process taking its lock).
    const lock = lockDir(path.join(dataDir, 'data'));
    try {
      const held = await runChatd(withDir('migrate', 'up'), { cwd, env });
      expect(held.code).toBe(0);
      expect(held.stdout).toContain(`in use by a running chatd (pid ${process.pid}), which applied every migration when it started`);
      const down = await runChatd(withDir('migrate', 'down'), { cwd, env });
      expect(down.code).toBe(1);
      expect(down.stderr).toContain('stop it before reverting a migration');
    } finally {
      lock.release();
    }
  }, 300_000);
});
