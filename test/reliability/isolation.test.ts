// The isolation matrix: for every door — the HTTP endpoints, CONNECT, the streams a socket follows,
// recovery (`pid` + offset), presence, history, the CLI and the admin listener — a key or token of
// tenant A, or of session X, can neither read nor write tenant B's or session Y's data. A session
// id tenant A uses, claimed under tenant B, is refused exactly like any foreign session: the same
// status, code and message as a session that is not the caller's, so neither tenant learns it exists.
// One `--role all` process on the shared Redis and PostgreSQL (own key prefix and schema).
import { io, type Socket } from 'socket.io-client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runChatd } from '../helpers/chatd-process.js';
import { DATABASE_URL, dropSchema, hasPostgres, hasRedis, REDIS_URL, uniquePrefix, uniqueSchema } from '../helpers/services.js';
import { ADMIN_TOKEN, call, Cluster, connected, JWT_SECRET, TENANT_A, TENANT_B, type HttpAnswer } from './cluster.js';
import { eventually } from '../helpers/eventually.js';

const services = (await hasRedis()) && (await hasPostgres());

interface Party {
  readonly tenant: typeof TENANT_A;
  readonly sessionId: string;
  readonly fingerprint: string;
  token: string;
  socket: Socket;
  readonly got: { event: string; args: unknown[] }[];
}

