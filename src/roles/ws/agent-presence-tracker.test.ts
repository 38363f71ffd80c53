// The agent presence tracker over the memory store: two nodes of one deployment, agents coming and
// going, a console reload inside the grace period, a lost store repaired by the heartbeat, and a
// silent node's agents swept by the other.
import { pino } from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import { MemoryAgentPresenceStore } from '../../store/memory/memory-agent-presence-store.js';
import type { AgentConnection } from '../../store/ports.js';
import { AgentPresenceTracker } from './agent-presence-tracker.js';
import { eventually } from '../../../test/helpers/eventually.js';

let n = 0;
const conn = (tenantId: string, agentId: string): AgentConnection => ({
  connId: `c${++n}`,
  tenantId,
  agentId,
  connectedAt: new Date().toISOString(),
});

const trackers: AgentPresenceTracker[] = [];
afterEach(async () => {
  await Promise.all(trackers.splice(0).map((t) => t.stop()));
});

function tracker(
  store: MemoryAgentPresenceStore,
  nodeId: string,
  changes: string[],
  opts: { offlineGraceMs?: number; nodeTimeoutMs?: number } = {},
) {
  const t = new AgentPresenceTracker({
    store,
    nodeId,
    heartbeatMs: 60_000,
    nodeTimeoutMs: opts.nodeTimeoutMs ?? 60_000,
    offlineGraceMs: opts.offlineGraceMs ?? 50,
    logger: pino({ level: 'silent' }),
    onChange: (tenantId) => changes.push(`${nodeId}:${tenantId}`),
  });
  trackers.push(t);
  return t;
}

describe('AgentPresenceTracker', () => {
  it('reports an agent coming online at once and leaving only after the grace period, across nodes', async () => {
    const store = new MemoryAgentPresenceStore();
    const changes: string[] = [];
    const a = tracker(store, 'A', changes);
    const b = tracker(store, 'B', changes);
    const onA = conn('t1', 'ann');
    const onB = conn('t1', 'ann');
    await a.connect(onA);
    expect(changes).toEqual(['A:t1']);
    // A second tab on another node: the agent was online already.
    await b.connect(onB);
    expect(changes).toEqual(['A:t1']);
    await a.disconnect('t1', onA.connId);
    expect(await store.count('t1')).toBe(1);
    await b.disconnect('t1', onB.connId);
    expect(await store.count('t1')).toBe(0);
    await eventually(() => changes.length === 2, 'the departure after the grace period');
    expect(changes).toEqual(['A:t1', 'B:t1']);
  });

  it('a heartbeat repairs a store that lost the entries; a silent node is swept by another', async () => {
    const store = new MemoryAgentPresenceStore();
    const changes: string[] = [];
    const a = tracker(store, 'A', changes, { nodeTimeoutMs: 1 });
    const b = tracker(store, 'B', changes);
    await a.connect(conn('t2', 'bea'));
    await b.connect(conn('t2', 'cal'));
    expect((await store.online('t2')).map((x) => x.agentId)).toEqual(['bea', 'cal']);
    // A's entries expire (1 ms): B's sweep reports bea gone, once (B's own agent stays).
    await eventually(async () => {
      await b.tick();
      return (await store.count('t2')) === 1;
    }, 'the expired entry swept');
    expect(changes).toEqual(['A:t2', 'B:t2', 'B:t2']);
    await a.drain();
    expect((await store.online('t2')).map((x) => x.agentId)).toEqual(['cal']);
    const c = tracker(store, 'C', changes);
    const dee = conn('t2', 'dee');
    await c.connect(dee);
    await store.remove('C', 't2', dee.connId);
    await c.tick();
    expect((await store.online('t2')).map((x) => x.agentId)).toEqual(['cal', 'dee']);
    expect(changes.slice(-2)).toEqual(['C:t2', 'C:t2']);
  });
});
