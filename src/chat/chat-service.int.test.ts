// The domain on real Redis and PostgreSQL, through the calls the ws role makes (resolveSession at
// CONNECT, authorizeSession, typing, markRead, send from the `ws` door) and the publish after commit.
import { randomUUID } from 'node:crypto';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DATABASE_URL, REDIS_URL, freePort, hasPostgres, hasRedis, uniquePrefix, uniqueSchema } from '../../test/helpers/services.js';
import { createAuth, type Auth } from '../auth/index.js';
import type { Principal } from '../auth/jwt.js';
import { loadConfig } from '../config/load.js';
import type { Config } from '../config/schema.js';
import { openDatabase } from '../db/index.js';
import type { Database } from '../db/ports.js';
import { ChatdError } from '../errors.js';
import { createStore } from '../store/index.js';
import type { Store, TenantEvent } from '../store/ports.js';
import { createChatService, type ChatService } from './chat-service.js';
import { assertSchema } from '../../test/helpers/api-harness.js';

const ready = (await hasRedis()) && (await hasPostgres());
const log = pino({ level: 'silent' });
const sid = () => `s-${randomUUID().slice(0, 8)}`;

async function codeOf(p: Promise<unknown>): Promise<string> {
  try {
    await p;
    return 'ok';
  } catch (err) {
    if (!(err instanceof ChatdError)) throw err;
    return err.code;
  }
}

async function configWith(raw: Record<string, unknown>): Promise<Config> {
  return (await loadConfig({ env: {}, cwd: '/', overrides: (r) => Object.assign(r, raw) })).config;
}

