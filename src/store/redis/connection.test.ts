// How config maps to ioredis options: standalone or Sentinel, redis:// or rediss://, and the fault
// policy (no offline queue, bounded retries and command time).
import { describe, expect, it } from 'vitest';
import { pino } from 'pino';
import { clusterSetup, createRedisClient, redisOptions } from './connection.js';
import { SCRIPTS } from './scripts.js';

describe('redisOptions', () => {
  it('reads host, port, credentials and db from a redis:// URL, with the fail-fast policy', () => {
    const o = redisOptions({ url: 'redis://user:p%40ss@cache.internal:6380/2' });
    expect(o).toMatchObject({ host: 'cache.internal', port: 6380, username: 'user', password: 'p@ss', db: 2 });
    expect(o.tls).toBeUndefined();
    expect(o.enableOfflineQueue).toBe(false);
    expect(o.maxRetriesPerRequest).toBe(1);
    expect(o.commandTimeout).toBeGreaterThan(0);
    expect(o.retryStrategy!(1000)).toBe(2000); // never gives up: reconnects by itself
  });

  it('turns TLS on for rediss://', () => {
    const o = redisOptions({ url: 'rediss://:secret@redis.example.com' });
    expect(o).toMatchObject({ host: 'redis.example.com', port: 6379, password: 'secret', db: 0, tls: {} });
  });

  it('uses Sentinel nodes and master name, keeping credentials, db and TLS from the URL', () => {
    const o = redisOptions({
      url: 'rediss://:pw@ignored-host:1/3',
      sentinel: { name: 'mymaster', nodes: ['10.0.0.1:26379', 'sentinel-b:26380'] },
    });
    expect(o).toMatchObject({
      name: 'mymaster',
      sentinels: [
        { host: '10.0.0.1', port: 26379 },
        { host: 'sentinel-b', port: 26380 },
      ],
      password: 'pw',
      db: 3,
      tls: {},
      enableTLSForSentinelMode: true,
    });
    expect(o.host).toBeUndefined();
    expect(redisOptions({ sentinel: { name: 'm', nodes: ['s:1'], password: 'master-pw' } }).password).toBe('master-pw');
  });

  it('refuses a database that is not a number', () => {
    expect(() => redisOptions({ url: 'redis://h/x' })).toThrow(/database/);
  });
});

describe('clusterSetup', () => {
  it('takes seeds, credentials and TLS from the URLs, a NAT map, the fail-fast policy and sharded subscribers', () => {
    const c = clusterSetup({
      nodes: ['rediss://user:p%40ss@10.0.0.1:7000', 'rediss://10.0.0.2'],
      natMap: { '10.0.0.1:7000': 'public.example:17000' },
    });
    expect(c.startupNodes).toEqual([
      { host: '10.0.0.1', port: 7000 },
      { host: '10.0.0.2', port: 6379 },
    ]);
    expect(c.options).toMatchObject({
      enableOfflineQueue: false,
      shardedSubscribers: true,
      natMap: { '10.0.0.1:7000': { host: 'public.example', port: 17000 } },
    });
    expect(c.options.redisOptions).toMatchObject({ username: 'user', password: 'p@ss', tls: {}, maxRetriesPerRequest: 1 });
    expect(c.options.clusterRetryStrategy!(1000)).toBe(2000); // never gives up
    // TLS: host names are not resolved to IPs before connecting (the certificate names the host).
    let kept: string | undefined;
    c.options.dnsLookup!('clustercfg.example.cache.amazonaws.com', (_err, address) => (kept = address));
    expect(kept).toBe('clustercfg.example.cache.amazonaws.com');
    // The configured password when the URLs carry none; no TLS for redis://.
    const plain = clusterSetup({ nodes: ['redis://h:7000'], password: 'from-config' });
    expect(plain.options.redisOptions).toMatchObject({ password: 'from-config' });
    expect(plain.options.redisOptions?.tls).toBeUndefined();
    expect(plain.options.dnsLookup).toBeUndefined();
  });
});

describe('the scripts on pipelines', () => {
  it('a pipeline (auto-pipelining builds one per tick) has every script from its prototype and copies none at construction', () => {
    const client = createRedisClient({ lazyConnect: true, enableAutoPipelining: true }, pino({ level: 'silent' }), 'test');
    const pipe = client.pipeline() as unknown as Record<string, unknown>;
    for (const name of Object.keys(SCRIPTS)) {
      expect(typeof pipe[name], name).toBe('function');
      expect(pipe[name], name).toBe((client as unknown as Record<string, unknown>)[name]);
      expect(Object.hasOwn(pipe, name), name).toBe(false);
    }
    client.disconnect();
  });
});
