// The ws role on the embedded defaults (memory store, PGlite), with the real socket.io-client:
// a visitor and an agent converse, presence, typing and read, refusals, recovery after 50 missed
// messages, broadcast, agent join without duplicates, SIGTERM.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  agentToken,
  connect,
  connected,
  connectError,
  emitAck,
  KEYS,
  startNode,
  visitorToken,
  type Node,
  type Recorder,
} from '../../../test/helpers/ws-harness.js';
import { eventually } from '../../../test/helpers/eventually.js';

let node: Node;
const recorders: Recorder[] = [];
const track = (r: Recorder) => (recorders.push(r), r);

beforeAll(async () => {
  node = await startNode({ presence: { offlineGraceMs: 300, heartbeatMs: 200, nodeTimeoutMs: 5000 } });
  // Opens the embedded database (slow on a loaded machine) before the first test's clock starts.
  await visitorToken(node, 'tenantA', KEYS.pubA);
}, 400_000);
afterAll(async () => {
  for (const r of recorders) r.socket.disconnect();
  await node?.srv.stop();
});

const sid = () => `s${Math.random().toString(36).slice(2, 12)}`;

async function visitor(sessionId: string, opts: Parameters<typeof connect>[2] = {}, extra: Record<string, unknown> = {}) {
  const token = await visitorToken(node, 'tenantA', KEYS.pubA);
  const r = track(
    connect(
      node.ws,
      { apiKey: KEYS.pubA, token, sessionId, fingerprint: `fp-${sessionId}`, domain: 'a.example', url: 'https://a.example/p', ...extra },
      opts,
    ),
  );
  await connected(r);
  return r;
}

async function agent(opts: Parameters<typeof connect>[2] = {}, userId = 'agent-1') {
  const token = await agentToken(node, 'tenantA', KEYS.secA, userId);
  const r = track(connect(node.ws, { token }, opts));
  await connected(r);
  return r;
}

