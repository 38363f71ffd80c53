// The foundation, end to end: the real bin/chatd in a fresh folder.
import { mkdtemp, readFile, stat, writeFile } from 'node:fs/promises';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { runChatd, spawnChatd, type ChatdProcess } from '../helpers/chatd-process.js';

const fresh = () => mkdtemp(path.join(tmpdir(), 'chatd-e2e-'));
const portConfig = 'server:\n  port: 0\nadmin:\n  port: 0\n';
/** A fresh folder whose config puts both listeners on free ports. */
async function freshWithPorts(): Promise<string> {
  const cwd = await fresh();
  await writeFile(path.join(cwd, 'chat-server.yaml'), portConfig);
  return cwd;
}
/**
 * For a test that starts chatd in a fresh folder: its first start creates the embedded database
 * (seconds on a quiet machine, a minute on a loaded 2-core one). A hang detector, not a bound.
 */
const FIRST_START_MS = 300_000;
let running: ChatdProcess[] = [];
afterEach(async () => {
  await Promise.all(running.map((p) => p.stop('SIGKILL')));
  running = [];
});

async function start(cwd: string, env: NodeJS.ProcessEnv = {}, args?: string[]) {
  const p = await spawnChatd({ cwd, env, ...(args ? { args } : {}) });
  running.push(p);
  return p;
}

