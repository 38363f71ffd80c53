// An exclusive lock on the embedded database folder: PGlite is PostgreSQL in this process, so a
// second process opening the same folder would corrupt it. The lock is a file holding the owner's
// pid, created with O_EXCL; a lock whose process is gone (a crash, SIGKILL) is taken over.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

export const LOCK_FILE = 'chatd.lock';

export class DatabaseLockedError extends Error {
  readonly pid: number;
  constructor(dir: string, pid: number) {
    super(
      `the embedded database in ${dir} is in use by another chatd process (pid ${pid}); ` +
        'stop that process, give this one another database.embeddedDir or dataDir, or use PostgreSQL (database.url)',
    );
    this.name = 'DatabaseLockedError';
    this.pid = pid;
  }
}

interface LockRecord {
  pid: number;
  host: string;
  at: string;
}

export interface DirLock {
  readonly file: string;
  release(): void;
}

/** The pid holding the folder's lock, if that process is alive on this host; null when free. */
export function lockHolder(dir: string): number | null {
  const rec = readLock(path.join(dir, LOCK_FILE));
  return rec && isAlive(rec) ? rec.pid : null;
}

/** Takes the lock or throws DatabaseLockedError naming the holder. */
export function lockDir(dir: string): DirLock {
  fs.mkdirSync(dir, { recursive: true });
  const file = path.join(dir, LOCK_FILE);
  const record: LockRecord = { pid: process.pid, host: os.hostname(), at: new Date().toISOString() };
  for (let attempt = 0; attempt < 5; attempt++) {
    try {
      fs.writeFileSync(file, JSON.stringify(record), { flag: 'wx', mode: 0o600 });
      let released = false;
      return {
        file,
        release() {
          if (released) return;
          released = true;
          // Only remove a lock that is still ours.
          if (readLock(file)?.pid === process.pid) fs.rmSync(file, { force: true });
        },
      };
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    }
    const holder = readLock(file);
    if (holder && isAlive(holder)) throw new DatabaseLockedError(dir, holder.pid);
    // Stale (dead owner) or unreadable (a writer died between create and write, or a racing
    // process is writing it right now): take it over by renaming it away atomically, so two
    // processes cleaning the same stale lock cannot both win.
    if (!holder) {
      // Give a concurrent writer a moment to finish writing its record.
      sleepSync(50);
      const again = readLock(file);
      if (again && isAlive(again)) throw new DatabaseLockedError(dir, again.pid);
    }
    // Someone else replaced it meanwhile: look again rather than remove a live lock.
    if (readLock(file)?.pid !== holder?.pid) continue;
    try {
      fs.renameSync(file, `${file}.stale-${process.pid}`);
      fs.rmSync(`${file}.stale-${process.pid}`, { force: true });
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    }
  }
  throw new Error(`could not take the lock ${file}`);
}

function readLock(file: string): LockRecord | null {
  try {
    const rec = JSON.parse(fs.readFileSync(file, 'utf8')) as Partial<LockRecord>;
    return typeof rec.pid === 'number' ? { pid: rec.pid, host: rec.host ?? '', at: rec.at ?? '' } : null;
  } catch {
    return null;
  }
}

function isAlive(rec: LockRecord): boolean {
  // A lock written on another host (a folder on shared storage) cannot be checked: assume alive.
  if (rec.host && rec.host !== os.hostname()) return true;
  if (rec.pid === process.pid) return true;
  try {
    process.kill(rec.pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

function sleepSync(ms: number): void {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
}
