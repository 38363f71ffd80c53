// The store on the deployments chatd supports besides a plain standalone Redis: Sentinel (a
// redis-server and a sentinel this file starts) and TLS (rediss://, a self-signed certificate).
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import pino from 'pino';
import { afterAll, describe, expect, it } from 'vitest';
import { freePort, hasRedis, uniquePrefix } from '../../../test/helpers/services.js';
import { message, uid } from '../store.contract.js';
import type { TenantEvent } from '../ports.js';
import { redisOptions } from './connection.js';
import { RedisStore } from './redis-store.js';
import { eventually } from '../../../test/helpers/eventually.js';

const logger = pino({ level: 'silent' });
const canRun =
  spawnSync('redis-server', ['--version']).status === 0 && spawnSync('openssl', ['version']).status === 0 && (await hasRedis());

const listening = (port: number) =>
  new Promise<boolean>((resolve) => {
    const s = net.connect({ host: '127.0.0.1', port }, () => (s.destroy(), resolve(true)));
    s.on('error', () => resolve(false));
  });

describe.skipIf(!canRun)('redis deployments', () => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'chatd-redis-deploy-'));
  const children: ChildProcess[] = [];
  const stores: RedisStore[] = [];
  const run = (args: string[]) => {
    const c = spawn('redis-server', args, { stdio: 'ignore', cwd: dir });
    children.push(c);
    return c;
  };
  afterAll(async () => {
    await Promise.all(stores.map((s) => s.close()));
    for (const c of children) c.kill('SIGKILL');
    rmSync(dir, { recursive: true, force: true });
  });

  /** Publishes a message and a bus event through the store and checks both come back. */
  async function exercise(store: RedisStore): Promise<void> {
    const t = uid('t');
    const events: TenantEvent[] = [];
    await store.bus.subscribe(t, (e) => events.push(e));
    const m = message(t, 's');
    expect(await store.events.publishMessage(m)).toEqual({ agentOffset: 1, duplicate: false });
    expect(await store.sessions.upsert('s', { tenantId: t, userId: 'u', fingerprint: 'f' }, 60)).toBe('created');
    await eventually(() => events.length === 1, 'the message event', { retryOnError: true });
    expect(events[0]).toEqual({ type: 'message', agentOffset: 1, message: m });
  }

  it('connects through Sentinel to the master it names', async () => {
    const [masterPort, sentinelPort] = [await freePort(), await freePort()];
    run(['--port', String(masterPort), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no']);
    await eventually(() => listening(masterPort), 'the master', { retryOnError: true });
    const conf = path.join(dir, 'sentinel.conf');
    writeFileSync(
      conf,
      [
        `port ${sentinelPort}`,
        'bind 127.0.0.1',
        `dir ${dir}`,
        `sentinel monitor chatdmaster 127.0.0.1 ${masterPort} 1`,
        'sentinel down-after-milliseconds chatdmaster 60000',
      ].join('\n') + '\n',
    );
    run([conf, '--sentinel']);
    await eventually(() => listening(sentinelPort), 'the sentinel', { retryOnError: true });
    const store = new RedisStore(
      { sentinel: { name: 'chatdmaster', nodes: [`127.0.0.1:${sentinelPort}`] }, prefix: uniquePrefix('sentinel') },
      logger,
    );
    stores.push(store);
    await store.connect(20000);
    await exercise(store);
    // The data is on the master the sentinel named.
    const { Redis } = await import('ioredis');
    const direct = new Redis(masterPort, '127.0.0.1');
    direct.on('error', () => undefined);
    expect(await direct.dbsize()).toBeGreaterThan(0);
    direct.disconnect();
  });

  it('follows a Sentinel failover to the new master', async () => {
    const [masterPort, replicaPort, sentinelPort] = [await freePort(), await freePort(), await freePort()];
    const common = ['--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'];
    run(['--port', String(masterPort), ...common]);
    run(['--port', String(replicaPort), '--replicaof', '127.0.0.1', String(masterPort), ...common]);
    await eventually(async () => (await listening(masterPort)) && (await listening(replicaPort)), 'master and replica', {
      retryOnError: true,
    });
    const conf = path.join(dir, 'sentinel-failover.conf');
    writeFileSync(
      conf,
      [
        `port ${sentinelPort}`,
        'bind 127.0.0.1',
        `dir ${dir}`,
        `sentinel monitor failmaster 127.0.0.1 ${masterPort} 1`,
        'sentinel down-after-milliseconds failmaster 60000',
        'sentinel failover-timeout failmaster 10000',
      ].join('\n') + '\n',
    );
    run([conf, '--sentinel']);
    await eventually(() => listening(sentinelPort), 'the sentinel', { retryOnError: true });
    const { Redis } = await import('ioredis');
    const sentinel = new Redis(sentinelPort, '127.0.0.1');
    const replica = new Redis(replicaPort, '127.0.0.1');
    sentinel.on('error', () => undefined);
    replica.on('error', () => undefined); // the failover resets connections
    try {
      // The sentinel must know the replica, be connected to it and see its link to the master up
      // before it can promote it: SENTINEL FAILOVER answers NOGOODSLAVE until then (seen on a
      // loaded machine when it was only required to be listed).
      const promotable = async () => {
        const replicas = (await sentinel.call('SENTINEL', 'REPLICAS', 'failmaster')) as string[][];
        return replicas.some((flat) => {
          const r = new Map<string, string>();
          for (let i = 0; i + 1 < flat.length; i += 2) r.set(flat[i]!, flat[i + 1]!);
          const flags = (r.get('flags') ?? '').split(',');
          return (
            flags.includes('slave') &&
            !flags.some((f) => ['s_down', 'o_down', 'disconnected'].includes(f)) &&
            r.get('master-link-status') === 'ok'
          );
        });
      };
      await eventually(promotable, 'the sentinel to see the replica connected and in sync', { timeoutMs: 60000, retryOnError: true });
      await eventually(async () => (await replica.info('replication')).includes('master_link_status:up'), 'replication', {
        retryOnError: true,
      });
      const store = new RedisStore(
        { sentinel: { name: 'failmaster', nodes: [`127.0.0.1:${sentinelPort}`] }, prefix: uniquePrefix('failover') },
        logger,
      );
      stores.push(store);
      await store.connect(20000);
      const t = uid('t');
      expect((await store.events.publishMessage(message(t, 's'))).agentOffset).toBe(1);
      // The sentinel's own view can lag ours (its pings and INFO refreshes): it answers NOGOODSLAVE
      // until it too finds the replica promotable; any other error fails the test.
      await eventually(
        async () => {
          try {
            await sentinel.call('SENTINEL', 'FAILOVER', 'failmaster');
            return true;
          } catch (err) {
            if (/NOGOODSLAVE/.test((err as Error).message)) return false;
            throw err;
          }
        },
        'the sentinel to accept the failover',
        { timeoutMs: 60000, intervalMs: 200 },
      );
      await eventually(async () => (await replica.info('replication')).includes('role:master'), 'the replica to be promoted', {
        timeoutMs: 60000,
        retryOnError: true,
      });
      // Writes reach the new master (after READONLY from the demoted one, or a reconnect). A write
      // acknowledged by the old master just before its demotion can be lost: Redis replication is
      // asynchronous (the outbox in PostgreSQL is what makes messages durable, not Redis).
      await eventually(
        async () => {
          const m = message(t, 's');
          await store.events.publishMessage(m);
          return (await replica.exists(store.keys.published(t, m.id))) === 1;
        },
        'a write on the new master',
        { timeoutMs: 60000, retryOnError: true },
      );
    } finally {
      sentinel.disconnect();
      replica.disconnect();
    }
  });

  it('connects over TLS with rediss://', async () => {
    const [tlsPort] = [await freePort()];
    const cert = path.join(dir, 'cert.pem');
    const key = path.join(dir, 'key.pem');
    const gen = spawnSync('openssl', [
      'req',
      '-x509',
      '-newkey',
      'rsa:2048',
      '-nodes',
      '-keyout',
      key,
      '-out',
      cert,
      '-days',
      '1',
      '-subj',
      '/CN=localhost',
      '-addext',
      'subjectAltName=DNS:localhost',
    ]);
    expect(gen.status).toBe(0);
    run([
      '--port',
      '0',
      '--tls-port',
      String(tlsPort),
      '--bind',
      '127.0.0.1',
      '--save',
      '',
      '--appendonly',
      'no',
      '--tls-cert-file',
      cert,
      '--tls-key-file',
      key,
      '--tls-ca-cert-file',
      cert,
      '--tls-auth-clients',
      'no',
    ]);
    await eventually(() => listening(tlsPort), 'the TLS redis-server', { retryOnError: true });
    const url = `rediss://localhost:${tlsPort}`;
    expect(redisOptions({ url }).tls).toEqual({});
    // The test's private CA (a deployment would set NODE_EXTRA_CA_CERTS instead).
    const store = new RedisStore({ url, prefix: uniquePrefix('tls'), ioredis: { tls: { ca: readFileSync(cert) } } }, logger);
    stores.push(store);
    await store.connect(20000);
    await exercise(store);
    // Without trusting that CA the connection is refused, never downgraded to plain text.
    const untrusted = new RedisStore({ url, prefix: uniquePrefix('tls'), connectTimeoutMs: 1000 }, logger);
    stores.push(untrusted);
    await expect(untrusted.connect(1500)).rejects.toThrow();
  });
});
