// The quick start as a new user meets it: `npx chatd serve` stops with its
// supervisor's signal, zero-config has a secret key, the port is set without a file, every log line
// is JSON, commander's errors are one `chatd:` line, `--ttl` has the config's bounds, `/` points to
// the demo.
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, readFile, writeFile } from 'node:fs/promises';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { listenerPorts, logRecords, runChatd, spawnChatd, type ChatdProcess } from '../helpers/chatd-process.js';
import { eventually } from '../helpers/eventually.js';

const ROOT = path.resolve(__dirname, '../..');
const fresh = () => mkdtemp(path.join(tmpdir(), 'chatd-quick-'));
const jsonLogs = 'log:\n  format: json\n';
let running: ChatdProcess[] = [];
const orphans = new Set<number>();
afterEach(async () => {
  await Promise.all(running.map((p) => p.stop('SIGKILL')));
  running = [];
  for (const pid of orphans) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      /* already gone */
    }
  }
  orphans.clear();
});

async function folderWith(yaml: string): Promise<string> {
  const cwd = await fresh();
  await writeFile(path.join(cwd, 'chat-server.yaml'), yaml);
  return cwd;
}

const alive = (pid: number) => {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
};

const portRefuses = (port: number) =>
  new Promise<boolean>((resolve) => {
    const s = net.connect(port, '127.0.0.1');
    s.once('connect', () => (s.destroy(), resolve(false)));
    s.once('error', () => resolve(true));
  });

/** `npm exec` of this checkout's chatd (never the registry), ready once its listeners are logged. */
function npmExecServe(
  configFile: string,
): Promise<{ npm: ChildProcess; chatdPid: number; ports: Record<string, number>; exited: Promise<unknown> }> {
  const npm = spawn(
    'npm',
    ['exec', '--offline', '--yes', `--package=${ROOT}`, '--', 'chatd', 'serve', '--role', 'all', '--config', configFile],
    {
      cwd: path.dirname(configFile),
      env: { PATH: process.env.PATH, HOME: process.env.HOME },
      stdio: ['ignore', 'pipe', 'pipe'],
      // Its own process group, as a terminal's foreground job is (for the Ctrl-C case).
      detached: true,
    },
  );
  const exited = new Promise((r) => npm.once('exit', r));
  let out = '';
  let err = '';
  const ports: Record<string, number> = {};
  let chatdPid = 0;
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => (npm.kill('SIGKILL'), reject(new Error(`not ready\n${out}\n${err}`))), 60_000);
    npm.stderr!.setEncoding('utf8').on('data', (c: string) => (err += c));
    npm.stdout!.setEncoding('utf8').on('data', (c: string) => {
      out += c;
      for (const rec of logRecords(out)) {
        if (rec.pid) {
          chatdPid = rec.pid;
          orphans.add(rec.pid);
        }
      }
      listenerPorts(out, ports);
      if (ports.public && ports.admin && chatdPid) {
        clearTimeout(timer);
        resolve({ npm, chatdPid, ports, exited });
      }
    });
    void exited.then(() => reject(new Error(`npm exited before ready\n${out}\n${err}`)));
  });
}

describe('npx chatd serve under a supervisor', () => {
  // npm runs npm → sh -c → node and forwards SIGTERM/SIGINT to the shell only: the server must not
  // outlive the process the user (or a supervisor) started, whichever way it is stopped.
  const cases: [string, (npm: ChildProcess) => void][] = [
    ['SIGTERM to the npx process', (npm) => npm.kill('SIGTERM')],
    ['SIGINT to the npx process, then SIGKILL (a supervisor escalating)', (npm) => (npm.kill('SIGINT'), npm.kill('SIGKILL'))],
    ['SIGINT to the process group (Ctrl-C)', (npm) => process.kill(-npm.pid!, 'SIGINT')],
  ];
  for (const [name, stop] of cases) {
    it(`${name} stops the server: no chatd left on its ports`, async () => {
      const cwd = await fresh();
      const config = path.join(cwd, 'chat-server.yaml');
      await writeFile(
        config,
        `server:\n  host: 127.0.0.1\n  port: 0\nadmin:\n  port: 0\ndataDir: ${JSON.stringify(path.join(cwd, 'data'))}\n${jsonLogs}`,
      );
      const { npm, chatdPid, ports, exited } = await npmExecServe(config);
      expect(chatdPid).not.toBe(npm.pid);
      expect((await fetch(`http://127.0.0.1:${ports.public}/healthz`)).status).toBe(200);
      stop(npm);
      await exited;
      await eventually(() => !alive(chatdPid), `chatd pid ${chatdPid} to exit (${name})`);
      expect(await portRefuses(ports.public!)).toBe(true);
      expect(await portRefuses(ports.admin!)).toBe(true);
    }, 120_000);
  }
});

