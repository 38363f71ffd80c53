// Agent replies emailed to visitors who left, with real parts: a real SMTP server in its own
// process (smtp-server), two chatd nodes (gateway + api + ws) on one Redis and one PostgreSQL, both
// running the email worker, and real sockets. Checks recipients, content and count; a visitor who
// is there gets no email; a refused address is recorded as failed; the unsubscribe link is honoured;
// SMTP down for a while, then back: every due email delivered exactly once; many due at once on two
// racing nodes: one email each.
import { randomUUID } from 'node:crypto';
import { mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { runChatd } from '../../test/helpers/chatd-process.js';
import { registry } from '../observability/metrics.js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DATABASE_URL, REDIS_URL, hasPostgres, hasRedis, uniquePrefix, uniqueSchema } from '../../test/helpers/services.js';
import { tenantsConfig } from '../../test/helpers/api-harness.js';
import { agentToken, connect, connected, KEYS, startNode, visitorToken, type Node } from '../../test/helpers/ws-harness.js';
import { SmtpSink } from '../../test/helpers/smtp-sink.js';
import { eventually } from '../../test/helpers/eventually.js';
import type { KyselyDatabase } from '../db/database.js';

const ready = (await hasRedis()) && (await hasPostgres());
const INBOUND_SECRET = 'inbound-webhook-secret-0123456789';

describe.skipIf(!ready)('reply emails (two nodes on Redis + PostgreSQL, a real SMTP server)', () => {
  let smtp: SmtpSink;
  let a: Node;
  let b: Node;
  let db: KyselyDatabase;
  let agent: string;
  const schema = uniqueSchema('email');
  const sockets: { disconnect(): void }[] = [];

  beforeAll(async () => {
    smtp = await SmtpSink.start();
    const [tA, ...rest] = tenantsConfig() as Record<string, unknown>[];
    const shared = {
      tenants: [{ ...tA, name: 'Acme', email: { senderName: 'Acme Support', subject: 'Re: your chat with {senderName}' } }, ...rest],
      redis: { url: REDIS_URL, prefix: uniquePrefix('email') },
      database: { url: DATABASE_URL, schema, autoMigrate: true },
      presence: { offlineGraceMs: 100, heartbeatMs: 200, nodeTimeoutMs: 5000 },
      email: {
        smtp: smtp.url,
        from: 'support@acme.example',
        publicUrl: 'http://chat.acme.example',
        secret: 'email-test-secret-0123456789',
        // Jobs are made due by the test itself (see due()): nothing depends on the clock.
        visitorDelaySeconds: 3600,
        pollMs: 50,
        retryBaseMs: 50,
        retryMaxDelayMs: 100,
        inboundSecret: INBOUND_SECRET,
        replyDomain: 'reply.acme.example',
      },
    };
    a = await startNode(shared);
    b = await startNode(shared);
    db = (await a.srv.db()) as KyselyDatabase;
    agent = await agentToken(a, 'tenantA', KEYS.secA, 'ann');
  }, 400_000);
  afterAll(async () => {
    for (const s of sockets) s.disconnect();
    await a?.srv.stop();
    await b?.srv.stop();
    await smtp?.kill();
  });

  /** A visitor who wrote from a page, left an address (or not), and has no socket. */
  async function visitor(email: string | undefined, name?: string) {
    const s = `s-${randomUUID().slice(0, 12)}`;
    const token = await visitorToken(a, 'tenantA', KEYS.pubA);
    const sent = await a.http('POST', '/webchat/message', {
      token,
      body: {
        tenantId: 'tenantA',
        sessionId: s,
        fingerprint: `fp-${s}`,
        text: 'Is my order shipped?',
        url: `https://a.example/orders/${s}`,
      },
    });
    expect(sent.status, JSON.stringify(sent.body)).toBe(200);
    if (email) {
      const c = await a.http('POST', '/webchat/contact', {
        token,
        body: { tenantId: 'tenantA', sessionId: s, fingerprint: `fp-${s}`, email, ...(name ? { name } : {}) },
      });
      expect(c.status, JSON.stringify(c.body)).toBe(200);
    }
    return { sessionId: s, token };
  }
  const reply = async (node: Node, sessionId: string, text: string) => {
    const r = await node.http('POST', '/webchat/message', { token: agent, body: { tenantId: 'tenantA', sessionId, text } });
    expect(r.status, JSON.stringify(r.body)).toBe(200);
  };
  /**
   * Makes the conversation's pending email due now (instead of waiting email.visitorDelaySeconds),
   * once the reply has scheduled it (scheduling follows the reply's acknowledgement).
   */
  const due = async (sessionId: string) => {
    await eventually(async () => (await job(sessionId))?.pending === true, 'the email job scheduled');
    await db.kysely
      .updateTable('email_jobs')
      .set({ due_at: new Date(Date.now() - 1000) })
      .where('conversation_id', '=', db.kysely.selectFrom('conversations').select('id').where('session_id', '=', sessionId))
      .execute();
  };
  function job(sessionId: string) {
    return db.kysely
      .selectFrom('email_jobs')
      .selectAll()
      .where('conversation_id', '=', db.kysely.selectFrom('conversations').select('id').where('session_id', '=', sessionId))
      .executeTakeFirst();
  }
  const mailsTo = async (address: string) => (await smtp.messages()).filter((m) => m.to.includes(address));
  const deliveries = (sessionId: string) =>
    db.kysely.selectFrom('email_deliveries').selectAll().where('session_id', '=', sessionId).execute();
  /** Waits until the workers have certainly polled again: a fresh email goes out and arrives. */
  async function afterAnotherPoll() {
    const addr = `probe-${randomUUID().slice(0, 8)}@example.com`;
    const probe = await visitor(addr);
    await reply(a, probe.sessionId, 'probe');
    await due(probe.sessionId);
    await eventually(async () => (await mailsTo(addr)).length === 1, 'the probe email');
  }

  it('emails the replies a visitor who left has not read: one email, to them, with both replies, a link back and an unsubscribe link', async () => {
    // What an agent console reads to say "the visitor has left; your reply will be emailed".
    const availability = await a.http('GET', '/api/chat/availability', { token: agent });
    expect(availability.body.repliesByEmail).toBe(true);
    const { sessionId } = await visitor('ann@example.com', 'Ann');
    await reply(a, sessionId, 'Yes, it left our warehouse today.');
    await reply(b, sessionId, 'Tracking: <b>ZX-42</b> & co.');
    await due(sessionId);
    await eventually(async () => (await deliveries(sessionId)).length === 1, 'the email recorded');
    await afterAnotherPoll();
    const mails = await mailsTo('ann@example.com');
    expect(mails).toHaveLength(1);
    const { mail, from } = mails[0]!;
    expect(from).toBe('support@acme.example');
    expect(mail.from?.value).toEqual([{ address: 'support@acme.example', name: 'Acme Support' }]);
    expect(mail.to && !Array.isArray(mail.to) ? mail.to.value : []).toEqual([{ address: 'ann@example.com', name: '' }]);
    expect(mail.subject).toBe('Re: your chat with Acme Support');
    expect(mail.text).toContain('Hello Ann,');
    expect(mail.text).toContain('ann: Yes, it left our warehouse today.');
    expect(mail.text).toContain('ann: Tracking: <b>ZX-42</b> & co.');
    expect(mail.text).toContain(`Continue the conversation: https://a.example/orders/${sessionId}`);
    expect(mail.text).not.toContain('Is my order shipped?');
    expect(mail.html).toContain('Tracking: &lt;b&gt;ZX-42&lt;/b&gt; &amp; co.');
    expect(mail.html).toContain(`href="https://a.example/orders/${sessionId}"`);
    const unsubscribe = /Unsubscribe: (http:\/\/chat\.acme\.example\/webchat\/unsubscribe\/\S+)/.exec(mail.text ?? '')?.[1];
    expect(unsubscribe).toBeDefined();
    // Folded by the mailer: unfold before comparing.
    expect(mail.headerLines.find((h) => h.key === 'list-unsubscribe')?.line.replace(/\r\n\s+/g, ' ')).toBe(
      `List-Unsubscribe: <${unsubscribe}>`,
    );
    const [d] = await deliveries(sessionId);
    expect(d).toMatchObject({ recipient: 'ann@example.com', status: 'sent', first_seq: 2, last_seq: 3, messages: 2, attempts: 1 });
    expect(await job(sessionId)).toMatchObject({ pending: false, emailed_seq: 3 });

    // A later reply is emailed alone: what was emailed is never emailed again.
    await reply(a, sessionId, 'It arrives tomorrow.');
    await due(sessionId);
    await eventually(async () => (await mailsTo('ann@example.com')).length === 2, 'the second email');
    const second = (await mailsTo('ann@example.com'))[1]!.mail;
    expect(second.text).toContain('ann: It arrives tomorrow.');
    expect(second.text).not.toContain('warehouse');

    // The visitor answers by email: the provider's webhook brings the reply back into the
    // conversation, quoting stripped, delivered live to agents; a webhook retry adds nothing.
    const replyTo = mail.replyTo?.value[0]?.address ?? '';
    expect(replyTo).toMatch(/^r-[0-9a-f]{20}-[0-9a-f]{32}@reply\.acme\.example$/);
    expect(mail.text).toContain('Reply to this email to answer.');
    const console = connect(b.ws, { token: agent });
    sockets.push(console.socket);
    await connected(console);
    const inbound = {
      From: 'Ann <ann@example.com>',
      ToFull: [{ Email: replyTo.toUpperCase(), Name: '' }],
      TextBody: 'Great, thanks!\n\nOn Mon, 7 Dec 2026, Acme Support wrote:\n> Tracking: ZX-42',
      MessageID: `msg-${randomUUID()}`,
    };
    const post = (body: unknown, token = INBOUND_SECRET) =>
      a.http('POST', '/api/chat/inbound-email', { body, ...(token ? { token } : {}) });
    const appended = await post(inbound);
    expect(appended.status, JSON.stringify(appended.body)).toBe(200);
    expect(appended.body).toEqual({ success: true, messageId: expect.any(String), sessionId });
    await eventually(() => console.messages.some((m) => m.message.id === appended.body.messageId), 'the reply live to the agent');
    const live = console.messages.find((m) => m.message.id === appended.body.messageId)!.message;
    expect(live).toMatchObject({
      text: 'Great, thanks!',
      sender: { type: 'visitor', id: sessionId },
      meta: { userInfo: { channel: 'email' } },
    });
    expect((await post(inbound)).body.messageId).toBe(appended.body.messageId);
    expect((await post(inbound, 'wrong-secret-wrong-secret')).body.code).toBe('token_invalid');
    expect((await post(inbound, '')).body.code).toBe('missing_credentials');
    const forged = { ...inbound, ToFull: [{ Email: replyTo.replace(/^r-[0-9a-f]{4}/, 'r-0000') }] };
    expect((await post(forged)).status).toBe(404);
    expect((await post({ From: 'x@example.com' })).body.code).toBe('validation_failed');
    expect((await post({ ...inbound, MessageID: 'other', TextBody: '> only quoted' })).body.code).toBe('validation_failed');

    // The unsubscribe link (through the real HTTP door, path only) is honoured: no third email.
    const link = new URL(unsubscribe!);
    const page = await fetch(`${a.api}${link.pathname}`);
    expect(page.status).toBe(200);
    expect(await page.text()).toContain('You will not receive reply emails');
    expect((await fetch(`${a.api}/webchat/unsubscribe/forged.token`)).status).toBe(404);
    await reply(a, sessionId, 'Anything else?');
    await due(sessionId);
    await eventually(async () => (await job(sessionId))?.pending === false, 'the job to end');
    await afterAnotherPoll();
    expect(await mailsTo('ann@example.com')).toHaveLength(2);

    // Erasing the session takes its job and the log of its emails (the address with them); the
    // unsubscribe stays, so the erased visitor who opted out stays out.
    expect(await deliveries(sessionId)).toHaveLength(2);
    const erased = await a.http('POST', '/api/chat/erase', { token: KEYS.secA, body: { tenantId: 'tenantA', sessionId } });
    expect(erased.status, JSON.stringify(erased.body)).toBe(200);
    expect(await deliveries(sessionId)).toEqual([]);
    expect(await db.kysely.selectFrom('email_deliveries').select('id').where('recipient', '=', 'ann@example.com').execute()).toEqual([]);
    expect(await job(sessionId)).toBeUndefined();
    expect(
      await db.kysely.selectFrom('email_unsubscribes').select(['tenant_id', 'email']).where('email', '=', 'ann@example.com').execute(),
    ).toEqual([{ tenant_id: 'tenantA', email: 'ann@example.com' }]);
  });

  it('does not email a visitor who is there, nor one without an address', async () => {
    const here = await visitor('here@example.com');
    const socket = connect(b.ws, { apiKey: KEYS.pubA, token: here.token, sessionId: here.sessionId, fingerprint: `fp-${here.sessionId}` });
    sockets.push(socket.socket);
    await connected(socket);
    await eventually(async () => {
      const r = await a.http('GET', '/api/chat/online-users?tenantId=tenantA', { token: KEYS.secA });
      return (r.body.users as { sessionId: string }[]).some((u) => u.sessionId === here.sessionId);
    }, 'the visitor online');
    await reply(a, here.sessionId, 'Hi, I am here too.');
    const nobody = await visitor(undefined);
    await reply(a, nobody.sessionId, 'Nobody will read this by email.');
    await due(here.sessionId);
    await due(nobody.sessionId);
    await eventually(
      async () => (await job(here.sessionId))?.pending === false && (await job(nobody.sessionId))?.pending === false,
      'both jobs to end',
    );
    await afterAnotherPoll();
    expect(await mailsTo('here@example.com')).toEqual([]);
    expect(await deliveries(here.sessionId)).toEqual([]);
    expect(await deliveries(nobody.sessionId)).toEqual([]);
  });

  it('records an address the SMTP server refuses for good as failed, once, with the error', async () => {
    const { sessionId } = await visitor('reject-me@example.com');
    await reply(a, sessionId, 'Hello?');
    await due(sessionId);
    await eventually(async () => (await deliveries(sessionId)).length === 1, 'the failure recorded');
    const [d] = await deliveries(sessionId);
    expect(d).toMatchObject({ status: 'failed', recipient: 'reject-me@example.com', attempts: 1 });
    expect(d!.error).toContain('550');
    expect(await job(sessionId)).toMatchObject({ pending: false, emailed_seq: 2 });
    // Visible to operators: the metric, and `chatd emails ls --failed` (PostgreSQL read directly).
    expect(await registry.getSingleMetricAsString('chatd_emails_total')).toMatch(
      /chatd_emails_total\{result="failed",reason="refused"\} [1-9]/,
    );
    const cwd = await mkdtemp(path.join(tmpdir(), 'chatd-emails-'));
    await writeFile(path.join(cwd, 'chat-server.yaml'), `database:\n  url: ${DATABASE_URL}\n  schema: ${schema}\n`);
    const ls = await runChatd(['--json', 'emails', 'ls', '--failed', '--tenant', 'tenantA'], { cwd });
    expect(ls.code, ls.stderr).toBe(0);
    const listed = JSON.parse(ls.stdout) as { pending: number; deliveries: { sessionId: string; status: string; recipient: string }[] };
    expect(listed.deliveries.filter((x) => x.sessionId === sessionId)).toEqual([
      expect.objectContaining({ status: 'failed', recipient: 'reject-me@example.com' }),
    ]);
    expect(listed.deliveries.every((x) => x.status === 'failed')).toBe(true);
    const table = await runChatd(['emails', 'ls', '--failed'], { cwd });
    expect(table.stdout).toMatch(/^\d+ pending\nAT\s+KIND\s+TENANTID\s+SESSIONID\s+RECIPIENT\s+STATUS\s+MESSAGES\s+ATTEMPTS\s+ERROR\n/);
    expect(table.stdout).toContain('reject-me@example.com');
  }, 120_000);

  it('SMTP down for a while, then back: every due email delivered exactly once; two racing nodes send one each', async () => {
    await smtp.kill();
    const visitors = await Promise.all(Array.from({ length: 6 }, (_, i) => visitor(`down-${i}-${randomUUID().slice(0, 6)}@example.com`)));
    for (const [i, v] of visitors.entries()) await reply(i % 2 ? a : b, v.sessionId, `Reply number ${i}`);
    for (const v of visitors) await due(v.sessionId);
    // Both nodes try, fail (connection refused) and back off.
    await eventually(async () => {
      for (const v of visitors) if (((await job(v.sessionId))?.attempts ?? 0) < 2) return false;
      return true;
    }, 'every job retried');
    const failing = await job(visitors[0]!.sessionId);
    expect(failing).toMatchObject({ pending: true, emailed_seq: 0 });
    expect(failing!.last_error).toMatch(/ECONNREFUSED|connect/i);
    expect(await smtp.messages()).not.toContainEqual(expect.objectContaining({ to: [expect.stringMatching(/^down-/)] }));
    await smtp.start();
    const addresses = (
      await Promise.all(
        visitors.map((v) =>
          db.kysely.selectFrom('conversations').select('contact_email').where('session_id', '=', v.sessionId).executeTakeFirstOrThrow(),
        ),
      )
    ).map((r) => r.contact_email!);
    await eventually(async () => {
      for (const v of visitors) if ((await deliveries(v.sessionId)).length !== 1) return false;
      return true;
    }, 'every email recorded once SMTP is back');
    await afterAnotherPoll();
    for (const [i, addr] of addresses.entries()) {
      const got = await mailsTo(addr);
      expect(got, addr).toHaveLength(1);
      expect(got[0]!.mail.text).toContain(`Reply number ${i}`);
    }
    for (const v of visitors) expect(await deliveries(v.sessionId)).toEqual([expect.objectContaining({ status: 'sent', messages: 1 })]);
    expect(await registry.getSingleMetricAsString('chatd_emails_total')).toMatch(
      /chatd_emails_total\{result="retry",reason="smtp_error"\} [1-9]/,
    );
  });
});
