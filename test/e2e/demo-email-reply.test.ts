// The agent console in Chromium on a server that sends email: a visitor leaves an address and
// leaves; the console tells the agent the reply will be emailed; the agent replies and a real SMTP
// server (its own process) receives one email to that address with the reply. Embedded defaults.
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { hasChromium } from '../helpers/browser.js';
import { runChatd } from '../helpers/chatd-process.js';
import { startDemoBed, visitorWrote, type DemoBed } from '../helpers/demo.js';
import { SmtpSink } from '../helpers/smtp-sink.js';

const WAIT = { timeout: 30_000 };
const ARTIFACTS = path.resolve(__dirname, '../../test-artifacts');

describe.skipIf(!hasChromium())('agent console: replies to a visitor who left go by email', () => {
  let bed: DemoBed;
  let smtp: SmtpSink;

  beforeAll(async () => {
    smtp = await SmtpSink.start();
    bed = await startDemoBed({
      email: {
        smtp: smtp.url,
        from: 'support@demo.example',
        publicUrl: 'http://chat.demo.example',
        secret: 'demo-email-secret-0123456789',
        // Sent as soon as the worker sees the reply: the visitor has already left.
        visitorDelaySeconds: 0,
        pollMs: 100,
      },
    });
  }, 300_000);

  afterAll(async () => {
    await bed?.close();
    await smtp?.kill();
  });

  it('shows "your reply will be emailed" for a visitor who left an address, and the reply arrives by email', async () => {
    const pageErrors: string[] = [];
    const { context: visitorContext, page: visitor, sessionId } = await visitorWrote(bed, 'Please write back, I have to go.', pageErrors);
    // Nobody is available: the widget offers the email form.
    await visitor.waitForSelector('#away:not([hidden])', WAIT);
    await visitor.fill('#contact-email', 'leaver@example.com');
    await visitor.click('#contact-send');
    await visitor.waitForSelector('#contact-done:not([hidden])', WAIT);
    await visitorContext.close();

    const agentContext = await bed.browser.newContext({ viewport: { width: 1200, height: 760 } });
    const agent = await agentContext.newPage();
    agent.on('pageerror', (e) => pageErrors.push(e.message));
    await agent.goto(`${bed.base}/demo/agent`);
    await agent.click('#demo-token');
    await expect.poll(() => agent.textContent('#status'), WAIT).toMatch(/^signed in/);
    const row = agent.locator(`#conversations li[data-session="${sessionId}"]`);
    await row.waitFor(WAIT);
    await expect.poll(() => row.getAttribute('class'), WAIT).toContain('offline');
    await row.locator('button').click();
    await agent.waitForSelector('#messages li.theirs >> text=Please write back, I have to go.', WAIT);
    expect(await agent.textContent('#conv-name')).toContain('leaver@example.com');
    expect(await agent.textContent('#away-notice')).toBe('The visitor has left; your reply will be emailed to leaver@example.com.');

    await agent.fill('#text', 'Your parcel left the warehouse this morning.');
    await agent.press('#text', 'Enter');
    await agent.waitForSelector('#messages li.mine:not(.pending) >> text=Your parcel left the warehouse this morning.', WAIT);
    await agent.screenshot({ path: path.join(ARTIFACTS, 'demo-agent-email.png') });

    await expect.poll(async () => (await smtp.messages()).length, WAIT).toBe(1);
    const [mail] = await smtp.messages();
    expect(mail!.to).toEqual(['leaver@example.com']);
    expect(mail!.mail.text).toContain('Your parcel left the warehouse this morning.');
    // The operator's view of it, through the running server's admin listener (embedded defaults).
    const admin = `http://127.0.0.1:${bed.chatd.ports.admin}`;
    await expect
      .poll(async () => {
        const ls = await runChatd(['emails', 'ls', '--json', '--admin-url', admin], { cwd: bed.cwd });
        return ls.code === 0 ? (JSON.parse(ls.stdout) as { deliveries: { recipient: string; status: string }[] }).deliveries : ls.stderr;
      }, WAIT)
      .toMatchObject([{ recipient: 'leaver@example.com', status: 'sent', messages: 1 }]);
    const table = await runChatd(['emails', 'ls', '--admin-url', admin], { cwd: bed.cwd });
    expect(table.code, table.stderr).toBe(0);
    expect(table.stdout).toMatch(/^0 pending\n/);
    expect(table.stdout).toMatch(/^AT\s+KIND\s+TENANTID\s+SESSIONID\s+RECIPIENT\s+STATUS\s+MESSAGES\s+ATTEMPTS\s+ERROR$/m);
    expect(table.stdout).toMatch(/\svisitor\s+demo\s+\S+\s+leaver@example\.com\s+sent\s+1\s+1/);
    expect(pageErrors).toEqual([]);
    await agentContext.close();
  });
});