describe.each([
  ['websocket only', { transports: ['websocket'] as string[] }],
  ['default options', {}],
])('ws role (%s)', (_name, opts) => {
  it('a visitor and an agent converse; typing and read are relayed; presence reaches the agent', async () => {
    const step = (m: string) => process.env.WS_TEST_DEBUG && console.log(new Date().toISOString(), m);
    const ag = await agent(opts);
    const s = sid();
    const v = await visitor(s, opts);
    const hello = await emitAck(v, 'message', { text: 'hello', clientMessageId: 'c1' });
    expect(hello).toMatchObject({ success: true, sessionId: s });
    await eventually(() => ag.messages.length >= 1 && v.messages.length >= 1, 'message to both');
    expect(v.messages[0]!.message.text).toBe('hello');
    expect(v.messages[0]!.offset).toBe('1');
    expect(ag.messages.find((m) => m.message.sessionId === s)!.message.id).toBe((hello as { messageId: string }).messageId);
    await eventually(() => ag.presence.some((p) => p.sessionId === s && p.status === 'online'), 'online to agent');

    step('reply');
    const reply = await emitAck(ag, 'message', { sessionId: s, text: 'hi, how can I help?' });
    expect(reply).toMatchObject({ success: true, sessionId: s });
    await eventually(() => v.messages.length === 2, 'reply to visitor');
    expect(v.messages[1]!.message.sender.type).toBe('agent');

    step('join');
    // An agent who joined the conversation gets typing and read, and each message still once.
    expect(await emitAck(ag, 'join', { sessionId: s })).toMatchObject({ success: true });
    expect(await emitAck(v, 'typing', { isTyping: true })).toMatchObject({ success: true });
    await eventually(() => ag.typing.length === 1, 'typing to agent');
    expect(ag.typing[0]).toMatchObject({ sessionId: s, isTyping: true, sender: { type: 'visitor' } });
    expect(await emitAck(ag, 'read', { sessionId: s, messageId: (hello as { messageId: string }).messageId })).toMatchObject({
      success: true,
    });
    await eventually(() => v.reads.length === 1, 'read to visitor');
    step('again');
    const again = await emitAck(v, 'message', { text: 'still there?' });
    await eventually(() => ag.messages.filter((m) => m.message.sessionId === s).length === 3, 'third message');
    await emitAck(v, 'message', { text: 'sync' });
    await eventually(() => ag.messages.filter((m) => m.message.sessionId === s).length === 4, 'fourth');
    const ids = ag.messages.filter((m) => m.message.sessionId === s).map((m) => m.message.id);
    expect(new Set(ids).size).toBe(ids.length);
    expect(ids).toContain((again as { messageId: string }).messageId);

    step('tabs');
    // Two tabs keep the user online until both close.
    const tab2 = await visitor(s, opts);
    step('tab2 connected');
    v.socket.disconnect();
    // A window on purpose: proves no "offline" comes for the closed tab, even after the 300 ms grace.
    await new Promise((r) => setTimeout(r, 1000));
    expect(ag.presence.filter((p) => p.sessionId === s && p.status === 'offline')).toHaveLength(0);
    step(`before tab2 close ${JSON.stringify(ag.presence.filter((p) => p.sessionId === s))}`);
    tab2.socket.disconnect();
    await eventually(() => ag.presence.some((p) => p.sessionId === s && p.status === 'offline'), 'offline after grace');
  });

  it('a client away while 50 messages are sent gets all 50 on reconnect with recovered === true', async () => {
    const s = sid();
    const v = await visitor(s, opts);
    await emitAck(v, 'message', { text: 'first' });
    await eventually(() => v.messages.length === 1, 'first');
    const ag = await agent(opts);
    // Drop the client's transport; send 50 while it is away.
    v.socket.io.reconnection(false);
    v.socket.io.engine.close();
    await eventually(() => !v.socket.connected, 'disconnected');
    for (let i = 0; i < 50; i++) expect(await emitAck(ag, 'message', { sessionId: s, text: `m${i}` })).toMatchObject({ success: true });
    v.socket.io.reconnection(true);
    v.socket.connect();
    await connected(v);
    expect(v.socket.recovered).toBe(true);
    await eventually(() => v.messages.length === 51, 'all 50 replayed');
    expect(v.messages.map((m) => Number(m.offset))).toEqual(Array.from({ length: 51 }, (_, i) => i + 1));
  });

  it('refuses bad credentials with CONNECT_ERROR and data.code', async () => {
    const token = await visitorToken(node, 'tenantA', KEYS.pubA);
    const badKey = track(connect(node.ws, { apiKey: 'ck_pub_nope_nope_nope_nope_00', token, sessionId: sid(), fingerprint: 'f1' }, opts));
    const e1 = await connectError(badKey);
    expect(e1.message).toBe('Invalid API key');
    expect(e1.data).toEqual({ code: 'invalid_api_key' });
    expect(badKey.socket.active).toBe(false);
    const otherTenant = track(connect(node.ws, { apiKey: KEYS.pubB, token, sessionId: sid(), fingerprint: 'f1' }, opts));
    expect((await connectError(otherTenant)).data).toEqual({ code: 'tenant_mismatch' });
    const badToken = track(connect(node.ws, { apiKey: KEYS.pubA, token: 'a.b.c', sessionId: sid(), fingerprint: 'f1' }, opts));
    expect((await connectError(badToken)).data).toEqual({ code: 'token_invalid' });
    const origin = track(
      connect(
        node.ws,
        { apiKey: KEYS.pubA, token, sessionId: sid(), fingerprint: 'f1' },
        { ...opts, extraHeaders: { origin: 'https://evil.example' } },
      ),
    );
    expect((await connectError(origin)).data).toEqual({ code: 'origin_not_allowed' });
  });
});

