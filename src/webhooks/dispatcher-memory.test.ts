// The zero-config path: the memory store's publishMessage appends the job in process, the
// dispatcher started as the api role starts it (startWebhookDispatcher) delivers it to a real
// receiver, retries it with the same delivery id, dead-letters it and replays it.
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { randomUUID } from 'node:crypto';
import pino from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import { startWebhookReceiver, type WebhookReceiver } from '../../test/helpers/webhook-receiver.js';
import type { Services } from '../app/services.js';
import type { ConversationUpdate } from '../chat/conversation.js';
import type { ChatMessage } from '../chat/message.js';
import { loadConfig } from '../config/load.js';
import { MemoryStore } from '../store/memory/memory-store.js';
import type { WebhookDispatcher } from './dispatcher.js';
import { deliveryIdFor, verifyWebhook } from './signing.js';
import { registry } from '../observability/metrics.js';
import { activeWebhookQueue, reloadWebhookEndpoints, startWebhookDispatcher } from './start.js';
import { eventually } from '../../test/helpers/eventually.js';

const SECRET = 'whsec_memory_0123456789abcdef';

describe('webhook dispatcher on the memory store', () => {
  let receiver: WebhookReceiver;
  let dispatcher: WebhookDispatcher | undefined;
  let store: MemoryStore;
  let dir: string;

  afterEach(async () => {
    await dispatcher?.close();
    await store?.close();
    await receiver?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  const metric = async (name: string, labels: Record<string, string>) => {
    const m = (await registry.getMetricsAsJSON()).find((x) => x.name === name);
    const v = m?.values.find((x) => Object.entries(labels).every(([k, val]) => x.labels[k] === val));
    return Number(v?.value ?? 0);
  };

  async function setup(webhooks: Record<string, unknown> = {}, events?: string[]) {
    receiver = await startWebhookReceiver();
    dir = mkdtempSync(path.join(os.tmpdir(), 'chatd-whm-'));
    const { config } = await loadConfig({
      cwd: dir,
      env: {},
      overrides: (raw) => {
        raw.dataDir = dir;
        raw.tenants = [{ id: 't1', webhooks: [{ id: 'ep1', url: `${receiver.url}/hook`, secret: SECRET, ...(events ? { events } : {}) }] }];
        raw.webhooks = { timeoutMs: 10_000, retryBaseMs: 100, retryMaxDelayMs: 300, ...webhooks };
      },
    });
    store = new MemoryStore({ webhookStreamMaxLen: config.webhooks.streamMaxLen });
    const services = { store, db: undefined as never, readiness: [], close: async () => undefined } as unknown as Services;
    dispatcher = await startWebhookDispatcher({ config, logger: pino({ level: 'silent' }), nodeId: 'n1', services: async () => services });
    expect(dispatcher).toBeDefined();
  }

  const message = (): ChatMessage => ({
    id: randomUUID(),
    tenantId: 't1',
    sessionId: 's1',
    seq: 1,
    sender: { type: 'visitor', id: 's1', verified: false },
    text: 'hello from memory',
    createdAt: new Date().toISOString(),
    meta: { domain: '', origin: '', url: '', referrer: '', siteId: '' },
  });

  it('delivers a published message once, signed; a re-publish adds no second delivery', async () => {
    await setup();
    const delivered = await metric('chatd_webhook_deliveries_total', { result: 'delivered' });
    const m = message();
    await store.events.publishMessage(m);
    await store.events.publishMessage(m);
    await eventually(() => receiver.received.length === 1, 'the delivery');
    const got = receiver.received[0]!;
    expect(verifyWebhook(SECRET, { timestamp: got.timestamp, signature: got.signature }, got.body)).toBe(true);
    expect(got.deliveryId).toBe(deliveryIdFor('t1', m.id, 'ep1'));
    expect(JSON.parse(got.body)).toEqual({ id: `evt_${m.id}`, type: 'message.created', tenantId: 't1', createdAt: m.createdAt, data: m });
    await eventually(async () => (await activeWebhookQueue()!.groupStats()).pending === 0, 'settled');
    // A window on purpose: proves no second delivery follows (there is no event for "none").
    await new Promise((r) => setTimeout(r, 300));
    expect(receiver.received).toHaveLength(1);
    expect(await metric('chatd_webhook_deliveries_total', { result: 'delivered' })).toBe(delivered + 1);
    expect(await metric('chatd_webhook_attempts_total', { outcome: 'delivered' })).toBeGreaterThanOrEqual(1);
  });

  it('refuses to start when claimIdleMs does not exceed timeoutMs (a live delivery would be taken over)', async () => {
    await expect(setup({ timeoutMs: 5000, claimIdleMs: 5000 })).rejects.toThrow(
      'webhooks.claimIdleMs (5000) must be above webhooks.timeoutMs (5000): a job still being delivered would be taken over',
    );
  });

  it('applies reloaded endpoints to the next delivery', async () => {
    await setup();
    await store.events.publishMessage(message());
    await eventually(() => receiver.received.length === 1, 'the first delivery');
    const reloaded = reloadWebhookEndpoints({
      webhooks: { concurrencyPerEndpoint: 8 } as never,
      tenants: [
        {
          id: 't1',
          apiKeys: [],
          allowedOrigins: [],
          identityVerification: 'optional',
          retention: {},
          conversations: { reopenOnVisitorMessage: true, autoAssign: { mode: 'off', maxOpenPerAgent: 10 } },
          webhooks: [{ id: 'ep1', url: `${receiver.url}/moved`, secret: SECRET, events: ['message.created'] }],
        },
      ],
    });
    expect(reloaded).toBe(true);
    await store.events.publishMessage(message());
    await eventually(() => receiver.received.length === 2, 'the second delivery');
    expect(receiver.received.map((r) => r.path)).toEqual(['/hook', '/moved']);
  });

  it('retries a 500 with the same delivery id, dead-letters after the window, and replays', async () => {
    await setup({ retryWindowMs: 3000 });
    let mode: 'flaky' | 'down' | 'up' = 'flaky';
    receiver.respond = (_r, i) => (mode === 'up' || (mode === 'flaky' && i > 0) ? { status: 200 } : { status: 500 });
    const m1 = message();
    await store.events.publishMessage(m1);
    await eventually(() => receiver.received.length === 2, 'a retry after the 500');
    expect(new Set(receiver.received.map((r) => r.deliveryId))).toEqual(new Set([deliveryIdFor('t1', m1.id, 'ep1')]));

    mode = 'down';
    const m2 = message();
    await store.events.publishMessage(m2);
    const queue = activeWebhookQueue()!;
    await eventually(async () => (await queue.deadSize()) === 1, 'dead after the window');
    const [dead] = await queue.listDead(10);
    expect(dead).toMatchObject({ reason: 'retry_window_exhausted', error: 'HTTP 500' });
    expect(await queue.retrySize()).toBe(0);
    expect(await metric('chatd_webhook_dead_total', { reason: 'retry_window_exhausted' })).toBeGreaterThanOrEqual(1);
    mode = 'up';
    const before = receiver.received.length;
    expect(await queue.replayDead([dead!.id], Date.now())).toEqual([dead!.id]);
    await eventually(() => receiver.received.length === before + 1, 'the replayed delivery');
    expect(receiver.received.at(-1)!.deliveryId).toBe(deliveryIdFor('t1', m2.id, 'ep1'));
  });

  it('a conversation.updated job gets the same retries, dead letter and replay as message.created', async () => {
    await setup({ retryWindowMs: 3000 }, ['conversation.updated']);
    let up = false;
    receiver.respond = () => ({ status: up ? 200 : 500 });
    const at = new Date().toISOString();
    const update: ConversationUpdate = {
      id: randomUUID(),
      tenantId: 't1',
      sessionId: 's1',
      version: 7,
      at,
      conversation: {
        sessionId: 's1',
        status: 'resolved',
        assignee: 'ag-1',
        visitor: { type: 'visitor', id: 's1', verified: false },
        lastMessage: null,
        unreadCount: 0,
        messageCount: 0,
        online: false,
        createdAt: at,
        lastActivityAt: at,
      },
    };
    // Not subscribed to message.created: a message is not delivered to this endpoint.
    await store.events.publishMessage(message());
    await store.events.publishUpdate(update);
    const queue = activeWebhookQueue()!;
    await eventually(async () => (await queue.deadSize()) === 1, 'dead after the window');
    const ids = new Set(receiver.received.map((r) => r.deliveryId));
    expect(ids).toEqual(new Set([deliveryIdFor('t1', update.id, 'ep1')]));
    expect(receiver.received.length).toBeGreaterThan(1);
    const [dead] = await queue.listDead(10);
    expect(dead).toMatchObject({
      reason: 'retry_window_exhausted',
      error: 'HTTP 500',
      item: { type: 'conversation.updated', sessionId: 's1' },
    });
    up = true;
    const before = receiver.received.length;
    expect(await queue.replayDead([dead!.id], Date.now())).toEqual([dead!.id]);
    await eventually(() => receiver.received.length === before + 1, 'the replayed delivery');
    const got = receiver.received.at(-1)!;
    expect(got.deliveryId).toBe(deliveryIdFor('t1', update.id, 'ep1'));
    expect(verifyWebhook(SECRET, { timestamp: got.timestamp, signature: got.signature }, got.body)).toBe(true);
    expect(JSON.parse(got.body)).toMatchObject({ id: `evt_${update.id}`, type: 'conversation.updated', tenantId: 't1', data: update });
  });
});
