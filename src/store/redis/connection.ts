// How chatd connects to Redis: standalone, Sentinel or Cluster, redis:// or rediss://, and a fault policy
// that never lets a request wait on a dead Redis. Commands fail at once while disconnected
// (enableOfflineQueue: false) and after `commandTimeoutMs` when Redis stops answering, so callers get
// a DependencyError they can turn into a 503; ioredis keeps reconnecting in the background.
import { Cluster, Pipeline, Redis, type ClusterOptions, type RedisOptions } from 'ioredis';
import type { Logger } from 'pino';
import { DependencyError } from '../../errors.js';
import { SCRIPTS, type ScriptName } from './scripts.js';

export interface RedisConnectionConfig {
  /** redis:// or rediss:// URL (credentials, db and TLS come from it, also with Sentinel). */
  readonly url?: string | undefined;
  readonly sentinel?: { readonly name: string; readonly nodes: readonly string[]; readonly password?: string | undefined } | undefined;
  /** Redis Cluster seeds (redis:// or rediss:// URLs; credentials and TLS from the first), instead of url/sentinel. */
  readonly cluster?: ClusterConnectionConfig | undefined;
  /** A command that takes longer fails with DependencyError (its effect may still happen). */
  readonly commandTimeoutMs?: number;
  readonly connectTimeoutMs?: number;
}

export interface ClusterConnectionConfig {
  readonly nodes: readonly string[];
  readonly password?: string | undefined;
  /** Announced host:port → host:port to dial. */
  readonly natMap?: Readonly<Record<string, string>> | undefined;
}

/** A standalone/Sentinel connection or a whole cluster: the same command API. */
export type RedisClient = Redis | Cluster;

/** An ioredis client with chatd's scripts defined as commands. */
export type Scripted<C extends RedisClient> = C & {
  [K in ScriptName]: (...args: (string | number)[]) => Promise<unknown>;
};
export type ScriptedRedis = Scripted<RedisClient>;

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

/** Where a cluster client connects, and how: the seeds and ioredis Cluster options. */
export interface ClusterSetup {
  readonly startupNodes: { host: string; port: number }[];
  readonly options: ClusterOptions;
}

/**
 * ioredis Cluster options for a config. The per-node options follow the standalone fault policy
 * (fail at once while a node is away, time out a silent one); ioredis follows MOVED/ASK itself and
 * refreshes the slot map on MOVED, on a node lost and every few seconds, so a failover or a
 * resharding heals without a restart. Sharded pub/sub: one subscriber connection per master,
 * re-created and re-subscribed by ioredis when the slot map changes.
 */
export function clusterSetup(
  cfg: ClusterConnectionConfig,
  overrides: { commandTimeoutMs?: number | undefined; connectTimeoutMs?: number } = {},
): ClusterSetup {
  const seeds = cfg.nodes.map((n) => new URL(n));
  const first = seeds[0];
  if (!first) throw new Error('redis.cluster.nodes: at least one seed node is needed');
  const password = first.password ? decodeURIComponent(first.password) : cfg.password;
  const natMap: Record<string, { host: string; port: number }> = {};
  for (const [from, to] of Object.entries(cfg.natMap ?? {})) {
    const i = to.lastIndexOf(':');
    natMap[from] = { host: to.slice(0, i), port: Number(to.slice(i + 1)) };
  }
  const commandTimeout = 'commandTimeoutMs' in overrides ? overrides.commandTimeoutMs : 5000;
  return {
    startupNodes: seeds.map((u) => ({ host: u.hostname || '127.0.0.1', port: u.port ? Number(u.port) : 6379 })),
    options: {
      enableOfflineQueue: false,
      // Keep trying: a cluster coming back (even every node at once) must heal chatd without a restart.
      clusterRetryStrategy: (times) => Math.min(50 * 2 ** Math.min(times, 6), 2000),
      // MOVED/ASK/TRYAGAIN and CLUSTERDOWN during a failover are retried this many times, then fail.
      maxRedirections: 16,
      retryDelayOnFailover: 100,
      retryDelayOnClusterDown: 100,
      retryDelayOnTryAgain: 100,
      slotsRefreshInterval: 2000,
      shardedSubscribers: true,
      lazyConnect: true,
      ...(Object.keys(natMap).length > 0 ? { natMap } : {}),
      // With TLS, keep the node host names as they are (ioredis resolves them to IPs by default), so
      // the certificate is checked against the name it was issued for (ElastiCache's advice).
      ...(first.protocol === 'rediss:'
        ? { dnsLookup: (address: string, callback: (err: null, address: string) => void) => callback(null, address) }
        : {}),
      redisOptions: {
        maxRetriesPerRequest: 1,
        ...(commandTimeout !== undefined ? { commandTimeout } : {}),
        connectTimeout: overrides.connectTimeoutMs ?? 5000,
        ...(first.username ? { username: decodeURIComponent(first.username) } : {}),
        ...(password !== undefined ? { password } : {}),
        // TLS with the system's CAs; SNI from each node's host name.
        ...(first.protocol === 'rediss:' ? { tls: {} } : {}),
      },
    },
  };
}

