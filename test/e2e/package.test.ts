// The single binary, end to end: dist/chatd (built here by `npm run package` when missing or older
// than the sources) run from empty folders with no node on PATH and a bare environment, as on a VM.
// Prints its numbers (build time, size, start-up to the first 200, RSS) for docs/deployment.md "Single binary".
import { spawn, type ChildProcess } from 'node:child_process';
import { createReadStream, existsSync, readdirSync, statSync } from 'node:fs';
import { chmod, copyFile, cp, link, mkdir, mkdtemp, readFile, rm, symlink, writeFile } from 'node:fs/promises';
import { createHash } from 'node:crypto';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { execFileSync } from 'node:child_process';
import { listenerPorts } from '../helpers/chatd-process.js';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { jwtVerify } from 'jose';
import { io, type Socket } from 'socket.io-client';
import pg from 'pg';
import pkg from '../../package.json' with { type: 'json' };
import { DATABASE_URL, has, uniqueSchema } from '../helpers/services.js';

const ROOT = path.resolve(__dirname, '../..');
const BIN = path.join(ROOT, 'dist', 'chatd');
const supported = process.platform === 'linux' && process.arch === 'x64' && process.versions.node.startsWith('20.');
/** Per-test limit: generous, since a first start creates the embedded database (seconds when idle, a minute on a loaded 2-core CI box). */
const SLOW = 300_000;
const UWS_FILE = /uws_linux_x64_115-[0-9a-f]{16}\.node$/;

/** Newest modification time of the binary's inputs (sources, packaging scripts, dependencies). */
function newestSource(): number {
  let newest = 0;
  const walk = (p: string) => {
    const st = statSync(p);
    if (st.isDirectory()) for (const e of readdirSync(p)) walk(path.join(p, e));
    else if (!/\.(test|int\.test|scenarios)\.ts$/.test(p)) newest = Math.max(newest, st.mtimeMs); // tests are not in the binary
  };
  for (const p of ['src', 'scripts/package', 'scripts/esbuild-raw.mjs', 'package.json', 'package-lock.json']) {
    if (existsSync(path.join(ROOT, p))) walk(path.join(ROOT, p));
  }
  return newest;
}

function run(
  cmd: string,
  args: string[],
  opts: { cwd: string; env: NodeJS.ProcessEnv },
): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { cwd: opts.cwd, env: opts.env, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (c: string) => (stdout += c));
    child.stderr.setEncoding('utf8').on('data', (c: string) => (stderr += c));
    child.on('error', reject);
    child.on('exit', (code) => resolve({ code, stdout, stderr }));
  });
}

interface Running {
  readonly child: ChildProcess;
  readonly ports: Record<string, number>;
  readonly spawnedAt: number;
  stdout(): string;
  stderr(): string;
  readonly exited: Promise<number | null>;
}

let running: Running[] = [];
afterEach(() => {
  for (const r of running) if (r.child.exitCode === null && r.child.signalCode === null) r.child.kill('SIGKILL');
  running = [];
});

/** Starts `dist/chatd serve --role all` and resolves once the public and admin listeners are logged. */
function serve(cwd: string, env: NodeJS.ProcessEnv, bin = BIN): Promise<Running> {
  const spawnedAt = performance.now();
  const child = spawn(bin, ['serve', '--role', 'all'], { cwd, env, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  const ports: Record<string, number> = {};
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  const r: Running = { child, ports, spawnedAt, stdout: () => out, stderr: () => err, exited };
  running.push(r);
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`dist/chatd did not listen within 240 s\nstdout:\n${out}\nstderr:\n${err}`)), 240_000);
    child.stderr!.setEncoding('utf8').on('data', (c: string) => (err += c));
    child.stdout!.setEncoding('utf8').on('data', (chunk: string) => {
      out += chunk;
      listenerPorts(out, ports);
      if (ports.public !== undefined && ports.admin !== undefined) {
        clearTimeout(timer);
        resolve(r);
      }
    });
    void exited.then((code) => {
      clearTimeout(timer);
      reject(new Error(`dist/chatd exited with ${code} before listening\nstdout:\n${out}\nstderr:\n${err}`));
    });
  });
}

