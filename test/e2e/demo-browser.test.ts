// The demo pages in a real browser (Debian Chromium driven by playwright-core) against the real
// bin/chatd on embedded defaults: a visitor and an agent in two browser contexts converse, presence
// shows the visitor online, and a reload of the visitor page shows the history. Screenshots are
// saved under test-artifacts/.
import { mkdir } from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ChatdProcess } from '../helpers/chatd-process.js';
import { hasChromium } from '../helpers/browser.js';
import { openVisitorAndAgent, startDemoBed, type DemoBed } from '../helpers/demo.js';

const ARTIFACTS = path.resolve(__dirname, '../../test-artifacts');
const WAIT = { timeout: 30_000 };

describe.skipIf(!hasChromium())('demo pages in a browser', () => {
  let bed: DemoBed;
  let chatd: ChatdProcess;
  let base: string;

  beforeAll(async () => {
    bed = await startDemoBed();
    ({ chatd, base } = bed);
    await mkdir(ARTIFACTS, { recursive: true });
  }, 300_000);

  afterAll(async () => {
    await bed?.close();
  });

  it('logs the demo URLs at start', () => {
    expect(chatd.logs()).toContain(`/demo/agent`);
  });

  it('a visitor and an agent converse; the agent sees the visitor online; reload shows the history', async () => {
    const { visitor, agent, pageErrors, close } = await openVisitorAndAgent(bed, {
      visitor: { width: 900, height: 700 },
      agent: { width: 1200, height: 700 },
    });

    // The visitor writes; the message is confirmed (no longer pending) once stored.
    await visitor.fill('#text', 'Hello, is anyone there?');
    await visitor.press('#text', 'Enter');
    await visitor.waitForSelector('#messages li.mine:not(.pending) >> text=Hello, is anyone there?', WAIT);

    // The agent sees the visitor online (presence) and the message.
    const entry = agent.locator('#conversations li.online button').first();
    await entry.waitFor(WAIT);
    await entry.click();
    await agent.waitForSelector('#messages li.theirs >> text=Hello, is anyone there?', WAIT);

    // The agent replies; the visitor sees it.
    await agent.fill('#text', 'Hi! How can I help?');
    await agent.press('#text', 'Enter');
    await agent.waitForSelector('#messages li.mine:not(.pending) >> text=Hi! How can I help?', WAIT);
    await visitor.waitForSelector('#messages li.theirs >> text=Hi! How can I help?', WAIT);

    await visitor.screenshot({ path: path.join(ARTIFACTS, 'demo-visitor.png') });
    await agent.screenshot({ path: path.join(ARTIFACTS, 'demo-agent.png') });

    // A reload keeps the session (localStorage) and shows the history from the server.
    await visitor.reload();
    await expect.poll(() => visitor.textContent('#status'), WAIT).toMatch(/^connected/);
    await visitor.waitForSelector('#messages li >> text=Hello, is anyone there?', WAIT);
    await visitor.waitForSelector('#messages li >> text=Hi! How can I help?', WAIT);
    const texts = await visitor.locator('#messages li .bubble').allTextContents();
    expect(texts).toEqual(['Hello, is anyone there?', 'Hi! How can I help?']);

    expect(pageErrors).toEqual([]);
    await close();
  });

  it('serves the demo agent token to this machine only', async () => {
    const local = await fetch(`${base}/demo/agent-token`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{}' });
    expect(local.status).toBe(200);
    expect((await local.json()) as { token: string }).toHaveProperty('token');
    const proxied = await fetch(`${base}/demo/agent-token`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'x-forwarded-for': '203.0.113.9' },
      body: '{}',
    });
    expect(proxied.status).toBe(403);
    expect(((await proxied.json()) as { code: string }).code).toBe('forbidden');
  });

  it('serves socket.io-client locally and pages with a strict CSP', async () => {
    const js = await fetch(`${base}/demo/socket.io.js`);
    expect(js.status).toBe(200);
    expect(await js.text()).toContain('io');
    const page = await fetch(`${base}/demo`);
    expect(page.headers.get('content-security-policy')).toContain("default-src 'self'");
    expect(await page.text()).not.toContain('__CHATD_CONFIG__');
  });
});
