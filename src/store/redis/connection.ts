// How chatd connects to Redis: standalone or Sentinel, redis:// or rediss://, and a fault policy
// that never lets a request wait on a dead Redis. Commands fail at once while disconnected
// (enableOfflineQueue: false) and after `commandTimeoutMs` when Redis stops answering, so callers get
// a DependencyError they can turn into a 503; ioredis keeps reconnecting in the background.
import { Redis, type RedisOptions } from 'ioredis';
import type { Logger } from 'pino';
import { DependencyError } from '../../errors.js';
import { SCRIPTS, type ScriptName } from './scripts.js';

export interface RedisConnectionConfig {
  /** redis:// or rediss:// URL (credentials, db and TLS come from it, also with Sentinel). */
  readonly url?: string | undefined;
  readonly sentinel?: { readonly name: string; readonly nodes: readonly string[]; readonly password?: string | undefined } | undefined;
  /** A command that takes longer fails with DependencyError (its effect may still happen). */
  readonly commandTimeoutMs?: number;
  readonly connectTimeoutMs?: number;
}

/** The ioredis client with chatd's scripts defined as commands. */
export type ScriptedRedis = Redis & {
  [K in ScriptName]: (...args: (string | number)[]) => Promise<unknown>;
};

/** ioredis options for a config; exported for tests and for tools that open their own client. */
export function redisOptions(cfg: RedisConnectionConfig): RedisOptions {
  const base: RedisOptions = {
    enableOfflineQueue: false,
    maxRetriesPerRequest: 1,
    commandTimeout: cfg.commandTimeoutMs ?? 5000,
    connectTimeout: cfg.connectTimeoutMs ?? 5000,
    // Reconnect forever, backing off to 2 s: Redis coming back must heal chatd without a restart.
    retryStrategy: (times) => Math.min(50 * 2 ** Math.min(times, 6), 2000),
    // After a Sentinel failover the old master turns replica: reconnect to the new master and resend.
    reconnectOnError: (err) => (/READONLY/.test(err.message) ? 2 : false),
    lazyConnect: true,
  };
  let fromUrl: RedisOptions = {};
  if (cfg.url) {
    const u = new URL(cfg.url);
    const db = u.pathname.length > 1 ? Number(u.pathname.slice(1)) : 0;
    if (!Number.isInteger(db) || db < 0) throw new Error(`redis.url: invalid database number in path ${u.pathname}`);
    fromUrl = {
      host: u.hostname || '127.0.0.1',
      port: u.port ? Number(u.port) : 6379,
      ...(u.username ? { username: decodeURIComponent(u.username) } : {}),
      ...(u.password ? { password: decodeURIComponent(u.password) } : {}),
      db,
      // TLS with the system's CAs (NODE_EXTRA_CA_CERTS adds a private CA); SNI from the host name.
      ...(u.protocol === 'rediss:' ? { tls: {} } : {}),
    };
  }
  if (cfg.sentinel) {
    const { host: _h, port: _p, ...rest } = fromUrl;
    return {
      ...base,
      ...rest,
      name: cfg.sentinel.name,
      sentinels: cfg.sentinel.nodes.map((n) => {
        const i = n.lastIndexOf(':');
        return { host: n.slice(0, i), port: Number(n.slice(i + 1)) };
      }),
      ...(cfg.sentinel.password !== undefined ? { password: cfg.sentinel.password } : {}),
      ...(fromUrl.tls ? { enableTLSForSentinelMode: true } : {}),
      sentinelRetryStrategy: (times) => Math.min(100 * times, 2000),
    };
  }
  return { ...base, ...fromUrl };
}

/** Creates a client (not yet connected) with the scripts defined and errors logged, never thrown. */
export function createRedisClient(options: RedisOptions, logger: Logger, label: string): ScriptedRedis {
  const client = new Redis(options);
  for (const [name, def] of Object.entries(SCRIPTS)) {
    client.defineCommand(name, { numberOfKeys: def.numberOfKeys, lua: def.lua });
  }
  // Without a listener ioredis prints every connection error; log each outage once instead.
  let down = false;
  client.on('error', (err: Error) => {
    if (!down) logger.warn({ err: { message: err.message }, connection: label }, 'redis connection error; reconnecting');
    down = true;
  });
  client.on('ready', () => {
    if (down) logger.info({ connection: label }, 'redis connection restored');
    down = false;
  });
  return client as ScriptedRedis;
}

/** Resolves when the client is ready, or rejects with DependencyError after `timeoutMs`. */
export function waitReady(client: Redis, timeoutMs: number, signal?: AbortSignal): Promise<void> {
  if (client.status === 'ready') return Promise.resolve();
  return new Promise((resolve, reject) => {
    const done = (err?: Error) => {
      clearTimeout(timer);
      client.off('ready', onReady);
      signal?.removeEventListener('abort', onAbort);
      if (err) reject(err);
      else resolve();
    };
    const onReady = () => done();
    const onAbort = () => done(new DependencyError('redis', 'aborted while waiting for the connection'));
    const timer = setTimeout(() => done(new DependencyError('redis', `not reachable within ${timeoutMs} ms`)), timeoutMs);
    client.on('ready', onReady);
    signal?.addEventListener('abort', onAbort, { once: true });
    if (client.status === 'wait') client.connect().catch(() => undefined);
  });
}

/** Runs a Redis call, turning any failure into a DependencyError (the caller answers 503). */
export async function guard<T>(what: string, fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (err) {
    if (err instanceof DependencyError) throw err;
    throw new DependencyError('redis', `${what}: ${(err as Error)?.message ?? String(err)}`, { cause: err });
  }
}
