// The agent console's inbox in a real browser (Debian Chromium driven by playwright-core) against
// the real bin/chatd on embedded defaults: a visitor writes and leaves before any agent signs in;
// the agent finds the conversation, replies, assigns it and resolves it; the visitor comes back,
// writes again and the conversation reopens; a second agent's console sees each change live.
import { mkdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import type { Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { hasChromium } from '../helpers/browser.js';
import { startDemoBed, visitorWrote, type DemoBed } from '../helpers/demo.js';

const WAIT = { timeout: 30_000 };
const ARTIFACTS = path.resolve(__dirname, '../../test-artifacts');

describe.skipIf(!hasChromium())('agent console inbox in a browser', () => {
  let bed: DemoBed;

  beforeAll(async () => {
    bed = await startDemoBed();
    await mkdir(ARTIFACTS, { recursive: true });
  }, 300_000);

  afterAll(async () => {
    await bed?.close();
  });

  /** An agent token for another agent than the demo one, minted with the generated secret key. */
  async function agentToken(userId: string): Promise<string> {
    const secrets = JSON.parse(await readFile(path.join(bed.cwd, '.chatd', 'secrets.json'), 'utf8')) as { secretApiKey: string };
    const res = await fetch(`${bed.base}/api/chat/agent-token`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${secrets.secretApiKey}` },
      body: JSON.stringify({ tenantId: 'demo', userId }),
    });
    expect(res.status).toBe(200);
    return ((await res.json()) as { token: string }).token;
  }

  async function signedIn(page: Page, token?: string): Promise<void> {
    await page.goto(`${bed.base}/demo/agent`);
    if (token) {
      await page.fill('#token', token);
      await page.press('#token', 'Enter');
    } else {
      await page.click('#demo-token');
    }
    await expect.poll(() => page.textContent('#status'), WAIT).toMatch(/^signed in/);
  }

  const row = (page: Page, sessionId: string) => page.locator(`#conversations li[data-session="${sessionId}"]`);
  const tab = (page: Page, status: string) => page.click(`.tabs [data-status="${status}"]`);

  it('a conversation left by its visitor is found, answered, assigned, resolved and reopened; a second console follows live', async () => {
    const pageErrors: string[] = [];
    // The visitor writes and leaves before any agent is signed in.
    const { context: visitorContext, page: visitor, sessionId } = await visitorWrote(bed, 'Is anyone there? My order is late.', pageErrors);
    await visitor.goto('about:blank');

    // Two agents sign in afterwards: the demo agent and a second one.
    const agentContexts = [await bed.browser.newContext({ viewport: { width: 1200, height: 760 } }), await bed.browser.newContext()];
    const [agent, second] = [await agentContexts[0]!.newPage(), await agentContexts[1]!.newPage()];
    for (const p of [agent, second]) p.on('pageerror', (e) => pageErrors.push(e.message));
    await signedIn(agent);
    await signedIn(second, await agentToken('agent-two'));

    // Both find the conversation in the Open tab: the visitor left (offline), one unread message.
    for (const p of [agent, second]) {
      await row(p, sessionId).waitFor(WAIT);
      await expect.poll(() => row(p, sessionId).getAttribute('class'), WAIT).toContain('offline');
      await expect.poll(() => row(p, sessionId).locator('.unread').textContent(), WAIT).toBe('1');
      expect(await row(p, sessionId).locator('.last').textContent()).toBe('Is anyone there? My order is late.');
    }

    // The agent opens it: history, the away notice, and reading clears the unread badge on both consoles.
    await row(agent, sessionId).locator('button').click();
    await agent.waitForSelector('#messages li.theirs >> text=Is anyone there? My order is late.', WAIT);
    expect(await agent.locator('#away-notice').isVisible()).toBe(true);
    expect(await agent.textContent('#away-notice')).toContain('The visitor has left');
    for (const p of [agent, second]) await expect.poll(() => row(p, sessionId).locator('.unread').count(), WAIT).toBe(0);

    // Assign to me: the second console sees who owns it.
    await agent.click('#assign-me');
    await expect.poll(() => row(second, sessionId).locator('.state').textContent(), WAIT).toContain('assigned to demo-agent');
    await expect.poll(() => row(agent, sessionId).locator('.state').textContent(), WAIT).toContain('assigned to you');

    // The agent replies and resolves: the conversation leaves the Open tab on both consoles, and
    // shows in Resolved; the status change is a system message in the conversation.
    await agent.fill('#text', 'Sorry about that, it ships today.');
    await agent.press('#text', 'Enter');
    await agent.waitForSelector('#messages li.mine:not(.pending) >> text=Sorry about that, it ships today.', WAIT);
    await agent.click('#resolve');
    await agent.waitForSelector('#messages li.system', WAIT);
    for (const p of [agent, second]) await expect.poll(() => row(p, sessionId).count(), WAIT).toBe(0);
    await tab(second, 'resolved');
    await row(second, sessionId).waitFor(WAIT);
    expect(await row(second, sessionId).getAttribute('class')).toContain('status-resolved');

    // The visitor comes back: the reply and the system message are in its history; it writes again
    // and the conversation reopens, online, with the new message unread, on the second console live.
    await tab(second, 'open');
    await visitor.goto(`${bed.base}/demo`);
    await expect.poll(() => visitor.textContent('#status'), WAIT).toMatch(/^connected/);
    await visitor.waitForSelector('#messages li.theirs >> text=Sorry about that, it ships today.', WAIT);
    await visitor.waitForSelector('#messages li.system', WAIT);
    await visitor.fill('#text', 'Thanks! One more question.');
    await visitor.press('#text', 'Enter');
    await visitor.waitForSelector('#messages li.mine:not(.pending) >> text=Thanks! One more question.', WAIT);
    await row(second, sessionId).waitFor(WAIT);
    await expect.poll(() => row(second, sessionId).getAttribute('class'), WAIT).toContain('online');
    await expect.poll(() => row(second, sessionId).getAttribute('class'), WAIT).toContain('status-open');
    await expect.poll(() => row(second, sessionId).locator('.last').textContent(), WAIT).toBe('Thanks! One more question.');
    // The agent still has it open: the reopen and the new message arrive live in its conversation.
    await agent.waitForSelector('#messages li.theirs >> text=Thanks! One more question.', WAIT);
    expect(await agent.locator('#away-notice').isVisible()).toBe(false);

    await agent.screenshot({ path: path.join(ARTIFACTS, 'demo-agent-inbox.png') });
    expect(pageErrors).toEqual([]);
    for (const c of [visitorContext, ...agentContexts]) await c.close();
  });
});
