// The demo pages' test bed: a real `chatd serve --role all` on the embedded defaults (which serve
// the demo), ready, and a headless Chromium to drive them; and a visitor and an agent signed in on it.
import { mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { chromium, type Browser, type BrowserContext, type Page } from 'playwright-core';
import { expect } from 'vitest';
import { CHROMIUM, CHROMIUM_ARGS } from './browser.js';
import { spawnChatd, whenReady, type ChatdProcess } from './chatd-process.js';

export interface DemoBed {
  readonly chatd: ChatdProcess;
  /** The server's folder (its generated secrets are in `.chatd/secrets.json`). */
  readonly cwd: string;
  readonly browser: Browser;
  /** `http://127.0.0.1:<public port>`. */
  readonly base: string;
  close(): Promise<void>;
}

/** `extra`: more top-level config keys (YAML accepts JSON), e.g. `email`. */
export async function startDemoBed(extra: Record<string, unknown> = {}): Promise<DemoBed> {
  const cwd = await mkdtemp(path.join(tmpdir(), 'chatd-demo-'));
  const config = { server: { port: 0, host: '127.0.0.1' }, admin: { port: 0 }, log: { format: 'json' }, ...extra };
  await writeFile(path.join(cwd, 'chat-server.yaml'), JSON.stringify(config, null, 2));
  const chatd = await spawnChatd({ cwd });
  await whenReady(chatd.ports.public!);
  const browser = await chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS });
  return {
    chatd,
    cwd,
    browser,
    base: `http://127.0.0.1:${chatd.ports.public}`,
    async close() {
      await browser.close();
      await chatd.stop('SIGTERM');
    },
  };
}

export interface DemoPair {
  readonly visitor: Page;
  readonly agent: Page;
  /** Uncaught errors on either page (tests expect none). */
  readonly pageErrors: string[];
  close(): Promise<void>;
}

const WAIT = { timeout: 30_000 };

/**
 * A visitor and an agent, each in a browser context of its own: the visitor page connected, the
 * agent console signed in with the demo token.
 */
export async function openVisitorAndAgent(
  bed: DemoBed,
  viewports: { visitor?: { width: number; height: number }; agent?: { width: number; height: number } } = {},
): Promise<DemoPair> {
  const contexts: BrowserContext[] = [
    await bed.browser.newContext(viewports.visitor && { viewport: viewports.visitor }),
    await bed.browser.newContext(viewports.agent && { viewport: viewports.agent }),
  ];
  const [visitor, agent] = [await contexts[0]!.newPage(), await contexts[1]!.newPage()];
  const pageErrors: string[] = [];
  for (const p of [visitor, agent]) p.on('pageerror', (e) => pageErrors.push(e.message));

  await visitor.goto(`${bed.base}/demo`);
  await expect.poll(() => visitor.textContent('#status'), WAIT).toMatch(/^connected/);
  await agent.goto(`${bed.base}/demo/agent`);
  await agent.click('#demo-token');
  await expect.poll(() => agent.textContent('#status'), WAIT).toMatch(/^signed in/);
  return {
    visitor,
    agent,
    pageErrors,
    async close() {
      for (const c of contexts) await c.close();
    },
  };
}

/**
 * A visitor page in a browser context of its own, connected, that sent `text` and saw it stored;
 * with the session id the widget keeps in localStorage. Uncaught page errors go to `pageErrors`.
 */
export async function visitorWrote(
  bed: DemoBed,
  text: string,
  pageErrors: string[],
): Promise<{ context: BrowserContext; page: Page; sessionId: string }> {
  const context = await bed.browser.newContext();
  const page = await context.newPage();
  page.on('pageerror', (e) => pageErrors.push(e.message));
  await page.goto(`${bed.base}/demo`);
  await expect.poll(() => page.textContent('#status'), WAIT).toMatch(/^connected/);
  await page.fill('#text', text);
  await page.press('#text', 'Enter');
  await page.waitForSelector(`#messages li.mine:not(.pending) >> text=${text}`, WAIT);
  const sessionId = await page.evaluate(() => window.localStorage.getItem('chatd-demo-session'));
  expect(sessionId).toBeTruthy();
  return { context, page, sessionId: sessionId! };
}
