// The one contract every Store adapter satisfies, run against memory (store.test.ts) and real
// Redis (redis/redis-store.int.test.ts). A harness opens stores that share their data (two handles
// = two nodes of one deployment); each test uses fresh tenant/session ids, so tests never collide.
import { randomUUID } from 'node:crypto';
import fc from 'fast-check';
import pino from 'pino';
import { afterAll, describe, expect, it } from 'vitest';
import type { ConversationUpdate } from '../chat/conversation.js';
import type { ChatMessage } from '../chat/message.js';
import type { AgentConnection, PresenceConnection, Store, TenantEvent, WebhookJob } from './ports.js';
import { eventually } from '../../test/helpers/eventually.js';

export interface StoreHarness {
  /** Opens a store sharing data with every other store of this harness. */
  open(opts?: { agentHistorySize?: number }): Promise<Store>;
  /** Closes what open() opened. */
  close(): Promise<void>;
}

let n = 0;
export const uid = (label: string) => `${label}-${process.pid}-${++n}-${randomUUID().slice(0, 8)}`;

export function message(tenantId: string, sessionId: string, text = 'hello', seq = 1): ChatMessage {
  return {
    id: randomUUID(),
    tenantId,
    sessionId,
    seq,
    sender: { type: 'visitor', id: sessionId, verified: false },
    text,
    createdAt: new Date().toISOString(),
    meta: { domain: 'shop.example', origin: 'https://shop.example', url: 'https://shop.example/p/1', referrer: '', siteId: 's1' },
  };
}

export function connection(tenantId: string, userId: string, extra: Partial<PresenceConnection> = {}): PresenceConnection {
  return {
    connId: uid('c'),
    tenantId,
    userId,
    sessionId: extra.sessionId ?? `s-${userId}`,
    role: 'visitor',
    connectedAt: new Date().toISOString(),
    domain: 'shop.example',
    origin: 'https://shop.example',
    url: 'https://shop.example/',
    ...extra,
  };
}

/** Collects a tenant's bus events. */
async function collect(store: Store, tenantId: string): Promise<{ events: TenantEvent[]; stop: () => Promise<void> }> {
  const events: TenantEvent[] = [];
  const stop = await store.bus.subscribe(tenantId, (e) => events.push(e));
  return { events, stop };
}

