// The Database contract on embedded PGlite (a copy of the migrated template folder per suite), plus
// what only the embedded database has: its folder lock and surviving a restart.
import fs from 'node:fs';
import pino from 'pino';
import { afterAll, describe, expect, it } from 'vitest';
import { describeDatabaseContract, msg } from './database.contract.js';
import { DatabaseLockedError, lockDir, LOCK_FILE } from './dir-lock.js';
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
