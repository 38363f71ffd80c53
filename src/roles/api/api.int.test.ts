// The api role against real Redis and PostgreSQL: every endpoint's happy and error paths, the
// token-attack list, session binding and tenant isolation, idempotency, rate limits, and the
// contract (every answer checked against schemas/ by the harness's client).
import type { AddressInfo, Server as NetServer, Socket as NetSocket } from 'node:net';
import { randomUUID } from 'node:crypto';
import { SignJWT, UnsecuredJWT } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DATABASE_URL, REDIS_URL, freePort, hasPostgres, hasRedis, uniquePrefix, uniqueSchema } from '../../../test/helpers/services.js';
import { CREDENTIAL_PARAMS } from '../../auth/bearer.js';
import { userHashOf } from '../../auth/identity.js';
import type { Store, TenantEvent } from '../../store/ports.js';
import {
  apiBackends,
  expectError,
  IDENTITY_SECRET,
  JWT_SECRET,
  KEYS,
  client,
  contractSeen,
  startInProcess,
  tenantsConfig,
  type Answer,
  type InProcessServer,
} from '../../../test/helpers/api-harness.js';
import { eventually } from '../../../test/helpers/eventually.js';

const ready = (await hasRedis()) && (await hasPostgres());
const enc = new TextEncoder();
const now = () => Math.floor(Date.now() / 1000);
const id = (p: string) => `${p}-${randomUUID().slice(0, 8)}`;

const BACKENDS = apiBackends('api', ready);

