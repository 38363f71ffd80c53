// The demo pages' test bed: a real `chatd serve --role all` on the embedded defaults (which serve
// the demo), ready, and a headless Chromium to drive them.
import { mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { chromium, type Browser } from 'playwright-core';
import { CHROMIUM, CHROMIUM_ARGS } from './browser.js';
import { spawnChatd, whenReady, type ChatdProcess } from './chatd-process.js';

export interface DemoBed {
  readonly chatd: ChatdProcess;
  readonly browser: Browser;
  /** `http://127.0.0.1:<public port>`. */
  readonly base: string;
  close(): Promise<void>;
}

export async function startDemoBed(): Promise<DemoBed> {
  const cwd = await mkdtemp(path.join(tmpdir(), 'chatd-demo-'));
  await writeFile(path.join(cwd, 'chat-server.yaml'), 'server:\n  port: 0\n  host: 127.0.0.1\nadmin:\n  port: 0\nlog:\n  format: json\n');
  const chatd = await spawnChatd({ cwd });
  await whenReady(chatd.ports.public!);
  const browser = await chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS });
  return {
    chatd,
    browser,
    base: `http://127.0.0.1:${chatd.ports.public}`,
    async close() {
      await browser.close();
      await chatd.stop('SIGTERM');
    },
  };
}