/** Checks Prometheus text exposition format line by line. */
function assertPrometheusText(text: string): void {
  const sample = /^[a-zA-Z_:][a-zA-Z0-9_:]*(\{([a-zA-Z_][a-zA-Z0-9_]*="([^"\\]|\\.)*",?)*\})? -?([0-9.e+-]+|NaN|\+Inf|-Inf)( [0-9]+)?$/;
  const lines = text.split('\n').filter((l) => l !== '');
  expect(lines.length).toBeGreaterThan(10);
  for (const line of lines) {
    if (line.startsWith('# HELP ') || line.startsWith('# TYPE ')) continue;
    expect(line, `not a Prometheus sample line: ${line}`).toMatch(sample);
  }
}

describe('chatd CLI', () => {
  it('--help lists the commands with an example; --version prints the version', async () => {
    const cwd = await fresh();
    const help = await runChatd(['--help'], { cwd });
    expect(help.code).toBe(0);
    for (const cmd of ['serve', 'config']) expect(help.stdout).toMatch(new RegExp(`^  ${cmd}`, 'm'));
    expect(help.stdout).toContain('Example');
    const serveHelp = await runChatd(['serve', '--help'], { cwd });
    expect(serveHelp.stdout).toContain('--role');
    expect(serveHelp.stdout).toContain('$ chatd serve --role all');
    const version = await runChatd(['--version'], { cwd });
    expect(version.code).toBe(0);
    expect(version.stdout).toMatch(/^chatd \d+\.\d+\.\d+/);
  });

  it('config check exits non-zero on a broken file and names the key path', async () => {
    const cwd = await fresh();
    await writeFile(path.join(cwd, 'chat-server.yaml'), 'server:\n  port: 99999\n');
    const r = await runChatd(['config', 'check'], { cwd });
    expect(r.code).not.toBe(0);
    expect(r.stderr.trim()).toBe('chatd: chat-server.yaml: server.port must be <= 65535');
    await writeFile(path.join(cwd, 'chat-server.yaml'), 'server:\n  port: 3999\n');
    const ok = await runChatd(['config', 'check'], { cwd });
    expect(ok.code).toBe(0);
    expect(ok.stdout).toMatch(/^ok: .*chat-server\.yaml/);
  });

  it('config print shows the effective config and no secret', async () => {
    const cwd = await fresh();
    await writeFile(path.join(cwd, 'chat-server.yaml'), 'auth:\n  jwtSecret: ${MY_SECRET}\n');
    const env = {
      MY_SECRET: 'file-secret-0123456789abcdef',
      GATEWAY_API_KEY: 'ck_pub_printme_not_0123456789',
      REDIS_URL: 'redis://:hunter2hunter2@127.0.0.1:6379',
    };
    const r = await runChatd(['config', 'print', '--json'], { cwd, env });
    expect(r.code).toBe(0);
    const printed = JSON.parse(r.stdout);
    expect(printed.auth.jwtSecret).toBe('[redacted]');
    expect(printed.redis.url).toBe('redis://:[redacted]@127.0.0.1:6379');
    expect(printed.server.port).toBe(3000);
    for (const secret of Object.values(env).slice(0, 2)) expect(r.stdout).not.toContain(secret);
    expect(r.stdout).not.toContain('hunter2hunter2');
  });

  it('config print cuts the passwords out of Redis Cluster seeds (REDIS_CLUSTER_NODES) and redis.cluster.password', async () => {
    const cwd = await fresh();
    const env = { REDIS_CLUSTER_NODES: 'rediss://:seedpass-0123456789@10.0.0.1:7000,rediss://user:other-seedpass-0123@10.0.0.2:7001' };
    const r = await runChatd(['config', 'print', '--json'], { cwd, env });
    expect(r.code, r.stderr).toBe(0);
    expect(JSON.parse(r.stdout).redis.cluster.nodes).toEqual([
      'rediss://:[redacted]@10.0.0.1:7000',
      'rediss://user:[redacted]@10.0.0.2:7001',
    ]);
    expect(r.stdout).not.toContain('seedpass-0123456789');
    expect(r.stdout).not.toContain('other-seedpass-0123');

    await writeFile(path.join(cwd, 'chat-server.yaml'), 'redis:\n  cluster:\n    nodes: [redis://a:7000]\n    password: ${CLUSTER_PW}\n');
    const fromFile = await runChatd(['config', 'print', '--json'], { cwd, env: { CLUSTER_PW: 'cluster-file-pass-0123' } });
    expect(fromFile.code, fromFile.stderr).toBe(0);
    expect(JSON.parse(fromFile.stdout).redis.cluster).toEqual({ nodes: ['redis://a:7000'], password: '[redacted]' });
    expect(fromFile.stdout).not.toContain('cluster-file-pass-0123');
  });

  it('an unknown role is one clear line and a non-zero exit', async () => {
    const r = await runChatd(['serve', '--role', 'nope'], { cwd: await fresh() });
    expect(r.code).toBe(1);
    expect(r.stderr.trim()).toBe('chatd: unknown role "nope": use gateway, api, ws or all');
  });
});

describe('chatd serve', () => {
  it(
    'starts on defaults with no config, answers health, readiness and metrics, and exits 0 on SIGTERM',
    async () => {
      const cwd = await freshWithPorts();
      const p = await start(cwd);
      const base = `http://127.0.0.1:${p.ports.public}`;
      const health = await fetch(`${base}/healthz`);
      expect(health.status).toBe(200);
      expect(await health.json()).toEqual({ status: 'ok' });
      const ready = await fetch(`${base}/readyz`);
      expect(ready.status).toBe(200);
      expect((await ready.json()).status).toBe('ready');

      const metrics = await fetch(`http://127.0.0.1:${p.ports.admin}/metrics`);
      expect(metrics.status).toBe(200);
      expect(metrics.headers.get('content-type')).toContain('text/plain');
      const text = await metrics.text();
      assertPrometheusText(text);
      expect(text).toContain('chatd_process_resident_memory_bytes');
      expect(text).toMatch(/chatd_http_requests_total\{role="public",route="\/healthz",status="200"\} 1/);

      // Secrets were generated once into the data folder, private to the user.
      const secrets = path.join(cwd, '.chatd', 'secrets.json');
      expect((await stat(secrets)).mode & 0o777).toBe(0o600);
      const generated = JSON.parse(await readFile(secrets, 'utf8'));
      expect(generated.gatewayApiKey).toMatch(/^ck_pub_/);
      expect(p.stderr()).toContain(generated.gatewayApiKey);
      // ...and never in the logs.
      expect(p.logs()).not.toContain(generated.jwtSecret);
      expect(p.logs()).not.toContain(generated.adminToken);

      // The admin listener requires its token for anything but health and metrics.
      const adminUrl = `http://127.0.0.1:${p.ports.admin}/admin/status`;
      const refused = await fetch(adminUrl);
      expect(refused.status).toBe(401);
      expect((await refused.json()).code).toBe('admin_token_required');
      expect((await fetch(adminUrl, { headers: { authorization: 'Bearer wrong' } })).status).toBe(401);
      const status = await fetch(adminUrl, { headers: { authorization: `Bearer ${generated.adminToken}` } });
      expect(status.status).toBe(200);
      expect((await status.json()).roles).toEqual(['gateway', 'api', 'ws']);

      const started = Date.now();
      expect(await p.stop('SIGTERM')).toBe(0);
      expect(Date.now() - started).toBeLessThan(10_000);
    },
    FIRST_START_MS,
  );

  it(
    'answers unknown routes and methods with JSON errors and echoes the request id',
    async () => {
      const cwd = await freshWithPorts();
      const p = await start(cwd);
      const base = `http://127.0.0.1:${p.ports.public}`;
      const nf = await fetch(`${base}/nope`, { headers: { 'x-request-id': 'req-123' } });
      expect(nf.status).toBe(404);
      expect(nf.headers.get('x-request-id')).toBe('req-123');
      expect(await nf.json()).toEqual({ error: 'No route GET /nope', code: 'not_found' });
      const na = await fetch(`${base}/healthz`, { method: 'DELETE' });
      expect(na.status).toBe(405);
      expect(na.headers.get('allow')).toBe('GET');
      expect((await na.json()).code).toBe('method_not_allowed');
    },
    FIRST_START_MS,
  );

  it(
    'keeps generated secrets across restarts',
    async () => {
      const cwd = await freshWithPorts();
      const first = await start(cwd);
      await first.stop();
      const before = await readFile(path.join(cwd, '.chatd', 'secrets.json'), 'utf8');
      const second = await start(cwd);
      await second.stop();
      expect(await readFile(path.join(cwd, '.chatd', 'secrets.json'), 'utf8')).toBe(before);
    },
    FIRST_START_MS,
  );

  it('a port in use is one clear line on stderr and a non-zero exit', async () => {
    const blocker = net.createServer();
    await new Promise<void>((r) => blocker.listen(0, '127.0.0.1', r));
    const port = (blocker.address() as net.AddressInfo).port;
    try {
      const cwd = await fresh();
      await writeFile(path.join(cwd, 'chat-server.yaml'), `server:\n  host: 127.0.0.1\n  port: ${port}\nadmin:\n  port: 0\n`);
      const r = await runChatd(['serve', '--role', 'all'], { cwd });
      expect(r.code).toBe(1);
      expect(r.stderr).toContain(`chatd: cannot listen on 127.0.0.1:${port} (public listener): address in use`);
      expect(
        r.stderr
          .trim()
          .split('\n')
          .filter((l) => l.startsWith('chatd:')),
      ).toHaveLength(1);
    } finally {
      blocker.close();
    }
  });

  it('refuses to run on the uWebSockets.js JavaScript fallback', async () => {
    const cwd = await freshWithPorts();
    const r = await runChatd(['serve', '--role', 'all'], { cwd, env: { UWS_USE_FALLBACK: '1' } });
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('uWebSockets.js native binary did not load');
  });

  it(
    'runs roles on their own listeners when not all together',
    async () => {
      const cwd = await fresh();
      await writeFile(path.join(cwd, 'chat-server.yaml'), 'roles:\n  api:\n    port: 0\n  ws:\n    port: 0\nadmin:\n  enabled: false\n');
      const p = await spawnChatd({ cwd, args: ['serve', '--role', 'api,ws'], waitFor: ['api', 'ws'] });
      running.push(p);
      expect(p.ports.api).not.toBe(p.ports.ws);
      for (const port of [p.ports.api, p.ports.ws]) {
        expect((await fetch(`http://127.0.0.1:${port}/healthz`)).status).toBe(200);
      }
    },
    FIRST_START_MS,
  );
});