describe.each(BACKENDS)('api role on $name', ({ enabled, raw }) => {
  if (!enabled) {
    it.skip('needs Redis and PostgreSQL', () => undefined);
    return;
  }
  let srv: InProcessServer;
  let call: ReturnType<typeof client>;
  let store: Store;

  beforeAll(async () => {
    srv = await startInProcess({
      auth: { jwtSecret: JWT_SECRET },
      ...raw(),
      tenants: tenantsConfig(),
      limits: { messageMaxChars: 50 },
    });
    call = client(srv.url);
    store = await srv.store();
  }, 300_000);
  afterAll(async () => {
    await srv?.stop();
  });

  const visitorToken = async (tenantId = 'tenantA', key: string = KEYS.pubA, extra: Record<string, unknown> = {}) => {
    const r = await call('POST', '/api/chat/anonymous-token', { token: key, body: { tenantId, ...extra } });
    expect(r.status, JSON.stringify(r.body)).toBe(200);
    return r.body.token as string;
  };
  const agentToken = async (tenantId = 'tenantA', key: string = KEYS.secA, userId = 'agent-1') => {
    const r = await call('POST', '/api/chat/agent-token', { token: key, body: { tenantId, userId, name: 'Ann' } });
    expect(r.status, JSON.stringify(r.body)).toBe(200);
    return r.body.token as string;
  };
  const send = (token: string, body: Record<string, unknown>, headers?: Record<string, string>) =>
    call('POST', '/webchat/message', { token, body: { tenantId: 'tenantA', text: 'hello', ...body }, ...(headers ? { headers } : {}) });
  const history = (token: string, q: string) => call('GET', `/api/chat/messages?${q}`, { token });

  describe('POST /api/chat/anonymous-token', () => {
    it('mints a visitor JWT with any key of the tenant', async () => {
      for (const key of [KEYS.pubA, KEYS.secA]) {
        const r = await call('POST', '/api/chat/anonymous-token', { token: key, body: { tenantId: 'tenantA' } });
        expect(r.status).toBe(200);
        expect(r.body.expiresIn).toBe(3600);
        const claims = JSON.parse(Buffer.from(r.body.token.split('.')[1], 'base64url').toString());
        expect(claims).toMatchObject({ tid: 'tenantA', role: 'visitor', iss: 'chatd', aud: 'chatd' });
        expect(claims.jti).toMatch(/^[0-9a-f-]{36}$/);
        expect(r.headers.get('x-request-id')).toBeTruthy();
      }
    });

    it("refuses a missing or wrong key (401), another tenant's key (403) and bad bodies (400)", async () => {
      expectError(await call('POST', '/api/chat/anonymous-token', { body: { tenantId: 'tenantA' } }), 401, 'invalid_api_key');
      const wrong = await call('POST', '/api/chat/anonymous-token', {
        token: 'ck_pub_wrongwrongwrongwrong',
        body: { tenantId: 'tenantA' },
      });
      expectError(wrong, 401, 'invalid_api_key');
      expect(wrong.body.error).toBe('Invalid API key');
      expectError(
        await call('POST', '/api/chat/anonymous-token', { token: KEYS.pubA, body: { tenantId: 'tenantB' } }),
        403,
        'tenant_mismatch',
      );
      const missing = await call('POST', '/api/chat/anonymous-token', { token: KEYS.pubA, body: {} });
      expectError(missing, 400, 'validation_failed');
      expect(missing.body.error).toContain('tenantId');
      expectError(
        await call('POST', '/api/chat/anonymous-token', { token: KEYS.pubA, body: { tenantId: 'tenant A!' } }),
        400,
        'invalid_id',
      );
      expectError(
        await call('POST', '/api/chat/anonymous-token', { token: KEYS.pubA, body: { tenantId: 'tenantA', sessionId: 's/../x' } }),
        400,
        'invalid_id',
      );
    });

    it('speaks HTTP hygiene: 415, 400 malformed JSON, 413, 404, 405, credentials in the query', async () => {
      const mintRaw = (raw: string, contentType: string) =>
        call('POST', '/api/chat/anonymous-token', { token: KEYS.pubA, raw, headers: { 'content-type': contentType } });
      expectError(await mintRaw('{"tenantId":"tenantA"}', 'text/plain'), 415, 'unsupported_media_type');
      expectError(await mintRaw('{"tenantId":', 'application/json'), 400, 'invalid_json');
      expectError(
        await call('POST', '/api/chat/anonymous-token', { token: KEYS.pubA, body: { tenantId: 'tenantA', pad: 'x'.repeat(70_000) } }),
        413,
        'payload_too_large',
      );
      expectError(await call('GET', '/api/chat/nope'), 404, 'not_found');
      const m = await call('GET', '/api/chat/anonymous-token');
      expectError(m, 405, 'method_not_allowed');
      expect(m.headers.get('allow')).toContain('POST');
      expectError(await call('GET', `/api/chat/messages?tenantId=tenantA&token=abc`), 400, 'credentials_in_query');
      const traced = await call('POST', '/api/chat/anonymous-token', {
        token: 'ck_pub_wrongwrongwrongwrong',
        body: { tenantId: 'tenantA' },
        headers: { 'x-request-id': 'trace-42' },
      });
      expect(traced.headers.get('x-request-id')).toBe('trace-42');
    });

    it('refuses every credential query parameter the gateway refuses (a direct api node, no gateway in front)', async () => {
      // The one list (auth/bearer.ts), password and pid included, by name in any case; and values
      // shaped like a key under any name.
      for (const name of [...CREDENTIAL_PARAMS, 'Password']) {
        expectError(await call('GET', `/api/chat/messages?tenantId=tenantA&${encodeURIComponent(name)}=x`), 400, 'credentials_in_query');
      }
      expectError(await call('GET', '/api/chat/messages?tenantId=tenantA&password=hunter2'), 400, 'credentials_in_query');
      expectError(
        await call('POST', '/api/chat/anonymous-token?password=hunter2', { token: KEYS.pubA, body: { tenantId: 'tenantA' } }),
        400,
        'credentials_in_query',
      );
      expectError(await call('GET', `/api/chat/online-users?tenantId=tenantA&x=${KEYS.secA}`), 400, 'credentials_in_query');
    });

    it("enforces the tenant's allowed origins; CORS answers only configured origins, without credentials", async () => {
      const ok = await call('POST', '/api/chat/anonymous-token', {
        token: KEYS.pubA,
        body: { tenantId: 'tenantA' },
        headers: { origin: 'https://a.example' },
      });
      expect(ok.status).toBe(200);
      expect(ok.headers.get('access-control-allow-origin')).toBe('https://a.example');
      expect(ok.headers.get('access-control-allow-credentials')).toBeNull();
      // b.example is configured (for tenant B) but not allowed for tenant A.
      const bad = await call('POST', '/api/chat/anonymous-token', {
        token: KEYS.pubA,
        body: { tenantId: 'tenantA' },
        headers: { origin: 'https://b.example' },
      });
      expectError(bad, 403, 'origin_not_allowed');
      const pre = await fetch(`${srv.url}/api/chat/anonymous-token`, {
        method: 'OPTIONS',
        headers: { origin: 'https://a.example', 'access-control-request-method': 'POST' },
      });
      expect(pre.status).toBe(204);
      expect(pre.headers.get('access-control-allow-origin')).toBe('https://a.example');
      const evil = await fetch(`${srv.url}/api/chat/anonymous-token`, { method: 'OPTIONS', headers: { origin: 'https://evil.example' } });
      expect(evil.headers.get('access-control-allow-origin')).toBeNull();
    });
  });

  describe("session binding (the guide's widget flow)", () => {
    it("a token minted with only {tenantId} works with the widget's own sessionId, and only with it", async () => {
      const token = await visitorToken();
      const mine = id('s');
      const other = id('s');
      const first = await send(token, { sessionId: mine, fingerprint: 'fp-1', text: 'hi there' });
      expect(first.status, JSON.stringify(first.body)).toBe(200);
      expect(first.body).toEqual({ success: true, messageId: expect.any(String), sessionId: mine });
      expect((await send(token, { sessionId: mine, fingerprint: 'fp-1', text: 'again' })).status).toBe(200);
      // Another session: refused, whether it exists or not.
      expectError(await send(token, { sessionId: other, fingerprint: 'fp-1' }), 403, 'session_forbidden');
      expectError(await history(token, `tenantId=tenantA&sessionId=${other}`), 403, 'session_forbidden');
      const page = await history(token, `tenantId=tenantA&sessionId=${mine}`);
      expect(page.status).toBe(200);
      expect(page.body.messages.map((m: { text: string }) => m.text)).toEqual(['hi there', 'again']);
      expect(page.body.messages[0].sender).toEqual({ type: 'visitor', id: mine, verified: false });
      // Without sessionId the bound session is read.
      expect((await history(token, 'tenantId=tenantA')).body.messages).toHaveLength(2);
      // The session: record (the guide's name) was written by check-and-set.
      expect(await store.sessions.get(mine)).toMatchObject({ tenantId: 'tenantA', fingerprint: 'fp-1', userId: mine });
    });

    it('a new token takes an existing session only with its fingerprint', async () => {
      const s = id('s');
      expect((await send(await visitorToken(), { sessionId: s, fingerprint: 'owner-fp' })).status).toBe(200);
      expectError(await send(await visitorToken(), { sessionId: s, fingerprint: 'thief-fp' }), 403, 'session_forbidden');
      const thief = await visitorToken();
      expectError(await history(thief, `tenantId=tenantA&sessionId=${s}`), 403, 'session_forbidden');
      expectError(await history(thief, `tenantId=tenantA&sessionId=${s}&fingerprint=thief-fp`), 403, 'session_forbidden');
      const refreshed = await visitorToken();
      expect((await history(refreshed, `tenantId=tenantA&sessionId=${s}&fingerprint=owner-fp`)).body.messages).toHaveLength(1);
      expect((await send(refreshed, { sessionId: s, fingerprint: 'owner-fp' })).status).toBe(200);
    });

    it('a token minted with a sessionId binds now, under the same rule', async () => {
      const s = id('s');
      const minted = await call('POST', '/api/chat/anonymous-token', {
        token: KEYS.pubA,
        body: { tenantId: 'tenantA', sessionId: s, fingerprint: 'fp-x' },
      });
      expect(minted.status).toBe(200);
      expect(JSON.parse(Buffer.from(minted.body.token.split('.')[1], 'base64url').toString()).sid).toBe(s);
      expect((await send(minted.body.token, { sessionId: s, fingerprint: 'fp-x' })).status).toBe(200);
      expectError(await send(minted.body.token, { sessionId: id('s'), fingerprint: 'fp-x' }), 403, 'session_forbidden');
      const stolen = await call('POST', '/api/chat/anonymous-token', {
        token: KEYS.pubA,
        body: { tenantId: 'tenantA', sessionId: s, fingerprint: 'other' },
      });
      expectError(stolen, 403, 'session_forbidden');
      const proven = await call('POST', '/api/chat/anonymous-token', {
        token: KEYS.pubA,
        body: { tenantId: 'tenantA', sessionId: s, fingerprint: 'fp-x' },
      });
      expect(proven.status).toBe(200);
    });

    it('a session id of tenant A claimed under tenant B is refused exactly like any foreign session', async () => {
      const s = id('s');
      expect((await send(await visitorToken(), { sessionId: s, fingerprint: 'fp-a' })).status).toBe(200);
      const b = await visitorToken('tenantB', KEYS.pubB);
      const post = await call('POST', '/webchat/message', {
        token: b,
        body: { tenantId: 'tenantB', sessionId: s, fingerprint: 'fp-a', text: 'x' },
      });
      const unknownOwned = await call('POST', '/webchat/message', {
        token: await visitorToken('tenantB', KEYS.pubB),
        body: { tenantId: 'tenantB', sessionId: s, fingerprint: 'wrong', text: 'x' },
      });
      expectError(post, 403, 'session_forbidden');
      // Same answer as an existing session of B with the wrong fingerprint: no hint the id exists.
      expect(post.body).toEqual(unknownOwned.body);
      const mint = await call('POST', '/api/chat/anonymous-token', {
        token: KEYS.pubB,
        body: { tenantId: 'tenantB', sessionId: s, fingerprint: 'fp-a' },
      });
      expectError(mint, 403, 'session_forbidden');
      // Tenant B's agent cannot read or reply to it either.
      const agentB = await agentToken('tenantB', KEYS.secB);
      expect((await history(agentB, `tenantId=tenantB&sessionId=${s}`)).body.messages).toEqual([]);
      expectError(
        await call('POST', '/webchat/message', { token: agentB, body: { tenantId: 'tenantB', sessionId: s, text: 'x' } }),
        403,
        'session_forbidden',
      );
      // The session: record still belongs to tenant A.
      expect((await store.sessions.get(s))?.tenantId).toBe('tenantA');
    });
  });

  describe('POST /webchat/message', () => {
    it('a retry with the same clientMessageId yields one row and the same messageId; different text 409', async () => {
      const token = await visitorToken();
      const s = id('s');
      const body = { sessionId: s, fingerprint: 'fp', clientMessageId: 'c-1', text: 'once' };
      const a = await send(token, body);
      const b = await send(token, body);
      expect(a.status).toBe(200);
      expect(b.body.messageId).toBe(a.body.messageId);
      expectError(await send(token, { ...body, text: 'changed' }), 409, 'idempotency_conflict');
      const page = await history(token, `tenantId=tenantA&sessionId=${s}`);
      expect(page.body.messages).toHaveLength(1);
      expect(page.body.messages[0]).toMatchObject({ id: a.body.messageId, clientMessageId: 'c-1', seq: 1 });
    });

    it('validates the body: required fields, bounds, ids, empty metadata allowed, unknown fields ignored', async () => {
      const token = await visitorToken();
      const s = id('s');
      expectError(await send(token, { sessionId: s }), 400, 'validation_failed'); // fingerprint for visitors
      expectError(await send(token, { sessionId: s, fingerprint: 'f', text: '' }), 400, 'validation_failed');
      const long = await send(token, { sessionId: s, fingerprint: 'f', text: 'x'.repeat(51) });
      expectError(long, 400, 'validation_failed');
      expect(long.body.error).toContain('50');
      expectError(await send(token, { sessionId: 'bad id', fingerprint: 'f' }), 400, 'invalid_id');
      expectError(
        await call('POST', '/webchat/message', { token, body: { sessionId: s, fingerprint: 'f', text: 'x' } }),
        400,
        'validation_failed',
      );
      const ok = await send(token, {
        sessionId: s,
        fingerprint: 'f',
        domain: '',
        origin: '',
        url: 'https://a.example/p',
        referrer: '',
        siteId: '',
        userId: '',
        somethingNew: { ignored: true },
      });
      expect(ok.status, JSON.stringify(ok.body)).toBe(200);
      const [m] = (await history(token, `tenantId=tenantA&sessionId=${s}`)).body.messages;
      expect(m.meta).toEqual({ domain: '', origin: '', url: 'https://a.example/p', referrer: '', siteId: '' });
    });

    it("a claimed userId is stored unverified and never grants another session's history", async () => {
      const token = await visitorToken();
      const s = id('s');
      expect((await send(token, { sessionId: s, fingerprint: 'f', userId: 'alice@a.example' })).status).toBe(200);
      const [m] = (await history(token, `tenantId=tenantA&sessionId=${s}`)).body.messages;
      expect(m.sender).toEqual({ type: 'user', id: 'alice@a.example', verified: false });
      expectError(await history(token, 'tenantId=tenantA&userId=alice@a.example'), 403, 'forbidden');
    });

    it('identityVerification required: refused without userHash, verified with it; wrong hash refused', async () => {
      const token = await visitorToken('strict', KEYS.pubStrict);
      const s = id('s');
      const base = { tenantId: 'strict', sessionId: s, fingerprint: 'f', text: 'x' };
      expectError(await call('POST', '/webchat/message', { token, body: base }), 403, 'identity_required');
      expectError(
        await call('POST', '/webchat/message', { token, body: { ...base, userId: 'u1', userHash: 'deadbeef' } }),
        403,
        'identity_invalid',
      );
      const ok = await call('POST', '/webchat/message', {
        token,
        body: { ...base, userId: 'u1', userHash: userHashOf(IDENTITY_SECRET, 'u1') },
      });
      expect(ok.status, JSON.stringify(ok.body)).toBe(200);
      const [m] = (await history(token, `tenantId=strict&sessionId=${s}`)).body.messages;
      expect(m.sender).toEqual({ type: 'user', id: 'u1', verified: true });
    });

    it("an agent replies to any conversation of its tenant and reads it; not another tenant's", async () => {
      const s = id('s');
      const visitor = await visitorToken();
      expect((await send(visitor, { sessionId: s, fingerprint: 'f', text: 'need help' })).status).toBe(200);
      const agent = await agentToken();
      const reply = await call('POST', '/webchat/message', { token: agent, body: { tenantId: 'tenantA', sessionId: s, text: 'on it' } });
      expect(reply.status, JSON.stringify(reply.body)).toBe(200);
      const page = await history(agent, `tenantId=tenantA&sessionId=${s}`);
      expect(page.body.messages.map((m: { sender: unknown }) => m.sender)).toEqual([
        { type: 'visitor', id: s, verified: false },
        { type: 'agent', id: 'agent-1', verified: true },
      ]);
      expect(page.body.messages.map((m: { seq: number }) => m.seq)).toEqual([1, 2]);
      expectError(
        await call('POST', '/webchat/message', { token: agent, body: { tenantId: 'tenantA', sessionId: id('none'), text: 'x' } }),
        403,
        'session_forbidden',
      );
      expectError(await history(agent, `tenantId=tenantB&sessionId=${s}`), 403, 'tenant_mismatch');
    });
  });

  describe('the token-attack list (HTTP)', () => {
    const forge = (claims: Record<string, unknown>, opts: { iss?: string; aud?: string; exp?: number; nbf?: number } = {}) =>
      new SignJWT({ tid: 'tenantA', role: 'agent', sub: 'mallory', ...claims })
        .setProtectedHeader({ alg: 'HS256' })
        .setIssuer(opts.iss ?? 'chatd')
        .setAudience(opts.aud ?? 'chatd')
        .setIssuedAt()
        .setNotBefore(opts.nbf ?? now())
        .setExpirationTime(opts.exp ?? now() + 600)
        .setJti(randomUUID());

    it('refuses alg none, a wrong secret, expired, not yet valid, wrong iss/aud', async () => {
      const q = 'tenantId=tenantA&sessionId=s-any';
      const good = await forge({}).sign(enc.encode(JWT_SECRET));
      expect((await history(good, q)).status).toBe(200);
      const none = new UnsecuredJWT({ tid: 'tenantA', role: 'agent', sub: 'm' })
        .setIssuer('chatd')
        .setAudience('chatd')
        .setExpirationTime('1h')
        .setJti('n')
        .encode();
      expectError(await history(none, q), 401, 'token_invalid');
      expectError(await history(await forge({}).sign(enc.encode('not-the-secret-0123456789abcdef')), q), 401, 'token_invalid');
      expectError(
        await history(await forge({}, { exp: now() - 120, nbf: now() - 300 }).sign(enc.encode(JWT_SECRET)), q),
        401,
        'token_expired',
      );
      expectError(await history(await forge({}, { nbf: now() + 600 }).sign(enc.encode(JWT_SECRET)), q), 401, 'token_invalid');
      expectError(await history(await forge({}, { iss: 'someone' }).sign(enc.encode(JWT_SECRET)), q), 401, 'token_invalid');
      expectError(await history(await forge({}, { aud: 'another-app' }).sign(enc.encode(JWT_SECRET)), q), 401, 'token_invalid');
      expectError(await history('', q), 401, 'missing_credentials');
      expectError(await call('GET', `/api/chat/messages?${q}`), 401, 'missing_credentials');
      // An API key where a token is needed.
      expectError(await history(KEYS.secA, q), 401, 'token_invalid');
    });

    it("refuses another tenant's token and another session's token", async () => {
      const b = await visitorToken('tenantB', KEYS.pubB);
      expectError(await send(b, { sessionId: id('s'), fingerprint: 'f' }), 403, 'tenant_mismatch');
      const sidToken = (
        await call('POST', '/api/chat/anonymous-token', { token: KEYS.pubA, body: { tenantId: 'tenantA', sessionId: id('s') } })
      ).body.token;
      expectError(await send(sidToken, { sessionId: id('s'), fingerprint: 'f' }), 403, 'session_forbidden');
      expectError(await history(sidToken, `tenantId=tenantA&sessionId=${id('s')}`), 403, 'session_forbidden');
    });
  });

  describe('POST /api/chat/agent-token, /api/chat/broadcast, GET /api/chat/online-users', () => {
    it('agent tokens need a secret key of the tenant', async () => {
      const body = { tenantId: 'tenantA', userId: 'agent.smith@a.example' };
      const ok = await call('POST', '/api/chat/agent-token', { token: KEYS.secA, body });
      expect(ok.status).toBe(200);
      expect(ok.body.expiresIn).toBe(28800);
      expect(JSON.parse(Buffer.from(ok.body.token.split('.')[1], 'base64url').toString())).toMatchObject({
        role: 'agent',
        sub: body.userId,
        tid: 'tenantA',
      });
      expectError(await call('POST', '/api/chat/agent-token', { token: KEYS.pubA, body }), 403, 'key_not_allowed');
      expectError(await call('POST', '/api/chat/agent-token', { token: KEYS.secB, body }), 403, 'tenant_mismatch');
      expectError(await call('POST', '/api/chat/agent-token', { token: 'ck_sec_nopenopenopenopenope', body }), 401, 'invalid_api_key');
      expectError(
        await call('POST', '/api/chat/agent-token', { token: KEYS.secA, body: { tenantId: 'tenantA' } }),
        400,
        'validation_failed',
      );
      expectError(await call('POST', '/api/chat/agent-token', { body: {} }), 401, 'invalid_api_key');
      expectError(await call('POST', '/api/chat/broadcast', { body: {} }), 401, 'invalid_api_key');
      expectError(
        await call('POST', '/api/chat/agent-token', { token: KEYS.secA, body: { tenantId: 'tenantA', userId: 'has space' } }),
        400,
        'invalid_id',
      );
    });

    it('broadcast publishes meta_broadcast on the tenant bus (secret key only)', async () => {
      const got: TenantEvent[] = [];
      const unsubscribe = await store.bus.subscribe('tenantA', (e) => got.push(e));
      try {
        const r = await call('POST', '/api/chat/broadcast', {
          token: KEYS.secA,
          body: { tenantId: 'tenantA', event: 'office_hours', data: { open: true } },
        });
        expect(r.status).toBe(200);
        expect(r.body).toEqual({ success: true });
        const deadline = Date.now() + 10_000;
        while (!got.some((e) => e.type === 'broadcast') && Date.now() < deadline) await new Promise((res) => setTimeout(res, 20));
        expect(got.find((e) => e.type === 'broadcast')).toEqual({ type: 'broadcast', event: 'office_hours', data: { open: true } });
      } finally {
        await unsubscribe();
      }
      expectError(
        await call('POST', '/api/chat/broadcast', { token: KEYS.pubA, body: { tenantId: 'tenantA', event: 'x', data: 1 } }),
        403,
        'key_not_allowed',
      );
      expectError(
        await call('POST', '/api/chat/broadcast', { token: KEYS.secA, body: { tenantId: 'tenantA', event: 'bad event!', data: 1 } }),
        400,
        'validation_failed',
      );
    });

    it('online users: secret key or agent token of the tenant; a publishable key or a visitor token is 403', async () => {
      await store.presence.add(
        'test-node',
        {
          connId: id('c'),
          tenantId: 'tenantA',
          userId: 'u-online',
          sessionId: 's-online',
          role: 'visitor',
          connectedAt: new Date().toISOString(),
          domain: 'a.example',
          origin: 'https://a.example',
          url: 'https://a.example/',
        },
        60_000,
      );
      const bySecret = await call('GET', '/api/chat/online-users?tenantId=tenantA', { token: KEYS.secA });
      expect(bySecret.status).toBe(200);
      expect(bySecret.body.users).toContainEqual(
        expect.objectContaining({ userId: 'u-online', sessionId: 's-online', domain: 'a.example' }),
      );
      const byAgent = await call('GET', '/api/chat/online-users?tenantId=tenantA', { token: await agentToken() });
      expect(byAgent.body.users).toEqual(bySecret.body.users);
      expectError(await call('GET', '/api/chat/online-users?tenantId=tenantA', { token: KEYS.pubA }), 403, 'key_not_allowed');
      expectError(await call('GET', '/api/chat/online-users?tenantId=tenantA', { token: await visitorToken() }), 403, 'forbidden');
      expectError(await call('GET', '/api/chat/online-users?tenantId=tenantA', { token: KEYS.secB }), 403, 'tenant_mismatch');
      expectError(
        await call('GET', '/api/chat/online-users?tenantId=tenantA', { token: await agentToken('tenantB', KEYS.secB) }),
        403,
        'tenant_mismatch',
      );
      expectError(
        await call('GET', '/api/chat/online-users?tenantId=tenantA', { token: 'ck_sec_unknownunknownunknown' }),
        401,
        'invalid_api_key',
      );
      expect((await call('GET', '/api/chat/online-users?tenantId=tenantB', { token: KEYS.secB })).body.users).toEqual([]);
    });
  });

  describe('GET /api/chat/messages', () => {
    it('pages the newest `limit` messages in chronological order, `before` goes back', async () => {
      const token = await visitorToken();
      const s = id('s');
      for (let i = 1; i <= 5; i++) expect((await send(token, { sessionId: s, fingerprint: 'f', text: `m${i}` })).status).toBe(200);
      const p1 = await history(token, `tenantId=tenantA&sessionId=${s}&limit=2`);
      expect(p1.body.messages.map((m: { text: string }) => m.text)).toEqual(['m4', 'm5']);
      expect(p1.body.nextCursor).toEqual(expect.any(String));
      const p2 = await history(token, `tenantId=tenantA&sessionId=${s}&limit=2&before=${encodeURIComponent(p1.body.nextCursor)}`);
      expect(p2.body.messages.map((m: { text: string }) => m.text)).toEqual(['m2', 'm3']);
      const p3 = await history(token, `tenantId=tenantA&sessionId=${s}&limit=2&before=${encodeURIComponent(p2.body.nextCursor)}`);
      expect(p3.body.messages.map((m: { text: string }) => m.text)).toEqual(['m1']);
      expect(p3.body.nextCursor).toBeNull();
      expectError(await history(token, `tenantId=tenantA&sessionId=${s}&limit=201`), 400, 'validation_failed');
      expectError(await history(token, `tenantId=tenantA&sessionId=${s}&limit=abc`), 400, 'validation_failed');
      expectError(await history(token, `tenantId=tenant%20A&sessionId=${s}`), 400, 'invalid_id');
      expectError(await history(token, `tenantId=tenantA&sessionId=s%3Bdrop`), 400, 'invalid_id');
      expectError(await history(token, `tenantId=tenantA&userId=a%20b`), 400, 'invalid_id');
    });

    it('a verified user reads its history across sessions by userId; others may not', async () => {
      const user = 'vip@a.example';
      const hash = userHashOf(IDENTITY_SECRET, user);
      const strictToken = () => visitorToken('strict', KEYS.pubStrict);
      const s1 = id('s');
      const s2 = id('s');
      for (const s of [s1, s2]) {
        const r = await call('POST', '/webchat/message', {
          token: await strictToken(),
          body: { tenantId: 'strict', sessionId: s, fingerprint: 'f', text: s, userId: user, userHash: hash },
        });
        expect(r.status, JSON.stringify(r.body)).toBe(200);
      }
      const userToken = await new SignJWT({ tid: 'strict', role: 'user' })
        .setProtectedHeader({ alg: 'HS256' })
        .setIssuer('chatd')
        .setAudience('chatd')
        .setSubject(user)
        .setIssuedAt()
        .setExpirationTime('5m')
        .setJti(randomUUID())
        .sign(enc.encode(JWT_SECRET));
      const all = await history(userToken, `tenantId=strict&userId=${encodeURIComponent(user)}`);
      expect(all.status, JSON.stringify(all.body)).toBe(200);
      expect(all.body.messages.map((m: { sessionId: string }) => m.sessionId).sort()).toEqual([s1, s2].sort());
      expectError(await history(userToken, 'tenantId=strict&userId=someone-else'), 403, 'forbidden');
    });
  });

  it('every route answered and was checked against its published schema', () => {
    for (const route of [
      'POST /api/chat/anonymous-token',
      'POST /api/chat/agent-token',
      'POST /api/chat/broadcast',
      'POST /webchat/message',
      'GET /api/chat/messages',
      'GET /api/chat/online-users',
    ]) {
      expect(contractSeen.has(route), route).toBe(true);
      expect(contractSeen.has(`${route} error`), `${route} error`).toBe(true);
    }
  });
});

