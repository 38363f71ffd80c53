// Tenant notifications with real parts: a real SMTP server in its own process, a chatd node
// (gateway + api + ws) on Redis and PostgreSQL running the email worker, real agent sockets.
// tenantA (always open) is unavailable while no agent is online; tenantB is out of business hours
// (no opening range), so its agent online changes nothing. Checks: three visitor lines while nobody
// is available → one email to the tenant's address with the three; an agent online → nothing
// scheduled; each tenant's address gets only its own visitors; a later line is notified alone; an
// answered line is not notified; SMTP down then back: sent once; a refused address: recorded as
// failed.
import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { tenantsConfig } from '../../test/helpers/api-harness.js';
import { eventually } from '../../test/helpers/eventually.js';
import { DATABASE_URL, REDIS_URL, hasPostgres, hasRedis, uniquePrefix, uniqueSchema } from '../../test/helpers/services.js';
import { SmtpSink } from '../../test/helpers/smtp-sink.js';
import { agentToken, connect, connected, KEYS, startNode, visitorToken, type Node } from '../../test/helpers/ws-harness.js';
import type { KyselyDatabase } from '../db/database.js';
import { registry } from '../observability/metrics.js';

const ready = (await hasRedis()) && (await hasPostgres());
const PUB_C = 'ck_pub_tenantC_publishable_0001';

