// A redis-server of a test's own (no persistence) on a port it keeps, so the test can kill and
// restart it there — never the shared one. Needs the redis-server binary (hasRedisServerBinary).
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import net from 'node:net';
import { freePort } from './services.js';
import { eventually } from './eventually.js';

export const hasRedisServerBinary = () => spawnSync('redis-server', ['--version']).status === 0;

/** PINGs host:port over raw RESP (no client library, so no reconnect machinery to tear down). */
function ping(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect(port, '127.0.0.1');
    let buf = '';
    s.setTimeout(1000, () => (s.destroy(), resolve(false)));
    s.on('error', () => resolve(false));
    s.on('connect', () => s.write('PING\r\n'));
    s.on('data', (d) => {
      buf += d.toString();
      if (buf.includes('\r\n')) {
        s.destroy();
        resolve(buf.startsWith('+PONG'));
      }
    });
  });
}

export class OwnRedis {
  #child: ChildProcess | undefined;
  /** Not started yet: `start()` it (or use `OwnRedis.start()` for a free port, started). */
  constructor(readonly port: number) {}

  /** Starts a redis-server on a free port and waits until it answers PING. */
  static async start(): Promise<OwnRedis> {
    const r = new OwnRedis(await freePort());
    await r.start();
    return r;
  }

  get url(): string {
    return `redis://127.0.0.1:${this.port}`;
  }

  async start(timeoutMs = 30_000): Promise<void> {
    this.#child = spawn('redis-server', ['--port', String(this.port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'], {
      stdio: 'ignore',
    });
    await eventually(() => ping(this.port), `redis-server on ${this.port} to answer PING`, { timeoutMs, intervalMs: 50 });
  }

  /** SIGKILL (a crash: with no persistence every key is gone when it comes back). */
  async kill(): Promise<void> {
    const child = this.#child;
    if (!child || child.exitCode !== null || child.signalCode !== null) return;
    const exited = new Promise((r) => child.once('exit', r));
    child.kill('SIGKILL');
    await exited;
  }
}