describe('ws role details', () => {
  it('an API key in Authorization: Bearer works for non-browser clients; broadcast reaches every socket of the tenant', async () => {
    const token = await visitorToken(node, 'tenantA', KEYS.pubA);
    const s = sid();
    const v = track(
      connect(
        node.ws,
        { token, sessionId: s, fingerprint: 'fp1' },
        { transports: ['websocket'], extraHeaders: { authorization: `Bearer ${KEYS.pubA}` } },
      ),
    );
    await connected(v);
    const ag = await agent({ transports: ['websocket'] });
    const r = await node.http('POST', '/api/chat/broadcast', {
      token: KEYS.secA,
      body: { tenantId: 'tenantA', event: 'office_hours', data: { open: false } },
    });
    expect(r.status).toBe(200);
    await eventually(() => v.broadcasts.length === 1 && ag.broadcasts.length === 1, 'broadcast');
    expect(v.broadcasts[0]).toEqual({ event: 'office_hours', data: { open: false } });
  });

  it('a message over HTTP reaches the socket; the `since` cursor replays from a seq', async () => {
    const s = sid();
    const token = await visitorToken(node, 'tenantA', KEYS.pubA);
    for (let i = 0; i < 3; i++) {
      const r = await node.http('POST', '/webchat/message', {
        token,
        body: { text: `h${i}`, tenantId: 'tenantA', sessionId: s, fingerprint: 'fpx' },
      });
      expect(r.status).toBe(200);
    }
    const v = track(
      connect(node.ws, { apiKey: KEYS.pubA, token, sessionId: s, fingerprint: 'fpx', since: 1 }, { transports: ['websocket'] }),
    );
    await connected(v);
    await eventually(() => v.messages.length === 2, 'since replay');
    expect(v.messages.map((m) => m.message.text)).toEqual(['h1', 'h2']);
    expect(v.socket.recovered).toBe(false);
    await node.http('POST', '/webchat/message', { token, body: { text: 'live', tenantId: 'tenantA', sessionId: s, fingerprint: 'fpx' } });
    await eventually(() => v.messages.length === 3, 'live after since');
  });

  it('a visitor cannot act on another session; events get clear nacks', async () => {
    const v = await visitor(sid(), { transports: ['websocket'] });
    expect(await emitAck(v, 'message', { text: 'x', sessionId: sid() })).toMatchObject({ success: false, code: 'session_forbidden' });
    expect(await emitAck(v, 'message', { text: '' })).toMatchObject({ success: false, code: 'validation_failed' });
    expect(await emitAck(v, 'join', { sessionId: sid() })).toMatchObject({ success: false, code: 'session_forbidden' });
    expect(await emitAck(v, 'nope', {})).toMatchObject({ success: false, code: 'bad_request' });
  });
});

describe('per-socket event rates', () => {
  it('agent sockets have their own bucket: an agent may send a burst a visitor socket may not', async () => {
    // Refill so slow that no test run, however slow the machine, earns a token back.
    const limited = await startNode({
      limits: { messagesPerSocket: { rate: 0.001, burst: 3 }, messagesPerAgentSocket: { rate: 0.001, burst: 6 } },
    });
    try {
      const s = sid();
      const vToken = await visitorToken(limited, 'tenantA', KEYS.pubA);
      const v = track(
        connect(limited.ws, { apiKey: KEYS.pubA, token: vToken, sessionId: s, fingerprint: 'fp-r' }, { transports: ['websocket'] }),
      );
      await connected(v);
      const visitorAcks = [];
      for (let i = 0; i < 4; i++) visitorAcks.push(await emitAck(v, 'message', { text: `v${i}` }));
      expect(visitorAcks.map((a) => (a as { success: boolean }).success)).toEqual([true, true, true, false]);
      expect(visitorAcks[3]).toMatchObject({ code: 'rate_limited' });
      const aToken = await agentToken(limited, 'tenantA', KEYS.secA);
      const ag = track(connect(limited.ws, { token: aToken }, { transports: ['websocket'] }));
      await connected(ag);
      const agentAcks = [];
      for (let i = 0; i < 7; i++) agentAcks.push(await emitAck(ag, 'message', { sessionId: s, text: `a${i}` }));
      expect(agentAcks.map((a) => (a as { success: boolean }).success)).toEqual([true, true, true, true, true, true, false]);
      expect(agentAcks[6]).toMatchObject({ code: 'rate_limited' });
    } finally {
      await limited.srv.stop();
    }
  });
});
