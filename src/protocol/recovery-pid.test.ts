import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { FD_RESERVE, maxConnections, maxPendingConnections, openFileLimit } from './capacity.js';
import { RecoveryPids } from './recovery-pid.js';

describe('RecoveryPids', () => {
  const pids = new RecoveryPids('a-shared-secret-0123456789');
  it('verifies a pid for the identity it was minted for, on any node with the same secret', () => {
    const pid = pids.mint('t1\0t:t1:conv:s1\0visitor\0');
    expect(pid).not.toBe(pids.mint('t1\0t:t1:conv:s1\0visitor\0'));
    expect(new RecoveryPids('a-shared-secret-0123456789').verify(pid, 't1\0t:t1:conv:s1\0visitor\0')).toBe(true);
  });
  it('refuses another identity, another secret, and garbage', () => {
    const pid = pids.mint('t1\0t:t1:conv:s1\0visitor\0');
    expect(pids.verify(pid, 't1\0t:t1:conv:s2\0visitor\0')).toBe(false);
    expect(new RecoveryPids('another-secret-0123456789').verify(pid, 't1\0t:t1:conv:s1\0visitor\0')).toBe(false);
    expect(pids.verify(`${pid}x`, 't1\0t:t1:conv:s1\0visitor\0')).toBe(false);
    expect(pids.verify('nodot', 'x')).toBe(false);
    expect(pids.verify('x'.repeat(500), 'x')).toBe(false);
  });
});

describe('capacity', () => {
  it('reads the soft open-file limit from a limits file', () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'limits-'));
    const file = path.join(dir, 'limits');
    writeFileSync(
      file,
      'Limit                     Soft Limit           Hard Limit           Units\nMax open files            20000                20000                files\n',
    );
    expect(openFileLimit(file)).toBe(20000);
    expect(openFileLimit(path.join(dir, 'missing'))).toBeUndefined();
  });
  it('keeps a reserve below the open-file limit, with room for the pending sessions, unless a maximum is configured', () => {
    expect(maxConnections(0, 20000)).toBe(Math.floor(((20000 - FD_RESERVE) * 10) / 11));
    expect(maxConnections(0, 1024)).toBe(Math.floor(((1024 - 128) * 10) / 11));
    expect(maxConnections(500, 20000)).toBe(500);
    // Authenticated and pending sessions both full stay within the limit less its reserve.
    for (const [limit, reserve] of [
      [20000, FD_RESERVE],
      [1024, 128],
      [65536, FD_RESERVE],
    ] as const) {
      const max = maxConnections(0, limit);
      expect(max + maxPendingConnections(0, max), `limit ${limit}`).toBeLessThanOrEqual(limit - reserve);
    }
  });
});