describe.skipIf(!ready)('api role rate limits (Redis)', () => {
  let srv: InProcessServer;
  let call: ReturnType<typeof client>;
  let untrusting: InProcessServer;

  beforeAll(async () => {
    srv = await startInProcess({
      auth: { jwtSecret: JWT_SECRET },
      redis: { url: REDIS_URL, prefix: uniquePrefix('apirl') },
      database: { url: DATABASE_URL, schema: uniqueSchema('apirl'), autoMigrate: true },
      tenants: tenantsConfig(),
      server: { trustedProxies: ['127.0.0.1'] },
      limits: { httpPerIp: { rate: 0.01, burst: 3 }, httpPerKey: { rate: 0.01, burst: 5 } },
    });
    call = client(srv.url);
    untrusting = await startInProcess({
      auth: { jwtSecret: JWT_SECRET },
      redis: { url: REDIS_URL, prefix: uniquePrefix('apirl2') },
      database: { url: DATABASE_URL, schema: uniqueSchema('apirl2'), autoMigrate: true },
      tenants: tenantsConfig(),
      limits: { httpPerIp: { rate: 0.01, burst: 2 } },
    });
  });
  afterAll(async () => {
    await srv?.stop();
    await untrusting?.stop();
  });

  it('ignores X-Forwarded-For from a peer that is not a trusted proxy', async () => {
    const c = client(untrusting.url);
    const mint = (ip: string) =>
      c('POST', '/api/chat/anonymous-token', { token: KEYS.pubA, body: { tenantId: 'tenantA' }, headers: { 'x-forwarded-for': ip } });
    expect((await mint('198.51.100.1')).status).toBe(200);
    expect((await mint('198.51.100.2')).status).toBe(200);
    // A spoofed new address does not buy a new bucket: the peer (127.0.0.1) is the client.
    expectError(await mint('198.51.100.3'), 429, 'rate_limited');
  });

  const mint = (ip: string, key: string = KEYS.pubA) =>
    call('POST', '/api/chat/anonymous-token', { token: key, body: { tenantId: 'tenantA' }, headers: { 'x-forwarded-for': ip } });

  it('limits per client IP (X-Forwarded-For from a trusted proxy) and per API key, with Retry-After', async () => {
    for (let i = 0; i < 3; i++) expect((await mint('203.0.113.1')).status).toBe(200);
    const limited = await mint('203.0.113.1');
    expectError(limited, 429, 'rate_limited');
    expect(Number(limited.headers.get('retry-after'))).toBeGreaterThanOrEqual(1);
    // Another client IP has its own bucket, until the key's own bucket (burst 5) runs out.
    expect((await mint('203.0.113.2')).status).toBe(200);
    expect((await mint('203.0.113.2')).status).toBe(200);
    expectError(await mint('203.0.113.3'), 429, 'rate_limited');
    // Another key from a fresh IP still passes.
    expect((await mint('203.0.113.4', KEYS.secA)).status).toBe(200);
  });
});

