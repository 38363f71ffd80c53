// The Database contract on embedded PGlite (a copy of the migrated template folder per suite), plus
// what only the embedded database has: its folder lock and surviving a restart.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import pino from 'pino';
import { afterAll, describe, expect, it } from 'vitest';
import { describeDatabaseContract, msg } from './database.contract.js';
import { DatabaseLockedError, lockDir, LOCK_FILE } from './dir-lock.js';
import { copyTemplate, isInitialised, templateDir, PGLITE_CONF } from './pglite.js';
import { openDatabase } from './index.js';
import { DbOutboxRelay } from './outbox-relay.js';
import { spawnChild } from '../../test/helpers/db/child.js';
import { freshPgliteDir } from '../../test/helpers/db/pglite-template.js';
import { testDbConfig } from '../../test/helpers/db/config.js';
import { RecordingEventLog } from '../../test/helpers/db/recording-event-log.js';

const silent = pino({ level: 'silent' });

describeDatabaseContract('PGlite', () => {
  let dir = '';
  return {
    async open(onFlush) {
      dir = await freshPgliteDir('contract');
      return openDatabase(testDbConfig({ embeddedDir: dir }), silent, { onFlush });
    },
    async cleanup() {
      if (dir) fs.rmSync(dir, { recursive: true, force: true });
    },
  };
});

describe('first start from a kept initdb result', () => {
  const CONF = [...PGLITE_CONF];
  const roots: string[] = [];
  afterAll(() => roots.forEach((d) => fs.rmSync(d, { recursive: true, force: true })));
  // initdb itself is PGlite's (every e2e first start runs it through the real template); here it
  // writes a recognisable folder, so the copying rules are checked without 5 s of WebAssembly each.
  const fakeInitdb = (calls: string[]) => async (dir: string) => {
    calls.push(dir);
    await new Promise((r) => setTimeout(r, 20));
    fs.mkdirSync(path.join(dir, 'base'), { recursive: true });
    fs.writeFileSync(path.join(dir, 'base', 'marker'), 'from initdb');
    fs.writeFileSync(path.join(dir, 'PG_VERSION'), '17\n');
  };

  it('keeps it beside the installed packages, by PGlite version and settings', () => {
    const t = templateDir(CONF)!;
    expect(t).toContain(`${path.sep}node_modules${path.sep}.cache${path.sep}chatd-pglite${path.sep}`);
    expect(templateDir(['shared_buffers=32MB'])).not.toBe(t);
  });

  it('runs initdb once, for the template, and copies it into every new folder, two starts at once included', async () => {
    const root = fs.mkdtempSync(path.join(os.tmpdir(), 'chatd-pglite-template-'));
    roots.push(root);
    const template = path.join(root, 'cache', 'tpl');
    const calls: string[] = [];
    const [a, b, c] = ['a', 'b', 'c'].map((n) => path.join(root, n));
    for (const d of [a, b, c]) fs.mkdirSync(d!);
    fs.writeFileSync(path.join(a!, LOCK_FILE), 'held');
    // Two first starts at once: each may make a template; one is renamed into place, neither fails.
    const both = await Promise.all([a, b].map((d) => copyTemplate(d!, CONF, fakeInitdb(calls), template)));
    expect(both).toEqual([true, true]);
    expect(calls.length).toBeGreaterThanOrEqual(1);
    expect(calls.every((d) => d !== a && d !== b)).toBe(true);
    expect(isInitialised(template)).toBe(true);
    // No half-made template is left beside it.
    expect(fs.readdirSync(path.dirname(template))).toEqual(['tpl']);
    const before = calls.length;
    expect(await copyTemplate(c!, CONF, fakeInitdb(calls), template)).toBe(true);
    expect(calls.length).toBe(before);
    for (const d of [a, b, c]) {
      expect(isInitialised(d!)).toBe(true);
      expect(fs.readFileSync(path.join(d!, 'base', 'marker'), 'utf8')).toBe('from initdb');
    }
    // The folder's own files stay (the lock is taken before the database is created).
    expect(fs.readFileSync(path.join(a!, LOCK_FILE), 'utf8')).toBe('held');
    // A copy is the folder's own: a change in one is in no other, nor in the template.
    fs.writeFileSync(path.join(c!, 'base', 'marker'), 'changed');
    expect(fs.readFileSync(path.join(template, 'base', 'marker'), 'utf8')).toBe('from initdb');
  });

  it('leaves initdb to the caller where no template can be kept, and does not hide its failure', async () => {
    const root = fs.mkdtempSync(path.join(os.tmpdir(), 'chatd-pglite-template-'));
    roots.push(root);
    fs.writeFileSync(path.join(root, 'file'), 'not a folder');
    const dir = path.join(root, 'd');
    fs.mkdirSync(dir);
    const calls: string[] = [];
    expect(await copyTemplate(dir, CONF, fakeInitdb(calls), path.join(root, 'file', 'tpl'))).toBe(false);
    const failing = async () => {
      throw new Error('initdb ran out of memory');
    };
    expect(await copyTemplate(dir, CONF, failing, path.join(root, 'cache', 'tpl'))).toBe(false);
    expect(isInitialised(dir)).toBe(false);
    expect(fs.readdirSync(path.join(root, 'cache'))).toEqual([]);
  });
});

