// The inbox on two api and two ws nodes sharing one Redis and one PostgreSQL: conversation_updated
// reaches agents on both ws nodes whichever api node made the change; two agents assigning at once
// through different api nodes end on one final state everywhere; a status change racing a visitor's
// message has one order in history and on every stream; an agent's read on one node updates the
// unread count of an agent on the other.
import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DATABASE_URL, REDIS_URL, dropSchema, has, uniquePrefix, uniqueSchema } from '../../../test/helpers/services.js';
import { agentToken, connect, connected, KEYS, startNode, type Node, type Recorder } from '../../../test/helpers/ws-harness.js';
import { eventually } from '../../../test/helpers/eventually.js';

const ready = (await has('redis')) && (await has('postgres'));

describe.skipIf(!ready)('conversations on two api + two ws nodes over Redis', () => {
  const schema = uniqueSchema('inboxc');
  const prefix = uniquePrefix('inboxc');
  let api1: Node, api2: Node, ws1: Node, ws2: Node;
  const sockets: Recorder[] = [];

  beforeAll(async () => {
    const base = { database: { url: DATABASE_URL, schema, autoMigrate: true }, redis: { url: REDIS_URL, prefix } };
    api1 = await startNode(base, ['api']);
    api2 = await startNode(base, ['api']);
    ws1 = await startNode(base, ['ws']);
    ws2 = await startNode(base, ['ws']);
  }, 300_000);
  afterAll(async () => {
    for (const s of sockets) s.socket.disconnect();
    await Promise.allSettled([api1, api2, ws1, ws2].map((n) => n?.srv.stop()));
    await dropSchema(schema);
  });

  const agentOn = async (node: Node, userId: string) => {
    const rec = connect(node.ws, { token: await agentToken(api1, 'tenantA', KEYS.secA, userId) }, { transports: ['websocket'] });
    sockets.push(rec);
    await connected(rec);
    return rec;
  };
  const latest = (rec: Recorder, sessionId: string) =>
    rec.updates
      .filter((u) => u.conversation.sessionId === sessionId)
      .sort((a, b) => a.version - b.version)
      .at(-1);

  it('one order and one final state on every node', async () => {
    const s = `c-${randomUUID().slice(0, 8)}`;
    const fingerprint = `fp-${s}`;
    const [x, y] = [await agentOn(ws1, 'agent-x'), await agentOn(ws2, 'agent-y')];
    const minted = await api2.http('POST', '/api/chat/anonymous-token', {
      token: KEYS.pubA,
      body: { tenantId: 'tenantA', sessionId: s, fingerprint },
    });
    const visitorToken = minted.body.token as string;
    const visitor = connect(ws2.ws, { apiKey: KEYS.pubA, token: visitorToken, sessionId: s, fingerprint });
    sockets.push(visitor);
    await connected(visitor);
    const say = (node: Node, text: string) =>
      node.http('POST', '/webchat/message', { token: visitorToken, body: { tenantId: 'tenantA', sessionId: s, fingerprint, text } });
    const first = await say(api1, 'hello');
    expect(first.status).toBe(200);
    await eventually(() => latest(x, s)?.version === 1 && latest(y, s)?.version === 1, 'both agents see the new conversation');

    // Two agents assign at once, each through its own api node.
    const [tx, ty] = [await agentToken(api1, 'tenantA', KEYS.secA, 'agent-x'), await agentToken(api2, 'tenantA', KEYS.secA, 'agent-y')];
    const [ax, ay] = await Promise.all([
      api1.http('POST', `/api/chat/conversations/${s}/assign`, { token: tx, body: { assignee: 'me' } }),
      api2.http('POST', `/api/chat/conversations/${s}/assign`, { token: ty, body: { assignee: 'me' } }),
    ]);
    expect([ax.status, ay.status]).toEqual([200, 200]);
    const afterAssign = (await api2.http('GET', `/api/chat/conversations/${s}`, { token: ty })).body;
    await eventually(() => latest(x, s)?.version === 3 && latest(y, s)?.version === 3, 'both agents at version 3');
    expect(latest(x, s)!.conversation).toEqual(latest(y, s)!.conversation);
    expect(latest(x, s)!.conversation.assignee).toBe(afterAssign.assignee);

    // Resolve (api1) races the visitor's next message (api2).
    const [resolved, sent] = await Promise.all([
      api1.http('POST', `/api/chat/conversations/${s}/status`, { token: tx, body: { status: 'resolved' } }),
      say(api2, 'still there?'),
    ]);
    expect([resolved.status, sent.status]).toEqual([200, 200]);
    const history = (await api1.http('GET', `/api/chat/messages?tenantId=tenantA&sessionId=${s}`, { token: tx })).body.messages as {
      id: string;
      seq: number;
    }[];
    const order = history.map((m) => m.id);
    expect(history.map((m) => m.seq)).toEqual(history.map((_, i) => i + 1));
    // Every stream delivered the same messages in the same order as history.
    const seen = (rec: Recorder) => rec.messages.filter((m) => m.message.sessionId === s).map((m) => m.message.id);
    await eventually(() => [x, y, visitor].every((r) => seen(r).length === order.length), 'every stream to catch up');
    for (const r of [x, y, visitor]) expect(seen(r)).toEqual(order);
    const final = (await api2.http('GET', `/api/chat/conversations/${s}`, { token: ty })).body;
    // One version per change: the message, two assignments, the resolve and the racing message (a
    // reopen and the message that caused it are one event, so this is not history's length).
    await eventually(() => latest(x, s)?.version === 5 && latest(y, s)?.version === 5, 'the final version');
    expect(latest(x, s)!.conversation).toEqual(latest(y, s)!.conversation);
    expect(latest(x, s)!.conversation.status).toBe(final.status);
    expect(latest(y, s)!.conversation.status).toBe(final.status);

    // agent-x reads on ws1: agent-y on ws2 sees the unread count drop.
    expect(final.unreadCount).toBeGreaterThan(0);
    x.socket.emit('read', { sessionId: s, messageId: sent.body.messageId });
    // The read is version 6 on both nodes, above the message it read (it used to share its version).
    await eventually(() => latest(x, s)?.version === 6 && latest(y, s)?.version === 6, 'the read on both nodes');
    expect(latest(y, s)!.conversation).toMatchObject({ unreadCount: 0, status: final.status });
    expect(latest(x, s)!.conversation).toEqual(latest(y, s)!.conversation);
  });
});