describe.skipIf(!ready)('chat service (Redis + PostgreSQL)', () => {
  let config: Config;
  let store: Store;
  let db: Database;
  let auth: Auth;
  let chat: ChatService;

  beforeAll(async () => {
    config = await configWith({
      auth: { jwtSecret: 'chat-service-test-secret-0123456789' },
      redis: { url: REDIS_URL, prefix: uniquePrefix('chat') },
      database: { url: DATABASE_URL, schema: uniqueSchema('chat'), autoMigrate: true },
      tenants: [
        { id: 'tA', apiKeys: [] },
        { id: 'tB', apiKeys: [] },
      ],
    });
    store = await createStore(config, log, 'chat-test');
    db = await openDatabase(config, log);
    auth = createAuth(config);
    chat = createChatService({
      tenants: () => auth.tenants,
      messages: db.messages,
      sessions: store.sessions,
      relay: {
        publishNow: (m, outboxId) => void store.events.publishMessage(m).then(() => db.outbox.markDone([outboxId])),
        publishUpdateNow: (u) => void store.events.publishUpdate(u).then(() => db.conversationOutbox.markDone([u.id])),
      },
      bus: store.bus,
      offline: db.offline,
      messageMaxChars: 4000,
    });
  });
  afterAll(async () => {
    await store?.close();
    await db?.close();
  });

  const principal = async (p: { tenantId?: string; role: Principal['role']; subject?: string; sessionId?: string }) =>
    auth.tokens.verify((await auth.tokens.mint({ tenantId: p.tenantId ?? 'tA', ttlSeconds: 600, ...p })).token);

  it('resolveSession at CONNECT: sid, then binding, then auth.sessionId + fingerprint under the rule', async () => {
    const s = sid();
    const withSid = await principal({ role: 'visitor', sessionId: s });
    expect(await chat.resolveSession(withSid, {})).toBe(s);
    expect(await codeOf(chat.resolveSession(withSid, { sessionId: sid() }))).toBe('session_forbidden');

    const unbound = await principal({ role: 'visitor' });
    expect(await codeOf(chat.resolveSession(unbound, {}))).toBe('validation_failed');
    expect(await codeOf(chat.resolveSession(unbound, { sessionId: sid() }))).toBe('validation_failed'); // fingerprint
    const mine = sid();
    expect(await chat.resolveSession(unbound, { sessionId: mine, fingerprint: 'fp-1' })).toBe(mine);
    // Now bound: the binding answers, another session is refused.
    expect(await chat.resolveSession(unbound, {})).toBe(mine);
    expect(await codeOf(chat.resolveSession(unbound, { sessionId: sid(), fingerprint: 'fp-1' }))).toBe('session_forbidden');
    expect(await store.sessions.getBinding('tA', unbound.jti)).toBe(mine);
    // Another token: the existing session only with its fingerprint.
    expect(await codeOf(chat.resolveSession(await principal({ role: 'visitor' }), { sessionId: mine, fingerprint: 'nope' }))).toBe(
      'session_forbidden',
    );
    expect(await chat.resolveSession(await principal({ role: 'visitor' }), { sessionId: mine, fingerprint: 'fp-1' })).toBe(mine);
    // Tenant B cannot take tenant A's session id.
    expect(
      await codeOf(chat.resolveSession(await principal({ tenantId: 'tB', role: 'visitor' }), { sessionId: mine, fingerprint: 'fp-1' })),
    ).toBe('session_forbidden');
    // Agents act on the tenant; a named session must be one of theirs.
    const agent = await principal({ role: 'agent', subject: 'ag' });
    expect(await chat.resolveSession(agent, {})).toBeUndefined();
    expect(await chat.resolveSession(agent, { sessionId: mine })).toBe(mine);
    const agentB = await principal({ tenantId: 'tB', role: 'agent', subject: 'ag' });
    expect(await codeOf(chat.resolveSession(agentB, { sessionId: mine }))).toBe('session_forbidden');
    expect(await codeOf(chat.resolveSession(unbound, { sessionId: 'bad id!' }))).toBe('invalid_id');
  });

  it('send from the ws door publishes after commit: agent stream, webhook job, bus — once per message', async () => {
    const s = sid();
    const visitor = await principal({ role: 'visitor' });
    const events: TenantEvent[] = [];
    const unsubscribe = await store.bus.subscribe('tA', (e) => events.push(e));
    try {
      const before = await store.webhooks.length();
      const input = { tenantId: 'tA', sessionId: s, fingerprint: 'fp', text: 'via ws', clientMessageId: 'k1' };
      const r = await chat.send(visitor, input, 'ws');
      expect(r).toMatchObject({ sessionId: s, duplicate: false, message: { seq: 1, text: 'via ws' } });
      const again = await chat.send(visitor, input, 'ws');
      expect(again).toMatchObject({ messageId: r.messageId, duplicate: true });
      const deadline = Date.now() + 10_000;
      const both = () => events.some((e) => e.type === 'message') && events.some((e) => e.type === 'conversation');
      while (!both() && Date.now() < deadline) await new Promise((res) => setTimeout(res, 20));
      const published = events.filter((e) => e.type === 'message');
      expect(published).toHaveLength(1);
      expect(published[0]).toMatchObject({ type: 'message', message: { id: r.messageId } });
      // What the ws role emits from it matches the published event schema.
      assertSchema('event.server.meta_message_created.schema.json', { message: (published[0] as { message: unknown }).message });
      // The conversation's new summary: once too, on the agent stream and as a conversation.updated job.
      const updates = events.filter((e) => e.type === 'conversation');
      expect(updates).toHaveLength(1);
      expect(updates[0]).toMatchObject({ type: 'conversation', update: { sessionId: s, version: 1, conversation: { messageCount: 1 } } });
      assertSchema('event.server.conversation_updated.schema.json', {
        conversation: (updates[0] as { update: { conversation: unknown } }).update.conversation,
        version: 1,
      });
      expect(await store.webhooks.length()).toBe(before + 2);
      const jobs = await store.webhooks.range('-', '+', 100_000);
      expect(jobs.filter((j) => j.sessionId === s).map((j) => j.type)).toEqual(
        expect.arrayContaining(['message.created', 'conversation.updated']),
      );
      while ((await db.outbox.pendingCount()) > 0 && Date.now() < deadline) await new Promise((res) => setTimeout(res, 20));
      expect(await db.outbox.pendingCount()).toBe(0);
    } finally {
      await unsubscribe();
    }
  });

  it('typing and markRead check access and go out on the bus', async () => {
    const s = sid();
    const visitor = await principal({ role: 'visitor' });
    const agent = await principal({ role: 'agent', subject: 'ag-1' });
    await chat.send(visitor, { tenantId: 'tA', sessionId: s, fingerprint: 'fp', text: 'q' }, 'ws');
    const reply = await chat.send(agent, { sessionId: s, text: 'a' }, 'ws');
    const events: TenantEvent[] = [];
    const unsubscribe = await store.bus.subscribe('tA', (e) => events.push(e));
    try {
      expect(await chat.typing(agent, { sessionId: s, isTyping: true })).toEqual({
        sessionId: s,
        sender: { type: 'agent', id: 'ag-1' },
        isTyping: true,
      });
      expect(await chat.markRead(visitor, { sessionId: s, messageId: reply.messageId })).toEqual({
        sessionId: s,
        messageId: reply.messageId,
        reader: { type: 'visitor', id: s },
      });
      expect(await codeOf(chat.markRead(visitor, { sessionId: s, messageId: randomUUID() }))).toBe('not_found');
      expect(await codeOf(chat.typing(await principal({ role: 'visitor', sessionId: sid() }), { sessionId: s, isTyping: true }))).toBe(
        'session_forbidden',
      );
      expect(
        await codeOf(
          chat.markRead(await principal({ tenantId: 'tB', role: 'agent', subject: 'x' }), { sessionId: s, messageId: reply.messageId }),
        ),
      ).toBe('session_forbidden');
      const deadline = Date.now() + 10_000;
      while (events.length < 2 && Date.now() < deadline) await new Promise((res) => setTimeout(res, 20));
      expect(events).toContainEqual({ type: 'typing', sessionId: s, sender: { type: 'agent', id: 'ag-1' }, isTyping: true });
      expect(events).toContainEqual({ type: 'read', sessionId: s, messageId: reply.messageId, reader: { type: 'visitor', id: s } });
      expect((await db.messages.readPointers('tA', s)).map((p) => p.readerId)).toEqual([`visitor:${s}`]);
      for (const e of events) {
        const { type, ...payload } = e as TenantEvent & Record<string, unknown>;
        if (type === 'typing' || type === 'read') assertSchema(`event.server.${type}.schema.json`, payload);
      }
    } finally {
      await unsubscribe();
    }
  });

  it("a sid token for another tenant's session is refused even after the session: key is gone", async () => {
    const s = sid();
    await chat.send(await principal({ role: 'visitor' }), { tenantId: 'tA', sessionId: s, fingerprint: 'fp', text: 'mine' }, 'http');
    await store.sessions.delete(s);
    const forged = await principal({ tenantId: 'tB', role: 'visitor', sessionId: s });
    expect(await codeOf(chat.send(forged, { tenantId: 'tB', sessionId: s, fingerprint: 'fp', text: 'x' }, 'http'))).toBe(
      'session_forbidden',
    );
    expect(await store.sessions.get(s)).toBeNull();
    const page = await db.messages.history({ tenantId: 'tA', sessionId: s, limit: 10 });
    expect(page.messages.map((m) => m.text)).toEqual(['mine']);
  });

  it('identify: token sub, claimed userId, agents', async () => {
    expect(chat.identify(await principal({ role: 'visitor' }), { userId: 'u1' })).toEqual({ userId: 'u1', verified: false });
    expect(chat.identify(await principal({ role: 'visitor' }), {})).toEqual({ userId: undefined, verified: false });
    expect(chat.identify(await principal({ role: 'user', subject: 'u2' }), {})).toEqual({ userId: 'u2', verified: true });
    expect(chat.identify(await principal({ role: 'agent', subject: 'ag' }), { userId: 'other' })).toEqual({ userId: 'ag', verified: true });
    const user = await principal({ role: 'user', subject: 'u2' });
    expect(() => chat.identify(user, { userId: 'u3' })).toThrow(/subject/);
  });

  it('a dependency down is a typed 503, nothing stored', async () => {
    const port = await freePort();
    const deadConfig = await configWith({ redis: { url: `redis://127.0.0.1:${port}`, prefix: uniquePrefix('dead') } });
    const dead = await createStore(deadConfig, log, 'dead');
    try {
      const broken = createChatService({
        tenants: () => auth.tenants,
        messages: db.messages,
        sessions: dead.sessions,
        relay: { publishNow: () => undefined, publishUpdateNow: () => undefined },
        bus: dead.bus,
        offline: db.offline,
        messageMaxChars: 4000,
      });
      const s = sid();
      const err = await broken
        .send(await principal({ role: 'visitor' }), { tenantId: 'tA', sessionId: s, fingerprint: 'f', text: 'x' }, 'http')
        .catch((e: unknown) => e);
      const { toChatdError } = await import('../errors.js');
      expect(toChatdError(err)).toMatchObject({ code: 'dependency_unavailable', status: 503 });
      expect((await db.messages.history({ tenantId: 'tA', sessionId: s, limit: 5 })).messages).toEqual([]);
    } finally {
      await dead.close();
    }
  });
});
