// The agents' inbox end to end, on one node (gateway + api + ws on one listener) with the embedded
// defaults and with Redis + PostgreSQL: the HTTP endpoints checked against schemas/, the
// conversation_updated events a real socket.io-client agent receives, system messages in the
// visitor's stream and history, unread counts on both sides, and the isolation cases.
import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { hasPostgres, hasRedis } from '../../../test/helpers/services.js';
import { apiBackends, expectError, assertSchema, contractSeen, tenantsConfig } from '../../../test/helpers/api-harness.js';
import { agentToken, connect, connected, emitAck, KEYS, startNode, type Node, type Recorder } from '../../../test/helpers/ws-harness.js';
import { eventually } from '../../../test/helpers/eventually.js';
import { startWebhookReceiver, type WebhookReceiver } from '../../../test/helpers/webhook-receiver.js';
import { signWebhook } from '../../webhooks/signing.js';

const ready = (await hasRedis()) && (await hasPostgres());
const sid = (p = 's') => `${p}-${randomUUID().slice(0, 8)}`;

const BACKENDS = apiBackends('inbox', ready);

describe.each(BACKENDS)('conversations API on $name', ({ enabled, raw }) => {
  if (!enabled) {
    it.skip('needs Redis and PostgreSQL', () => undefined);
    return;
  }
  let node: Node;
  const sockets: Recorder[] = [];
  beforeAll(async () => {
    node = await startNode({ ...raw(), presence: { offlineGraceMs: 200 } });
  }, 300_000);
  afterAll(async () => {
    for (const s of sockets) s.socket.disconnect();
    await node?.srv.stop();
  });

  const call = (...a: Parameters<Node['http']>) => node.http(...a);
  const boundVisitor = async (sessionId: string) => {
    const r = await call('POST', '/api/chat/anonymous-token', {
      token: KEYS.pubA,
      body: { tenantId: 'tenantA', sessionId, fingerprint: `fp-${sessionId}` },
    });
    expect(r.status).toBe(200);
    return r.body.token as string;
  };
  const say = async (token: string, sessionId: string, text: string) => {
    const r = await call('POST', '/webchat/message', {
      token,
      body: { tenantId: 'tenantA', sessionId, fingerprint: `fp-${sessionId}`, text },
    });
    expect(r.status, JSON.stringify(r.body)).toBe(200);
    return r.body.messageId as string;
  };
  const agentSocket = async (userId: string) => {
    const rec = connect(node.ws, { token: await agentToken(node, 'tenantA', KEYS.secA, userId) }, { transports: ['websocket'] });
    sockets.push(rec);
    await connected(rec);
    return rec;
  };
  /** The newest summary a socket holds for a session (by version, as a client keeps it). */
  const latest = (rec: Recorder, sessionId: string) =>
    rec.updates
      .filter((u) => u.conversation.sessionId === sessionId)
      .sort((a, b) => a.version - b.version)
      .at(-1);

  it('a visitor who wrote and left is in the inbox; status, assignment, reads and a reopen reach agents live and show in history', async () => {
    const s = sid();
    const agentA = await agentSocket('agent-a');
    const token = await agentToken(node, 'tenantA', KEYS.secA, 'agent-a');
    const visitor = await boundVisitor(s);
    const m1 = await say(visitor, s, 'Hello, is anyone there?');

    // The agent's stream: a conversation_updated with the summary, as published in schemas/.
    await eventually(() => latest(agentA, s)?.version === 1, 'conversation_updated for the first message');
    const first = latest(agentA, s)!;
    assertSchema('event.server.conversation_updated.schema.json', { conversation: first.conversation, version: first.version });
    expect(first.offset).toMatch(/^\d+~/);
    expect(first.conversation).toMatchObject({
      sessionId: s,
      status: 'open',
      assignee: null,
      visitor: { type: 'visitor', id: s, verified: false },
      lastMessage: { id: m1, text: 'Hello, is anyone there?', sender: { type: 'visitor' } },
      unreadCount: 1,
      messageCount: 1,
      online: false,
    });

    // The list, newest activity first, filtered; one summary.
    const list = await call('GET', '/api/chat/conversations?tenantId=tenantA&status=open', { token });
    expect(list.status).toBe(200);
    expect(list.body.conversations[0]).toMatchObject({ sessionId: s, unreadCount: 1, online: false });
    const one = await call('GET', `/api/chat/conversations/${s}`, { token });
    expect(one.status).toBe(200);
    expect(one.body).toEqual(list.body.conversations[0]);
    expect((await call('GET', '/api/chat/conversations?assignee=me', { token })).body.conversations).toEqual([]);

    // Assign to me, then resolve: each a system message, each a conversation_updated.
    const assigned = await call('POST', `/api/chat/conversations/${s}/assign`, { token, body: { tenantId: 'tenantA', assignee: 'me' } });
    expect(assigned.status, JSON.stringify(assigned.body)).toBe(200);
    expect(assigned.body).toMatchObject({ sessionId: s, assignee: 'agent-a' });
    expect(
      (await call('GET', '/api/chat/conversations?assignee=me', { token })).body.conversations.map(
        (c: { sessionId: string }) => c.sessionId,
      ),
    ).toEqual([s]);
    const resolved = await call('POST', `/api/chat/conversations/${s}/status`, { token, body: { status: 'resolved' } });
    expect(resolved.body).toMatchObject({ status: 'resolved', assignee: 'agent-a', messageCount: 1 });
    await eventually(() => latest(agentA, s)?.version === 3, 'the updates for assign and resolve');
    expect(latest(agentA, s)!.conversation).toMatchObject({ status: 'resolved', assignee: 'agent-a' });
    // The system messages reach the agents' stream like any message.
    await eventually(() => agentA.messages.filter((m) => m.message.sessionId === s).length === 3, 'the system messages');

    // The agent reads: the shared pointer moves, unread drops to 0 on every agent's inbox.
    const agentB = await agentSocket('agent-b');
    agentA.socket.emit('read', { sessionId: s, messageId: m1 });
    // A version of its own (4, after the message, the assignment and the resolve): a client keeping
    // the highest keeps the read, whatever order the events arrive in.
    await eventually(() => latest(agentA, s)?.version === 4, "the read's update");
    expect(latest(agentA, s)!.conversation).toMatchObject({ unreadCount: 0, status: 'resolved' });
    expect((await call('GET', `/api/chat/conversations/${s}`, { token })).body.unreadCount).toBe(0);

    // The visitor comes back and connects: the system messages are in its history with meta.event,
    // and a new message reopens the conversation (system message n, the message n+1).
    const vsock = connect(node.ws, { apiKey: KEYS.pubA, token: visitor, sessionId: s, fingerprint: `fp-${s}` });
    sockets.push(vsock);
    await connected(vsock);
    await eventually(async () => (await call('GET', `/api/chat/conversations/${s}`, { token })).body.online === true, 'online');
    const reply = await call('POST', '/webchat/message', { token, body: { tenantId: 'tenantA', sessionId: s, text: 'We are here' } });
    expect(reply.status).toBe(200);
    await eventually(() => vsock.messages.some((m) => m.message.id === reply.body.messageId), 'the reply on the visitor stream');
    const page = await call('GET', `/api/chat/messages?tenantId=tenantA&sessionId=${s}`, { token: visitor });
    expect(page.status).toBe(200);
    expect(page.body.unreadCount).toBe(1);
    expect(
      page.body.messages.map((m: { sender: { type: string }; meta: { event?: { type: string } } }) => m.meta.event?.type ?? m.sender.type),
    ).toEqual(['visitor', 'conversation.assigned', 'conversation.status_changed', 'agent']);
    vsock.socket.emit('read', { sessionId: s, messageId: reply.body.messageId });
    await eventually(
      async () => (await call('GET', `/api/chat/messages?tenantId=tenantA&sessionId=${s}`, { token: visitor })).body.unreadCount === 0,
      "the visitor's unread count to drop",
    );
    const back = await say(visitor, s, 'One more question');
    await eventually(() => latest(agentB, s)?.conversation.lastMessage?.id === back, 'the reopen on the second agent');
    expect(latest(agentB, s)!.conversation).toMatchObject({ status: 'open', assignee: 'agent-a', unreadCount: 1, messageCount: 3 });
    await eventually(
      () => vsock.messages.filter((m) => m.message.sender.type === 'system').length >= 1,
      'the reopen message on the visitor stream',
    );
    // Every version the agents saw names one summary: message, assign, resolve, read, the agent's
    // reply, the reopening message (the visitor's own read is not in the summary: no event).
    await eventually(() => latest(agentA, s)?.version === 6, 'the reopen on the first agent');
    const byVersion = new Map<number, Set<string>>();
    for (const u of agentA.updates.filter((x) => x.conversation.sessionId === s)) {
      byVersion.set(u.version, (byVersion.get(u.version) ?? new Set()).add(JSON.stringify({ ...u.conversation, online: null })));
    }
    expect([...byVersion.keys()].sort((a, b) => a - b)).toEqual([1, 2, 3, 4, 5, 6]);
    expect([...byVersion.values()].every((v) => v.size === 1)).toBe(true);
    const seqs = vsock.messages.filter((m) => m.message.seq >= 5).map((m) => [m.message.seq, m.message.sender.type]);
    expect(seqs).toEqual([
      [5, 'system'],
      [6, 'visitor'],
    ]);
  });

  it('two agents assigning the same conversation at once: one order, both inboxes end on the same final state', async () => {
    const s = sid();
    const [x, y] = [await agentSocket('agent-x'), await agentSocket('agent-y')];
    const [tx, ty] = [await agentToken(node, 'tenantA', KEYS.secA, 'agent-x'), await agentToken(node, 'tenantA', KEYS.secA, 'agent-y')];
    await say(await boundVisitor(s), s, 'anyone?');
    const [ax, ay] = await Promise.all([
      call('POST', `/api/chat/conversations/${s}/assign`, { token: tx, body: { assignee: 'me' } }),
      call('POST', `/api/chat/conversations/${s}/assign`, { token: ty, body: { assignee: 'me' } }),
    ]);
    expect([ax.status, ay.status]).toEqual([200, 200]);
    const final = (await call('GET', `/api/chat/conversations/${s}`, { token: tx })).body;
    await eventually(() => latest(x, s)?.version === 3 && latest(y, s)?.version === 3, 'both agents to see version 3');
    expect(latest(x, s)!.conversation.assignee).toBe(final.assignee);
    expect(latest(y, s)!.conversation.assignee).toBe(final.assignee);
    expect(['agent-x', 'agent-y']).toContain(final.assignee);
  });

  it("the visitor's contact shows in the summary and reaches the agents as conversation_updated", async () => {
    const s = sid('contact');
    const agent = await agentSocket('agent-c');
    const visitor = await boundVisitor(s);
    await say(visitor, s, 'Please email me');
    await eventually(() => latest(agent, s)?.version === 1, 'the first update');
    const r = await call('POST', '/webchat/contact', {
      token: visitor,
      body: { tenantId: 'tenantA', sessionId: s, fingerprint: `fp-${s}`, email: 'ann@example.com', name: 'Ann' },
    });
    expect(r.status, JSON.stringify(r.body)).toBe(200);
    await eventually(() => latest(agent, s)?.conversation.visitor.email === 'ann@example.com', 'the contact on the agent stream');
    expect(latest(agent, s)!.version).toBe(2);
    expect(latest(agent, s)!.conversation.visitor).toEqual({
      type: 'visitor',
      id: s,
      verified: false,
      name: 'Ann',
      email: 'ann@example.com',
    });
    const one = await call('GET', `/api/chat/conversations/${s}`, { token: await agentToken(node, 'tenantA', KEYS.secA) });
    expect(one.body.visitor).toMatchObject({ name: 'Ann', email: 'ann@example.com' });
  });

  it('pages the list by cursor (default 50, max 200) and a secret key lists like an agent', async () => {
    const made: string[] = [];
    for (let i = 0; i < 3; i++) {
      const s = sid('page');
      await say(await boundVisitor(s), s, `m${i}`);
      made.unshift(s);
    }
    const p1 = await call('GET', '/api/chat/conversations?tenantId=tenantA&limit=2', { token: KEYS.secA });
    expect(p1.status).toBe(200);
    expect(p1.body.conversations.map((c: { sessionId: string }) => c.sessionId)).toEqual(made.slice(0, 2));
    const p2 = await call('GET', `/api/chat/conversations?tenantId=tenantA&limit=2&before=${p1.body.nextCursor}`, { token: KEYS.secA });
    expect(p2.body.conversations[0].sessionId).toBe(made[2]);
    expectError(await call('GET', '/api/chat/conversations?tenantId=tenantA&limit=201', { token: KEYS.secA }), 400, 'validation_failed');
    expectError(
      await call('GET', '/api/chat/conversations?tenantId=tenantA&before=garbage', { token: KEYS.secA }),
      400,
      'validation_failed',
    );
    expectError(
      await call('GET', '/api/chat/conversations?tenantId=tenantA&status=closed', { token: KEYS.secA }),
      400,
      'validation_failed',
    );
    const r = await call('POST', `/api/chat/conversations/${made[0]}/status`, {
      token: KEYS.secA,
      body: { tenantId: 'tenantA', status: 'pending' },
    });
    expect(r.body).toMatchObject({ status: 'pending' });
    const hist = await call('GET', `/api/chat/messages?tenantId=tenantA&sessionId=${made[0]}`, {
      token: await agentToken(node, 'tenantA', KEYS.secA),
    });
    expect(hist.body.messages.at(-1).meta.event).toEqual({
      type: 'conversation.status_changed',
      from: 'open',
      to: 'pending',
      by: { type: 'api', id: 'secret-key' },
    });
    expect(hist.body.unreadCount).toBeUndefined();
  });

  it('isolation: another tenant, an unknown session, a publishable key, a visitor token, "me" with a secret key', async () => {
    const s = sid();
    const visitor = await boundVisitor(s);
    await say(visitor, s, 'private');
    const tokenA = await agentToken(node, 'tenantA', KEYS.secA);
    const tokenB = await agentToken(node, 'tenantB', KEYS.secB);
    // Another tenant's agent: 404 for the session (no hint it exists), 403 naming tenantA.
    expectError(await call('GET', `/api/chat/conversations/${s}`, { token: tokenB }), 404, 'not_found');
    expectError(
      await call('POST', `/api/chat/conversations/${s}/status`, { token: tokenB, body: { status: 'resolved' } }),
      404,
      'not_found',
    );
    expectError(await call('GET', '/api/chat/conversations?tenantId=tenantA', { token: tokenB }), 403, 'tenant_mismatch');
    expectError(await call('GET', `/api/chat/conversations/${s}?tenantId=tenantA`, { token: KEYS.secB }), 403, 'tenant_mismatch');
    const listB = await call('GET', '/api/chat/conversations', { token: tokenB });
    expect(listB.body.conversations.some((c: { sessionId: string }) => c.sessionId === s)).toBe(false);
    expectError(await call('GET', `/api/chat/conversations/${sid('nobody')}`, { token: tokenA }), 404, 'not_found');
    // Credentials that may not read the inbox.
    expectError(await call('GET', '/api/chat/conversations?tenantId=tenantA', { token: KEYS.pubA }), 403, 'key_not_allowed');
    expectError(await call('GET', '/api/chat/conversations?tenantId=tenantA', { token: visitor }), 403, 'forbidden');
    expectError(await call('POST', `/api/chat/conversations/${s}/assign`, { token: visitor, body: { assignee: 'me' } }), 403, 'forbidden');
    expectError(await call('GET', '/api/chat/conversations?tenantId=tenantA'), 401, 'missing_credentials');
    expectError(await call('GET', '/api/chat/conversations', { token: KEYS.secA }), 400, 'validation_failed');
    // "me" is the calling agent: a secret key is nobody.
    expectError(await call('GET', '/api/chat/conversations?tenantId=tenantA&assignee=me', { token: KEYS.secA }), 400, 'validation_failed');
    expectError(
      await call('POST', `/api/chat/conversations/${s}/assign`, { token: KEYS.secA, body: { tenantId: 'tenantA', assignee: 'me' } }),
      400,
      'validation_failed',
    );
    expectError(
      await call('POST', `/api/chat/conversations/${s}/status`, { token: tokenA, body: { status: 'closed' } }),
      400,
      'validation_failed',
    );
    expectError(await call('POST', `/api/chat/conversations/${s}/assign`, { token: tokenA, body: {} }), 400, 'validation_failed');
    // The agents' read over Socket.IO: another tenant's agent, a visitor of another session, and a
    // message of another conversation move nothing (the unread count stays, no event).
    const other = sid();
    const otherVisitor = await boundVisitor(other);
    const otherMessage = await say(otherVisitor, other, 'elsewhere');
    const messageId = (await call('GET', `/api/chat/conversations/${s}`, { token: tokenA })).body.lastMessage.id as string;
    const agentB = connect(node.ws, { token: tokenB }, { transports: ['websocket'] });
    const agentA = await agentSocket('agent-iso');
    const vOther = connect(node.ws, { apiKey: KEYS.pubA, token: otherVisitor, sessionId: other, fingerprint: `fp-${other}` });
    sockets.push(agentB, vOther);
    await connected(agentB);
    await connected(vOther);
    expect(await emitAck(agentB, 'read', { sessionId: s, messageId })).toMatchObject({ success: false });
    expect(await emitAck(vOther, 'read', { sessionId: s, messageId })).toMatchObject({ success: false, code: 'session_forbidden' });
    expect(await emitAck(agentA, 'read', { sessionId: s, messageId: otherMessage })).toMatchObject({ success: false, code: 'not_found' });
    expect((await call('GET', `/api/chat/conversations/${s}`, { token: tokenA })).body.unreadCount).toBe(1);
    expect((await call('GET', `/api/chat/conversations/${other}`, { token: tokenA })).body.unreadCount).toBe(1);
    // (Its first message's event may reach this agent; nothing after it does.)
    expect(agentA.updates.filter((u) => u.conversation.sessionId === s && u.version > 1)).toEqual([]);
    // Unassign with null.
    await call('POST', `/api/chat/conversations/${s}/assign`, { token: tokenA, body: { assignee: 'agent-9' } });
    expect(
      (await call('POST', `/api/chat/conversations/${s}/assign`, { token: tokenA, body: { assignee: null } })).body.assignee,
    ).toBeNull();
  });

  it('checked every conversations route and its errors against schemas/', () => {
    for (const route of [
      'GET /api/chat/conversations',
      'GET /api/chat/conversations/{sessionId}',
      'POST /api/chat/conversations/{sessionId}/status',
      'POST /api/chat/conversations/{sessionId}/assign',
    ]) {
      expect(contractSeen.has(route), route).toBe(true);
      expect(contractSeen.has(`${route} error`), `${route} error`).toBe(true);
    }
  });
});