export function storeContract(name: string, makeHarness: () => StoreHarness): void {
  describe(`Store contract: ${name}`, () => {
    const harness = makeHarness();
    let store: Store;
    const get = async () => (store ??= await harness.open());
    afterAll(() => harness.close());

    describe('sessions', () => {
      it("creates, refreshes, and never overwrites another tenant's record", async () => {
        const s = await get();
        const sid = uid('s');
        expect(await s.sessions.upsert(sid, { tenantId: 'tA', userId: 'u1', fingerprint: 'fp1' }, 3600)).toBe('created');
        const first = await s.sessions.get(sid);
        expect(first).toMatchObject({ userId: 'u1', fingerprint: 'fp1', tenantId: 'tA' });
        expect(Object.keys(first!).sort()).toEqual(['createdAt', 'fingerprint', 'lastActivity', 'tenantId', 'userId']);
        await eventually(() => Date.now() > Date.parse(first!.lastActivity) + 2, 'the clock to move', { retryOnError: true });
        expect(await s.sessions.upsert(sid, { tenantId: 'tA', userId: 'u1', fingerprint: 'fp1' }, 3600)).toBe('refreshed');
        const second = await s.sessions.get(sid);
        expect(second!.createdAt).toBe(first!.createdAt);
        expect(Date.parse(second!.lastActivity)).toBeGreaterThan(Date.parse(first!.lastActivity));
        expect(await s.sessions.upsert(sid, { tenantId: 'tB', userId: 'evil', fingerprint: 'x' }, 3600)).toBe('foreign');
        expect(await s.sessions.get(sid)).toEqual(second);
        await s.sessions.delete(sid);
        expect(await s.sessions.get(sid)).toBeNull();
      });

      it('expires a session after its TTL', async () => {
        const s = await get();
        const sid = uid('s');
        await s.sessions.upsert(sid, { tenantId: 'tA', userId: 'u', fingerprint: 'f' }, 1);
        expect(await s.sessions.get(sid)).not.toBeNull();
        await eventually(async () => (await s.sessions.get(sid)) === null, 'the session to expire', { retryOnError: true });
        expect(await s.sessions.upsert(sid, { tenantId: 'tB', userId: 'u', fingerprint: 'f' }, 60)).toBe('created');
      });

      it('binds a token to its first session only, per tenant', async () => {
        const s = await get();
        const jti = uid('jti');
        expect(await s.sessions.getBinding('tA', jti)).toBeNull();
        expect(await s.sessions.bind('tA', jti, 'sess-1', 60)).toBe('sess-1');
        expect(await s.sessions.bind('tA', jti, 'sess-2', 60)).toBe('sess-1');
        expect(await s.sessions.getBinding('tA', jti)).toBe('sess-1');
        expect(await s.sessions.bind('tB', jti, 'sess-3', 60)).toBe('sess-3');
      });
    });

    describe('presence', () => {
      it('is exact across tabs: online on the first connection, offline on the last', async () => {
        const s = await get();
        const t = uid('t');
        const tab1 = connection(t, 'alice', { domain: 'a.example', url: 'https://a.example/1', connectedAt: '2026-01-01T00:00:01.000Z' });
        const tab2 = connection(t, 'alice', { url: 'https://a.example/2', connectedAt: '2026-01-01T00:00:02.000Z' });
        expect(await s.presence.add('n1', tab1, 60000)).toEqual({ firstForUser: true });
        expect(await s.presence.add('n1', tab2, 60000)).toEqual({ firstForUser: false });
        const users = await s.presence.list(t);
        expect(users).toEqual([
          {
            userId: 'alice',
            sessionId: tab1.sessionId,
            connectedAt: tab1.connectedAt,
            domain: 'a.example',
            origin: tab1.origin,
            url: 'https://a.example/1',
          },
        ]);
        expect(await s.presence.remove('n1', t, tab1.connId)).toMatchObject({ lastForUser: false });
        expect(await s.presence.isOnline(t, 'alice')).toBe(true);
        // online_users now describes the tab that is still open.
        expect(await s.presence.list(t)).toEqual([
          {
            userId: 'alice',
            sessionId: tab2.sessionId,
            connectedAt: tab2.connectedAt,
            domain: tab2.domain,
            origin: tab2.origin,
            url: 'https://a.example/2',
          },
        ]);
        expect(await s.presence.remove('n1', t, tab2.connId)).toEqual({
          lastForUser: true,
          tenantId: t,
          userId: 'alice',
          sessionId: tab2.sessionId,
        });
        expect(await s.presence.isOnline(t, 'alice')).toBe(false);
        expect(await s.presence.list(t)).toEqual([]);
        // Removing again (a retry) changes nothing and reports nothing.
        expect(await s.presence.remove('n1', t, tab2.connId)).toEqual({ lastForUser: false });
      });

      it('keeps tenants apart', async () => {
        const s = await get();
        const [t1, t2] = [uid('t'), uid('t')];
        await s.presence.add('n1', connection(t1, 'bob'), 60000);
        expect(await s.presence.isOnline(t2, 'bob')).toBe(false);
        expect([...(await s.presence.onlineAmong(t2, ['bob']))]).toEqual([]);
        expect([...(await s.presence.onlineAmong(t1, ['bob', 'nobody']))]).toEqual(['bob']);
        expect([...(await s.presence.onlineAmong(t1, []))]).toEqual([]);
        expect(await s.presence.add('n1', connection(t2, 'bob'), 60000)).toEqual({ firstForUser: true });
      });

      it("is exact across two nodes, and sweeps a silent node's connections only", async () => {
        const a = await get();
        const b = await harness.open();
        const t = uid('t');
        const onA = connection(t, 'carol');
        const onB = connection(t, 'carol');
        const daveOnB = connection(t, 'dave');
        expect((await a.presence.add('nodeA', onA, 60000)).firstForUser).toBe(true);
        expect((await b.presence.add('nodeB', onB, 1000)).firstForUser).toBe(false);
        expect((await b.presence.add('nodeB', daveOnB, 1000)).firstForUser).toBe(true);
        // nodeB goes silent: past its expiry, its connections are swept; carol stays online via nodeA.
        const gone = (await a.presence.sweep(Date.now() + 5000)).filter((c) => c.tenantId === t);
        expect(gone).toEqual([{ tenantId: t, userId: 'dave', sessionId: daveOnB.sessionId }]);
        expect(await a.presence.isOnline(t, 'carol')).toBe(true);
        expect(await a.presence.isOnline(t, 'dave')).toBe(false);
        // A sweep reports each departure once.
        expect((await b.presence.sweep(Date.now() + 5000)).filter((c) => c.tenantId === t)).toEqual([]);
        // nodeB was only slow: its next heartbeat re-asserts its connections and reports dave back.
        const back = (await b.presence.heartbeat('nodeB', [onB, daveOnB], 60000)).filter((c) => c.tenantId === t);
        expect(back).toEqual([{ tenantId: t, userId: 'dave', sessionId: daveOnB.sessionId }]);
        expect(await b.presence.heartbeat('nodeB', [onB, daveOnB], 60000)).toEqual([]);
        expect((await a.presence.list(t)).map((u) => u.userId).sort()).toEqual(['carol', 'dave']);
        // Both nodes silent past every expiry: everyone offline, reported once.
        const all = (await a.presence.sweep(Date.now() + 120000)).filter((c) => c.tenantId === t);
        expect(all.map((c) => c.userId).sort()).toEqual(['carol', 'dave']);
        expect(await a.presence.list(t)).toEqual([]);
      });

      it('stays exact under concurrent connects and disconnects from two nodes', async () => {
        const a = await get();
        const b = await harness.open();
        const t = uid('t');
        const tabs = Array.from({ length: 20 }, () => connection(t, 'ivy'));
        const adds = await Promise.all(tabs.map((c, i) => (i % 2 ? a : b).presence.add(i % 2 ? 'nA' : 'nB', c, 60000)));
        expect(adds.filter((r) => r.firstForUser)).toHaveLength(1);
        const removes = await Promise.all(tabs.map((c, i) => (i % 3 ? a : b).presence.remove(i % 2 ? 'nA' : 'nB', t, c.connId)));
        expect(removes.filter((r) => r.lastForUser)).toHaveLength(1);
        expect(await a.presence.isOnline(t, 'ivy')).toBe(false);
      });

      it('reports each swept user once when two nodes sweep at the same time', async () => {
        const a = await get();
        const b = await harness.open();
        const t = uid('t');
        for (let i = 0; i < 30; i++) await a.presence.add('gone', connection(t, `user${i}`), 1000);
        const later = Date.now() + 5000;
        const [x, y] = await Promise.all([a.presence.sweep(later), b.presence.sweep(later)]);
        const mine = [...x, ...y].filter((c) => c.tenantId === t).map((c) => c.userId);
        expect(mine.sort()).toEqual(Array.from({ length: 30 }, (_, i) => `user${i}`).sort());
      });

      it('matches a model of online users under any sequence of connects, disconnects, silences, sweeps and heartbeats', async () => {
        const s = await get();
        const nodes = ['n1', 'n2', 'n3'] as const;
        const users = ['u1', 'u2', 'u3', 'u4'] as const;
        type Op =
          | { op: 'add'; node: number; user: number }
          | { op: 'remove'; pick: number }
          | { op: 'silence'; node: number }
          | { op: 'sweep' }
          | { op: 'heartbeat'; node: number };
        const opArb: fc.Arbitrary<Op> = fc.oneof(
          { weight: 4, arbitrary: fc.record({ op: fc.constant('add' as const), node: fc.nat(2), user: fc.nat(3) }) },
          { weight: 3, arbitrary: fc.record({ op: fc.constant('remove' as const), pick: fc.nat(1000) }) },
          fc.record({ op: fc.constant('silence' as const), node: fc.nat(2) }),
          fc.record({ op: fc.constant('sweep' as const) }),
          fc.record({ op: fc.constant('heartbeat' as const), node: fc.nat(2) }),
        );
        await fc.assert(
          fc.asyncProperty(fc.array(opArb, { maxLength: 25 }), async (ops) => {
            const t = uid('t');
            // What each node believes it holds, and what the store should hold (with expired flags).
            const local = new Map<string, { node: string; conn: PresenceConnection }>();
            const stored = new Map<string, { node: string; userId: string; expired: boolean }>();
            const online = () => new Set([...stored.values()].map((c) => c.userId));
            for (const o of ops) {
              const before = online();
              if (o.op === 'add') {
                const node = nodes[o.node]!;
                const conn = connection(t, users[o.user]!);
                local.set(conn.connId, { node, conn });
                stored.set(conn.connId, { node, userId: conn.userId, expired: false });
                expect(await s.presence.add(node, conn, 600000)).toEqual({ firstForUser: !before.has(conn.userId) });
              } else if (o.op === 'remove') {
                const ids = [...local.keys()];
                if (ids.length === 0) continue;
                const id = ids[o.pick % ids.length]!;
                const { node, conn } = local.get(id)!;
                local.delete(id);
                const wasStored = stored.delete(id);
                const last = wasStored && !online().has(conn.userId);
                expect((await s.presence.remove(node, t, id)).lastForUser).toBe(last);
              } else if (o.op === 'silence') {
                // The node's heartbeat comes with an expiry in the past: as if it had gone silent.
                const node = nodes[o.node]!;
                const mine = [...local.values()].filter((c) => c.node === node).map((c) => c.conn);
                for (const c of mine) stored.set(c.connId, { node, userId: c.userId, expired: true });
                const back = await s.presence.heartbeat(node, mine, -1_000_000);
                expect(back.map((c) => c.userId).sort()).toEqual(
                  [...new Set(mine.map((c) => c.userId))].filter((u) => !before.has(u)).sort(),
                );
              } else if (o.op === 'sweep') {
                for (const [id, c] of stored) if (c.expired) stored.delete(id);
                const after = online();
                const gone = (await s.presence.sweep(Date.now())).filter((c) => c.tenantId === t).map((c) => c.userId);
                expect(gone.sort()).toEqual([...before].filter((u) => !after.has(u)).sort());
              } else {
                const node = nodes[o.node]!;
                const mine = [...local.values()].filter((c) => c.node === node).map((c) => c.conn);
                for (const c of mine) stored.set(c.connId, { node, userId: c.userId, expired: false });
                const back = (await s.presence.heartbeat(node, mine, 600000)).map((c) => c.userId);
                expect(back.sort()).toEqual([...new Set(mine.map((c) => c.userId))].filter((u) => !before.has(u)).sort());
              }
              expect((await s.presence.list(t)).map((u) => u.userId).sort()).toEqual([...online()].sort());
            }
            // Clean up this run's connections.
            for (const [id, { node }] of local) await s.presence.remove(node, t, id);
          }),
          { numRuns: 25 },
        );
      });

      it('removes a whole node at once and lists live nodes', async () => {
        const s = await get();
        const t = uid('t');
        const node = uid('node');
        await s.presence.add(node, connection(t, 'erin'), 60000);
        await s.presence.add('other', connection(t, 'erin'), 60000);
        await s.presence.add(node, connection(t, 'frank'), 60000);
        expect((await s.presence.nodes(Date.now())).map((x) => x.nodeId)).toContain(node);
        const gone = await s.presence.removeNode(node);
        expect(gone.filter((c) => c.tenantId === t).map((c) => c.userId)).toEqual(['frank']);
        expect(await s.presence.isOnline(t, 'erin')).toBe(true);
        expect((await s.presence.nodes(Date.now())).map((x) => x.nodeId)).not.toContain(node);
      });
    });

    describe('agent presence', () => {
      const agentConn = (tenantId: string, agentId: string, connectedAt = new Date().toISOString()): AgentConnection => ({
        connId: uid('ac'),
        tenantId,
        agentId,
        connectedAt,
      });

      it('is its own per-tenant set: online from the first connection to the last, never in online_users', async () => {
        const s = await get();
        const t = uid('t');
        const other = uid('t');
        const tab1 = agentConn(t, 'ann', '2026-01-01T00:00:01.000Z');
        const tab2 = agentConn(t, 'ann', '2026-01-01T00:00:02.000Z');
        expect(await s.agentPresence.add('n1', tab1, 60000)).toEqual({ firstForAgent: true });
        expect(await s.agentPresence.add('n2', tab2, 60000)).toEqual({ firstForAgent: false });
        expect(await s.agentPresence.add('n1', agentConn(t, 'bob'), 60000)).toEqual({ firstForAgent: true });
        expect(await s.agentPresence.online(t)).toEqual([
          { agentId: 'ann', connectedAt: '2026-01-01T00:00:01.000Z' },
          { agentId: 'bob', connectedAt: expect.any(String) },
        ]);
        expect(await s.agentPresence.count(t)).toBe(2);
        // Visitors' presence does not see agents, and another tenant sees nobody.
        expect(await s.presence.list(t)).toEqual([]);
        expect(await s.agentPresence.online(other)).toEqual([]);
        expect(await s.agentPresence.count(other)).toBe(0);
        expect(await s.agentPresence.remove('n1', other, tab1.connId)).toEqual({ lastForAgent: false });

        expect(await s.agentPresence.remove('n1', t, tab1.connId)).toEqual({ lastForAgent: false, agentId: 'ann' });
        expect(await s.agentPresence.count(t)).toBe(2);
        expect(await s.agentPresence.remove('n2', t, tab2.connId)).toEqual({ lastForAgent: true, agentId: 'ann' });
        expect(await s.agentPresence.remove('n2', t, tab2.connId)).toEqual({ lastForAgent: false });
        expect((await s.agentPresence.online(t)).map((a) => a.agentId)).toEqual(['bob']);
      });

      it('sweeps a silent node once across nodes, and a heartbeat brings its agents back', async () => {
        const a = await get();
        const b = await harness.open();
        const t = uid('t');
        const onA = agentConn(t, 'cora');
        const onB = agentConn(t, 'cora');
        const dan = agentConn(t, 'dan');
        await a.agentPresence.add('nodeA', onA, 60000);
        await b.agentPresence.add('nodeB', onB, 1000);
        await b.agentPresence.add('nodeB', dan, 1000);
        const later = Date.now() + 5000;
        const [x, y] = await Promise.all([a.agentPresence.sweep(later), b.agentPresence.sweep(later)]);
        const gone = [...x, ...y].filter((c) => c.tenantId === t);
        expect(gone).toEqual([{ tenantId: t, agentId: 'dan' }]);
        expect((await a.agentPresence.online(t)).map((g) => g.agentId)).toEqual(['cora']);
        // The node was alive after all: its heartbeat re-asserts both connections.
        expect(await b.agentPresence.heartbeat('nodeB', [onB, dan], 60000)).toEqual([{ tenantId: t, agentId: 'dan' }]);
        expect(await b.agentPresence.heartbeat('nodeB', [onB, dan], 60000)).toEqual([]);
        expect(await a.agentPresence.count(t)).toBe(2);
        const all = (await a.agentPresence.sweep(Date.now() + 120000)).filter((c) => c.tenantId === t);
        expect(all.map((c) => c.agentId).sort()).toEqual(['cora', 'dan']);
        expect(await a.agentPresence.count(t)).toBe(0);
        // A tenant emptied by a sweep comes back with its next connection.
        expect(await b.agentPresence.add('nodeB', agentConn(t, 'eve'), 60000)).toEqual({ firstForAgent: true });
        expect((await a.agentPresence.sweep(Date.now())).filter((c) => c.tenantId === t)).toEqual([]);
        expect(await a.agentPresence.count(t)).toBe(1);
      });

      it('removes a whole node at once', async () => {
        const s = await get();
        const t = uid('t');
        const node = uid('node');
        await s.agentPresence.add(node, agentConn(t, 'fay'), 60000);
        await s.agentPresence.add('other', agentConn(t, 'fay'), 60000);
        await s.agentPresence.add(node, agentConn(t, 'gus'), 60000);
        const gone = (await s.agentPresence.removeNode(node)).filter((c) => c.tenantId === t);
        expect(gone).toEqual([{ tenantId: t, agentId: 'gus' }]);
        expect((await s.agentPresence.online(t)).map((g) => g.agentId)).toEqual(['fay']);
      });
    });

    describe('event log', () => {
      it('publishMessage is idempotent: one agent entry, one webhook job, one bus event', async () => {
        const s = await get();
        const t = uid('t');
        const bus = await collect(s, t);
        const jobsBefore = await s.webhooks.length();
        const m = message(t, 'sess1');
        expect(await s.events.publishMessage(m)).toEqual({ agentOffset: 1, duplicate: false });
        expect(await s.events.publishMessage(m)).toEqual({ agentOffset: 1, duplicate: true });
        // A later event proves the bus delivered everything before it.
        await s.bus.publish(t, { type: 'broadcast', event: 'done', data: null });
        await eventually(() => bus.events.some((e) => e.type === 'broadcast'), 'the broadcast', { retryOnError: true });
        expect(bus.events.filter((e) => e.type === 'message')).toEqual([{ type: 'message', agentOffset: 1, message: m }]);
        expect(await s.events.agentHead(t)).toBe(1);
        expect(await s.events.agentRange(t, 0, 10)).toEqual({ entries: [{ offset: 1, type: 'message', message: m }], complete: true });
        expect(await s.webhooks.length()).toBe(jobsBefore + 1);
        const jobs = (await s.webhooks.range('-', '+', 100000)).filter((j) => j.tenantId === t);
        expect(jobs).toHaveLength(1);
        expect(jobs[0]).toMatchObject({
          type: 'message.created',
          tenantId: t,
          sessionId: 'sess1',
          messageId: m.id,
          createdAt: m.createdAt,
        });
        expect(JSON.parse(jobs[0]!.payload)).toEqual(m);
        await bus.stop();
      });

      it('publishUpdate is idempotent per event id: one agent entry, one conversation.updated job, one bus event', async () => {
        const s = await get();
        const t = uid('t');
        const bus = await collect(s, t);
        const jobsBefore = await s.webhooks.length();
        const m = message(t, 'sess2');
        await s.events.publishMessage(m);
        const update: ConversationUpdate = {
          id: randomUUID(),
          tenantId: t,
          sessionId: 'sess2',
          version: 1,
          at: m.createdAt,
          conversation: {
            sessionId: 'sess2',
            status: 'open',
            assignee: null,
            visitor: { type: 'visitor', id: 'sess2', verified: false },
            lastMessage: { id: m.id, text: m.text, sender: m.sender, createdAt: m.createdAt },
            unreadCount: 1,
            messageCount: 1,
            online: false,
            createdAt: m.createdAt,
            lastActivityAt: m.createdAt,
          },
        };
        expect(await s.events.publishUpdate(update)).toEqual({ agentOffset: 2, duplicate: false });
        expect(await s.events.publishUpdate(update)).toEqual({ agentOffset: 2, duplicate: true });
        await s.bus.publish(t, { type: 'broadcast', event: 'done', data: null });
        await eventually(() => bus.events.some((e) => e.type === 'broadcast'), 'the broadcast', { retryOnError: true });
        expect(bus.events.filter((e) => e.type === 'conversation')).toEqual([{ type: 'conversation', agentOffset: 2, update }]);
        expect((await s.events.agentRange(t, 1, 10)).entries).toEqual([{ offset: 2, type: 'conversation', update }]);
        const jobs = (await s.webhooks.range('-', '+', 100000)).filter((j) => j.tenantId === t);
        expect(await s.webhooks.length()).toBe(jobsBefore + 2);
        expect(jobs.map((j) => j.type)).toEqual(['message.created', 'conversation.updated']);
        expect(jobs[1]).toMatchObject({ sessionId: 'sess2', messageId: update.id, createdAt: update.at });
        expect(JSON.parse(jobs[1]!.payload)).toEqual(update);
        await bus.stop();
      });

      it('appends presence events and reads ranges by offset', async () => {
        const s = await get();
        const t = uid('t');
        const m = message(t, 's');
        await s.events.publishMessage(m);
        const p = { userId: 'u', sessionId: 's', status: 'online' as const, at: new Date().toISOString() };
        expect(await s.events.publishPresence(t, p)).toBe(2);
        expect(await s.events.agentRange(t, 0, 10)).toEqual({
          entries: [
            { offset: 1, type: 'message', message: m },
            { offset: 2, type: 'presence', presence: p },
          ],
          complete: true,
        });
        expect(await s.events.agentRange(t, 1, 10)).toEqual({ entries: [{ offset: 2, type: 'presence', presence: p }], complete: true });
        expect(await s.events.agentRange(t, 0, 1)).toMatchObject({ entries: [{ offset: 1 }], complete: true });
        expect(await s.events.agentRange(t, 2, 10)).toEqual({ entries: [], complete: true });
        // An offset the stream never reached (it was reset): recovery is impossible.
        expect((await s.events.agentRange(t, 99, 10)).complete).toBe(false);
        expect(await s.events.agentRange(uid('t'), 0, 10)).toEqual({ entries: [], complete: true });
      });

      it('bounds the agent history and reports a trimmed range as incomplete', async () => {
        const s = await harness.open({ agentHistorySize: 100 });
        const t = uid('t');
        for (let i = 0; i < 400; i++) await s.events.publishPresence(t, { userId: 'u', sessionId: 's', status: 'online', at: String(i) });
        expect(await s.events.agentHead(t)).toBe(400);
        const old = await s.events.agentRange(t, 0, 10);
        expect(old.complete).toBe(false);
        const recent = await s.events.agentRange(t, 350, 100);
        expect(recent.complete).toBe(true);
        expect(recent.entries.map((e) => e.offset)).toEqual(Array.from({ length: 50 }, (_, i) => 351 + i));
      });

      it("delivers a tenant's events in agent offset order, to that tenant only", async () => {
        const s = await get();
        const [t, other] = [uid('t'), uid('t')];
        const bus = await collect(s, t);
        const otherBus = await collect(s, other);
        const results = await Promise.all(Array.from({ length: 50 }, (_, i) => s.events.publishMessage(message(t, `s${i % 5}`, `m${i}`))));
        expect(results.map((r) => r.agentOffset).sort((x, y) => x - y)).toEqual(Array.from({ length: 50 }, (_, i) => i + 1));
        await eventually(() => bus.events.length === 50, '50 events', { retryOnError: true });
        expect(bus.events.map((e) => (e.type === 'message' ? e.agentOffset : -1))).toEqual(Array.from({ length: 50 }, (_, i) => i + 1));
        expect(otherBus.events).toEqual([]);
        await Promise.all([bus.stop(), otherBus.stop()]);
      });
    });

    describe('bus', () => {
      it('delivers non-stream events to every subscriber of the tenant until it unsubscribes', async () => {
        const a = await get();
        const b = await harness.open();
        const t = uid('t');
        const first = await collect(a, t);
        const second = await collect(b, t);
        const typing: TenantEvent = { type: 'typing', sessionId: 's', sender: { type: 'visitor', id: 's' }, isTyping: true };
        await b.bus.publish(t, typing);
        await eventually(() => first.events.length === 1 && second.events.length === 1, 'both subscribers', { retryOnError: true });
        expect(first.events).toEqual([typing]);
        await first.stop();
        await first.stop(); // idempotent
        await a.bus.publish(t, { type: 'revoke', userId: 'agent1' });
        await eventually(() => second.events.length === 2, 'the second event', { retryOnError: true });
        expect(first.events).toHaveLength(1);
        await second.stop();
      });
    });

    describe('webhook stream', () => {
      it('follows new entries in order until aborted', async () => {
        const s = await get();
        const t = uid('t');
        const seen: WebhookJob[] = [];
        const ac = new AbortController();
        // From the stream's start (filtered to this tenant): '$' would race with the publishes below.
        const following = s.webhooks.follow('0-0', (j) => j.tenantId === t && seen.push(j), ac.signal);
        const m1 = message(t, 's', 'one');
        const m2 = message(t, 's', 'two');
        await s.events.publishMessage(m1);
        await s.events.publishMessage(m2);
        await eventually(() => seen.length === 2, 'two followed jobs', { retryOnError: true });
        expect(seen.map((j) => j.messageId)).toEqual([m1.id, m2.id]);
        // '$' means entries added after the call.
        const tail: WebhookJob[] = [];
        const fromTail = s.webhooks.follow('$', (j) => j.tenantId === t && tail.push(j), ac.signal);
        await eventually(
          async () => {
            await s.events.publishMessage(message(t, 's', 'probe'));
            return tail.length > 0;
          },
          'follow($) to see a new entry',
          { retryOnError: true },
        );
        expect(tail.every((j) => j.messageId !== m1.id && j.messageId !== m2.id)).toBe(true);
        expect(seen[0]!.id < seen[1]!.id || seen[0]!.id.length < seen[1]!.id.length).toBe(true);
        ac.abort();
        await Promise.all([following, fromTail]);
        // range() from a known id reads what follow saw.
        expect((await s.webhooks.range(seen[0]!.id, seen[1]!.id, 10)).map((j) => j.messageId)).toEqual([m1.id, m2.id]);
      });

      it("shares jobs through a consumer group: read, ack, claim a dead consumer's pending jobs", async () => {
        const s = await get();
        const t = uid('t');
        const g = s.webhooks.group(uid('g'));
        await g.ensure('$');
        await g.ensure('$'); // idempotent
        const ms = [message(t, 's', 'a'), message(t, 's', 'b'), message(t, 's', 'c')];
        for (const m of ms) await s.events.publishMessage(m);
        const mine = (jobs: WebhookJob[]) => jobs.filter((j) => j.tenantId === t);
        const dead = mine(await g.read('dead-consumer', 2, 0));
        expect(dead.map((j) => j.messageId)).toEqual([ms[0]!.id, ms[1]!.id]);
        const live = mine(await g.read('live-consumer', 10, 1000));
        expect(live.map((j) => j.messageId)).toEqual([ms[2]!.id]);
        expect(await g.ack(live.map((j) => j.id))).toBe(1);
        expect((await g.info()).pending).toBe(2);
        // Nothing new: a blocking read returns [] when aborted.
        const ac = new AbortController();
        const blocked = g.read('live-consumer', 10, 60000, ac.signal);
        setTimeout(() => ac.abort(), 200);
        expect(mine(await blocked)).toEqual([]);
        // The dead consumer's jobs are claimed once idle long enough. A fixed wait: idle time is
        // what is tested, and polling claimIdle would claim (and reset) as it goes.
        await new Promise((r) => setTimeout(r, 50));
        const claimed = mine(await g.claimIdle('live-consumer', 10, 10));
        expect(claimed.map((j) => j.messageId)).toEqual([ms[0]!.id, ms[1]!.id]);
        expect(await g.ack(claimed.map((j) => j.id))).toBe(2);
        expect(await g.info()).toEqual({ pending: 0, lag: 0 });
      });
    });

    describe('rate limiter', () => {
      it('allows a burst, then refuses with a retry delay, per key', async () => {
        const s = await get();
        const key = uid('ip');
        const takes = [];
        for (let i = 0; i < 4; i++) takes.push(await s.rateLimiter.take(key, 0.01, 3));
        expect(takes.map((x) => x.allowed)).toEqual([true, true, true, false]);
        expect(takes[3]!.retryAfterMs).toBeGreaterThan(0);
        expect((await s.rateLimiter.take(uid('ip'), 0.01, 3)).allowed).toBe(true);
        expect((await s.rateLimiter.take(uid('ip'), 0.01, 3, 4)).allowed).toBe(false);
      });

      it('refills at the configured rate', async () => {
        const s = await get();
        const key = uid('ip');
        // Emptied at once; a full refill takes 2 s (so a slow machine cannot refill it in between).
        expect((await s.rateLimiter.take(key, 5, 10, 10)).allowed).toBe(true);
        const refused = await s.rateLimiter.take(key, 5, 10, 10);
        expect(refused.allowed).toBe(false);
        expect(refused.retryAfterMs).toBeGreaterThan(0);
        expect(refused.retryAfterMs).toBeLessThanOrEqual(2000);
        await eventually(async () => (await s.rateLimiter.take(key, 5, 10, 10)).allowed, 'a refill', { retryOnError: true });
      });
    });

    describe('rate limiter across handles', () => {
      it('one bucket, whichever handle takes from it (two nodes of one deployment)', async () => {
        const [a, b] = [await get(), await harness.open()];
        const key = uid('ip');
        expect((await a.rateLimiter.take(key, 0.01, 2)).allowed).toBe(true);
        expect((await b.rateLimiter.take(key, 0.01, 2)).allowed).toBe(true);
        expect((await a.rateLimiter.take(key, 0.01, 2)).allowed).toBe(false);
        expect((await b.rateLimiter.take(key, 0.01, 2)).allowed).toBe(false);
      });
    });

    describe('node registry', () => {
      it('advertises, looks up, expires and withdraws nodes', async () => {
        const reg = (await get()).nodes;
        const [none, a, short] = [uid('n-none'), uid('n-a'), uid('n-short')];
        expect(await reg.lookup(none)).toBeUndefined();
        await reg.advertise(a, 'http://10.0.0.1:3002', 60_000);
        expect(await reg.lookup(a)).toBe('http://10.0.0.1:3002');
        await reg.advertise(short, 'http://10.0.0.2:3002', 50);
        // Time is the subject: the advertisement's 50 ms life must pass.
        await new Promise((r) => setTimeout(r, 700));
        expect(await reg.lookup(short)).toBeUndefined();
        await reg.withdraw(a);
        expect(await reg.lookup(a)).toBeUndefined();
      });

      it('a node advertised through one handle is found through another (two nodes of one deployment)', async () => {
        const other = await harness.open();
        const nodeId = uid('n-b');
        await other.nodes.advertise(nodeId, 'http://10.0.0.3:3002', 60_000);
        expect(await (await get()).nodes.lookup(nodeId)).toBe('http://10.0.0.3:3002');
      });
    });

    describe('revocations', () => {
      it("keeps a subject's latest revocation for every handle, never moves it back, and touches no other subject", async () => {
        const [a, b] = [await get(), await harness.open()];
        const [t, other] = [uid('t'), uid('t')];
        expect(await a.revocations.revokedAt(t, 'agent-1')).toBeNull();
        await a.revocations.revoke(t, 'agent-1', 1_700_000_000_500.7);
        expect(await b.revocations.revokedAt(t, 'agent-1')).toBe(1_700_000_000_500);
        // An earlier revocation does not un-revoke; a later one wins.
        await b.revocations.revoke(t, 'agent-1', 1_600_000_000_000);
        expect(await a.revocations.revokedAt(t, 'agent-1')).toBe(1_700_000_000_500);
        await b.revocations.revoke(t, 'agent-1', 1_800_000_000_000);
        expect(await a.revocations.revokedAt(t, 'agent-1')).toBe(1_800_000_000_000);
        expect(await a.revocations.revokedAt(t, 'agent-2')).toBeNull();
        expect(await a.revocations.revokedAt(other, 'agent-1')).toBeNull();
      });

      it('keeps the latest of revocations sent at once from several handles', async () => {
        const handles = [await get(), await harness.open(), await harness.open()];
        const t = uid('t');
        // The latest instant is sent first and earlier ones after it, from three handles at once:
        // a read-then-write would let an earlier one, written last, move the key back.
        const base = 1_700_000_000_000;
        await Promise.all(Array.from({ length: 30 }, (_, i) => handles[i % 3]!.revocations.revoke(t, 'agent-1', base - i * 1000)));
        expect(await handles[1]!.revocations.revokedAt(t, 'agent-1')).toBe(base);
      });

      it("keepRestored runs the restore before it resolves: a process's start, whatever the engine", async () => {
        // A new handle is a new process's first look (Redis: a data epoch it never knew).
        const s = await harness.open();
        const t = uid('t');
        let calls = 0;
        const watch = await s.keepRestored(
          async () => {
            calls++;
            await s.revocations.revoke(t, 'agent-1', 1_700_000_000_000);
            return 1;
          },
          pino({ level: 'silent' }),
        );
        try {
          expect(calls).toBe(1);
          expect(await (await get()).revocations.revokedAt(t, 'agent-1')).toBe(1_700_000_000_000);
        } finally {
          await watch.stop();
        }
      });
    });

    it('answers ping', async () => {
      const s = await get();
      await expect(s.ping()).resolves.toBeUndefined();
    });
  });
}
