// Faults on a redis-server this file starts itself on a free port (never the shared one): FLUSHALL
// repaired by the next heartbeat, a silent node and a SIGKILLed node swept, the bus re-subscribing
// after a Redis restart, follow surviving it, and typed errors meanwhile.
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Redis } from 'ioredis';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freePort, hasRedis, uniquePrefix } from '../../../test/helpers/services.js';
import { DependencyError } from '../../errors.js';
import type { PresenceChange, WebhookJob } from '../ports.js';
import { connection, message, uid } from '../store.contract.js';
import { RedisStore } from './redis-store.js';
import { hasRedisServerBinary, OwnRedis } from '../../../test/helpers/own-redis.js';
import { eventually } from '../../../test/helpers/eventually.js';

const logger = pino({ level: 'silent' });
const hasServerBinary = hasRedisServerBinary();
const available = hasServerBinary && (await hasRedis());

describe.skipIf(!available)('redis faults (own redis-server)', () => {
  let redis: OwnRedis;
  const stores: RedisStore[] = [];
  const open = async (prefix: string) => {
    const s = new RedisStore({ url: redis.url, prefix, connectTimeoutMs: 2000 }, logger);
    stores.push(s);
    await s.connect(10000);
    return s;
  };

  beforeAll(async () => {
    redis = new OwnRedis(await freePort());
    await redis.start();
  });
  afterAll(async () => {
    await Promise.all(stores.map((s) => s.close()));
    await redis.kill();
  });

  it('starts before its Redis and connects by itself when Redis comes up', async () => {
    const late = new OwnRedis(await freePort());
    const s = new RedisStore({ url: late.url, prefix: uniquePrefix('late'), connectTimeoutMs: 500 }, logger);
    stores.push(s);
    try {
      await expect(s.connect(500)).rejects.toBeInstanceOf(DependencyError);
      await expect(s.sessions.get('x')).rejects.toBeInstanceOf(DependencyError);
      await late.start();
      await eventually(() => s.ping().then(() => true), 'the store to connect', { retryOnError: true });
      expect(await s.sessions.upsert('x', { tenantId: 't', userId: 'u', fingerprint: 'f' }, 60)).toBe('created');
      await s.bus.subscribe('t', () => undefined);
    } finally {
      await late.kill();
    }
  });

  it('repairs presence after a FLUSHALL with the next heartbeat of each node', async () => {
    const prefix = uniquePrefix('flush');
    const [a, b] = [await open(prefix), await open(prefix)];
    const t = uid('t');
    const aliceA = connection(t, 'alice');
    const bob = connection(t, 'bob');
    const aliceB = connection(t, 'alice');
    const carol = connection(t, 'carol');
    await a.presence.add('A', aliceA, 60000);
    await a.presence.add('A', bob, 60000);
    await b.presence.add('B', aliceB, 60000);
    await b.presence.add('B', carol, 60000);
    const admin = new Redis(redis.url);
    await admin.flushall();
    admin.disconnect();
    expect(await a.presence.list(t)).toEqual([]);
    const backA = await a.presence.heartbeat('A', [aliceA, bob], 60000);
    expect(backA.map((c) => c.userId).sort()).toEqual(['alice', 'bob']);
    const backB = await b.presence.heartbeat('B', [aliceB, carol], 60000);
    expect(backB.map((c) => c.userId)).toEqual(['carol']);
    expect((await a.presence.list(t)).map((u) => u.userId).sort()).toEqual(['alice', 'bob', 'carol']);
    // Exact again across nodes: alice stays online until her last tab (on B) closes.
    expect((await a.presence.remove('A', t, aliceA.connId)).lastForUser).toBe(false);
    expect((await b.presence.remove('B', t, aliceB.connId)).lastForUser).toBe(true);
    expect(await a.presence.isOnline(t, 'alice')).toBe(false);
    expect((await a.presence.nodes(Date.now())).map((n) => n.nodeId).sort()).toEqual(['A', 'B']);
  });

  it('sweeps the connections of a node that stopped heartbeating, and only those', async () => {
    const prefix = uniquePrefix('silent');
    const [live, silent] = [await open(prefix), await open(prefix)];
    const t = uid('t');
    const mine = connection(t, 'dora');
    const shared = connection(t, 'eve');
    const sharedSilent = connection(t, 'eve');
    const lonely = connection(t, 'fay');
    // The live node's expiry is generous so a stalled test process is not mistaken for a dead node.
    await live.presence.add('live', mine, 5000);
    await live.presence.add('live', shared, 5000);
    await silent.presence.add('silent', sharedSilent, 1500);
    await silent.presence.add('silent', lonely, 1500);
    const timer = setInterval(() => void live.presence.heartbeat('live', [mine, shared], 5000).catch(() => undefined), 200);
    try {
      const swept: PresenceChange[] = [];
      await eventually(
        async () => {
          swept.push(...(await live.presence.sweep(Date.now())).filter((c) => c.tenantId === t));
          return swept.length > 0;
        },
        'the silent node to be swept',
        { retryOnError: true },
      );
      expect(swept).toEqual([{ tenantId: t, userId: 'fay', sessionId: lonely.sessionId }]);
      expect((await live.presence.list(t)).map((u) => u.userId).sort()).toEqual(['dora', 'eve']);
      await eventually(
        async () => !(await live.presence.nodes(Date.now())).some((n) => n.nodeId === 'silent'),
        'the node registry to drop it',
        { retryOnError: true },
      );
    } finally {
      clearInterval(timer);
    }
  });

  it('sweeps the connections of a node process killed with SIGKILL', async () => {
    const prefix = uniquePrefix('sigkill');
    const live = await open(prefix);
    const t = uid('t');
    const stay = connection(t, 'gus');
    await live.presence.add('live', stay, 60000);
    const dir = mkdtempSync(path.join(os.tmpdir(), 'chatd-presence-node-'));
    const { build } = await import('esbuild');
    const out = path.join(dir, 'node.mjs');
    await build({
      entryPoints: [path.resolve(__dirname, 'presence-node.fixture.ts')],
      bundle: true,
      platform: 'node',
      format: 'esm',
      target: 'node20',
      outfile: out,
      logLevel: 'silent',
      banner: { js: "import { createRequire } from 'node:module'; const require = createRequire(import.meta.url);" },
    });
    const child = spawn(process.execPath, [out, redis.url, prefix, 'doomed', t, 'hal,gus', '200', '3000'], {
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    try {
      let stdout = '';
      child.stdout!.on('data', (d: Buffer) => (stdout += d.toString()));
      await eventually(() => stdout.includes('READY'), 'the child node', { retryOnError: true });
      expect((await live.presence.list(t)).map((u) => u.userId).sort()).toEqual(['gus', 'hal']);
      const exited = new Promise((r) => child.once('exit', r));
      child.kill('SIGKILL');
      await exited;
      const swept: PresenceChange[] = [];
      await eventually(
        async () => {
          swept.push(...(await live.presence.sweep(Date.now())).filter((c) => c.tenantId === t));
          return swept.length > 0;
        },
        'the killed node to be swept',
        { retryOnError: true },
      );
      expect(swept).toEqual([{ tenantId: t, userId: 'hal', sessionId: 's-hal' }]);
      expect((await live.presence.list(t)).map((u) => u.userId)).toEqual(['gus']);
    } finally {
      child.kill('SIGKILL');
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('fails with DependencyError while Redis is down, then re-subscribes the bus and tells its listeners', async () => {
    const prefix = uniquePrefix('restart');
    const s = await open(prefix);
    const t = uid('t');
    const events: string[] = [];
    let resubscribed = 0;
    s.bus.onResubscribed(() => resubscribed++);
    await s.bus.subscribe(t, (e) => events.push(e.type === 'broadcast' ? e.event : e.type));
    const dropped = uid('t');
    const stopDropped = await s.bus.subscribe(dropped, () => undefined);
    const followed: WebhookJob[] = [];
    const ac = new AbortController();
    // From the start: this prefix's stream is empty, and '$' would race with the publish below.
    const following = s.webhooks.follow('0-0', (j) => followed.push(j), ac.signal);
    await s.bus.publish(t, { type: 'broadcast', event: 'before', data: null });
    await eventually(() => events.includes('before'), 'the first event', { retryOnError: true });

    await redis.kill();
    await eventually(
      async () => {
        try {
          await s.sessions.get('x');
          return false;
        } catch (err) {
          return err instanceof DependencyError;
        }
      },
      'a DependencyError',
      { retryOnError: true },
    );
    await expect(s.ping()).rejects.toBeInstanceOf(DependencyError);
    await expect(s.bus.publish(t, { type: 'broadcast', event: 'lost', data: null })).rejects.toBeInstanceOf(DependencyError);
    expect(resubscribed).toBe(0);
    await stopDropped(); // unsubscribed while Redis is away: must not come back with the reconnect

    await redis.start();
    await eventually(() => resubscribed === 1, 'onResubscribed', { retryOnError: true });
    const admin = new Redis(redis.url);
    expect(await admin.pubsub('CHANNELS', `${prefix}*`)).toEqual([`${prefix}t:${t}:events`]);
    admin.disconnect();
    await s.ping();
    await s.bus.publish(t, { type: 'broadcast', event: 'after', data: null });
    await eventually(() => events.includes('after'), 'an event after the restart', { retryOnError: true });
    expect(events).toEqual(['before', 'after']);
    // Scripts are reloaded by themselves (NOSCRIPT → EVAL), and follow resumed on its own.
    const m = message(t, 's');
    expect(await s.events.publishMessage(m)).toEqual({ agentOffset: 1, duplicate: false });
    await eventually(() => followed.some((j) => j.messageId === m.id), 'follow to see the job', { retryOnError: true });
    await eventually(() => events.includes('message'), 'the message event', { retryOnError: true });
    ac.abort();
    await following;
  });
});
