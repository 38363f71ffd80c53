// Redis servers of the benchmark's own (never the shared one, whose CPU other work uses): one
// standalone redis-server, or a cluster of masters (`--cluster-enabled yes`, joined with
// `redis-cli --cluster create … --cluster-replicas 0`), each in a temp folder, no persistence,
// pinned with the servers under test. `pids` are the redis-server processes, for their CPU time.
import { execFile, spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { hasTaskset, sleep } from './proc.mjs';

const run = promisify(execFile);

const freePort = () =>
  new Promise((resolve) => {
    const s = net.createServer().listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });

/** One command over raw RESP; resolves the first reply line (or the bulk body). */
function command(port, ...args) {
  return new Promise((resolve) => {
    const s = net.connect(port, '127.0.0.1');
    let buf = '';
    s.setTimeout(2000, () => (s.destroy(), resolve(null)));
    s.on('error', () => resolve(null));
    s.on('connect', () => s.write(`*${args.length}\r\n${args.map((a) => `$${Buffer.byteLength(a)}\r\n${a}\r\n`).join('')}`));
    s.on('data', (d) => {
      buf += d.toString();
      const bulk = /^\$(-?\d+)\r\n/.exec(buf);
      if (bulk && Buffer.byteLength(buf) >= bulk[0].length + Number(bulk[1]) + 2) {
        s.destroy();
        resolve(buf.slice(bulk[0].length));
      } else if (!bulk && buf.includes('\r\n')) {
        s.destroy();
        resolve(buf.slice(0, buf.indexOf('\r\n')));
      }
    });
  });
}

async function until(fn, what, timeoutMs = 30_000) {
  const end = Date.now() + timeoutMs;
  while (Date.now() < end) {
    if (await fn()) return;
    await sleep(50);
  }
  throw new Error(`${what}: not within ${timeoutMs} ms`);
}

function startServer(cpu, dir, port, extra) {
  const args = ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', dir, ...extra];
  const argv = hasTaskset ? ['taskset', '-c', String(cpu), 'redis-server', ...args] : ['redis-server', ...args];
  return spawn(argv[0], argv.slice(1), { stdio: 'ignore' });
}

/**
 * Starts Redis for a run: `masters` = 0 a standalone server, else a cluster of that many masters.
 * Resolves { urls, pids, cluster, stop }.
 */
export async function startRedis({ masters = 0, cpu = 0 } = {}) {
  const root = mkdtempSync(path.join(os.tmpdir(), 'chatd-bench-redis-'));
  const children = [];
  const stop = async () => {
    await Promise.all(
      children.map(
        (c) =>
          new Promise((resolve) => {
            if (c.exitCode !== null || c.signalCode !== null) return resolve();
            c.once('exit', resolve);
            c.kill('SIGKILL');
          }),
      ),
    );
    rmSync(root, { recursive: true, force: true });
  };
  try {
    const ports = [];
    for (let i = 0; i < Math.max(1, masters); i++) {
      const port = await freePort();
      const extra =
        masters > 0 ? ['--cluster-enabled', 'yes', '--cluster-port', String(await freePort()), '--cluster-config-file', 'nodes.conf'] : [];
      const dir = mkdtempSync(path.join(root, 'n'));
      children.push(startServer(cpu, dir, port, extra));
      ports.push(port);
    }
    for (const port of ports) await until(async () => (await command(port, 'PING')) === '+PONG', `redis on ${port}`);
    if (masters > 0) {
      await run('redis-cli', ['--cluster', 'create', ...ports.map((p) => `127.0.0.1:${p}`), '--cluster-replicas', '0', '--cluster-yes'], {
        timeout: 60_000,
      });
      await until(async () => {
        for (const port of ports) if (!(await command(port, 'CLUSTER', 'INFO'))?.includes('cluster_state:ok')) return false;
        return true;
      }, 'the cluster to be ok');
    }
    return { urls: ports.map((p) => `redis://127.0.0.1:${p}`), pids: children.map((c) => c.pid), cluster: masters > 0, stop };
  } catch (err) {
    await stop();
    throw err;
  }
}
