// A second chatd on a busy port must refuse to start. uWebSockets.js binds with
// SO_REUSEPORT by default, so a second process "listened" and took part of the connections; and
// `config check` called admin.port == server.port ok.
import { mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { runChatd, spawnChatd, type ChatdProcess } from '../helpers/chatd-process.js';
import { freePort } from '../helpers/services.js';

// Each test starts two servers, each creating its embedded database (a few seconds, more on a busy machine).
const fresh = () => mkdtemp(path.join(tmpdir(), 'chatd-listen-'));
let running: ChatdProcess[] = [];
afterEach(async () => {
  await Promise.all(running.map((p) => p.stop('SIGKILL')));
  running = [];
});

async function folderWith(yaml: string): Promise<string> {
  const cwd = await fresh();
  await writeFile(path.join(cwd, 'chat-server.yaml'), yaml);
  return cwd;
}

describe('exclusive listeners', () => {
  it('a second chatd on the public port of a running one exits non-zero with one line naming the listener', async () => {
    const first = await spawnChatd({
      cwd: await folderWith('server:\n  host: 127.0.0.1\n  port: 0\nadmin:\n  port: 0\nlog:\n  format: json\n'),
    });
    running.push(first);
    const port = first.ports.public!;
    // Its own folder (its own embedded database), the same public port.
    const r = await runChatd(['serve', '--role', 'all'], {
      cwd: await folderWith(`server:\n  host: 127.0.0.1\n  port: ${port}\nadmin:\n  port: 0\nlog:\n  format: json\n`),
    });
    expect(r.code).not.toBe(0);
    expect(r.stdout).not.toMatch(/"listener":"public"/);
    const errors = r.stderr
      .trim()
      .split('\n')
      .filter((l) => l.startsWith('chatd:'));
    expect(errors).toEqual([`chatd: cannot listen on 127.0.0.1:${port} (public listener): address in use`]);
    // The first one still answers every request alone.
    for (let i = 0; i < 6; i++) expect((await fetch(`http://127.0.0.1:${port}/healthz`)).status).toBe(200);
  }, 150_000);

  it('a second chatd on the admin port of a running one is refused the same way', async () => {
    const first = await spawnChatd({ cwd: await folderWith('server:\n  port: 0\nadmin:\n  port: 0\nlog:\n  format: json\n') });
    running.push(first);
    const adminPort = first.ports.admin!;
    const r = await runChatd(['serve', '--role', 'all', '--port', '0', '--admin-port', String(adminPort)], {
      cwd: await folderWith('log:\n  format: json\n'),
    });
    expect(r.code).not.toBe(0);
    expect(
      r.stderr
        .trim()
        .split('\n')
        .filter((l) => l.startsWith('chatd:')),
    ).toEqual([`chatd: cannot listen on 127.0.0.1:${adminPort} (admin listener): address in use`]);
  }, 150_000);

  it('port 0 still works for every listener, twice side by side', async () => {
    const a = await spawnChatd({ cwd: await folderWith('server:\n  port: 0\nadmin:\n  port: 0\nlog:\n  format: json\n') });
    running.push(a);
    const b = await spawnChatd({ cwd: await folderWith('server:\n  port: 0\nadmin:\n  port: 0\nlog:\n  format: json\n') });
    running.push(b);
    expect(new Set([a.ports.public, a.ports.admin, b.ports.public, b.ports.admin]).size).toBe(4);
  }, 150_000);
});

describe('config check: two listeners of one process on one address and port', () => {
  it('refuses admin.port equal to server.port and names the key paths', async () => {
    // Never bound (refused before): a free port all the same, so a regression fails instead of hanging on a taken one.
    const port = await freePort();
    const cwd = await folderWith(`server:\n  port: ${port}\nadmin:\n  port: ${port}\n`);
    const r = await runChatd(['config', 'check'], { cwd });
    expect(r.code).not.toBe(0);
    expect(r.stderr.trim()).toMatch(/^chatd: chat-server\.yaml: admin\.port \d+ .*collides with server\.port/);
    expect(r.stderr).toContain(`admin.port ${port}`);
    // serve refuses it before binding anything, with the same words.
    const s = await runChatd(['serve'], { cwd, timeoutMs: 30_000 });
    expect(s.code).not.toBe(0);
    expect(s.stderr.trim()).toMatch(/^chatd: admin\.port \d+ .*collides with server\.port/);
    expect(s.stdout).toBe('');
    expect(s.stdout).toBe('');
  });

  it('a wildcard address overlaps a specific one on the same port; other ports, and port 0, do not', async () => {
    const overlap = await runChatd(['config', 'check'], {
      cwd: await folderWith('server:\n  host: 0.0.0.0\n  port: 4712\nadmin:\n  host: 127.0.0.1\n  port: 4712\n'),
    });
    expect(overlap.code).not.toBe(0);
    expect(overlap.stderr).toContain('admin.port 4712');
    const apart = await runChatd(['config', 'check'], {
      cwd: await folderWith('server:\n  host: 127.0.0.2\n  port: 4712\nadmin:\n  host: 127.0.0.1\n  port: 4712\n'),
    });
    expect(apart.code).toBe(0);
    const zero = await runChatd(['config', 'check'], { cwd: await folderWith('server:\n  port: 0\nadmin:\n  port: 0\n') });
    expect(zero.code).toBe(0);
  });

  it('--role checks the listeners of that role set (api and ws in one process)', async () => {
    const cwd = await folderWith('roles:\n  api:\n    port: 4713\n  ws:\n    port: 4713\n');
    expect((await runChatd(['config', 'check'], { cwd })).code).toBe(0);
    const r = await runChatd(['config', 'check', '--role', 'api,ws'], { cwd });
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(/roles\.ws\.port 4713 .*collides with roles\.api\.port/);
  });

  it('--role gateway,ws and gateway,api: one public listener on server.port, and the upstream the other half needs', async () => {
    const cwd = await folderWith('server:\n  port: 4714\nroles:\n  ws:\n    port: 4714\n');
    const noApi = await runChatd(['config', 'check', '--role', 'gateway,ws'], { cwd });
    expect(noApi.code).not.toBe(0);
    expect(noApi.stderr).toMatch(/set upstreams\.api/);
    const noWs = await runChatd(['config', 'check', '--role', 'gateway,api'], { cwd });
    expect(noWs.code).not.toBe(0);
    expect(noWs.stderr).toMatch(/set upstreams\.ws/);
    const both = await folderWith(
      'server:\n  port: 4714\nroles:\n  ws:\n    port: 4714\nupstreams:\n  api: [http://127.0.0.1:4801]\n  ws: [http://127.0.0.1:4802]\n',
    );
    for (const [role, serves] of [
      ['gateway,ws', 'gateway, ws'],
      ['gateway,api', 'gateway, api'],
    ] as const) {
      const r = await runChatd(['config', 'check', '--role', role, '--json'], { cwd: both });
      expect(r.code, r.stderr).toBe(0);
      const listeners = (JSON.parse(r.stdout) as { listeners: { name: string; port: number; roles: string[] }[] }).listeners;
      expect(listeners.filter((l) => l.name !== 'admin')).toEqual([
        { name: 'public', host: '0.0.0.0', port: 4714, roles: serves.split(', ') },
      ]);
      const text = await runChatd(['config', 'check', '--role', role], { cwd: both });
      expect(text.stdout).toContain(`listener public on 0.0.0.0:4714 (${serves})`);
    }
  });
});
