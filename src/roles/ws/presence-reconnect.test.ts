// A visitor reconnecting while its old connection is still being removed from the store (the demo
// showed `presence_update online` twice): the reconnect is a return, not a new arrival.
import { pino } from 'pino';
import { afterAll, describe, expect, it } from 'vitest';
import { MemoryStore } from '../../store/memory/memory-store.js';
import { PresenceTracker } from './presence-tracker.js';
import { conn } from './presence-tracker.scenarios.js';

describe("PresenceTracker: reconnect during the old connection's removal", () => {
  const store = new MemoryStore();
  afterAll(() => store.close());

  it('publishes online once and no offline', async () => {
    const tr = new PresenceTracker({
      store,
      nodeId: 'n1',
      heartbeatMs: 60_000,
      nodeTimeoutMs: 60_000,
      offlineGraceMs: 60_000,
      logger: pino({ level: 'silent' }),
    });
    const t = 'reconnect-race';
    const old = conn(t, 'dana');
    await tr.connect(old);
    // The old transport closes and the new one authenticates before the removal has answered.
    const leaving = tr.disconnect(t, old.connId);
    await tr.connect(conn(t, 'dana'));
    await leaving;
    expect(tr.pendingOffline).toBe(0);
    await tr.stop();
    const { entries } = await store.events.agentRange(t, 0, 100);
    expect(entries.flatMap((e) => (e.type === 'presence' ? [`${e.presence.userId}:${e.presence.status}`] : []))).toEqual(['dana:online']);
    expect(await store.presence.isOnline(t, 'dana')).toBe(true);
  });
});