describe('zero-config secret key', () => {
  it('is generated beside the publishable key, printed once at first start, mints agent tokens; the publishable key does not', async () => {
    const cwd = await folderWith(`server:\n  port: 0\nadmin:\n  port: 0\n${jsonLogs}`);
    const p = await spawnChatd({ cwd });
    running.push(p);
    const secrets = JSON.parse(await readFile(path.join(cwd, '.chatd', 'secrets.json'), 'utf8'));
    expect(secrets.secretApiKey).toMatch(/^ck_sec_/);
    expect(secrets.gatewayApiKey).toMatch(/^ck_pub_/);
    // The one first-start notice carries both keys (stderr, JSON); the server's log carries neither.
    const notice = p
      .stderr()
      .split('\n')
      .filter(Boolean)
      .map((l) => JSON.parse(l))
      .find((r) => r.secretKey);
    expect(notice).toMatchObject({ publishableKey: secrets.gatewayApiKey, secretKey: secrets.secretApiKey });
    expect(p.logs()).not.toContain(secrets.secretApiKey);

    const base = `http://127.0.0.1:${p.ports.public}`;
    const mint = (key: string) =>
      fetch(`${base}/api/chat/agent-token`, {
        method: 'POST',
        headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
        body: JSON.stringify({ tenantId: 'any-tenant', userId: 'agent-1' }),
      });
    const ok = await mint(secrets.secretApiKey);
    expect(ok.status).toBe(200);
    const { token } = (await ok.json()) as { token: string };
    expect(JSON.parse(Buffer.from(token.split('.')[1]!, 'base64url').toString())).toMatchObject({ role: 'agent', tid: 'any-tenant' });
    const online = await fetch(`${base}/api/chat/online-users?tenantId=any-tenant`, {
      headers: { authorization: `Bearer ${secrets.secretApiKey}` },
    });
    expect(online.status).toBe(200);
    const refused = await mint(secrets.gatewayApiKey);
    expect([401, 403]).toContain(refused.status);
    expect(((await refused.json()) as { code: string }).code).toBe('key_not_allowed');
    await p.stop();

    // A second start prints no key; `chatd keys show` does; `config print` redacts it.
    const again = await spawnChatd({ cwd });
    running.push(again);
    expect(again.stderr()).not.toContain(secrets.secretApiKey);
    expect(again.logs()).not.toContain(secrets.secretApiKey);
    expect(again.logs()).toContain('chatd keys show');
    await again.stop();
    const shown = await runChatd(['keys', 'show', '--json'], { cwd });
    expect(shown.code, shown.stderr).toBe(0);
    expect(JSON.parse(shown.stdout)).toEqual([
      { kind: 'publishable', tenant: '*', key: secrets.gatewayApiKey, name: 'GATEWAY_API_KEY', source: 'auth.gatewayApiKey' },
      { kind: 'secret', tenant: '*', key: secrets.secretApiKey, name: 'zero-config secret key', source: 'auth.secretApiKey' },
    ]);
    const table = await runChatd(['keys', 'show'], { cwd });
    expect(table.stdout).toMatch(/^KIND\s+TENANT\s+KEY/);
    expect(table.stdout).toContain(secrets.secretApiKey);
    const printed = await runChatd(['config', 'print', '--json'], { cwd });
    expect(printed.code).toBe(0);
    expect(JSON.parse(printed.stdout).auth.secretApiKey).toBe('[redacted]');
    expect(printed.stdout).not.toContain(secrets.secretApiKey);
  });
});

describe('the port without a file', () => {
  it('--port > PORT > config file > default, and --admin-port', async () => {
    // No free port is looked for: the config and PORT name ports outside the kernel's ephemeral
    // range, and what must win is 0 (the kernel picks an ephemeral one). Had the wrong source won,
    // chatd would listen on the named port (or fail to), never on an ephemeral one.
    const [fromFile, fromEnv, ephemeral] = [65531, 65532, (p: number | undefined) => p !== undefined && p > 0 && p < 65000];
    const cwd = await folderWith(`server:\n  host: 127.0.0.1\n  port: ${fromFile}\nadmin:\n  port: 0\n${jsonLogs}`);
    const adminInFile = await folderWith(`server:\n  host: 127.0.0.1\n  port: 0\nadmin:\n  port: 65530\n${jsonLogs}`);
    const printed = async (args: string[], env: NodeJS.ProcessEnv = {}) => {
      const r = await runChatd(['config', 'print', '--json', ...args], { cwd, env });
      expect(r.code, r.stderr).toBe(0);
      return JSON.parse(r.stdout).server.port as number;
    };
    expect(await printed([])).toBe(fromFile);
    expect(await printed([], { PORT: String(fromEnv) })).toBe(fromEnv);
    expect((await runChatd(['config', 'print'], { cwd: await fresh() })).stdout).toMatch(/port: 3000/);

    const byEnv = await spawnChatd({ cwd, env: { PORT: '0' } });
    running.push(byEnv);
    expect(ephemeral(byEnv.ports.public), `PORT=0 over server.port ${fromFile}: listened on ${byEnv.ports.public}`).toBe(true);
    await byEnv.stop();
    const byFlag = await spawnChatd({ cwd, env: { PORT: String(fromEnv) }, args: ['serve', '--port', '0'] });
    running.push(byFlag);
    expect(ephemeral(byFlag.ports.public), `--port 0 over PORT=${fromEnv}: listened on ${byFlag.ports.public}`).toBe(true);
    await byFlag.stop();
    const adminByFlag = await spawnChatd({ cwd: adminInFile, args: ['serve', '--admin-port', '0'] });
    running.push(adminByFlag);
    expect(ephemeral(adminByFlag.ports.admin), `--admin-port 0 over admin.port 65530: listened on ${adminByFlag.ports.admin}`).toBe(true);
    await adminByFlag.stop();

    const bad = await runChatd(['serve', '--port', 'http'], { cwd });
    expect([bad.code, bad.stderr.trim()]).toEqual([1, 'chatd: --port must be a port number from 0 to 65535 (got "http")']);
    const badEnv = await runChatd(['config', 'check'], { cwd, env: { PORT: '70000' } });
    expect([badEnv.code, badEnv.stderr.trim()]).toEqual([1, 'chatd: PORT must be a port number from 0 to 65535 (got "70000")']);
  });
});

