// POST /webchat/contact against real Redis and PostgreSQL and on the embedded defaults: the visitor's
// address lands on its conversation under the same session rules as a message (its own session
// only, the fingerprint rule, its own tenant), bad addresses are named, agents and API keys are
// refused, and erasing the session erases the contact.
import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { hasPostgres, hasRedis } from '../../../test/helpers/services.js';
import type { KyselyDatabase } from '../../db/database.js';
import {
  apiBackends,
  expectError,
  JWT_SECRET,
  KEYS,
  client,
  contractSeen,
  startInProcess,
  tenantsConfig,
  type InProcessServer,
} from '../../../test/helpers/api-harness.js';

const ready = (await hasRedis()) && (await hasPostgres());
const sid = () => `s-${randomUUID().slice(0, 12)}`;

const BACKENDS = apiBackends('contact', ready);

describe.each(BACKENDS)('POST /webchat/contact on $name', ({ enabled, raw }) => {
  if (!enabled) {
    it.skip('needs Redis and PostgreSQL', () => undefined);
    return;
  }
  let srv: InProcessServer;
  let call: ReturnType<typeof client>;
  let db: KyselyDatabase;

  beforeAll(async () => {
    srv = await startInProcess({ auth: { jwtSecret: JWT_SECRET }, ...raw(), tenants: tenantsConfig() });
    call = client(srv.url);
    db = (await srv.db()) as KyselyDatabase;
  }, 300_000);
  afterAll(async () => {
    await srv?.stop();
  });

  const visitorToken = async (tenantId = 'tenantA', key: string = KEYS.pubA) => {
    const r = await call('POST', '/api/chat/anonymous-token', { token: key, body: { tenantId } });
    expect(r.status, JSON.stringify(r.body)).toBe(200);
    return r.body.token as string;
  };
  const contact = (token: string, body: Record<string, unknown>) =>
    call('POST', '/webchat/contact', { token, body: { tenantId: 'tenantA', ...body } });
  const row = (sessionId: string) =>
    db.kysely
      .selectFrom('conversations')
      .select(['tenant_id', 'contact_email', 'contact_name'])
      .where('session_id', '=', sessionId)
      .executeTakeFirst();

  it("stores the address on the visitor's conversation (created if it has no message yet), and replaces it", async () => {
    const token = await visitorToken();
    const s = sid();
    const r = await contact(token, { sessionId: s, fingerprint: 'fp-1', email: 'ann@example.com', name: ' Ann ' });
    expect(r.status, JSON.stringify(r.body)).toBe(200);
    expect(r.body).toEqual({ success: true, sessionId: s });
    expect(await row(s)).toEqual({ tenant_id: 'tenantA', contact_email: 'ann@example.com', contact_name: 'Ann' });
    // The same token, now bound to the session, may send a message to it and change the address.
    expect(
      (await call('POST', '/webchat/message', { token, body: { tenantId: 'tenantA', sessionId: s, fingerprint: 'fp-1', text: 'hi' } }))
        .status,
    ).toBe(200);
    expect((await contact(token, { sessionId: s, fingerprint: 'fp-1', email: 'ann@work.example' })).status).toBe(200);
    expect(await row(s)).toEqual({ tenant_id: 'tenantA', contact_email: 'ann@work.example', contact_name: null });
  });

  it('names a bad address or a missing field', async () => {
    const token = await visitorToken();
    for (const email of ['not-an-address', 'a@', '', `${'x'.repeat(250)}@example.com`]) {
      const r = await contact(token, { sessionId: sid(), fingerprint: 'fp', email });
      expectError(r, 400, 'validation_failed');
      expect(r.body.error).toContain('email');
    }
    const noFp = await contact(token, { sessionId: sid(), email: 'a@example.com' });
    expectError(noFp, 400, 'validation_failed');
    expect(noFp.body.error).toContain('fingerprint');
  });

  it('follows the session rules of a message: its own session, the fingerprint, its own tenant', async () => {
    const owner = await visitorToken();
    const s = sid();
    expect((await contact(owner, { sessionId: s, fingerprint: 'fp-owner', email: 'owner@example.com' })).status).toBe(200);
    // The token is bound to s: another session is refused.
    expectError(await contact(owner, { sessionId: sid(), fingerprint: 'fp-owner', email: 'x@example.com' }), 403, 'session_forbidden');
    // A fresh token without the owner's fingerprint cannot take over s.
    const other = await visitorToken();
    expectError(await contact(other, { sessionId: s, fingerprint: 'fp-thief', email: 'thief@example.com' }), 403, 'session_forbidden');
    // Another tenant's token, naming this tenant or its own with this session.
    const foreign = await visitorToken('tenantB', KEYS.pubB);
    expectError(await contact(foreign, { sessionId: s, fingerprint: 'fp-owner', email: 'b@example.com' }), 403, 'tenant_mismatch');
    expectError(
      await call('POST', '/webchat/contact', {
        token: foreign,
        body: { tenantId: 'tenantB', sessionId: s, fingerprint: 'fp-owner', email: 'b@example.com' },
      }),
      403,
      'session_forbidden',
    );
    // Agents do not write the visitor's contact; an API key is not a token.
    const agent = (await call('POST', '/api/chat/agent-token', { token: KEYS.secA, body: { tenantId: 'tenantA', userId: 'ann' } })).body
      .token as string;
    expectError(await contact(agent, { sessionId: s, email: 'agent@example.com' }), 403, 'forbidden');
    expectError(await contact(KEYS.pubA, { sessionId: s, fingerprint: 'fp-owner', email: 'k@example.com' }), 401, 'token_invalid');
    expectError(
      await call('POST', '/webchat/contact', { body: { tenantId: 'tenantA', sessionId: s, email: 'k@example.com' } }),
      401,
      'missing_credentials',
    );
    expect(await row(s)).toEqual({ tenant_id: 'tenantA', contact_email: 'owner@example.com', contact_name: null });
  });

  it('is erased with the session', async () => {
    const token = await visitorToken();
    const s = sid();
    expect((await contact(token, { sessionId: s, fingerprint: 'fp', email: 'gone@example.com', name: 'Gone' })).status).toBe(200);
    const erased = await call('POST', '/api/chat/erase', { token: KEYS.secA, body: { tenantId: 'tenantA', sessionId: s } });
    expect(erased.status, JSON.stringify(erased.body)).toBe(200);
    expect(await row(s)).toBeUndefined();
    const left = await db.kysely.selectFrom('conversations').select('id').where('contact_email', '=', 'gone@example.com').execute();
    expect(left).toEqual([]);
  });

  it('answers 404 for replies by email when they are not configured', async () => {
    const r = await call('POST', '/api/chat/inbound-email', {
      token: 'whatever-secret-0123456789',
      body: { to: 'r-x@example.com', text: 'hi' },
    });
    expectError(r, 404, 'not_found');
  });

  it('checked every answer against the published schemas', () => {
    expect(contractSeen.has('POST /webchat/contact')).toBe(true);
    expect(contractSeen.has('POST /webchat/contact error')).toBe(true);
  });
});