describe('embedded database folder', () => {
  const dirs: string[] = [];
  afterAll(() => dirs.forEach((d) => fs.rmSync(d, { recursive: true, force: true })));

  it('keeps messages across a restart and refuses a second opener while held', async () => {
    const dir = await freshPgliteDir('restart');
    dirs.push(dir);
    const config = testDbConfig({ embeddedDir: dir });
    const db = await openDatabase(config, silent);
    const r = await db.messages.accept(msg('t1', 's1', 'kept'));
    expect(r.kind).toBe('created');

    // Same folder, same process: refused, naming the holder.
    await expect(openDatabase(config, silent)).rejects.toBeInstanceOf(DatabaseLockedError);
    await expect(openDatabase(config, silent)).rejects.toThrow(`in use by another chatd process (pid ${process.pid})`);
    await db.close();
    expect(fs.existsSync(`${dir}/${LOCK_FILE}`)).toBe(false);

    const again = await openDatabase(config, silent);
    const page = await again.messages.history({ tenantId: 't1', sessionId: 's1', limit: 10 });
    expect(page.messages.map((m) => m.text)).toEqual(['kept']);
    expect((await again.messages.accept(msg('t1', 's1', 'next'))).kind).toBe('created');
    await again.close();
  });

  it('a process killed between commit and publish: the next opener takes over the folder and re-publishes', async () => {
    const dir = await freshPgliteDir('killed');
    dirs.push(dir);
    const config = testDbConfig({ embeddedDir: dir });
    const child = await spawnChild('db-child', { CHATD_TEST_DB: JSON.stringify(config) });
    let ids: string[];
    try {
      await child.next((m) => m.event === 'ready');
      // While the child holds it, the folder is refused to us.
      await expect(openDatabase(config, silent)).rejects.toThrow(`pid ${child.child.pid}`);
      child.send({ op: 'commit-no-publish', tenant: 'k', session: 'killed', count: 4 });
      ({ ids } = await child.next<{ ids: string[] }>((m) => m.event === 'committed'));
    } finally {
      await child.kill('SIGKILL');
    }
    const db = await openDatabase(config, silent);
    const events = new RecordingEventLog();
    const relay = new DbOutboxRelay(db.outbox, events, silent, { staleAfterMs: 0, sweepIntervalMs: 60_000 });
    try {
      expect(await db.outbox.pendingCount()).toBe(4);
      expect(await relay.sweep()).toBe(4);
      expect(events.published.map((m) => m.id)).toEqual(ids);
      expect(await db.outbox.pendingCount()).toBe(0);
    } finally {
      await relay.stop();
      await db.close();
    }
  });

  it('takes over the lock of a process that died', () => {
    const dir = fs.mkdtempSync('/tmp/chatd-lock-');
    dirs.push(dir);
    // A pid that cannot be alive (above pid_max).
    fs.writeFileSync(`${dir}/${LOCK_FILE}`, JSON.stringify({ pid: 2 ** 30, host: '', at: '' }));
    const lock = lockDir(dir);
    expect(JSON.parse(fs.readFileSync(lock.file, 'utf8')).pid).toBe(process.pid);
    lock.release();
    expect(fs.existsSync(lock.file)).toBe(false);
  });
});