describe('every log line is JSON', () => {
  it('a first start in zero-config writes nothing but JSON lines on stdout and stderr', async () => {
    const cwd = await folderWith(`server:\n  port: 0\nadmin:\n  port: 0\n${jsonLogs}`);
    const p = await spawnChatd({ cwd });
    running.push(p);
    await fetch(`http://127.0.0.1:${p.ports.public}/readyz`);
    expect(await p.stop('SIGTERM')).toBe(0);
    const lines = [...p.logs().split('\n'), ...p.stderr().split('\n')].filter((l) => l !== '');
    expect(lines.length).toBeGreaterThan(5);
    for (const line of lines) expect(() => JSON.parse(line), line).not.toThrow();
    expect(p.stderr()).toContain('zero-config mode');
  });
});

describe('CLI errors and bounds', () => {
  it("commander's own errors are one chatd: line and a non-zero exit", async () => {
    const cwd = await fresh();
    const missing = await runChatd(['token', 'issue'], { cwd });
    expect(missing.code).not.toBe(0);
    expect(missing.stderr.trim().split('\n')).toEqual([
      expect.stringMatching(/^chatd: required option '-t, --tenant <tenant>' not specified/),
    ]);
    const unknown = await runChatd(['serve', '--bogus'], { cwd });
    expect(unknown.code).not.toBe(0);
    expect(unknown.stderr.trim().split('\n')).toEqual([expect.stringMatching(/^chatd: unknown option '--bogus'/)]);
    const command = await runChatd(['nope'], { cwd });
    expect(command.code).not.toBe(0);
    expect(command.stderr.trim().split('\n')).toEqual([expect.stringMatching(/^chatd: unknown command 'nope'/)]);
  });

  it('token issue --ttl has the bounds of the config (60 s to 30 days)', async () => {
    const cwd = await fresh();
    for (const ttl of ['10s', '59', '90d', '2592001']) {
      const r = await runChatd(['token', 'issue', '--tenant', 'demo', '--ttl', ttl], { cwd });
      expect(r.code, ttl).toBe(1);
      expect(r.stderr.trim(), ttl).toMatch(/^chatd: --ttl .* must be from 60 s \(1m\) to 2592000 s \(30d\)$/);
    }
    for (const ttl of ['1m', '30d']) {
      const r = await runChatd(['token', 'issue', '--tenant', 'demo', '--ttl', ttl, '--json'], { cwd });
      expect(r.code, r.stderr).toBe(0);
      expect(JSON.parse(r.stdout).expiresIn).toBe(ttl === '1m' ? 60 : 2592000);
    }
  });
});

describe('GET /', () => {
  it('points to /demo where the demo is served, and is a JSON 404 where it is not', async () => {
    const cwd = await folderWith(`server:\n  port: 0\nadmin:\n  port: 0\n${jsonLogs}`);
    const p = await spawnChatd({ cwd });
    running.push(p);
    const r = await fetch(`http://127.0.0.1:${p.ports.public}/`, { redirect: 'manual' });
    expect(r.status).toBe(302);
    expect(r.headers.get('location')).toBe('/demo');
    const followed = await fetch(`http://127.0.0.1:${p.ports.public}/`);
    expect([followed.status, followed.headers.get('content-type')]).toEqual([200, 'text/html; charset=utf-8']);
    await p.stop();

    const off = await spawnChatd({ cwd: await folderWith(`server:\n  port: 0\nadmin:\n  port: 0\ndemo:\n  enabled: false\n${jsonLogs}`) });
    running.push(off);
    const nf = await fetch(`http://127.0.0.1:${off.ports.public}/`);
    expect(nf.status).toBe(404);
    expect(await nf.json()).toMatchObject({ code: 'not_found' });
  });
});
