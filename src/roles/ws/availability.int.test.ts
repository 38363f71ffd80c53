// `availability_changed` with the real socket.io-client: two ws nodes sharing Redis (an agent on
// one, a visitor on the other) and one node on the embedded defaults. The visitor's widget learns
// that an agent came (available) and, after the offline grace period, that the last one left.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DATABASE_URL, REDIS_URL, hasPostgres, hasRedis, uniquePrefix, uniqueSchema } from '../../../test/helpers/services.js';
import { assertSchema, tenantsConfig } from '../../../test/helpers/api-harness.js';
import {
  agentToken,
  connect,
  connected,
  KEYS,
  startNode,
  visitorToken,
  type Node,
  type Recorder,
} from '../../../test/helpers/ws-harness.js';
import { eventually } from '../../../test/helpers/eventually.js';

const ready = (await hasRedis()) && (await hasPostgres());

function tenants(): unknown[] {
  const [a, ...rest] = tenantsConfig() as Record<string, unknown>[];
  return [{ ...a, awayMessage: 'Leave your email.' }, ...rest];
}

const presence = { offlineGraceMs: 200, heartbeatMs: 200, nodeTimeoutMs: 5000 };

function layouts() {
  return [
    {
      name: 'two ws nodes on Redis + PostgreSQL (agent on one, visitor on the other)',
      enabled: ready,
      start: async (): Promise<Node[]> => {
        const shared = {
          tenants: tenants(),
          presence,
          redis: { url: REDIS_URL, prefix: uniquePrefix('availws') },
          database: { url: DATABASE_URL, schema: uniqueSchema('availws'), autoMigrate: true },
        };
        const a = await startNode(shared);
        return [a, await startNode(shared)];
      },
    },
    {
      name: 'one node on the embedded defaults',
      enabled: true,
      start: async (): Promise<Node[]> => {
        const n = await startNode({ tenants: tenants(), presence });
        return [n, n];
      },
    },
  ];
}

describe.each(layouts())('availability_changed: $name', ({ enabled, start }) => {
  if (!enabled) {
    it.skip('needs Redis and PostgreSQL', () => undefined);
    return;
  }
  let agentNode: Node;
  let visitorNode: Node;
  const sockets: Recorder[] = [];
  beforeAll(async () => {
    [agentNode, visitorNode] = (await start()) as [Node, Node];
  }, 400_000);
  afterAll(async () => {
    for (const r of sockets) r.socket.disconnect();
    await agentNode?.srv.stop();
    if (visitorNode !== agentNode) await visitorNode?.srv.stop();
  });

  it('tells an open widget when the first agent comes and when the last one leaves, once each', async () => {
    const token = await visitorToken(visitorNode, 'tenantA', KEYS.pubA);
    const v = connect(visitorNode.ws, { apiKey: KEYS.pubA, token, sessionId: 'sv-avail', fingerprint: 'fp', domain: 'a.example' });
    sockets.push(v);
    const seen: Record<string, unknown>[] = [];
    const extraArgs: unknown[] = [];
    v.socket.on('availability_changed', (p: Record<string, unknown>, ...rest: unknown[]) => {
      extraArgs.push(...rest);
      seen.push(p);
    });
    await connected(v);
    // Another tenant's agent changes nothing for this widget.
    const other = connect(agentNode.ws, { token: await agentToken(agentNode, 'tenantB', KEYS.secB, 'zed') });
    sockets.push(other);
    await connected(other);

    const ag = connect(agentNode.ws, { token: await agentToken(agentNode, 'tenantA', KEYS.secA, 'ann') });
    sockets.push(ag);
    await connected(ag);
    await eventually(() => seen.length >= 1, 'availability_changed: available');
    for (const p of seen) assertSchema('event.server.availability_changed.schema.json', p);
    expect(seen).toEqual([{ available: true, agentsOnline: 1, inBusinessHours: true }]);
    // The agent console gets it too (every socket of the tenant).
    ag.socket.disconnect();
    await eventually(() => seen.length >= 2, 'availability_changed: away');
    expect(seen[1]).toEqual({ available: false, agentsOnline: 0, inBusinessHours: true, awayMessage: 'Leave your email.' });
    assertSchema('event.server.availability_changed.schema.json', seen[1]);
    // The HTTP answer agrees.
    const r = await visitorNode.http('GET', '/api/chat/availability?tenantId=tenantA', { token: KEYS.pubA });
    expect(r.body).toEqual({ ...seen[1], repliesByEmail: false });
    expect(seen).toHaveLength(2);
    // Not a stream event: no offset after the payload.
    expect(extraArgs).toEqual([]);
  });
});
