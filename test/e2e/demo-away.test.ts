// The demo widget in Chromium when nobody is available: it shows the away message and an email
// form (from GET /api/chat/availability, before any agent is there); the address lands on the
// conversation; and it switches live — hidden when an agent signs in, back once the agent left.
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { hasChromium } from '../helpers/browser.js';
import { startDemoBed, type DemoBed } from '../helpers/demo.js';

const WAIT = { timeout: 30_000 };

describe.skipIf(!hasChromium())('demo widget: away message and email form', () => {
  let bed: DemoBed;

  beforeAll(async () => {
    bed = await startDemoBed();
  }, 300_000);

  afterAll(async () => {
    await bed?.close();
  });

  async function inbox(): Promise<{ visitor: { email?: string; name?: string }; lastMessage: { text: string } | null }[]> {
    const { adminToken } = JSON.parse(await readFile(path.join(bed.cwd, '.chatd', 'secrets.json'), 'utf8')) as { adminToken: string };
    const r = await fetch(`http://127.0.0.1:${bed.chatd.ports.admin}/admin/conversations?tenantId=demo`, {
      headers: { authorization: `Bearer ${adminToken}` },
    });
    return ((await r.json()) as { conversations: [] }).conversations;
  }

  it('shows the away form with no agent, stores the address, and hides it live while an agent is signed in', async () => {
    const visitorContext = await bed.browser.newContext();
    const visitor = await visitorContext.newPage();
    const errors: string[] = [];
    visitor.on('pageerror', (e) => errors.push(e.message));
    await visitor.goto(`${bed.base}/demo`);
    await expect.poll(() => visitor.textContent('#status'), WAIT).toMatch(/^connected/);
    await visitor.waitForSelector('#away:not([hidden])', WAIT);
    expect(await visitor.textContent('#away-message')).toBe('Nobody is here right now. Leave your email and we will answer you there.');

    await visitor.fill('#text', 'Anyone there?');
    await visitor.press('#text', 'Enter');
    await visitor.waitForSelector('#messages li.mine:not(.pending) >> text=Anyone there?', WAIT);
    await visitor.fill('#contact-email', 'not-an-email');
    // The browser's own check keeps a malformed address from being sent.
    await visitor.click('#contact-send');
    expect(await visitor.locator('#contact-done').isHidden()).toBe(true);
    await visitor.fill('#contact-email', 'ann@example.com');
    await visitor.fill('#contact-name', 'Ann');
    await visitor.click('#contact-send');
    await visitor.waitForSelector('#contact-done:not([hidden])', WAIT);
    expect(await visitor.textContent('#contact-done')).toBe('Thanks: we will email our reply to ann@example.com.');
    await expect
      .poll(async () => (await inbox()).find((c) => c.lastMessage?.text === 'Anyone there?')?.visitor, WAIT)
      .toMatchObject({ email: 'ann@example.com', name: 'Ann' });

    // An agent signs in: the widget hides the away form without a reload; it comes back when they leave.
    const agentContext = await bed.browser.newContext();
    const agent = await agentContext.newPage();
    await agent.goto(`${bed.base}/demo/agent`);
    await agent.click('#demo-token');
    await expect.poll(() => agent.textContent('#status'), WAIT).toMatch(/^signed in/);
    await visitor.waitForSelector('#away', { state: 'hidden', ...WAIT });
    // The agent signs out (its socket sends DISCONNECT on whatever transport it is on: closing the
    // tab while still on long-polling would leave it to the heartbeat timeout, 45 s, to notice).
    await agent.click('#sign-out');
    await expect.poll(() => agent.textContent('#status'), WAIT).toBe('signed out');
    await agentContext.close();
    // After presence.offlineGraceMs (10 s by default), the last agent has left.
    await visitor.waitForSelector('#away:not([hidden])', WAIT);
    expect(errors).toEqual([]);
    await visitorContext.close();
  }, 180_000);
});
