// The demo pages in Chromium: typing right after sending is shown to the agent,
// read receipts show as "Seen" on both pages, and the agent console hides its token once signed in
// and can sign out.
import type { Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { hasChromium } from '../helpers/browser.js';
import { openVisitorAndAgent, startDemoBed, type DemoBed } from '../helpers/demo.js';

const WAIT = { timeout: 30_000 };

describe.skipIf(!hasChromium())('demo pages: typing after send, read receipts, sign-out', () => {
  let bed: DemoBed;

  beforeAll(async () => {
    bed = await startDemoBed();
  }, 300_000);

  afterAll(async () => {
    await bed?.close();
  });

  /** Types into the page one key at a time until `done` holds (bounded), as a person keeps typing. */
  async function keepTyping(page: Page, done: () => Promise<boolean>): Promise<void> {
    const deadline = Date.now() + 30_000;
    while (!(await done())) {
      if (Date.now() > deadline) throw new Error('gave up typing');
      await page.press('#text', 'a');
      await page.waitForTimeout(200);
    }
  }

  it('the agent sees the visitor typing again right after a send; both see "Seen"; the token field hides and sign-out works', async () => {
    const { visitor, agent, pageErrors, close } = await openVisitorAndAgent(bed);
    // Signed in: the token is not left on screen, and there is a way out.
    expect(await agent.locator('#login').isHidden()).toBe(true);
    expect(await agent.locator('#token').inputValue()).toBe('');
    expect(await agent.locator('#sign-out').isVisible()).toBe(true);

    await visitor.fill('#text', 'Hello');
    await visitor.press('#text', 'Enter');
    await visitor.waitForSelector('#messages li.mine:not(.pending) >> text=Hello', WAIT);
    const entry = agent.locator('#conversations li.online button').first();
    await entry.waitFor(WAIT);
    await entry.click();
    await agent.waitForSelector('#messages li.theirs >> text=Hello', WAIT);
    // The agent has the conversation open: the visitor's message shows "Seen" on the visitor's page.
    await visitor.waitForSelector('#messages li.mine.seen >> text=Hello', WAIT);

    // The visitor sends and types on at once (within the old 1.5 s typing timer): the agent shows it.
    await visitor.fill('#text', 'One more thing');
    await visitor.press('#text', 'Enter');
    await agent.waitForSelector('#messages li.theirs >> text=One more thing', WAIT);
    await keepTyping(visitor, async () => (await agent.textContent('#typing')) === 'The visitor is typing…');
    await visitor.fill('#text', '');

    // The agent replies; the visitor reads it: "Seen" under the agent's reply, on the agent's page.
    await agent.fill('#text', 'Sure, go ahead');
    await agent.press('#text', 'Enter');
    await visitor.waitForSelector('#messages li.theirs >> text=Sure, go ahead', WAIT);
    await agent.waitForSelector('#messages li.mine.seen >> text=Sure, go ahead', WAIT);
    expect(await agent.locator('#messages .seen-mark').count()).toBe(1);

    // Sign out: the socket closes, the token is forgotten, the form is back.
    await agent.click('#sign-out');
    await expect.poll(() => agent.textContent('#status'), WAIT).toBe('signed out');
    expect(await agent.locator('#login').isVisible()).toBe(true);
    expect(await agent.evaluate(() => sessionStorage.getItem('chatd-demo-agent-token'))).toBeNull();
    await agent.reload();
    expect(await agent.textContent('#status')).toBe('signed out');

    expect(pageErrors).toEqual([]);
    await close();
  }, 180_000);
});