/** Polls until `url` answers 200 (a first start initialises the embedded database). */
async function until200(url: string, deadlineMs = 240_000): Promise<Response> {
  const end = Date.now() + deadlineMs;
  let last = '';
  while (Date.now() < end) {
    try {
      const res = await fetch(url);
      if (res.status === 200) return res;
      last = `${res.status} ${await res.text()}`;
    } catch (e) {
      last = String(e);
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`${url} did not answer 200 within ${deadlineMs} ms; last: ${last}`);
}

/** The shared objects a process has mapped, from /proc (proof that the addon was dlopen'ed). */
const mappedFiles = async (pid: number) =>
  new Set(
    (await readFile(`/proc/${pid}/maps`, 'utf8'))
      .split('\n')
      .map((l) => l.split(/\s+/)[5] ?? '')
      .filter((f) => f.startsWith('/')),
  );

const rssMb = async (pid: number) => {
  const status = await readFile(`/proc/${pid}/status`, 'utf8');
  const kb = (k: string) => Number(status.match(new RegExp(`^${k}:\\s+(\\d+) kB`, 'm'))?.[1] ?? NaN);
  return { rss: Math.round(kb('VmRSS') / 1024), peak: Math.round(kb('VmHWM') / 1024) };
};

/**
 * The noexec tests mount a tmpfs under a folder named after the test process; a run killed before its
 * teardown leaves it mounted. Unmounts those whose process is gone.
 */
function unmountLeftovers(): void {
  if (process.getuid?.() !== 0) return;
  let mounts = '';
  try {
    mounts = execFileSync('findmnt', ['-rn', '-o', 'TARGET'], { encoding: 'utf8' });
  } catch {
    return;
  }
  for (const target of mounts.split('\n')) {
    const pid = target.match(/\/chatd-(?:pkg|noexec-unit)-(\d+)/)?.[1];
    if (!pid || existsSync(`/proc/${pid}`)) continue;
    try {
      execFileSync('umount', [target], { stdio: 'ignore' });
    } catch {
      /* busy or gone: not ours to force */
    }
  }
}

/** Resolves once the socket is connected; rejects with the server's CONNECT_ERROR. */
const connected = (socket: Socket) =>
  new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('socket did not connect within 30 s')), 30_000);
    socket.once('connect', () => (clearTimeout(timer), resolve()));
    socket.once('connect_error', (err) => (clearTimeout(timer), reject(err)));
  });

const sha256File = (file: string) =>
  new Promise<string>((resolve, reject) => {
    const h = createHash('sha256');
    createReadStream(file)
      .on('error', reject)
      .on('data', (c) => h.update(c))
      .on('end', () => resolve(h.digest('hex')));
  });