describe('auto-assignment (round_robin) and reopening turned off (embedded defaults)', () => {
  let node: Node;
  const sockets: Recorder[] = [];
  beforeAll(async () => {
    const tenants = tenantsConfig().map((t) =>
      (t as { id: string }).id === 'tenantA'
        ? { ...(t as object), conversations: { autoAssign: { mode: 'round_robin', maxOpenPerAgent: 1 } } }
        : (t as { id: string }).id === 'tenantB'
          ? { ...(t as object), conversations: { reopenOnVisitorMessage: false } }
          : t,
    );
    node = await startNode({ tenants, presence: { offlineGraceMs: 200 } });
  }, 300_000);
  afterAll(async () => {
    for (const s of sockets) s.socket.disconnect();
    await node?.srv.stop();
  });

  it("assigns each new conversation to the next agent online now, skipping agents at their cap; another tenant's agents never", async () => {
    for (const agent of ['agent-b', 'agent-a']) {
      const rec = connect(node.ws, { token: await agentToken(node, 'tenantA', KEYS.secA, agent) }, { transports: ['websocket'] });
      sockets.push(rec);
      await connected(rec);
    }
    const other = connect(node.ws, { token: await agentToken(node, 'tenantB', KEYS.secB, 'agent-c') }, { transports: ['websocket'] });
    sockets.push(other);
    await connected(other);
    const availability = () => node.http('GET', '/api/chat/availability?tenantId=tenantA', { token: KEYS.pubA });
    await eventually(async () => (await availability()).body.agentsOnline === 2, 'both agents online');
    const token = await agentToken(node, 'tenantA', KEYS.secA, 'agent-a');
    const sessions: string[] = [];
    for (let i = 0; i < 3; i++) {
      const s = sid('auto');
      sessions.push(s);
      const t = await node.http('POST', '/api/chat/anonymous-token', {
        token: KEYS.pubA,
        body: { tenantId: 'tenantA', sessionId: s, fingerprint: 'fp' },
      });
      const r = await node.http('POST', '/webchat/message', {
        token: t.body.token,
        body: { tenantId: 'tenantA', sessionId: s, fingerprint: 'fp', text: `question ${i}` },
      });
      expect(r.status).toBe(200);
      // Assignment follows the message (after its acknowledgement): wait for it before the next one.
      if (i < 2) {
        await eventually(
          async () => (await node.http('GET', `/api/chat/conversations/${s}`, { token })).body.assignee !== null,
          `conversation ${i} assigned`,
        );
      }
    }
    const assignees = [];
    for (const s of sessions) assignees.push((await node.http('GET', `/api/chat/conversations/${s}`, { token })).body.assignee);
    // In turn (agent-a, then agent-b); both now hold their cap of 1 open conversation.
    expect(assignees.slice(0, 2)).toEqual(['agent-a', 'agent-b']);
    expect(assignees[2]).toBeNull();
    const history = await node.http('GET', `/api/chat/messages?tenantId=tenantA&sessionId=${sessions[0]}`, { token });
    expect(history.body.messages.map((m: { meta: { event?: unknown } }) => m.meta.event ?? null)).toEqual([
      null,
      { type: 'conversation.assigned', from: null, to: 'agent-a', by: { type: 'system', id: 'auto-assign' } },
    ]);
    // Resolving frees agent-a's slot: the next conversation goes to agent-a again.
    await node.http('POST', `/api/chat/conversations/${sessions[0]}/status`, { token, body: { status: 'resolved' } });
    const s = sid('auto');
    const t = await node.http('POST', '/api/chat/anonymous-token', {
      token: KEYS.pubA,
      body: { tenantId: 'tenantA', sessionId: s, fingerprint: 'fp' },
    });
    await node.http('POST', '/webchat/message', {
      token: t.body.token,
      body: { tenantId: 'tenantA', sessionId: s, fingerprint: 'fp', text: 'late' },
    });
    await eventually(
      async () => (await node.http('GET', `/api/chat/conversations/${s}`, { token })).body.assignee === 'agent-a',
      'agent-a again',
    );

    // agent-b goes offline: it keeps its conversation (nothing is taken back or handed on).
    sockets[0]!.socket.disconnect();
    await eventually(async () => (await availability()).body.agentsOnline === 1, 'agent-b offline');
    expect((await node.http('GET', `/api/chat/conversations/${sessions[1]}`, { token })).body).toMatchObject({
      assignee: 'agent-b',
      status: 'open',
    });
    const mine = await node.http('GET', '/api/chat/conversations?tenantId=tenantA&assignee=agent-b', { token: KEYS.secA });
    expect(mine.body.conversations.map((c: { sessionId: string }) => c.sessionId)).toEqual([sessions[1]]);
  });

  it("reopenOnVisitorMessage: false keeps a resolved conversation resolved when the visitor writes (tenantB's setting only)", async () => {
    const visit = async (tenantId: string, pub: string, secret: string) => {
      const s = sid('reopen');
      const t = await node.http('POST', '/api/chat/anonymous-token', { token: pub, body: { tenantId, sessionId: s, fingerprint: 'fp' } });
      const say = (text: string) =>
        node.http('POST', '/webchat/message', { token: t.body.token, body: { tenantId, sessionId: s, fingerprint: 'fp', text } });
      expect((await say('hello')).status).toBe(200);
      const r = await node.http('POST', `/api/chat/conversations/${s}/status`, { token: secret, body: { tenantId, status: 'resolved' } });
      expect(r.body.status).toBe('resolved');
      expect((await say('one more thing')).status).toBe(200);
      const one = await node.http('GET', `/api/chat/conversations/${s}?tenantId=${tenantId}`, { token: secret });
      const history = await node.http('GET', `/api/chat/messages?tenantId=${tenantId}&sessionId=${s}`, { token: t.body.token });
      return { summary: one.body, kinds: history.body.messages.map((m: { sender: { type: string } }) => m.sender.type) };
    };
    const off = await visit('tenantB', KEYS.pubB, KEYS.secB);
    expect(off.summary).toMatchObject({ status: 'resolved', messageCount: 2, lastMessage: { text: 'one more thing' } });
    expect(off.kinds).toEqual(['visitor', 'system', 'visitor']);
    const on = await visit('tenantA', KEYS.pubA, KEYS.secA);
    expect(on.summary).toMatchObject({ status: 'open', messageCount: 2 });
    // (Auto-assignment may add its own system message after these, in tenantA.)
    expect(on.kinds.slice(0, 4)).toEqual(['visitor', 'system', 'system', 'visitor']);
  });
});

