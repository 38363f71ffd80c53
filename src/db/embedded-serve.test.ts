// `chatd serve` on the embedded database, as a user runs it: ready with PGlite, and a second server
// on the same folder stops at start with a clear line naming the first one's pid.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { runChatd, spawnChatd, type ChatdProcess } from '../../test/helpers/chatd-process.js';
import { freshPgliteDir } from '../../test/helpers/db/pglite-template.js';

describe('chatd serve on the embedded database', () => {
  const cwd = fs.mkdtempSync(path.join(os.tmpdir(), 'chatd-embedded-'));
  let starting: Promise<ChatdProcess> | undefined;
  afterAll(async () => {
    // Awaited even if the test timed out while the server was starting (spawnChatd settles within
    // its own timeout, killing a server that never listened).
    await (await starting?.catch(() => undefined))?.stop('SIGKILL');
    fs.rmSync(cwd, { recursive: true, force: true });
  });

  it('is ready on PGlite, and a second process on the same folder is refused', async () => {
    // A copy of the migrated template instead of a 5 s initdb.
    const template = await freshPgliteDir('serve');
    fs.mkdirSync(path.join(cwd, '.chatd'), { recursive: true });
    fs.renameSync(template, path.join(cwd, '.chatd', 'data'));
    fs.writeFileSync(path.join(cwd, 'chat-server.yaml'), 'server:\n  port: 0\nadmin:\n  port: 0\nlog:\n  format: json\n');

    starting = spawnChatd({ cwd, timeoutMs: 100_000 });
    const first = await starting;
    await expect
      .poll(
        async () => {
          const r = await fetch(`http://127.0.0.1:${first.ports.public}/readyz`).catch(() => undefined);
          return r ? ((await r.json()) as { checks?: Record<string, string> }).checks?.pglite : undefined;
        },
        { timeout: 60_000, interval: 200 },
      )
      .toBe('ok');

    const second = await runChatd(['serve', '--role', 'all'], { cwd });
    expect(second.code).not.toBe(0);
    expect(second.stderr).toContain(
      `chatd: the embedded database in ${path.join(fs.realpathSync(cwd), '.chatd', 'data')} is in use by another chatd process (pid ${first.child.pid})`,
    );
    // The first one is unaffected.
    expect((await fetch(`http://127.0.0.1:${first.ports.public}/healthz`)).status).toBe(200);
  }, 300_000);
});