/** Creates a cluster client (not yet connected) with the scripts defined and errors logged, never thrown. */
export function createClusterClient(setup: ClusterSetup, logger: Logger, label: string, extra: ClusterOptions = {}): Scripted<Cluster> {
  const client = new Cluster(setup.startupNodes, { ...setup.options, ...extra });
  return defineScripts(client, logger, label);
}

/** Creates a client (not yet connected) with the scripts defined and errors logged, never thrown. */
export function createRedisClient(options: RedisOptions, logger: Logger, label: string): Scripted<Redis> {
  return defineScripts(new Redis(options), logger, label);
}

function defineScripts<C extends RedisClient>(client: C, logger: Logger, label: string): Scripted<C> {
  for (const [name, def] of Object.entries(SCRIPTS)) {
    client.defineCommand(name, { numberOfKeys: def.numberOfKeys, lua: def.lua });
  }
  scriptsOnPipelinePrototype(client);
  // Without a listener ioredis prints every connection error; log each outage once instead.
  let down = false;
  client.on('error', (err: Error & { lastNodeError?: Error }) => {
    // A cluster reports "Failed to refresh slots cache"; the node's own error (a certificate, a wrong
    // password, a refused connection) is its lastNodeError.
    const cause = err.lastNodeError?.message;
    if (!down)
      logger.warn(
        { err: { message: err.message, ...(cause ? { cause } : {}) }, connection: label },
        'redis connection error; reconnecting',
      );
    down = true;
  });
  client.on('ready', () => {
    if (down) logger.info({ connection: label }, 'redis connection restored');
    down = false;
  });
  return client as Scripted<C>;
}

/**
 * ioredis's Pipeline constructor copies every command defined on its client (defineCommand's
 * `scriptsSet`, two properties per script) onto the new pipeline, and auto-pipelining constructs a
 * pipeline for every event-loop tick that sends a command: with chatd's ~30 scripts that was ~60
 * megamorphic property stores per tick, about a tenth of the api role's CPU on the ingest path
 * (perf, `bench/results/ingest-cpu/`). Here the scripts' functions (the very ones defineCommand made:
 * EVALSHA, EVAL on NOSCRIPT) go once onto a Pipeline subclass's prototype, the client's `pipeline()`
 * builds that subclass, and `scriptsSet` is emptied so the constructor copies nothing. ioredis reads
 * `scriptsSet` nowhere else (5.x); `multi()` builds a plain Pipeline, and chatd sends no script in a
 * MULTI. Tested by the store contract suites (every script goes through auto-pipelines) and the
 * presence heartbeat's explicit pipeline.
 */
function scriptsOnPipelinePrototype(client: RedisClient): void {
  const target = client as unknown as Record<string, unknown> & { scriptsSet: Record<string, unknown> };
  class ScriptedPipeline extends Pipeline {}
  const proto = ScriptedPipeline.prototype as unknown as Record<string, unknown>;
  for (const name of Object.keys(target.scriptsSet)) {
    proto[name] = target[name];
    proto[`${name}Buffer`] = target[`${name}Buffer`];
  }
  target.scriptsSet = {};
  target['pipeline'] = function (this: RedisClient, commands?: unknown[][]) {
    const pipeline = new ScriptedPipeline(this);
    if (Array.isArray(commands)) pipeline.addBatch(commands);
    return pipeline;
  };
}

/** Resolves when the client is ready, or rejects with DependencyError after `timeoutMs`. */
export function waitReady(client: RedisClient, timeoutMs: number, signal?: AbortSignal): Promise<void> {
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