/**
 * A TCP proxy in front of PostgreSQL that, when armed, cuts both connections at the moment a
 * group-commit flush passes (one autocommit call of chatd_accept_batch, src/db/accept.ts) — before
 * the server sees it (other statements, such as the outbox relay's sweeps, go through). The client
 * cannot know whether it committed.
 */
async function commitCutter(target: { host: string; port: number }) {
  const net = await import('node:net');
  let armed = false;
  let cuts = 0;
  const sockets = new Set<NetSocket>();
  const server = net.createServer((client) => {
    const upstream = net.connect(target);
    sockets.add(client).add(upstream);
    client.on('data', (chunk) => {
      const text = chunk.toString('latin1');
      if (armed && /chatd_accept_batch/.test(text)) {
        armed = false;
        cuts++;
        client.destroy();
        upstream.destroy();
        return;
      }
      upstream.write(chunk);
    });
    upstream.on('data', (chunk) => client.write(chunk));
    const close = () => (client.destroy(), upstream.destroy(), sockets.delete(client), sockets.delete(upstream));
    client.on('error', close).on('close', close);
    upstream.on('error', close).on('close', close);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    port: (server.address() as AddressInfo).port,
    arm: () => void (armed = true),
    cuts: () => cuts,
    close: async () => {
      for (const s of sockets) s.destroy();
      await new Promise((resolve) => server.close(resolve));
    },
  };
}

describe.skipIf(!ready)("api role when a commit's outcome is unknown (PostgreSQL through a cutting proxy)", () => {
  let srv: InProcessServer;
  let call: ReturnType<typeof client>;
  let cutter: Awaited<ReturnType<typeof commitCutter>>;

  beforeAll(async () => {
    const pg = new URL(DATABASE_URL);
    cutter = await commitCutter({ host: pg.hostname, port: Number(pg.port || 5432) });
    pg.host = `127.0.0.1:${cutter.port}`;
    srv = await startInProcess({
      auth: { jwtSecret: JWT_SECRET },
      redis: { url: REDIS_URL, prefix: uniquePrefix('apiou') },
      database: { url: pg.toString(), schema: uniqueSchema('apiou'), autoMigrate: true },
      tenants: tenantsConfig(),
    });
    call = client(srv.url);
  });
  afterAll(async () => {
    await srv?.stop();
    await cutter?.close();
  });

  it('answers 503 outcome_unknown; the retry with the same clientMessageId stores it exactly once', async () => {
    const token = (await call('POST', '/api/chat/anonymous-token', { token: KEYS.pubA, body: { tenantId: 'tenantA' } })).body.token;
    const s = id('s');
    const send = (clientMessageId: string, text: string) =>
      call('POST', '/webchat/message', { token, body: { tenantId: 'tenantA', sessionId: s, fingerprint: 'f', text, clientMessageId } });
    expect((await send('c-0', 'first')).status).toBe(200);
    cutter.arm();
    const unknown = await send('c-1', 'second');
    expect(cutter.cuts()).toBe(1);
    expectError(unknown, 503, 'outcome_unknown');
    expect(unknown.body.error).toContain('clientMessageId');
    const retried = await send('c-1', 'second');
    expect(retried.status, JSON.stringify(retried.body)).toBe(200);
    expect((await send('c-1', 'second')).body.messageId).toBe(retried.body.messageId);
    const page = await call('GET', `/api/chat/messages?tenantId=tenantA&sessionId=${s}`, { token });
    expect(page.body.messages.map((m: { text: string; seq: number }) => [m.seq, m.text])).toEqual([
      [1, 'first'],
      [2, 'second'],
    ]);
  });
});

describe.skipIf(!ready)('api role started while PostgreSQL is unreachable', () => {
  let srv: InProcessServer;
  let proxy: NetServer | undefined;
  let port: number;

  beforeAll(async () => {
    port = await freePort();
    srv = await startInProcess(
      {
        auth: { jwtSecret: JWT_SECRET },
        redis: { url: REDIS_URL, prefix: uniquePrefix('apidown') },
        database: {
          url: `postgres://postgres@127.0.0.1:${port}/test`,
          schema: uniqueSchema('apidown'),
          autoMigrate: true,
          connectTimeoutMs: 2000,
        },
        tenants: tenantsConfig(),
      },
      ['api'],
      { waitReady: false },
    );
  });
  afterAll(async () => {
    await srv?.stop();
    await new Promise((resolve) => (proxy ? proxy.close(resolve) : resolve(undefined)));
  });

  it('answers 503 (not ready, dependency_unavailable) and recovers without a restart once PostgreSQL answers', async () => {
    const call = client(srv.url);
    const ready1 = await fetch(`${srv.url}/readyz`);
    expect(ready1.status).toBe(503);
    expect((await ready1.json()).checks.services).toMatch(/postgres/);
    expectError(
      await call('POST', '/api/chat/anonymous-token', { token: KEYS.pubA, body: { tenantId: 'tenantA' } }),
      503,
      'dependency_unavailable',
    );
    // PostgreSQL "comes up" on that port (a forwarding proxy to the real one).
    const net = await import('node:net');
    const pg = new URL(DATABASE_URL);
    proxy = net.createServer((c) => {
      const u = net.connect({ host: pg.hostname, port: Number(pg.port || 5432) });
      c.pipe(u).pipe(c);
      const close = () => (c.destroy(), u.destroy());
      c.on('error', close).on('close', close);
      u.on('error', close).on('close', close);
    });
    await new Promise<void>((resolve) => proxy!.listen(port, '127.0.0.1', resolve));
    let minted: Answer | undefined;
    await eventually(
      async () => {
        minted = await call('POST', '/api/chat/anonymous-token', { token: KEYS.pubA, body: { tenantId: 'tenantA' } });
        return minted.status === 200;
      },
      'a token minted once PostgreSQL is reachable again',
      { timeoutMs: 60_000, intervalMs: 250 },
    ).catch(() => undefined); // the expect below names the last answer
    expect(minted?.status).toBe(200);
    const sent = await call('POST', '/webchat/message', {
      token: minted!.body.token,
      body: { tenantId: 'tenantA', sessionId: id('s'), fingerprint: 'f', text: 'back' },
    });
    expect(sent.status, JSON.stringify(sent.body)).toBe(200);
    expect((await fetch(`${srv.url}/readyz`)).status).toBe(200);
  });
});