describe.skipIf(!services)('isolation matrix (tenants A and B, sessions X and Y)', () => {
  const schema = uniqueSchema('iso');
  const cluster = new Cluster({ redisUrl: REDIS_URL, redisPrefix: uniquePrefix('iso'), databaseUrl: DATABASE_URL, schema });
  let base: string;
  const sockets: Socket[] = [];
  let doorsTried = 0;
  // A: visitors X and Y and an agent; B: visitor Z (and later a claimant of X's id) and an agent.
  const parties: Record<string, Party> = {};
  let agentA: Party;
  let agentB: Party;
  const SHARED = 'shared-session-1'; // used by tenant A first, then claimed under tenant B

  const expectRefused = (r: HttpAnswer, status: number, code: string, what: string) => {
    doorsTried++;
    expect({ status: r.status, code: r.body.code }, `${what}: ${JSON.stringify(r.body)}`).toEqual({ status, code });
  };
  const record = (s: Socket, got: Party['got']) => s.onAny((event: string, ...args: unknown[]) => got.push({ event, args }));
  const mention = (got: Party['got'], needle: string) => got.some((g) => JSON.stringify(g.args).includes(needle));

  const visitor = async (tenant: typeof TENANT_A, sessionId: string): Promise<Party> => {
    const fingerprint = `fp-${tenant.id}-${sessionId}`;
    const r = await call(base, 'POST', '/api/chat/anonymous-token', tenant.pub, { tenantId: tenant.id, sessionId, fingerprint });
    expect(r.status, JSON.stringify(r.body)).toBe(200);
    const token = r.body.token as string;
    const socket = io(base, {
      auth: { apiKey: tenant.pub, token, sessionId, fingerprint },
      transports: ['websocket'],
      reconnection: false,
    });
    sockets.push(socket);
    const p: Party = { tenant, sessionId, fingerprint, token, socket, got: [] };
    record(socket, p.got);
    await connected(socket);
    return p;
  };
  const agent = async (tenant: typeof TENANT_A): Promise<Party> => {
    const r = await call(base, 'POST', '/api/chat/agent-token', tenant.sec, { tenantId: tenant.id, userId: `agent-${tenant.id}` });
    expect(r.status, JSON.stringify(r.body)).toBe(200);
    const socket = io(base, { auth: { token: r.body.token }, transports: ['websocket'], reconnection: false });
    sockets.push(socket);
    const p: Party = { tenant, sessionId: '', fingerprint: '', token: r.body.token as string, socket, got: [] };
    record(socket, p.got);
    await connected(socket);
    return p;
  };
  const send = (p: Party, body: Record<string, unknown>) =>
    call(base, 'POST', '/webchat/message', p.token, {
      tenantId: p.tenant.id,
      sessionId: p.sessionId,
      fingerprint: p.fingerprint,
      text: 'hi',
      ...body,
    });

  beforeAll(async () => {
    await cluster.migrate();
    await cluster.start('iso', 'all');
    base = cluster.url('iso', 'public');
    agentA = await agent(TENANT_A);
    agentB = await agent(TENANT_B);
    parties.X = await visitor(TENANT_A, 'iso-x');
    parties.Y = await visitor(TENANT_A, 'iso-y');
    parties.Z = await visitor(TENANT_B, 'iso-z');
    parties.S = await visitor(TENANT_A, SHARED);
    for (const k of ['X', 'Y', 'Z', 'S']) {
      const r = await send(parties[k]!, { text: `secret of ${k}`, clientMessageId: `own-${k}` });
      expect(r.status, JSON.stringify(r.body)).toBe(200);
    }
    await eventually(() => mention(agentA.got, 'secret of X') && mention(agentB.got, 'secret of Z'), 'own messages delivered', {
      timeoutMs: 60_000,
      intervalMs: 100,
      retryOnError: true,
    });
  }, 300_000);

  afterAll(async () => {
    for (const s of sockets) s.close();
    await cluster.stopAll();
    await dropSchema(schema);

    console.log(`[reliability] isolation: ${doorsTried} cross-tenant/cross-session attempts refused`);
  });

  it('HTTP keys: tenant A keys cannot mint, broadcast or list for tenant B', async () => {
    expectRefused(
      await call(base, 'POST', '/api/chat/anonymous-token', TENANT_A.pub, { tenantId: TENANT_B.id, sessionId: 'n1' }),
      403,
      'tenant_mismatch',
      'A pub → B visitor token',
    );
    expectRefused(
      await call(base, 'POST', '/api/chat/agent-token', TENANT_A.sec, { tenantId: TENANT_B.id, userId: 'u' }),
      403,
      'tenant_mismatch',
      'A sec → B agent token',
    );
    expectRefused(
      await call(base, 'POST', '/api/chat/agent-token', TENANT_A.pub, { tenantId: TENANT_A.id, userId: 'u' }),
      403,
      'key_not_allowed',
      'A pub → agent token',
    );
    expectRefused(
      await call(base, 'POST', '/api/chat/broadcast', TENANT_A.sec, { tenantId: TENANT_B.id, event: 'x', data: {} }),
      403,
      'tenant_mismatch',
      'A sec → B broadcast',
    );
    expectRefused(
      await call(base, 'GET', `/api/chat/online-users?tenantId=${TENANT_B.id}`, TENANT_A.sec),
      403,
      'tenant_mismatch',
      'A sec → B online users',
    );
    expectRefused(
      await call(base, 'GET', `/api/chat/online-users?tenantId=${TENANT_A.id}`, TENANT_A.pub),
      403,
      'key_not_allowed',
      'A pub → online users',
    );
    // An API key is not a JWT: it opens no JWT door.
    expectRefused(
      await call(base, 'GET', `/api/chat/messages?tenantId=${TENANT_A.id}&sessionId=iso-x`, TENANT_A.sec),
      401,
      'token_invalid',
      'A sec key as a JWT',
    );
  });

  it('HTTP tokens: session X cannot read or write session Y; tenant A tokens cannot touch tenant B', async () => {
    const X = parties.X!;
    expectRefused(await send(X, { sessionId: 'iso-y' }), 403, 'session_forbidden', 'X writes Y');
    expectRefused(
      await call(base, 'GET', `/api/chat/messages?tenantId=${TENANT_A.id}&sessionId=iso-y`, X.token),
      403,
      'session_forbidden',
      'X reads Y',
    );
    expectRefused(
      await call(base, 'GET', `/api/chat/messages?tenantId=${TENANT_A.id}&userId=someone`, X.token),
      403,
      'forbidden',
      'X reads by userId',
    );
    expectRefused(await send(X, { tenantId: TENANT_B.id, sessionId: 'iso-z' }), 403, 'tenant_mismatch', 'X writes into B');
    expectRefused(
      await call(base, 'GET', `/api/chat/messages?tenantId=${TENANT_B.id}&sessionId=iso-z`, X.token),
      403,
      'tenant_mismatch',
      'X reads B',
    );
    expectRefused(
      await call(base, 'GET', `/api/chat/online-users?tenantId=${TENANT_A.id}`, X.token),
      403,
      'forbidden',
      'visitor lists online users',
    );
    expectRefused(
      await call(base, 'POST', '/webchat/message', agentA.token, { tenantId: TENANT_B.id, sessionId: 'iso-z', text: 'x' }),
      403,
      'tenant_mismatch',
      'agent A writes into B',
    );
    expectRefused(
      await call(base, 'GET', `/api/chat/messages?tenantId=${TENANT_B.id}&sessionId=iso-z`, agentA.token),
      403,
      'tenant_mismatch',
      'agent A reads B',
    );
    expectRefused(
      await call(base, 'GET', `/api/chat/online-users?tenantId=${TENANT_B.id}`, agentA.token),
      403,
      'tenant_mismatch',
      'agent A lists B',
    );
    // Nothing of another tenant shows in what A may read.
    const own = await call(base, 'GET', `/api/chat/online-users?tenantId=${TENANT_A.id}`, agentA.token);
    expect(own.status).toBe(200);
    expect(JSON.stringify(own.body)).not.toContain('iso-z');
  });

  it('a session id tenant A uses, claimed under tenant B, is refused exactly like any foreign session', async () => {
    // B's visitor minted for A's session id, and for B's own other session (Z, not theirs).
    const mintB = async (sessionId: string) => {
      const r = await call(base, 'POST', '/api/chat/anonymous-token', TENANT_B.pub, {
        tenantId: TENANT_B.id,
        sessionId,
        fingerprint: 'fp-intruder',
      });
      return r;
    };
    const mintShared = await mintB(SHARED);
    const mintForeign = await mintB('iso-z');
    expect(mintShared.status).toBe(mintForeign.status);
    const strip = (r: HttpAnswer) => ({ status: r.status, code: r.body.code, error: r.body.error });
    if (mintShared.status === 200) {
      const body = (sessionId: string) => ({ tenantId: TENANT_B.id, sessionId, fingerprint: 'fp-intruder', text: 'claim' });
      const wShared = await call(base, 'POST', '/webchat/message', mintShared.body.token as string, body(SHARED));
      const wForeign = await call(base, 'POST', '/webchat/message', mintForeign.body.token as string, body('iso-z'));
      doorsTried += 2;
      expect(strip(wShared)).toEqual(strip(wForeign));
      expect(wShared.status).toBe(403);
      const rShared = await call(
        base,
        'GET',
        `/api/chat/messages?tenantId=${TENANT_B.id}&sessionId=${SHARED}&fingerprint=fp-intruder`,
        mintShared.body.token as string,
      );
      const rForeign = await call(
        base,
        'GET',
        `/api/chat/messages?tenantId=${TENANT_B.id}&sessionId=iso-z&fingerprint=fp-intruder`,
        mintForeign.body.token as string,
      );
      doorsTried += 2;
      expect(strip(rShared)).toEqual(strip(rForeign));
      expect(rShared.status).toBe(403);
    }
    // An unbound B token (no session at mint) claiming A's id vs a random unknown id taken by
    // another B visitor: the same refusal.
    const unbound = await call(base, 'POST', '/api/chat/anonymous-token', TENANT_B.pub, { tenantId: TENANT_B.id });
    const unbound2 = await call(base, 'POST', '/api/chat/anonymous-token', TENANT_B.pub, { tenantId: TENANT_B.id });
    const claim = (token: string, sessionId: string) =>
      call(base, 'POST', '/webchat/message', token, { tenantId: TENANT_B.id, sessionId, fingerprint: 'fp-intruder', text: 'claim' });
    const cShared = await claim(unbound.body.token as string, SHARED);
    const cForeign = await claim(unbound2.body.token as string, 'iso-z');
    doorsTried += 2;
    expect(strip(cShared)).toEqual(strip(cForeign));
    expect(cShared.status).toBe(403);
    // B's agent: A's id under tenant B reads like a session B never had.
    const aShared = await call(base, 'GET', `/api/chat/messages?tenantId=${TENANT_B.id}&sessionId=${SHARED}`, agentB.token);
    const aUnknown = await call(base, 'GET', `/api/chat/messages?tenantId=${TENANT_B.id}&sessionId=never-used-${Date.now()}`, agentB.token);
    doorsTried += 2;
    expect({ ...strip(aShared), messages: aShared.body.messages }).toEqual({ ...strip(aUnknown), messages: aUnknown.body.messages });
    expect(JSON.stringify(aShared.body)).not.toContain('secret of S');
    // B's agent replying into A's id under tenant B: refused like an unknown id, nothing written.
    const pShared = await call(base, 'POST', '/webchat/message', agentB.token, {
      tenantId: TENANT_B.id,
      sessionId: SHARED,
      text: 'agent claim',
    });
    const pUnknown = await call(base, 'POST', '/webchat/message', agentB.token, {
      tenantId: TENANT_B.id,
      sessionId: `never-used-${Date.now()}`,
      text: 'agent claim',
    });
    doorsTried += 2;
    expect(strip(pShared)).toEqual(strip(pUnknown));
    // CONNECT: B's visitor naming A's id (fingerprint given) vs naming Z's with the wrong fingerprint.
    const connectErr = async (sessionId: string) => {
      const t = await call(base, 'POST', '/api/chat/anonymous-token', TENANT_B.pub, { tenantId: TENANT_B.id });
      const s = io(base, {
        auth: { apiKey: TENANT_B.pub, token: t.body.token, sessionId, fingerprint: 'fp-intruder' },
        transports: ['websocket'],
        reconnection: false,
      });
      sockets.push(s);
      const err = await new Promise<Error & { data?: { code?: string } }>((resolve) => {
        s.once('connect_error', resolve);
        s.once('connect', () => resolve(Object.assign(new Error('connected'), { data: { code: 'connected' } })));
      });
      s.close();
      return { message: err.message, code: err.data?.code };
    };
    const kShared = await connectErr(SHARED);
    const kForeign = await connectErr('iso-z');
    doorsTried += 2;
    expect(kShared).toEqual(kForeign);
    expect(kShared.code).toBe('session_forbidden');
    // Tenant A's session is untouched: still only A's message, and B never saw it.
    const own = await call(base, 'GET', `/api/chat/messages?tenantId=${TENANT_A.id}&sessionId=${SHARED}`, parties.S!.token);
    expect(own.status).toBe(200);
    expect((own.body.messages as { text: string }[]).map((m) => m.text)).toEqual(['secret of S']);
    expect(mention(agentB.got, 'secret of S')).toBe(false);
    expect(mention(parties.Z!.got, 'secret of S')).toBe(false);
  });

  it('CONNECT and streams: a socket gets only its own stream, typing/read and joins stay in their tenant and session', async () => {
    // A's key with B's token, and B's key with A's token: refused.
    for (const [key, token] of [
      [TENANT_A.pub, parties.Z!.token],
      [TENANT_B.pub, parties.X!.token],
    ] as const) {
      const s = io(base, { auth: { apiKey: key, token }, transports: ['websocket'], reconnection: false });
      sockets.push(s);
      const err = await new Promise<Error & { data?: { code?: string } }>((resolve) => {
        s.once('connect_error', resolve);
        s.once('connect', () => resolve(Object.assign(new Error('connected'), { data: { code: 'connected' } })));
      });
      doorsTried++;
      expect(err.data?.code, err.message).not.toBe('connected');
      s.close();
    }
    const X = parties.X!;
    const Y = parties.Y!;
    // WS message into Y's session or into tenant B from X's socket.
    const ackY = (await X.socket
      .timeout(20_000)
      .emitWithAck('message', { tenantId: TENANT_A.id, sessionId: 'iso-y', text: 'into Y', fingerprint: X.fingerprint })) as {
      success: boolean;
      code?: string;
    };
    const ackB = (await X.socket
      .timeout(20_000)
      .emitWithAck('message', { tenantId: TENANT_B.id, sessionId: 'iso-z', text: 'into B', fingerprint: X.fingerprint })) as {
      success: boolean;
      code?: string;
      sessionId?: string;
    };
    doorsTried += 2;
    expect(ackY.success).toBe(false);
    // Either refused, or (the socket's own session and tenant win) stored in X's own conversation.
    if (ackB.success) expect(ackB.sessionId).toBe('iso-x');
    // Agent A joins B's session / a visitor joins another session: refused.
    const joinB = (await agentA.socket.timeout(20_000).emitWithAck('join', { sessionId: 'iso-z' })) as { success: boolean; code?: string };
    const joinY = (await X.socket.timeout(20_000).emitWithAck('join', { sessionId: 'iso-y' })) as { success: boolean; code?: string };
    const typingY = (await X.socket.timeout(20_000).emitWithAck('typing', { sessionId: 'iso-y', isTyping: true })) as { success: boolean };
    doorsTried += 3;
    expect(joinB.success).toBe(false);
    expect(joinY).toMatchObject({ success: false, code: 'session_forbidden' });
    expect(typingY.success).toBe(false);
    // Z types and broadcasts in B; Y sends in A: X sees none of it, agent A none of B's.
    await parties.Z!.socket.timeout(20_000).emitWithAck('typing', { sessionId: 'iso-z', isTyping: true });
    expect(
      (await call(base, 'POST', '/api/chat/broadcast', TENANT_B.sec, { tenantId: TENANT_B.id, event: 'b-only', data: { n: 1 } })).status,
    ).toBe(200);
    expect((await send(Y, { text: 'second secret of Y' })).status).toBe(200);
    await eventually(
      () => mention(Y.got, 'second secret of Y') && mention(agentA.got, 'second secret of Y') && mention(parties.Z!.got, 'b-only'),
      'Y and B events delivered',
      { timeoutMs: 60_000, intervalMs: 100, retryOnError: true },
    );
    expect(mention(X.got, 'secret of Y')).toBe(false);
    expect(mention(X.got, 'b-only')).toBe(false);
    expect(mention(agentA.got, 'b-only') || mention(agentA.got, 'iso-z') || mention(agentA.got, 'secret of Z')).toBe(false);
    expect(mention(agentB.got, 'iso-x') || mention(agentB.got, 'iso-y') || mention(agentB.got, 'secret of')).toBe(
      mention(agentB.got, 'secret of Z'),
    );
    expect(
      agentB.got.filter((g) => JSON.stringify(g.args).includes('secret of') && !JSON.stringify(g.args).includes('secret of Z')),
    ).toEqual([]);
  });

  it("recovery: another socket's pid and offset replay nothing of its stream", async () => {
    const X = parties.X!;
    const pidX = (X.socket as unknown as { _pid?: string })._pid;
    expect(pidX, 'the server hands out a recovery pid').toBeTruthy();
    for (const thief of [parties.Y!, parties.Z!]) {
      const s = io(base, {
        auth: { apiKey: thief.tenant.pub, token: thief.token, sessionId: thief.sessionId, fingerprint: thief.fingerprint },
        transports: ['websocket'],
        reconnection: false,
        autoConnect: false,
      });
      const internals = s as unknown as { _pid?: string; _lastOffset?: string };
      internals._pid = pidX;
      internals._lastOffset = '0';
      const got: Party['got'] = [];
      record(s, got);
      sockets.push(s);
      s.connect();
      await connected(s).catch(() => undefined);
      // Give any replay a chance to arrive: a message of the thief's own stream goes after it.
      if (s.connected) {
        expect((await send(thief, { text: `marker for ${thief.sessionId}` })).status).toBe(200);
        await eventually(() => mention(got, `marker for ${thief.sessionId}`), 'the marker', {
          timeoutMs: 60_000,
          intervalMs: 100,
          retryOnError: true,
        });
      }
      doorsTried++;
      expect(mention(got, 'secret of X'), `${thief.sessionId} replayed X's stream`).toBe(false);
      expect(s.recovered).toBe(false);
      s.close();
    }
  });

  // Three CLI processes: each one starts Node and loads the bundle (slow on a loaded machine).
  it('presence, the CLI and the admin listener stay within their tenant and credential', { timeout: 300_000 }, async () => {
    const cwd = cluster.cwds.get('iso')!;
    const ls = await runChatd(['presence', 'ls', TENANT_A.id, '--json'], { cwd, env: { JWT_SECRET } });
    expect(ls.code, ls.stderr).toBe(0);
    expect(ls.stdout).toContain('iso-x');
    expect(ls.stdout).not.toContain('iso-z');
    // A CLI-minted token for A's session X is bound to X and tenant A.
    const issued = await runChatd(['token', 'issue', '--tenant', TENANT_A.id, '--session', 'iso-x', '--json'], {
      cwd,
      env: { JWT_SECRET },
    });
    expect(issued.code, issued.stderr).toBe(0);
    const cliToken = (JSON.parse(issued.stdout) as { token: string }).token;
    expectRefused(
      await call(base, 'GET', `/api/chat/messages?tenantId=${TENANT_A.id}&sessionId=iso-y`, cliToken),
      403,
      'session_forbidden',
      'CLI token X reads Y',
    );
    expectRefused(
      await call(base, 'GET', `/api/chat/messages?tenantId=${TENANT_B.id}&sessionId=iso-z`, cliToken),
      403,
      'tenant_mismatch',
      'CLI token A reads B',
    );
    const adminCli = await runChatd(['token', 'issue', '--tenant', TENANT_A.id, '--admin', '--json'], { cwd, env: { JWT_SECRET } });
    const cliAgent = (JSON.parse(adminCli.stdout) as { token: string }).token;
    expectRefused(
      await call(base, 'GET', `/api/chat/messages?tenantId=${TENANT_B.id}&sessionId=iso-z`, cliAgent),
      403,
      'tenant_mismatch',
      'CLI agent A reads B',
    );
    // The admin listener: on loopback; tenant keys and tokens are not admin tokens.
    const admin = `http://127.0.0.1:${cluster.procs.get('iso')!.ports.admin}`;
    expect(cluster.procs.get('iso')!.logs()).toMatch(/"listener":"admin"[^\n]*"url":"http:\/\/127\.0\.0\.1:/);
    for (const cred of [TENANT_A.pub, TENANT_A.sec, agentA.token, X_token()]) {
      expectRefused(
        await call(admin, 'GET', `/admin/presence?tenantId=${TENANT_B.id}`, cred),
        401,
        'admin_token_required',
        'tenant credential on the admin listener',
      );
    }
    const withAdmin = await call(admin, 'GET', `/admin/presence?tenantId=${TENANT_A.id}`, ADMIN_TOKEN);
    expect(withAdmin.status).toBe(200);
    expect(JSON.stringify(withAdmin.body)).not.toContain('iso-z');
  });
  const X_token = () => parties.X!.token;
});
