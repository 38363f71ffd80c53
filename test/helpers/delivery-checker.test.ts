// The delivery checker must catch what it exists to catch: a lost, duplicated, reordered, foreign or
// unstored message, a hole, and forgive what is allowed (a client that did not recover).
import { describe, expect, it } from 'vitest';
import type { ChatMessage } from '../../src/chat/message.js';
import { emptyMeta } from '../../src/chat/message.js';
import { DeliveryChecker, type StoredReader } from './delivery-checker.js';

const T = 'tenant';
function rows(sessionId: string, n: number): ChatMessage[] {
  return Array.from({ length: n }, (_, i) => ({
    id: `${sessionId}-m${i + 1}`,
    tenantId: T,
    sessionId,
    seq: i + 1,
    sender: { type: 'visitor' as const, id: sessionId, verified: false },
    text: `m${i + 1}`,
    createdAt: new Date(0).toISOString(),
    meta: emptyMeta(),
  }));
}

function reader(stored: Record<string, ChatMessage[]>, agentOffsets?: Map<string, number>): StoredReader {
  return {
    conversation: async (_t, s) => stored[s] ?? [],
    ...(agentOffsets ? { agentOffsets: async () => agentOffsets } : {}),
  };
}

/** Two conversations a and b, 3 messages each, acked in order a1 b1 a2 b2 a3 b3; agent offsets 1..6. */
function setup() {
  const stored = { a: rows('a', 3), b: rows('b', 3) };
  const order = [stored.a[0]!, stored.b[0]!, stored.a[1]!, stored.b[1]!, stored.a[2]!, stored.b[2]!];
  const agentOffsets = new Map(order.map((m, i) => [m.id, i + 1]));
  return { stored, order, agentOffsets };
}

describe('DeliveryChecker', () => {
  it('passes a clean run and reports every kind of problem with a readable line', async () => {
    const { stored, order, agentOffsets } = setup();
    const clean = new DeliveryChecker();
    const va = clean.client('va', { kind: 'conversation', tenantId: T, sessionId: 'a' });
    const ag = clean.client('agent', { kind: 'agents', tenantId: T });
    for (const m of order) clean.acked(m.id, T, m.sessionId);
    for (const m of stored.a) va.received(m.id, m.seq);
    order.forEach((m, i) => ag.received(m.id, i + 1));
    expect((await clean.verify(reader(stored, agentOffsets))).problems).toEqual([]);
    await clean.assertClean(reader(stored, agentOffsets));

    const bad = new DeliveryChecker();
    const v = bad.client('va', { kind: 'conversation', tenantId: T, sessionId: 'a' });
    const agent = bad.client('agent', { kind: 'agents', tenantId: T });
    for (const m of order) bad.acked(m.id, T, m.sessionId);
    bad.acked('never-stored', T, 'a');
    v.received('a-m1', 1);
    v.received('a-m3', 3); // a-m2 missing, and a hole between 1 and 3
    v.received('a-m3', 3); // duplicate (and not increasing)
    v.received('b-m1', 1); // another conversation's message
    agent.received('a-m1', 1);
    agent.received('b-m1', 3); // wrong agent offset (stored at 2)
    agent.received('a-m2', 2); // out of order
    const report = await bad.verify(reader(stored, agentOffsets));
    expect(report.ok).toBe(false);
    const text = report.problems.join('\n');
    expect(text).toContain('acked #6 never-stored (t:tenant:conv:a) is not stored');
    expect(text).toMatch(/client va \(t:tenant:conv:a\): missing 2 of 4 owed: a-m2 \(acked #2, seq 2\), never-stored/);
    expect(text).toContain('client va (t:tenant:conv:a): duplicate a-m3 at positions 1 and 2');
    expect(text).toContain('out of order at position 2: offset 3 (a-m3) after offset 3 (a-m3)');
    expect(text).toContain('received b-m1 of t:tenant:conv:b, not of its stream');
    expect(text).toContain('skipped 1 stored message(s) between offsets 1 and 3: seq 2 (a-m2)');
    expect(text).toContain('client agent (t:tenant:agents): b-m1 arrived with agent offset 3, stored at 2');
    expect(text).toContain('client agent (t:tenant:agents): out of order at position 2: offset 2 (a-m2) after offset 3 (b-m1)');
    await expect(bad.assertClean(reader(stored, agentOffsets))).rejects.toThrow(/delivery checker found problems/);
  });

  it('owes nothing for a segment that did not recover, and restarts obligations after it', async () => {
    const { stored, order } = setup();
    const c = new DeliveryChecker();
    const v = c.client('va', { kind: 'conversation', tenantId: T, sessionId: 'a' });
    c.acked(order[0]!.id, T, 'a');
    v.received('a-m1', 1);
    c.acked(order[2]!.id, T, 'a'); // a-m2: lost while the client was away
    v.reconnected(false);
    c.acked(order[4]!.id, T, 'a'); // a-m3: owed to the new segment
    expect((await c.verify(reader(stored))).problems).toEqual([
      'client va (t:tenant:conv:a) segment 2: missing 1 of 1 owed: a-m3 (acked #2, seq 3)',
    ]);
    v.received('a-m3', 3);
    expect((await c.verify(reader(stored))).ok).toBe(true);

    // Recovered: the same segment, so the message sent while away is owed.
    const r = new DeliveryChecker();
    const w = r.client('va', { kind: 'conversation', tenantId: T, sessionId: 'a' });
    r.acked(order[0]!.id, T, 'a');
    w.received('a-m1', 1);
    r.acked(order[2]!.id, T, 'a');
    w.reconnected(true);
    expect((await r.verify(reader(stored))).problems.join('\n')).toContain('missing 1 of 2 owed: a-m2');
  });

  it('does not owe a client that did not recover a send already in flight when it rejoined, but owes one started after', async () => {
    const { stored, order } = setup();
    const c = new DeliveryChecker();
    const v = c.client('va', { kind: 'conversation', tenantId: T, sessionId: 'a' });
    c.acked(order[0]!.id, T, 'a', c.sendStarted());
    v.received('a-m1', 1);
    const inFlight = c.sendStarted(); // a-m2: started, then the client rejoined without recovery
    v.reconnected(false);
    c.acked(order[2]!.id, T, 'a', inFlight); // acknowledged after the rejoin; may precede it in the stream
    const after = c.sendStarted();
    c.acked(order[4]!.id, T, 'a', after); // a-m3: started after the rejoin, so owed
    expect((await c.verify(reader(stored))).problems).toEqual([
      'client va (t:tenant:conv:a) segment 2: missing 1 of 1 owed: a-m3 (acked #2, seq 3)',
    ]);
    v.received('a-m3', 3);
    expect((await c.verify(reader(stored))).ok).toBe(true);
  });

  it('finds a message stored twice and contiguity holes in an agent stream', async () => {
    const { stored, order } = setup();
    const twice = { ...stored, a: [...stored.a, { ...stored.a[0]!, seq: 4 }] };
    const c = new DeliveryChecker();
    const ag = c.client('agent', { kind: 'agents', tenantId: T }, { contiguous: true });
    c.acked(order[0]!.id, T, 'a');
    ag.received(order[0]!.id, 1);
    ag.receivedOther(2);
    ag.received(order[1]!.id, 5);
    const text = (await c.verify(reader(twice))).problems.join('\n');
    expect(text).toContain('acked a-m1 is stored 2 times (seq 1, 4)');
    expect(text).toContain('client agent (t:tenant:agents): skipped agent offsets between 1 and 5: 3, 4');
  });
});
