// The relay with the real stores (not the recording stand-in): whatever mix of publishNow and
// sweeps publishes a message — including after the committing process was SIGKILLed — the webhook
// stream gets exactly one job and the agent stream one entry per message.
import fs from 'node:fs';
import pino from 'pino';
import { afterAll, describe, expect, it } from 'vitest';
import { DATABASE_URL, dropSchema, has, REDIS_URL, uniquePrefix, uniqueSchema } from '../../test/helpers/services.js';
import { MemoryStore } from '../store/memory/memory-store.js';
import { RedisStore } from '../store/redis/redis-store.js';
import { msg } from './database.contract.js';
import { openDatabase } from './index.js';
import { DbOutboxRelay } from './outbox-relay.js';
import { spawnChild } from '../../test/helpers/db/child.js';
import { testDbConfig } from '../../test/helpers/db/config.js';
import { freshPgliteDir } from '../../test/helpers/db/pglite-template.js';

const silent = pino({ level: 'silent' });

describe('outbox relay with the memory store (PGlite)', () => {
  const dirs: string[] = [];
  afterAll(() => dirs.forEach((d) => fs.rmSync(d, { recursive: true, force: true })));

  it('publishNow racing sweeps still yields one webhook job and one agent entry per message', async () => {
    const dir = await freshPgliteDir('relay-mem');
    dirs.push(dir);
    const db = await openDatabase(testDbConfig({ embeddedDir: dir }), silent);
    const store = new MemoryStore({}, silent);
    const relay = new DbOutboxRelay(db.outbox, store.events, silent, { staleAfterMs: 0, sweepIntervalMs: 5 }).start();
    try {
      const ids: string[] = [];
      for (let i = 0; i < 20; i++) {
        const r = await db.messages.accept(msg('relay-mem', 'conv', `m${i}`));
        if (r.kind !== 'created') throw new Error(r.kind);
        ids.push(r.message.id);
        relay.publishNow(r.message, r.outboxId);
        if (i % 3 === 0) relay.publishNow(r.message, r.outboxId); // a doubled fast path
      }
      await expect.poll(() => db.outbox.pendingCount(), { timeout: 30_000 }).toBe(0);
      const jobs = await store.webhooks.range('-', '+', 1000);
      expect(jobs.map((j) => j.messageId)).toEqual(ids);
      expect(await store.events.agentHead('relay-mem')).toBe(20);
    } finally {
      await relay.stop();
      await store.close();
      await db.close();
    }
  });
});

describe.skipIf(!((await has('postgres')) && (await has('redis'))))('outbox relay with Redis (PostgreSQL)', () => {
  const schema = uniqueSchema('relay');
  afterAll(async () => {
    await dropSchema(schema);
  });

  it('after a SIGKILL between commit and publish, another node publishes each message once to meta:webhook_jobs', async () => {
    const config = testDbConfig({ url: DATABASE_URL, schema, autoMigrate: true });
    const db = await openDatabase(config, silent);
    const store = new RedisStore({ url: REDIS_URL, prefix: uniquePrefix('relay') }, silent);
    await store.connect();
    const child = await spawnChild('db-child', { CHATD_TEST_DB: JSON.stringify(config) });
    try {
      await child.next((m) => m.event === 'ready');
      child.send({ op: 'commit-no-publish', tenant: 'relay-redis', session: 'killed', count: 6 });
      const { ids } = await child.next<{ ids: string[] }>((m) => m.event === 'committed');
      await child.kill('SIGKILL');
      // Two nodes' relays sweep at once, and one of them also re-publishes through the fast path.
      const r1 = new DbOutboxRelay(db.outbox, store.events, silent, { staleAfterMs: 0, sweepIntervalMs: 20 }).start();
      const db2 = await openDatabase(config, silent);
      const r2 = new DbOutboxRelay(db2.outbox, store.events, silent, { staleAfterMs: 0, sweepIntervalMs: 20 }).start();
      try {
        const page = await db.messages.history({ tenantId: 'relay-redis', sessionId: 'killed', limit: 10 });
        for (const m of page.messages) r1.publishNow(m, m.id);
        await expect.poll(() => db.outbox.pendingCount(), { timeout: 30_000 }).toBe(0);
        const jobs = await store.webhooks.range('-', '+', 1000);
        expect(jobs.map((j) => j.messageId)).toEqual(ids);
        expect(jobs.every((j) => j.type === 'message.created' && j.tenantId === 'relay-redis' && j.sessionId === 'killed')).toBe(true);
        expect(await store.events.agentHead('relay-redis')).toBe(6);
      } finally {
        await Promise.all([r1.stop(), r2.stop()]);
        await db2.close();
      }
    } finally {
      await child.kill('SIGKILL');
      await store.close();
      await db.close();
    }
  });
});
