// GET /api/chat/availability against real Redis and PostgreSQL and on the embedded defaults: who may
// ask (any key of the tenant, publishable too, or any token of it; nobody else's), what it answers
// with agents online or not, in and out of business hours, and its Cache-Control; every answer is
// checked against schemas/ by the harness's client.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { hasPostgres, hasRedis } from '../../../test/helpers/services.js';
import type { Store } from '../../store/ports.js';
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

/** A local date two days from now in UTC (far enough from midnight that the test cannot straddle it). */
const inTwoDays = () => new Date(Date.now() + 2 * 86_400_000).toISOString().slice(0, 10);

const KEY_CLOSED = 'ck_pub_closed_publishable_00001';
const KEY_OPEN = 'ck_pub_always_publishable_00001';

function tenants(opening: string): unknown[] {
  const [a, ...rest] = tenantsConfig() as Record<string, unknown>[];
  return [
    { ...a, awayMessage: 'We are away; leave your email and we will answer.', expectedReplySeconds: 300 },
    ...rest,
    // Closed today; opens at 09:00 UTC two days from now (an exception), and never otherwise.
    {
      id: 'closed',
      apiKeys: [{ key: KEY_CLOSED }],
      allowedOrigins: ['*'],
      businessHours: { timeZone: 'UTC', weekly: [], exceptions: [{ date: opening, from: '09:00', to: '10:00' }] },
      awayMessage: 'Closed for now.',
    },
    {
      id: 'always',
      apiKeys: [{ key: KEY_OPEN }],
      allowedOrigins: ['*'],
      businessHours: {
        timeZone: 'Europe/Paris',
        weekly: [{ days: ['mon', 'tue', 'wed', 'thu', 'fri', 'sat', 'sun'], from: '00:00', to: '24:00' }],
      },
    },
  ];
}

const BACKENDS = apiBackends('avail', ready);

describe.each(BACKENDS)('GET /api/chat/availability on $name', ({ enabled, raw }) => {
  if (!enabled) {
    it.skip('needs Redis and PostgreSQL', () => undefined);
    return;
  }
  let srv: InProcessServer;
  let call: ReturnType<typeof client>;
  let store: Store;
  const opening = inTwoDays();

  beforeAll(async () => {
    srv = await startInProcess({ auth: { jwtSecret: JWT_SECRET }, ...raw(), tenants: tenants(opening) });
    call = client(srv.url);
    store = await srv.store();
  }, 300_000);
  afterAll(async () => {
    await srv?.stop();
  });

  const token = async (path: string, key: string, body: Record<string, unknown>) => {
    const r = await call('POST', path, { token: key, body });
    expect(r.status, JSON.stringify(r.body)).toBe(200);
    return r.body.token as string;
  };
  const agentConn = (tenantId: string, agentId: string) => ({
    connId: `c-${agentId}-${Math.random().toString(36).slice(2)}`,
    tenantId,
    agentId,
    connectedAt: new Date().toISOString(),
  });

  it('answers any key or token of the tenant: unavailable with nobody online, available once an agent is', async () => {
    const visitor = await token('/api/chat/anonymous-token', KEYS.pubA, { tenantId: 'tenantA' });
    const agent = await token('/api/chat/agent-token', KEYS.secA, { tenantId: 'tenantA', userId: 'ann' });
    const away = {
      available: false,
      agentsOnline: 0,
      inBusinessHours: true,
      awayMessage: 'We are away; leave your email and we will answer.',
      expectedReplySeconds: 300,
      repliesByEmail: false,
    };
    for (const cred of [KEYS.pubA, KEYS.secA]) {
      const r = await call('GET', '/api/chat/availability?tenantId=tenantA', { token: cred });
      expect(r.status).toBe(200);
      expect(r.body).toEqual(away);
      expect(r.headers.get('cache-control')).toBe('private, max-age=5');
    }
    // A token names its tenant: tenantId may be left out.
    expect((await call('GET', '/api/chat/availability', { token: visitor })).body).toEqual(away);
    expect((await call('GET', '/api/chat/availability?tenantId=tenantA', { token: agent })).body).toEqual(away);

    const conn = agentConn('tenantA', 'ann');
    await store.agentPresence.add('test-node', conn, 60_000);
    await store.agentPresence.add('test-node', agentConn('tenantA', 'bob'), 60_000);
    // Agents of another tenant do not count.
    await store.agentPresence.add('test-node', agentConn('tenantB', 'zed'), 60_000);
    const here = await call('GET', '/api/chat/availability?tenantId=tenantA', { token: KEYS.pubA });
    expect(here.body).toEqual({
      available: true,
      agentsOnline: 2,
      inBusinessHours: true,
      expectedReplySeconds: 300,
      repliesByEmail: false,
    });
    expect((await call('GET', '/api/chat/availability?tenantId=tenantB', { token: KEYS.pubB })).body).toEqual({
      available: true,
      agentsOnline: 1,
      inBusinessHours: true,
      repliesByEmail: false,
    });
    await store.agentPresence.remove('test-node', 'tenantA', conn.connId);
    expect((await call('GET', '/api/chat/availability?tenantId=tenantA', { token: KEYS.pubA })).body.agentsOnline).toBe(1);
  });

  it('out of business hours: not available even with agents online, with the next opening', async () => {
    await store.agentPresence.add('test-node', agentConn('closed', 'cat'), 60_000);
    const r = await call('GET', '/api/chat/availability?tenantId=closed', { token: KEY_CLOSED });
    expect(r.body).toEqual({
      available: false,
      agentsOnline: 1,
      inBusinessHours: false,
      nextOpenAt: `${opening}T09:00:00.000Z`,
      awayMessage: 'Closed for now.',
      repliesByEmail: false,
    });
    // Open around the clock (24:00): in business hours, unavailable only for want of agents.
    expect((await call('GET', '/api/chat/availability?tenantId=always', { token: KEY_OPEN })).body).toEqual({
      available: false,
      agentsOnline: 0,
      inBusinessHours: true,
      repliesByEmail: false,
    });
  });

  it("refuses another tenant's key or token, no credentials, and a key without tenantId", async () => {
    expectError(await call('GET', '/api/chat/availability?tenantId=tenantA'), 401, 'missing_credentials');
    expectError(await call('GET', '/api/chat/availability?tenantId=tenantA', { token: KEYS.pubB }), 403, 'tenant_mismatch');
    expectError(
      await call('GET', '/api/chat/availability?tenantId=tenantA', { token: 'ck_pub_unknownunknownunknown' }),
      401,
      'invalid_api_key',
    );
    expectError(await call('GET', '/api/chat/availability', { token: KEYS.pubA }), 400, 'validation_failed');
    const otherVisitor = await token('/api/chat/anonymous-token', KEYS.pubB, { tenantId: 'tenantB' });
    expectError(await call('GET', '/api/chat/availability?tenantId=tenantA', { token: otherVisitor }), 403, 'tenant_mismatch');
    // The tenant's allowed origins apply to keys as everywhere.
    expectError(
      await call('GET', '/api/chat/availability?tenantId=tenantA', { token: KEYS.pubA, headers: { origin: 'https://evil.example' } }),
      403,
      'origin_not_allowed',
    );
  });

  it('checked every answer against the published schema', () => {
    expect(contractSeen.has('GET /api/chat/availability')).toBe(true);
    expect(contractSeen.has('GET /api/chat/availability error')).toBe(true);
  });
});