describe('conversation.updated webhooks (embedded defaults)', () => {
  let node: Node;
  let receiver: WebhookReceiver;
  const SECRET = 'conversation-webhook-secret-0123';
  beforeAll(async () => {
    receiver = await startWebhookReceiver();
    const tenants = tenantsConfig().map((t) =>
      (t as { id: string }).id === 'tenantA'
        ? {
            ...(t as object),
            webhooks: [
              { id: 'both', url: `${receiver.url}/both`, secret: SECRET, events: ['message.created', 'conversation.updated'] },
              { id: 'messages', url: `${receiver.url}/messages`, secret: SECRET },
            ],
          }
        : t,
    );
    node = await startNode({ tenants });
  }, 300_000);
  afterAll(async () => {
    await node?.srv.stop();
    await receiver?.close();
  });

  it('sends each change to endpoints that subscribed, signed like message.created, once per event', async () => {
    const s = sid('hook');
    const t = await node.http('POST', '/api/chat/anonymous-token', {
      token: KEYS.pubA,
      body: { tenantId: 'tenantA', sessionId: s, fingerprint: 'fp' },
    });
    await node.http('POST', '/webchat/message', {
      token: t.body.token,
      body: { tenantId: 'tenantA', sessionId: s, fingerprint: 'fp', text: 'hi' },
    });
    await node.http('POST', `/api/chat/conversations/${s}/status`, { token: KEYS.secA, body: { tenantId: 'tenantA', status: 'resolved' } });
    type Delivery = { id: string; type: string; data: { sessionId: string; version?: number; conversation?: { status: string } } };
    const mine = (p: string) =>
      receiver.received
        .filter((r) => r.path === p)
        .map((r) => ({ r, body: JSON.parse(r.body) as Delivery }))
        .filter((d) => d.body.data.sessionId === s);
    await eventually(() => mine('/both').length === 4 && mine('/messages').length === 2, 'the deliveries');
    const both = mine('/both');
    const updates = both.filter((d) => d.body.type === 'conversation.updated').sort((a, b) => a.body.data.version! - b.body.data.version!);
    expect(updates.map((d) => [d.body.data.version, d.body.data.conversation!.status])).toEqual([
      [1, 'open'],
      [2, 'resolved'],
    ]);
    for (const d of updates) {
      expect(d.body.id).toMatch(/^evt_[0-9a-f-]{36}$/);
      expect(d.r.signature).toBe(signWebhook(SECRET, d.r.timestamp, d.r.body));
    }
    // The endpoint that did not subscribe gets the messages only (the visitor's and the system one).
    expect(mine('/messages').map((d) => d.body.type)).toEqual(['message.created', 'message.created']);
  });
});
