// A PostgreSQL cluster of a test's own (initdb into a temp folder, pg_ctl on a free port), for tests
// that stop, start or break the server — never the shared one. Runs as user postgres when we are
// root (initdb refuses root).
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { freePort } from '../services.js';

const run = promisify(execFile);
const BIN = process.env.PG_BIN ?? '/usr/lib/postgresql/15/bin';

export const hasPgBinaries = () => fs.existsSync(path.join(BIN, 'initdb')) && fs.existsSync(path.join(BIN, 'pg_ctl'));

export interface Cluster {
  readonly port: number;
  readonly url: string;
  start(): Promise<void>;
  /** `immediate` is a crash (no checkpoint, connections cut); `fast` a clean shutdown. */
  stop(mode?: 'fast' | 'immediate'): Promise<void>;
  destroy(): Promise<void>;
}

async function asPostgres(cmd: string, args: string[]): Promise<void> {
  const root = process.getuid?.() === 0;
  await run(root ? 'runuser' : cmd, root ? ['-u', 'postgres', '--', cmd, ...args] : args, { timeout: 60_000 });
}

export async function startCluster(settings: string[] = []): Promise<Cluster> {
  const base = fs.mkdtempSync(path.join(os.tmpdir(), 'chatd-pg-'));
  if (process.getuid?.() === 0) {
    const { stdout } = await run('id', ['-u', 'postgres']);
    const { stdout: gid } = await run('id', ['-g', 'postgres']);
    fs.chownSync(base, Number(stdout.trim()), Number(gid.trim()));
  }
  const data = path.join(base, 'data');
  await asPostgres(path.join(BIN, 'initdb'), ['-D', data, '-A', 'trust', '-U', 'postgres', '-E', 'UTF8', '--no-sync']);
  const port = await freePort();
  const opts = [
    `-p ${port}`,
    `-k ${base}`,
    '-c listen_addresses=127.0.0.1',
    '-c fsync=off',
    '-c shared_buffers=32MB',
    '-c max_connections=50',
    ...settings.map((s) => `-c ${s}`),
  ].join(' ');
  const ctl = (args: string[]) => asPostgres(path.join(BIN, 'pg_ctl'), ['-D', data, '-l', path.join(base, 'log'), ...args]);
  const cluster: Cluster = {
    port,
    url: `postgres://postgres@127.0.0.1:${port}/postgres`,
    start: () => ctl(['-o', opts, '-w', '-t', '60', 'start']),
    stop: (mode = 'fast') => ctl(['-m', mode, '-w', '-t', '60', 'stop']),
    async destroy() {
      await cluster.stop('immediate').catch(() => undefined);
      fs.rmSync(base, { recursive: true, force: true });
    },
  };
  await cluster.start();
  return cluster;
}