describe.skipIf(!supported)('single binary (dist/chatd)', () => {
  let base: string;
  /** A PATH with no node on it: an empty folder. */
  let emptyBin: string;
  const numbers: Record<string, string> = {};

  beforeAll(async () => {
    unmountLeftovers();
    base = await mkdtemp(path.join(tmpdir(), `chatd-pkg-${process.pid}-`));
    emptyBin = path.join(base, 'empty-bin');
    await mkdir(emptyBin);
    if (!existsSync(BIN) || statSync(BIN).mtimeMs < newestSource()) {
      const t0 = performance.now();
      const b = await run(process.execPath, [path.join(ROOT, 'scripts/package/build.mjs')], { cwd: ROOT, env: process.env });
      if (b.code !== 0) throw new Error(`npm run package failed (${b.code}):\n${b.stdout}\n${b.stderr}`);
      numbers.build = `${((performance.now() - t0) / 1000).toFixed(1)} s`;
    } else {
      numbers.build = 'up to date, not rebuilt';
    }
    numbers.size = `${(statSync(BIN).size / 1e6).toFixed(1)} MB`;
  }, 600_000);

  afterAll(async () => {
    console.log(
      `[package numbers] ${Object.entries(numbers)
        .map(([k, v]) => `${k}: ${v}`)
        .join('; ')}`,
    );
    await rm(base, { recursive: true, force: true });
  });

  /** A bare environment like `env -i`: no node on PATH, HOME and the caches inside the test folder. */
  const bareEnv = (home: string, extra: NodeJS.ProcessEnv = {}): NodeJS.ProcessEnv => ({
    PATH: emptyBin,
    HOME: home,
    TMPDIR: path.join(home, 'tmp'),
    ...extra,
  });

  async function freshFolder(name: string): Promise<string> {
    const dir = path.join(base, name);
    await mkdir(path.join(dir, 'tmp'), { recursive: true });
    await writeFile(path.join(dir, 'chat-server.yaml'), 'server:\n  port: 0\nadmin:\n  port: 0\n');
    return dir;
  }

  it(
    'prints its version and build commit, and the same commands as the node build, with no node on PATH',
    async () => {
      const cwd = await freshFolder('version');
      expect(existsSync(path.join(emptyBin, 'node'))).toBe(false);
      const t0 = performance.now();
      const r = await run(BIN, ['--version'], { cwd, env: bareEnv(cwd) });
      numbers.version = `${Math.round(performance.now() - t0)} ms`;
      expect(r.stderr).toBe(''); // no SEA warning, no require() warning
      expect(r.code).toBe(0);
      expect(r.stdout.trim()).toMatch(new RegExp(`^chatd ${pkg.version.replace(/\./g, '\\.')} \\(([0-9a-f]{7,}|unknown)\\) node v20\\.`));
      // Every command of the CLI is in the binary: its help is the node_modules build's, word for word.
      const help = await run(BIN, ['--help'], { cwd, env: bareEnv(cwd) });
      const nodeHelp = await run(process.execPath, [path.join(ROOT, 'bin', 'chatd'), '--help'], { cwd, env: { PATH: process.env.PATH } });
      expect(help.code).toBe(0);
      expect(help.stdout).toContain('serve');
      expect(help.stdout).toBe(nodeHelp.stdout);
    },
    SLOW,
  );

  let zeroConfigHome: string;
  const tenantId = 'pkg-tenant';
  const sessionId = 'pkg-session';
  const fingerprint = 'pkg-fp';

  /** A visitor token from the public listener, with the given API key. */
  async function visitorToken(port: number, apiKey: string): Promise<Response> {
    return fetch(`http://127.0.0.1:${port}/api/chat/anonymous-token`, {
      method: 'POST',
      headers: { authorization: `Bearer ${apiKey}`, 'content-type': 'application/json' },
      body: JSON.stringify({ tenantId, sessionId, fingerprint }),
    });
  }

  async function history(port: number, token: string): Promise<{ messages: { id: string; text: string; seq: number }[] }> {
    const res = await fetch(`http://127.0.0.1:${port}/api/chat/messages?tenantId=${tenantId}&sessionId=${sessionId}`, {
      headers: { authorization: `Bearer ${token}` },
    });
    expect(res.status).toBe(200);
    return (await res.json()) as { messages: { id: string; text: string; seq: number }[] };
  }

  it(
    'serves on embedded defaults from an empty folder: health, readiness, native uWebSockets.js, PGlite, a message over Socket.IO, exit 0 on SIGTERM',
    async () => {
      const cwd = await freshFolder('zero-config');
      zeroConfigHome = cwd;
      const env = bareEnv(cwd);
      const p = await serve(cwd, env);
      const port = p.ports.public!;
      const health = await until200(`http://127.0.0.1:${port}/healthz`);
      numbers.firstHealthz = `${Math.round(performance.now() - p.spawnedAt)} ms after spawn`;
      expect(await health.json()).toMatchObject({ status: 'ok' });
      const ready = await until200(`http://127.0.0.1:${port}/readyz`);
      numbers.firstReadyz = `${Math.round(performance.now() - p.spawnedAt)} ms after spawn (first start, empty data folder)`;
      const readyBody = (await ready.json()) as { status: string; checks: Record<string, string> };
      expect(readyBody.status).toBe('ready');
      expect(readyBody.checks.pglite).toBe('ok'); // the embedded database runs inside the binary
      expect((await fetch(`http://127.0.0.1:${p.ports.admin}/readyz`)).status).toBe(200);

      // uWebSockets.js is the native addon, extracted to the XDG cache (~/.cache/chatd) and mapped.
      const cacheDir = path.join(cwd, '.cache', 'chatd');
      const cached = readdirSync(cacheDir);
      expect(cached).toHaveLength(1);
      expect(cached[0]).toMatch(UWS_FILE);
      expect((await mappedFiles(p.child.pid!)).has(path.join(cacheDir, cached[0]!))).toBe(true);
      expect(p.stderr()).not.toContain('native module cache'); // a clean start says nothing about it

      // No JWT_SECRET or GATEWAY_API_KEY: generated into the data folder and the key printed.
      const secrets = JSON.parse(await readFile(path.join(cwd, '.chatd', 'secrets.json'), 'utf8')) as { gatewayApiKey: string };
      expect(p.stderr()).toContain(secrets.gatewayApiKey);

      // A visitor token, a message over Socket.IO (websocket), seen by an agent whose token comes
      // from `chatd token issue` (the binary's CLI, reading the same generated secrets).
      const tokenRes = await visitorToken(port, secrets.gatewayApiKey);
      expect(tokenRes.status).toBe(200);
      const { token } = (await tokenRes.json()) as { token: string };
      const issued = await run(BIN, ['token', 'issue', '--tenant', tenantId, '--admin', '--json'], { cwd, env });
      expect(issued.stderr).toBe('');
      expect(issued.code).toBe(0);
      const agentToken = (JSON.parse(issued.stdout) as { token: string }).token;

      const url = `http://127.0.0.1:${port}`;
      const agent = io(url, { auth: { token: agentToken }, transports: ['websocket'], reconnection: false });
      const visitor = io(url, {
        auth: { apiKey: secrets.gatewayApiKey, token, sessionId, fingerprint },
        transports: ['websocket'],
        reconnection: false,
      });
      try {
        await Promise.all([connected(agent), connected(visitor)]);
        const seen = new Promise<{ message: { id: string; text: string } }>((resolve) => agent.on('meta_message_created', resolve));
        const ack = (await visitor
          .timeout(30_000)
          .emitWithAck('message', { text: 'hello from the binary', tenantId, sessionId, fingerprint })) as {
          success: boolean;
          messageId: string;
        };
        expect(ack).toMatchObject({ success: true, sessionId });
        const event = await seen;
        expect(event.message).toMatchObject({ id: ack.messageId, text: 'hello from the binary' });
      } finally {
        agent.close();
        visitor.close();
      }
      expect((await history(port, token)).messages.map((m) => m.text)).toEqual(['hello from the binary']);

      const mem = await rssMb(p.child.pid!);
      numbers.rssAfterFirstStart = `${mem.rss} MB (peak ${mem.peak} MB)`;
      // initdb (~800 MB at its peak, never given back by a wasm instance) ran in a child of the binary.
      expect(mem.peak).toBeLessThan(600);
      p.child.kill('SIGTERM');
      expect(await p.exited).toBe(0);
    },
    SLOW,
  );

  it(
    'restarts on an initialised folder, keeps the messages and reuses the cached addon',
    async () => {
      const cwd = zeroConfigHome;
      const cacheDir = path.join(cwd, '.cache', 'chatd');
      const [file] = readdirSync(cacheDir);
      const before = statSync(path.join(cacheDir, file!)).mtimeMs;
      const p = await serve(cwd, bareEnv(cwd));
      const port = p.ports.public!;
      await until200(`http://127.0.0.1:${port}/healthz`);
      numbers.restartHealthz = `${Math.round(performance.now() - p.spawnedAt)} ms after spawn`;
      await until200(`http://127.0.0.1:${port}/readyz`);
      numbers.restartReadyz = `${Math.round(performance.now() - p.spawnedAt)} ms after spawn`;
      const secrets = JSON.parse(await readFile(path.join(cwd, '.chatd', 'secrets.json'), 'utf8')) as { gatewayApiKey: string };
      const { token } = (await (await visitorToken(port, secrets.gatewayApiKey)).json()) as { token: string };
      expect((await history(port, token)).messages.map((m) => m.text)).toEqual(['hello from the binary']);
      const mem = await rssMb(p.child.pid!);
      numbers.rssAfterRestart = `${mem.rss} MB (peak ${mem.peak} MB)`;
      expect(statSync(path.join(cacheDir, file!)).mtimeMs).toBe(before); // not rewritten
      p.child.kill('SIGTERM');
      expect(await p.exited).toBe(0);
    },
    SLOW,
  );

  it(
    'uses JWT_SECRET and GATEWAY_API_KEY from the environment and generates neither',
    async () => {
      const cwd = await freshFolder('env-secrets');
      // A fresh data folder (no secrets), but the database created by the first test: an initdb costs
      // seconds and ~850 MB, and is not what this test is about.
      await writeFile(
        path.join(cwd, 'chat-server.yaml'),
        `server:\n  port: 0\nadmin:\n  port: 0\ndatabase:\n  embeddedDir: ${path.join(zeroConfigHome, '.chatd', 'data')}\n`,
      );
      const apiKey = 'ck_pub_packagetest_0123456789abcdef';
      const jwtSecret = 'package-test-jwt-secret-0123456789abcdef';
      const p = await serve(cwd, bareEnv(cwd, { JWT_SECRET: jwtSecret, GATEWAY_API_KEY: apiKey }));
      const port = p.ports.public!;
      await until200(`http://127.0.0.1:${port}/readyz`);
      expect((await visitorToken(port, 'ck_pub_wrong_0123456789abcdef')).status).toBe(401);
      const res = await visitorToken(port, apiKey);
      expect(res.status).toBe(200);
      const { token } = (await res.json()) as { token: string };
      const { payload } = await jwtVerify(token, new TextEncoder().encode(jwtSecret), { algorithms: ['HS256'] });
      expect(payload).toMatchObject({ tid: tenantId, role: 'visitor' });
      const secretsFile = path.join(cwd, '.chatd', 'secrets.json');
      const generated = existsSync(secretsFile) ? (JSON.parse(await readFile(secretsFile, 'utf8')) as Record<string, unknown>) : {};
      expect(generated.jwtSecret).toBeUndefined();
      expect(generated.gatewayApiKey).toBeUndefined();
      expect(p.stdout()).not.toContain(jwtSecret);
      p.child.kill('SIGTERM');
      expect(await p.exited).toBe(0);
    },
    SLOW,
  );

  it(
    'replaces a corrupt cached addon and still runs natively',
    async () => {
      const cwd = zeroConfigHome;
      const cacheDir = path.join(cwd, '.cache', 'chatd');
      const [name] = readdirSync(cacheDir);
      const file = path.join(cacheDir, name!);
      const good = await sha256File(file);
      await chmod(file, 0o600);
      await writeFile(file, 'this is not a shared object');
      const p = await serve(cwd, bareEnv(cwd));
      await until200(`http://127.0.0.1:${p.ports.public}/healthz`);
      expect(await sha256File(file)).toBe(good);
      expect((await mappedFiles(p.child.pid!)).has(file)).toBe(true);
      p.child.kill('SIGTERM');
      expect(await p.exited).toBe(0);
    },
    SLOW,
  );

  it(
    'runs as a dedicated unprivileged user, as the systemd unit does (state folder, CHATD_CACHE_DIR)',
    async (ctx) => {
      if (process.getuid?.() !== 0) ctx.skip('switching to another user needs root');
      const uid = 65534; // nobody
      // Like StateDirectory=/CacheDirectory=: folders owned by the user, mode 0700; the database the
      // first test created is copied in (an initdb is not what this test is about).
      const state = path.join(base, 'as-user', 'state');
      const cache = path.join(base, 'as-user', 'cache');
      await mkdir(cache, { recursive: true, mode: 0o700 });
      await cp(path.join(zeroConfigHome, '.chatd'), path.join(state, '.chatd'), { recursive: true });
      await mkdir(path.join(state, 'tmp'));
      await writeFile(path.join(state, 'chat-server.yaml'), 'server:\n  port: 0\nadmin:\n  port: 0\n');
      execFileSync('chown', ['-R', `${uid}:${uid}`, path.join(base, 'as-user')]);
      await chmod(base, 0o755); // mkdtemp made it 0700: let the user reach its folders
      await chmod(path.join(base, 'as-user'), 0o755);
      // Installed where every user can reach it, as on a VM (/usr/local/bin): the checkout may live
      // under a folder the user cannot enter (a home folder is often 0700).
      const installed = path.join(base, 'bin', 'chatd');
      await mkdir(path.dirname(installed), { mode: 0o755 });
      await copyFile(BIN, installed);
      await chmod(installed, 0o755);
      const env = bareEnv(state, { CHATD_CACHE_DIR: cache });
      const child = spawn(installed, ['serve', '--role', 'all'], { cwd: state, env, uid, gid: uid, stdio: ['ignore', 'pipe', 'pipe'] });
      let out = '';
      let err = '';
      child.stdout.setEncoding('utf8').on('data', (c: string) => (out += c));
      child.stderr.setEncoding('utf8').on('data', (c: string) => (err += c));
      const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
      running.push({ child, ports: {}, spawnedAt: 0, stdout: () => out, stderr: () => err, exited });
      const deadline = Date.now() + 240_000;
      let port: number | undefined;
      while (port === undefined && Date.now() < deadline && child.exitCode === null) {
        port = Number(out.match(/"listener":"public"[^\n]*"url":"http:\/\/[^:]+:(\d+)"/)?.[1]) || undefined;
        await new Promise((r) => setTimeout(r, 50));
      }
      expect(port, `not listening\nstdout:\n${out}\nstderr:\n${err}`).toBeDefined();
      const ready = await until200(`http://127.0.0.1:${port}/readyz`);
      expect(((await ready.json()) as { checks: Record<string, string> }).checks.pglite).toBe('ok');
      const [addon] = readdirSync(cache);
      expect(addon).toMatch(UWS_FILE);
      expect(statSync(path.join(cache, addon!)).uid).toBe(uid);
      expect((await mappedFiles(child.pid!)).has(path.join(cache, addon!))).toBe(true);
      expect(err).not.toContain('native module cache'); // the first folder worked
      child.kill('SIGTERM');
      expect(await exited).toBe(0);
    },
    SLOW,
  );

  it(
    'runs migrations against PostgreSQL (pg inside the binary)',
    async (ctx) => {
      if (!(await has('postgres'))) ctx.skip('PostgreSQL is not reachable');
      const schema = uniqueSchema('pkg');
      const admin = new pg.Client({ connectionString: DATABASE_URL });
      await admin.connect();
      try {
        await admin.query(`CREATE SCHEMA ${schema}`);
        const cwd = await freshFolder('postgres');
        await writeFile(path.join(cwd, 'chat-server.yaml'), `database:\n  schema: ${schema}\n`);
        const env = bareEnv(cwd, { DATABASE_URL });
        const up = await run(BIN, ['migrate', 'up', '--json'], { cwd, env });
        expect(up.stderr).toBe('');
        expect(up.code).toBe(0);
        const steps = (JSON.parse(up.stdout) as { steps: { status: string }[] }).steps;
        expect(steps.length).toBeGreaterThan(0);
        const status = await run(BIN, ['migrate', 'status', '--check', '--json'], { cwd, env });
        expect(status.code).toBe(0);
        expect((JSON.parse(status.stdout) as { pending: number }).pending).toBe(0);
        const tables = await admin.query('SELECT count(*)::int AS n FROM information_schema.tables WHERE table_schema = $1', [schema]);
        expect(tables.rows[0].n).toBeGreaterThan(1);
      } finally {
        await admin.query(`DROP SCHEMA IF EXISTS ${schema} CASCADE`);
        await admin.end();
      }
    },
    SLOW,
  );

  it(
    'ships a VM config that validates and a systemd unit whose commands work with the binary',
    async () => {
      const cwd = await freshFolder('vm-config');
      const vmConfig = path.join(ROOT, 'config', 'chat-server.yaml');
      const check = await run(BIN, ['config', 'check', '--config', vmConfig], { cwd, env: bareEnv(cwd) });
      expect(check.stderr).toBe('');
      expect(check.code).toBe(0);
      const printed = JSON.parse((await run(BIN, ['config', 'print', '--json', '--config', vmConfig], { cwd, env: bareEnv(cwd) })).stdout);
      expect(printed).toMatchObject({
        dataDir: '/var/lib/chatd',
        admin: { host: '127.0.0.1' },
        log: { format: 'json' },
        demo: { enabled: false },
      });

      const unitText = await readFile(path.join(ROOT, 'config', 'chatd.service'), 'utf8');
      for (const line of [
        'User=chatd',
        'NoNewPrivileges=yes',
        'ProtectSystem=strict',
        'StateDirectory=chatd',
        'Environment=CHATD_CACHE_DIR=/var/cache/chatd',
      ]) {
        expect(unitText).toMatch(new RegExp(`^${line.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}$`, 'm'));
      }
      expect(Number(unitText.match(/^LimitNOFILE=(\d+)$/m)?.[1])).toBeGreaterThanOrEqual(65536);
      expect(unitText).not.toMatch(/^MemoryDenyWriteExecute=yes/m); // V8's JIT needs W+X pages
      // The unit's own command lines, pointed at this build.
      const local = unitText.replaceAll('/usr/local/bin/chatd', BIN).replaceAll('/etc/chatd/chat-server.yaml', vmConfig);
      const pre = local.match(/^ExecStartPre=(.+)$/m)![1]!.split(' ');
      expect((await run(pre[0]!, pre.slice(1), { cwd, env: bareEnv(cwd) })).code).toBe(0);
      expect(local.match(/^ExecStart=(.+)$/m)![1]).toBe(`${BIN} serve --role all --config ${vmConfig}`);
      const analyze = ['/usr/bin/systemd-analyze', '/bin/systemd-analyze'].find((f) => existsSync(f));
      if (analyze) {
        const unitFile = path.join(cwd, 'chatd.service');
        await writeFile(unitFile, local);
        const v = await run(analyze, ['verify', unitFile], { cwd, env: { PATH: '/usr/bin:/bin' } });
        expect(v.stderr).toBe('');
        expect(v.code).toBe(0);
      }
    },
    SLOW,
  );

  describe('noexec cache folders', () => {
    let noexec: string | undefined;
    beforeAll(async () => {
      if (process.getuid?.() !== 0) return;
      const dir = path.join(base, 'noexec');
      await mkdir(dir);
      try {
        execFileSync('mount', ['-t', 'tmpfs', '-o', 'noexec,size=64m,mode=0700', 'tmpfs', dir], { stdio: 'ignore' });
        noexec = dir;
      } catch {
        noexec = undefined;
      }
    });
    afterAll(() => {
      if (noexec) execFileSync('umount', [noexec]);
    });

    it(
      'skips a noexec CHATD_CACHE_DIR for the next folder, and says so',
      async (ctx) => {
        if (!noexec) ctx.skip('mounting a noexec tmpfs needs root');
        const cwd = zeroConfigHome;
        const p = await serve(cwd, bareEnv(cwd, { CHATD_CACHE_DIR: path.join(noexec!, 'cache') }));
        await until200(`http://127.0.0.1:${p.ports.public}/healthz`);
        expect(p.stderr()).toMatch(/native module cache: skipped .*\(CHATD_CACHE_DIR\): dlopen failed \(is the folder mounted noexec\?\)/);
        const [name] = readdirSync(path.join(cwd, '.cache', 'chatd'));
        expect(p.stderr()).toContain(`native module cache: using ${path.join(cwd, '.cache', 'chatd', name!)}`);
        expect((await mappedFiles(p.child.pid!)).has(path.join(cwd, '.cache', 'chatd', name!))).toBe(true);
        p.child.kill('SIGTERM');
        expect(await p.exited).toBe(0);
      },
      SLOW,
    );

    it(
      'refuses to serve when no cache folder can load the addon; other commands still run',
      async (ctx) => {
        if (!noexec) ctx.skip('mounting a noexec tmpfs needs root');
        // Every candidate on the noexec mount: CHATD_CACHE_DIR, XDG cache, tmp, and next to the binary
        // (a copy of the binary whose .chatd-cache is a link into the mount).
        const cwd = await freshFolder('refuse');
        const binDir = path.join(cwd, 'bin');
        await mkdir(binDir);
        const bin = path.join(binDir, 'chatd');
        await link(BIN, bin).catch(() => copyFile(BIN, bin));
        await symlink(path.join(noexec!, 'beside'), path.join(binDir, '.chatd-cache'));
        const env = bareEnv(cwd, {
          CHATD_CACHE_DIR: path.join(noexec!, 'explicit'),
          XDG_CACHE_HOME: path.join(noexec!, 'xdg'),
          TMPDIR: path.join(noexec!, 'tmp'),
        });
        await mkdir(path.join(noexec!, 'beside'));
        const r = await run(bin, ['serve', '--role', 'all'], { cwd, env });
        expect(r.code).toBe(1);
        expect(r.stderr).toContain('the native uWebSockets.js module');
        expect(r.stderr).toContain('refusing to start');
        for (const source of ['CHATD_CACHE_DIR', 'XDG cache', 'next to the binary', 'tmp'])
          expect(r.stderr).toContain(`(${source}): dlopen failed`);
        expect(r.stdout).not.toContain('listening');
        const v = await run(bin, ['--version'], { cwd, env });
        expect(v.code).toBe(0);
        expect(v.stdout).toMatch(/^chatd /);
        await rm(bin);
      },
      SLOW,
    );
  });
});