describe.skipIf(!ready)('tenant notifications (Redis + PostgreSQL, a real SMTP server)', () => {
  let smtp: SmtpSink;
  let node: Node;
  let db: KyselyDatabase;
  const sockets: { disconnect(): void }[] = [];
  const schema = uniqueSchema('notify');

  beforeAll(async () => {
    smtp = await SmtpSink.start();
    const [tA, tB, ...rest] = tenantsConfig() as Record<string, unknown>[];
    node = await startNode({
      tenants: [
        { ...tA, name: 'Acme', email: { notifyAddress: 'ops-a@acme.example', consoleUrl: 'https://console.acme.example/c/{sessionId}' } },
        { ...tB, name: 'Beta', businessHours: { timeZone: 'UTC', weekly: [] }, email: { notifyAddress: 'ops-b@beta.example' } },
        ...rest,
        // The SMTP sink refuses addresses starting with "reject".
        {
          id: 'tenantC',
          apiKeys: [{ key: PUB_C }],
          allowedOrigins: ['https://c.example'],
          email: { notifyAddress: 'reject-ops@c.example' },
        },
      ],
      redis: { url: REDIS_URL, prefix: uniquePrefix('notify') },
      database: { url: DATABASE_URL, schema, autoMigrate: true },
      presence: { offlineGraceMs: 100, heartbeatMs: 200, nodeTimeoutMs: 5000 },
      email: {
        smtp: smtp.url,
        from: 'chat@chatd.example',
        publicUrl: 'http://chat.acme.example',
        secret: 'email-test-secret-0123456789',
        // Jobs are made due by the test itself (see due()): nothing depends on the clock.
        notifyDelaySeconds: 3600,
        visitorDelaySeconds: 3600,
        pollMs: 50,
        retryBaseMs: 50,
        retryMaxDelayMs: 100,
      },
    });
    db = (await node.srv.db()) as KyselyDatabase;
  }, 400_000);
  afterAll(async () => {
    for (const s of sockets) s.disconnect();
    await node?.srv.stop();
    await smtp?.kill();
  });

  const pub = { tenantA: KEYS.pubA, tenantB: KEYS.pubB, tenantC: PUB_C } as const;
  async function visitor(tenantId: keyof typeof pub) {
    return { tenantId, sessionId: `s-${randomUUID().slice(0, 12)}`, token: await visitorToken(node, tenantId, pub[tenantId]) };
  }
  type Visitor = Awaited<ReturnType<typeof visitor>>;
  const write = async (v: Visitor, text: string) => {
    const r = await node.http('POST', '/webchat/message', {
      token: v.token,
      body: {
        tenantId: v.tenantId,
        sessionId: v.sessionId,
        fingerprint: `fp-${v.sessionId}`,
        text,
        url: `https://a.example/p/${v.sessionId}`,
      },
    });
    expect(r.status, JSON.stringify(r.body)).toBe(200);
  };
  function job(sessionId: string) {
    return db.kysely
      .selectFrom('email_jobs')
      .selectAll()
      .where('kind', '=', 'tenant')
      .where('conversation_id', '=', db.kysely.selectFrom('conversations').select('id').where('session_id', '=', sessionId))
      .executeTakeFirst();
  }
  /** Makes the conversation's pending notification due now, once the visitor's message scheduled it. */
  const due = async (sessionId: string) => {
    await eventually(async () => (await job(sessionId))?.pending === true, 'the notification scheduled');
    await db.kysely
      .updateTable('email_jobs')
      .set({ due_at: new Date(Date.now() - 1000) })
      .where('kind', '=', 'tenant')
      .where('conversation_id', '=', db.kysely.selectFrom('conversations').select('id').where('session_id', '=', sessionId))
      .execute();
  };
  const mailsTo = async (address: string) => (await smtp.messages()).filter((m) => m.to.includes(address));
  const mailsAbout = async (sessionId: string) => (await smtp.messages()).filter((m) => m.mail.text?.includes(sessionId));
  const deliveries = (sessionId: string) =>
    db.kysely.selectFrom('email_deliveries').selectAll().where('session_id', '=', sessionId).orderBy('created_at').execute();
  const skippedAvailable = async () =>
    Number(
      /chatd_emails_total\{result="skipped",reason="available"\} (\d+)/.exec(
        await registry.getSingleMetricAsString('chatd_emails_total'),
      )?.[1] ?? 0,
    );

  it('three lines while nobody is available: one email to the tenant address with the three, a console link; a later line alone', async () => {
    const v = await visitor('tenantA');
    await write(v, 'Hello, anyone there?');
    await write(v, 'My order #42 has not arrived.');
    await write(v, 'Please call me back.');
    await eventually(async () => (await job(v.sessionId))?.requests === 3, 'three messages on one job');
    await due(v.sessionId);
    await eventually(async () => (await deliveries(v.sessionId)).length === 1, 'the notification recorded');
    const mails = await mailsAbout(v.sessionId);
    expect(mails).toHaveLength(1);
    const { mail, to } = mails[0]!;
    expect(to).toEqual(['ops-a@acme.example']);
    expect(mail.from?.value).toEqual([{ address: 'chat@chatd.example', name: 'Acme' }]);
    expect(mail.subject).toBe('3 new messages from A visitor (Acme)');
    const text = mail.text ?? '';
    expect(text.indexOf('Hello, anyone there?')).toBeGreaterThan(-1);
    expect(text.indexOf('My order #42 has not arrived.')).toBeGreaterThan(text.indexOf('Hello, anyone there?'));
    expect(text.indexOf('Please call me back.')).toBeGreaterThan(text.indexOf('My order #42 has not arrived.'));
    expect(text).toContain(`Open the conversation: https://console.acme.example/c/${v.sessionId}`);
    expect(mail.html).toContain(`href="https://console.acme.example/c/${v.sessionId}"`);
    const [d] = await deliveries(v.sessionId);
    expect(d).toMatchObject({ kind: 'tenant', recipient: 'ops-a@acme.example', status: 'sent', first_seq: 1, last_seq: 3, messages: 3 });
    expect(await job(v.sessionId)).toMatchObject({ pending: false, emailed_seq: 3 });

    // A later line (the visitor left an address meanwhile): notified alone, never the first three again.
    const contact = await node.http('POST', '/webchat/contact', {
      token: v.token,
      body: { tenantId: 'tenantA', sessionId: v.sessionId, fingerprint: `fp-${v.sessionId}`, email: 'ann@example.com', name: 'Ann' },
    });
    expect(contact.status).toBe(200);
    await write(v, 'Still waiting.');
    await due(v.sessionId);
    await eventually(async () => (await mailsAbout(v.sessionId)).length === 2, 'the second notification');
    const second = (await mailsAbout(v.sessionId))[1]!.mail;
    expect(second.subject).toBe('New message from Ann <ann@example.com> (Acme)');
    expect(second.text).toContain('Still waiting.');
    expect(second.text).not.toContain('Please call me back.');
    expect(second.replyTo?.value).toEqual([{ address: 'ann@example.com', name: '' }]);
    // The other tenant's address never heard of it.
    expect((await mailsTo('ops-b@beta.example')).filter((m) => m.mail.text?.includes(v.sessionId))).toEqual([]);
  });

  it('an agent online: nothing scheduled; out of business hours an agent online changes nothing; each address gets its own tenant', async () => {
    const agentA = connect(node.ws, { token: await agentToken(node, 'tenantA', KEYS.secA, 'ann') });
    const agentB = connect(node.ws, { token: await agentToken(node, 'tenantB', KEYS.secB, 'bob') });
    sockets.push(agentA.socket, agentB.socket);
    await connected(agentA);
    await connected(agentB);
    const availability = async (tenantId: string, key: string) =>
      (await node.http('GET', `/api/chat/availability?tenantId=${tenantId}`, { token: key })).body;
    await eventually(async () => (await availability('tenantA', KEYS.pubA)).available === true, 'tenantA available');
    expect(await availability('tenantB', KEYS.pubB)).toMatchObject({ available: false, agentsOnline: 1, inBusinessHours: false });

    const before = await skippedAvailable();
    const a = await visitor('tenantA');
    await write(a, 'A question while you are here.');
    // The decision for that message was taken (available: nothing to notify) and no job exists.
    await eventually(async () => (await skippedAvailable()) === before + 1, 'the message seen as available');
    expect(await job(a.sessionId)).toBeUndefined();

    const b = await visitor('tenantB');
    await write(b, 'Beta visitor, out of hours.');
    await due(b.sessionId);
    await eventually(async () => (await deliveries(b.sessionId)).length === 1, 'tenantB notified');
    const mails = await mailsAbout(b.sessionId);
    expect(mails.map((m) => m.to)).toEqual([['ops-b@beta.example']]);
    expect(mails[0]!.mail.text).toContain('Beta visitor, out of hours.');
    // No console URL configured: the built-in console under email.publicUrl.
    expect(mails[0]!.mail.text).toContain('Open the conversation: http://chat.acme.example/demo/agent');
    expect(await mailsAbout(a.sessionId)).toEqual([]);
    expect((await mailsTo('ops-a@acme.example')).some((m) => m.mail.text?.includes('Beta visitor'))).toBe(false);
    expect((await mailsTo('ops-b@beta.example')).every((m) => !m.mail.text?.includes('Hello, anyone there?'))).toBe(true);
  });

  it('a line an agent answered before the notification was due is not notified', async () => {
    // tenantB stays out of business hours: the visitor's line schedules a notification.
    const v = await visitor('tenantB');
    await write(v, 'Is anyone reading this?');
    await eventually(async () => (await job(v.sessionId))?.pending === true, 'the notification scheduled');
    const agent = await agentToken(node, 'tenantB', KEYS.secB, 'bob');
    const r = await node.http('POST', '/webchat/message', {
      token: agent,
      body: { tenantId: 'tenantB', sessionId: v.sessionId, text: 'Yes!' },
    });
    expect(r.status).toBe(200);
    const before = await registry.getSingleMetricAsString('chatd_emails_total');
    const answered = () => Number(/chatd_emails_total\{result="skipped",reason="answered"\} (\d+)/.exec(before)?.[1] ?? 0);
    const was = answered();
    await due(v.sessionId);
    await eventually(async () => (await job(v.sessionId))?.pending === false, 'the job to end');
    expect(await registry.getSingleMetricAsString('chatd_emails_total')).toMatch(
      new RegExp(`chatd_emails_total\\{result="skipped",reason="answered"\\} ${was + 1}`),
    );
    expect(await deliveries(v.sessionId)).toEqual([]);
    expect(await mailsAbout(v.sessionId)).toEqual([]);
  });

  it('SMTP down: the notification is retried and sent once when it is back; a refused address is recorded as failed', async () => {
    // tenantB is out of business hours.
    await smtp.kill();
    const v = await visitor('tenantB');
    await write(v, 'Written while the mail server is down.');
    await due(v.sessionId);
    await eventually(async () => ((await job(v.sessionId))?.attempts ?? 0) >= 2, 'the notification retried');
    const failing = await job(v.sessionId);
    expect(failing).toMatchObject({ pending: true, emailed_seq: 0 });
    expect(failing!.last_error).toMatch(/ECONNREFUSED|connect/i);
    await smtp.start();
    await eventually(async () => (await deliveries(v.sessionId)).length === 1, 'sent once SMTP is back');
    expect(await deliveries(v.sessionId)).toEqual([
      expect.objectContaining({ kind: 'tenant', status: 'sent', recipient: 'ops-b@beta.example' }),
    ]);
    const mails = await mailsAbout(v.sessionId);
    expect(mails).toHaveLength(1);
    expect(mails[0]!.mail.text).toContain('Written while the mail server is down.');

    const c = await visitor('tenantC');
    await write(c, 'Nobody at tenant C?');
    await due(c.sessionId);
    await eventually(async () => (await deliveries(c.sessionId)).length === 1, 'the refusal recorded');
    const [d] = await deliveries(c.sessionId);
    expect(d).toMatchObject({ kind: 'tenant', status: 'failed', recipient: 'reject-ops@c.example', messages: 1 });
    expect(d!.error).toContain('550');
    expect(await job(c.sessionId)).toMatchObject({ pending: false, emailed_seq: 1 });
  });
});
