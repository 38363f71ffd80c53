// PresenceTracker behaviour, written once and run on the memory store (presence-tracker.test.ts) and
// on Redis (presence-tracker.int.test.ts). Events are read back from the agent stream, where the
// agents' sockets get them.
import { randomBytes } from 'node:crypto';
import { pino } from 'pino';
import { afterEach, expect, it } from 'vitest';
import type { PresenceConnection, PresenceEvent, Store } from '../../store/ports.js';
import { PresenceTracker, type PresenceTrackerOptions } from './presence-tracker.js';
import { eventually } from '../../../test/helpers/eventually.js';

const id = (label: string) => `${label}-${randomBytes(4).toString('hex')}`;

export function conn(tenantId: string, userId: string, sessionId = `s-${userId}`): PresenceConnection {
  return {
    connId: id('c'),
    tenantId,
    userId,
    sessionId,
    role: 'visitor',
    connectedAt: new Date().toISOString(),
    domain: 'shop.example',
    origin: 'https://shop.example',
    url: 'https://shop.example/cart',
  };
}

async function presenceEvents(store: Store, tenantId: string): Promise<PresenceEvent[]> {
  const { entries } = await store.events.agentRange(tenantId, 0, 1000);
  return entries.flatMap((e) => (e.type === 'presence' ? [e.presence] : []));
}

const summary = (events: readonly PresenceEvent[]) => events.map((e) => `${e.userId}:${e.status}`);

export function presenceScenarios(store: () => Store) {
  const trackers: PresenceTracker[] = [];
  const tracker = (opts: Partial<PresenceTrackerOptions> = {}) => {
    const t = new PresenceTracker({
      store: store(),
      nodeId: id('node'),
      heartbeatMs: 60_000,
      nodeTimeoutMs: 60_000,
      offlineGraceMs: 60_000,
      logger: pino({ level: 'silent' }),
      ...opts,
    });
    trackers.push(t);
    return t;
  };
  afterEach(async () => {
    await Promise.all(trackers.splice(0).map((t) => t.stop()));
  });

  it('announces a user online on the first connection only, and keeps two tabs online until both close', async () => {
    const tr = tracker({ offlineGraceMs: 60_000 });
    const t = id('t');
    const [tab1, tab2] = [conn(t, 'alice'), conn(t, 'alice')];
    await tr.connect(tab1);
    await tr.connect(tab2);
    expect(summary(await presenceEvents(store(), t))).toEqual(['alice:online']);
    const [first] = await presenceEvents(store(), t);
    expect(first).toMatchObject({ userId: 'alice', sessionId: 's-alice', status: 'online' });
    expect(Number.isNaN(Date.parse(first!.at))).toBe(false);
    expect((await store().presence.list(t)).map((u) => u.userId)).toEqual(['alice']);
    await tr.disconnect(t, tab1.connId);
    expect(await store().presence.isOnline(t, 'alice')).toBe(true);
    await tr.disconnect(t, tab2.connId);
    // The last tab closed: online_users forgets her at once, but agents hear it only after the grace.
    expect(await store().presence.isOnline(t, 'alice')).toBe(false);
    expect(tr.pendingOffline).toBe(1);
    expect(summary(await presenceEvents(store(), t))).toEqual(['alice:online']);
    // stop() decides what is still pending: she did not come back.
    await tr.stop();
    expect(summary(await presenceEvents(store(), t))).toEqual(['alice:online', 'alice:offline']);
  });

  it('publishes offline after the grace period, and nothing when the user came back in time', async () => {
    const tr = tracker({ offlineGraceMs: 150 });
    const t = id('t');
    const a = conn(t, 'bob');
    await tr.connect(a);
    await tr.disconnect(t, a.connId);
    await eventually(async () => summary(await presenceEvents(store(), t)).includes('bob:offline'), 'bob offline');
    expect(summary(await presenceEvents(store(), t))).toEqual(['bob:online', 'bob:offline']);

    // A reload: disconnect and reconnect within the grace period: agents see nothing.
    const slow = tracker({ offlineGraceMs: 60_000 });
    const b1 = conn(t, 'carol');
    await slow.connect(b1);
    await slow.disconnect(t, b1.connId);
    await slow.connect(conn(t, 'carol'));
    expect(slow.pendingOffline).toBe(0);
    await slow.stop();
    expect(summary(await presenceEvents(store(), t)).filter((s) => s.startsWith('carol'))).toEqual(['carol:online']);
  });

  it('does not announce offline when the user reconnected to another node during the grace', async () => {
    const a = tracker({ offlineGraceMs: 200 });
    const b = tracker({ offlineGraceMs: 200 });
    const t = id('t');
    const onA = conn(t, 'dave');
    await a.connect(onA);
    await a.disconnect(t, onA.connId);
    await b.connect(conn(t, 'dave'));
    await eventually(() => a.pendingOffline === 0, 'the grace period to end on A');
    // B saw a first connection (A's entry was gone): an extra online, but never an offline.
    expect(summary(await presenceEvents(store(), t)).filter((s) => s.endsWith('offline'))).toEqual([]);
    expect(await store().presence.isOnline(t, 'dave')).toBe(true);
  });

  it('sweeps the connections of a silent node and announces those users offline once', async () => {
    const dead = tracker({ nodeTimeoutMs: 200 });
    const alive = tracker({ nodeTimeoutMs: 200 });
    const t = id('t');
    await dead.connect(conn(t, 'erin'));
    await dead.connect(conn(t, 'frank'));
    await alive.connect(conn(t, 'frank'));
    // The node dies without a word: it neither heartbeats nor removes its entries.
    await dead.drain();
    // The live node re-asserts its own connections and sweeps the rest.
    await eventually(async () => {
      await alive.tick();
      return !(await store().presence.isOnline(t, 'erin'));
    }, 'erin swept');
    await alive.tick();
    const events = summary(await presenceEvents(store(), t));
    expect(events.filter((s) => s === 'erin:offline')).toHaveLength(1);
    expect(events).not.toContain('frank:offline');
    expect(await store().presence.isOnline(t, 'frank')).toBe(true);
    expect(alive.size).toBe(1);
  });

  it("keeps a draining node's entries so its clients can reconnect elsewhere without an offline", async () => {
    const a = tracker({ offlineGraceMs: 100 });
    const t = id('t');
    const c = conn(t, 'gina');
    await a.connect(c);
    await a.drain();
    await a.disconnect(t, c.connId); // its transport closed by the drain
    expect(await store().presence.isOnline(t, 'gina')).toBe(true);
    await a.stop();
    expect(summary(await presenceEvents(store(), t))).toEqual(['gina:online']);
  });

  it('re-announces users the store lost when the heartbeat re-asserts them', async () => {
    const nodeId = id('node');
    const a = tracker({ nodeId });
    const t = id('t');
    const c = conn(t, 'hank');
    await a.connect(c);
    // The store lost the entry (a Redis restart; here: removed behind the tracker's back).
    await store().presence.remove(nodeId, t, c.connId);
    expect(await store().presence.isOnline(t, 'hank')).toBe(false);
    await a.tick();
    expect(await store().presence.isOnline(t, 'hank')).toBe(true);
    expect(summary(await presenceEvents(store(), t))).toEqual(['hank:online', 'hank:online']);
  });
}
