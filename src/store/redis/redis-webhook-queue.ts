// The Redis adapter of the webhook queue. Every api node joins one consumer group
// (`chatd-webhooks`) on `meta:webhook_jobs`; retries live in the sorted set `meta:webhook_retry`
// (score = due time, member = the self-contained RetryItem JSON) and dead deliveries in the stream
// `meta:webhook_dead`. Multi-key steps are Lua scripts, so each is atomic. All keys carry
// `redis.prefix`. On Redis Cluster the companions are tagged with the stream's name
// (`x:{meta:webhook_jobs}:retry|dead|epoch`), so every script runs in the stream's one slot.
import { createHash } from 'node:crypto';
import type { Logger } from 'pino';
import { DependencyError } from '../../errors.js';
import {
  clusterSetup,
  createClusterClient,
  createRedisClient,
  redisOptions,
  waitReady,
  type RedisClient,
  type RedisConnectionConfig,
} from './connection.js';
import { redisKeys } from './keys.js';
import { CLAIM_EPOCH } from './scripts.js';
import { compareStreamIds, decodeRetry, encodeRetry, parseJobFields, replayItem } from '../webhook-jobs.js';
import type { WebhookJob, ClaimedRetry, DeadEntry, DeadInput, DeadReason, ScheduledRetry, Settlement, WebhookQueue } from '../ports.js';

export const WEBHOOK_GROUP = 'chatd-webhooks';

export interface RedisQueueKeys {
  readonly jobs: string;
  readonly retry: string;
  readonly dead: string;
  /** The data epoch: a random id written once (SET NX); gone = Redis lost its data (redis-data-epoch.ts). */
  readonly epoch: string;
}

export const webhookKeys = (prefix: string, layout: 'standalone' | 'cluster' = 'standalone'): RedisQueueKeys => {
  const k = redisKeys(prefix, layout);
  return {
    jobs: k.webhookJobs,
    retry: k.webhookRetry,
    dead: k.webhookDead,
    epoch: layout === 'cluster' ? `${prefix}x:{${k.webhookJobs}}:epoch` : `${prefix}meta:webhook_epoch`,
  };
};

/** What Redis holds of the webhook promise at one instant (RedisWebhookQueue.snapshot). */
export interface QueueSnapshot {
  /** The data epoch, or null when the key is missing (a Redis that lost its data, or a new one). */
  readonly epoch: string | null;
  /**
   * The oldest `createdAt` among jobs not yet settled — pending in the group, not yet read by it,
   * or waiting in the retry set — or, when everything is settled, the newest job's; null: no job at all.
   */
  readonly oldestUnsettled: string | null;
  readonly retries: number;
  readonly dead: number;
}

// XACK only when `consumer` still owns the entry; schedule retries and dead-letter in one step.
// KEYS: jobs, retry, dead. ARGV: group, consumer, entryId, deadMaxLen, nRetry, nDead,
// nRetry × (score, member), nDead × (deliveryId, tenantId, endpointId, messageId, reason, error, failedAt, attempts, item).
const SETTLE = `
local owned = redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[3], ARGV[3], 1, ARGV[2])
if #owned == 0 then return 0 end
local i = 7
for r = 1, tonumber(ARGV[5]) do
  redis.call('ZADD', KEYS[2], ARGV[i], ARGV[i + 1])
  i = i + 2
end
for d = 1, tonumber(ARGV[6]) do
  redis.call('XADD', KEYS[3], 'MAXLEN', '~', ARGV[4], '*',
    'deliveryId', ARGV[i], 'tenantId', ARGV[i + 1], 'endpointId', ARGV[i + 2], 'messageId', ARGV[i + 3],
    'reason', ARGV[i + 4], 'error', ARGV[i + 5], 'failedAt', ARGV[i + 6], 'attempts', ARGV[i + 7], 'item', ARGV[i + 8])
  i = i + 9
end
redis.call('XACK', KEYS[1], ARGV[1], ARGV[3])
return 1
`;

// Lease due retries: re-score them to the lease's end, so no other dispatcher sees them due.
// KEYS: retry. ARGV: now, leaseUntil, count.
const CLAIM_RETRIES = `
local items = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[3]))
for _, m in ipairs(items) do redis.call('ZADD', KEYS[1], 'XX', ARGV[2], m) end
return items
`;

// ZREM wins: only the dispatcher that removes the member writes its successor.
// KEYS: retry, dead. ARGV: member, mode ('done'|'retry'|'dead'), deadMaxLen, then
// retry: score, member; dead: the nine dead fields as in SETTLE.
const SETTLE_RETRY = `
if redis.call('ZREM', KEYS[1], ARGV[1]) == 0 then return 0 end
if ARGV[2] == 'retry' then
  redis.call('ZADD', KEYS[1], ARGV[4], ARGV[5])
elseif ARGV[2] == 'dead' then
  redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[3], '*',
    'deliveryId', ARGV[4], 'tenantId', ARGV[5], 'endpointId', ARGV[6], 'messageId', ARGV[7],
    'reason', ARGV[8], 'error', ARGV[9], 'failedAt', ARGV[10], 'attempts', ARGV[11], 'item', ARGV[12])
end
return 1
`;

// XDEL wins: a dead entry is replayed once even if two operators replay it at the same time.
// KEYS: dead, retry. ARGV: id, score, member.
const REPLAY = `
if redis.call('XDEL', KEYS[1], ARGV[1]) == 0 then return 0 end
redis.call('ZADD', KEYS[2], ARGV[2], ARGV[3])
return 1
`;

const ACK_MANY = `return redis.call('XACK', KEYS[1], ARGV[1], unpack(ARGV, 2))`;

// One consistent read of what is unsettled, with the epoch it belongs to (so a snapshot taken just
// after a restart is recognized as one of the new, empty Redis). Scans at most ARGV[2] entries of
// each part: the group's pending list, the entries after its last-delivered-id, the retry set.
// createdAt values are ISO-8601 UTC strings of one format, so string order is time order.
// KEYS: jobs, retry, dead, epoch. ARGV: group, scanLimit.
const SNAPSHOT = `
local n = tonumber(ARGV[2])
local oldest = false
local function consider(c)
  if c and (not oldest or c < oldest) then oldest = c end
end
local function fromFields(fields)
  for i = 1, #fields, 2 do if fields[i] == 'createdAt' then consider(fields[i + 1]) end end
end
local epoch = redis.call('GET', KEYS[4])
local last = nil
local ok, groups = pcall(redis.call, 'XINFO', 'GROUPS', KEYS[1])
if ok then
  for _, g in ipairs(groups) do
    local f = {}
    for i = 1, #g, 2 do f[g[i]] = g[i + 1] end
    if f['name'] == ARGV[1] then last = f['last-delivered-id'] end
  end
end
if last then
  for _, p in ipairs(redis.call('XPENDING', KEYS[1], ARGV[1], '-', '+', n)) do
    local e = redis.call('XRANGE', KEYS[1], p[1], p[1])
    if e[1] then fromFields(e[1][2]) end
  end
  for _, e in ipairs(redis.call('XRANGE', KEYS[1], '(' .. last, '+', 'COUNT', n)) do fromFields(e[2]) end
elseif ok or redis.call('EXISTS', KEYS[1]) == 1 then
  for _, e in ipairs(redis.call('XRANGE', KEYS[1], '-', '+', 'COUNT', n)) do fromFields(e[2]) end
end
for _, m in ipairs(redis.call('ZRANGE', KEYS[2], 0, n - 1)) do
  local okj, item = pcall(cjson.decode, m)
  if okj and type(item) == 'table' and type(item.createdAt) == 'string' then consider(item.createdAt) end
end
if not oldest then
  local tail = redis.call('XREVRANGE', KEYS[1], '+', '-', 'COUNT', 1)
  if tail[1] then fromFields(tail[1][2]) end
end
return {epoch or false, oldest, redis.call('ZCARD', KEYS[2]), redis.call('XLEN', KEYS[3])}
`;

const shas = new Map<string, string>();
const sha1 = (lua: string): string => {
  let h = shas.get(lua);
  if (!h) shas.set(lua, (h = createHash('sha1').update(lua).digest('hex')));
  return h;
};

const deadArgs = (d: DeadInput): string[] => [
  d.item.deliveryId,
  d.item.tenantId,
  d.item.endpointId,
  d.item.messageId,
  d.reason,
  d.error,
  String(d.failedAt),
  String(d.item.attempt),
  encodeRetry(d.item),
];

type Cmd = Pick<
  RedisClient,
  | 'eval'
  | 'evalsha'
  | 'xadd'
  | 'xgroup'
  | 'xautoclaim'
  | 'xclaim'
  | 'zcard'
  | 'xlen'
  | 'xrange'
  | 'xrevrange'
  | 'xinfo'
  | 'zadd'
  | 'quit'
  | 'disconnect'
>;
type Blocking = Pick<RedisClient, 'xreadgroup' | 'quit' | 'disconnect'>;

export interface RedisQueueOptions {
  /** Runs commands. */
  readonly redis: Cmd;
  /** Blocks on XREADGROUP (a connection of its own). */
  readonly blocking: Blocking;
  readonly prefix: string;
  /** The key layout (cluster: companions tagged with the stream's slot). */
  readonly layout?: 'standalone' | 'cluster';
  readonly deadMaxLen: number;
  /**
   * Where a newly created group starts: '$' (default) = jobs appended from now on. Every api node
   * creates the group before it listens (when Redis is up at start), so no job accepted by a
   * webhook-enabled deployment is missed, while turning webhooks on for the first time does not replay the stream's history
   * (up to `streamMaxLen` old messages) to a brand-new endpoint. The group persists: jobs appended
   * while every dispatcher is down are delivered when one comes back.
   */
  readonly startId?: '$' | '0';
}

function wrap(err: unknown, what: string): never {
  if (err instanceof DependencyError) throw err;
  throw new DependencyError('redis', `${what}: ${(err as Error)?.message ?? String(err)}`, { cause: err });
}

export class RedisWebhookQueue implements WebhookQueue {
  readonly kind = 'redis' as const;
  readonly keys: RedisQueueKeys;
  private closed = false;

  constructor(private readonly opts: RedisQueueOptions) {
    this.keys = webhookKeys(opts.prefix, opts.layout);
  }

  /** EVALSHA, falling back to EVAL when Redis does not have the script yet (or lost it in a restart). */
  private async script(lua: string, numKeys: number, ...args: (string | number)[]): Promise<unknown> {
    try {
      return await this.opts.redis.evalsha(sha1(lua), numKeys, ...args);
    } catch (err) {
      if (!String((err as Error)?.message).startsWith('NOSCRIPT')) throw err;
      return this.opts.redis.eval(lua, numKeys, ...args);
    }
  }

  /**
   * Joins (creates if missing) the consumer group. `startId` overrides the configured start: the
   * NOGROUP path and the loss guard pass '0' — a group missing while the dispatcher runs means the
   * stream was deleted or Redis lost its data, so the stream holds only jobs appended since (by
   * the relay's XADD, which recreates the stream before the group exists); '$' would skip them.
   */
  async init(startId: '$' | '0' = this.opts.startId ?? '$'): Promise<void> {
    try {
      await this.opts.redis.xgroup('CREATE', this.keys.jobs, WEBHOOK_GROUP, startId, 'MKSTREAM');
    } catch (err) {
      if (!String((err as Error).message).includes('BUSYGROUP')) wrap(err, 'creating the webhook consumer group');
    }
    await this.pruneConsumers().catch(() => undefined);
  }

  /** Writes `candidate` as the data epoch unless one is there; returns the one in place. */
  async claimEpoch(candidate: string): Promise<string> {
    try {
      return String(await this.script(CLAIM_EPOCH.lua, 1, this.keys.epoch, candidate));
    } catch (err) {
      wrap(err, 'claiming the webhook data epoch');
    }
  }

  /** What is unsettled now, with the epoch it belongs to (one atomic read; each part scanned up to `scanLimit`). */
  async snapshot(scanLimit = 2000): Promise<QueueSnapshot> {
    try {
      const [epoch, oldest, retries, dead] = (await this.script(
        SNAPSHOT,
        4,
        this.keys.jobs,
        this.keys.retry,
        this.keys.dead,
        this.keys.epoch,
        WEBHOOK_GROUP,
        scanLimit,
      )) as [string | null, string | null, number, number];
      return { epoch: epoch || null, oldestUnsettled: oldest || null, retries: Number(retries), dead: Number(dead) };
    } catch (err) {
      wrap(err, 'reading the webhook queue snapshot');
    }
  }

  /**
   * Appends jobs again (the loss guard's re-publish), with the fields PUBLISH_MESSAGE writes. No
   * idempotency marker: a message the relay still publishes gets a second job, which its stable
   * delivery id lets receivers drop.
   */
  async appendJobs(jobs: readonly Omit<WebhookJob, 'id'>[], maxLen: number): Promise<void> {
    try {
      await Promise.all(
        jobs.map((j) =>
          this.opts.redis.xadd(
            this.keys.jobs,
            'MAXLEN',
            '~',
            maxLen,
            '*',
            'type',
            j.type,
            'tenantId',
            j.tenantId,
            'sessionId',
            j.sessionId,
            'messageId',
            j.messageId,
            'createdAt',
            j.createdAt,
            'payload',
            j.payload,
          ),
        ),
      );
    } catch (err) {
      wrap(err, 'appending webhook jobs');
    }
  }

  /** Every process joins under a new consumer name: forget old ones with nothing pending, idle a day. */
  private async pruneConsumers(): Promise<void> {
    const rows = (await this.opts.redis.xinfo('CONSUMERS', this.keys.jobs, WEBHOOK_GROUP)) as unknown[][];
    for (const row of rows) {
      const f: Record<string, unknown> = {};
      for (let i = 0; i + 1 < row.length; i += 2) f[String(row[i])] = row[i + 1];
      if (Number(f.pending) === 0 && Number(f.idle) > 86_400_000) {
        await this.opts.redis.xgroup('DELCONSUMER', this.keys.jobs, WEBHOOK_GROUP, String(f.name));
      }
    }
  }

  async readNew(consumer: string, count: number, blockMs: number): Promise<WebhookJob[]> {
    if (this.closed) return [];
    let res: unknown;
    try {
      res = await this.opts.blocking.xreadgroup(
        'GROUP',
        WEBHOOK_GROUP,
        consumer,
        'COUNT',
        count,
        'BLOCK',
        blockMs,
        'STREAMS',
        this.keys.jobs,
        '>',
      );
    } catch (err) {
      if (this.closed) return [];
      if (String((err as Error).message).includes('NOGROUP')) {
        // The stream or group is gone (Redis lost its data, or an operator reset): recreate it at
        // '0', so the jobs appended since — the relay's XADD recreated the stream — are delivered.
        await this.init('0');
        return [];
      }
      wrap(err, 'reading webhook jobs');
    }
    return this.jobsFrom(res as [string, [string, string[] | null][]][] | null);
  }

  /** Entries as jobs; a malformed one keeps its id with an empty tenant, so the dispatcher logs and acknowledges it. */
  private jobsFrom(res: [string, [string, string[] | null][]][] | null): WebhookJob[] {
    const jobs: WebhookJob[] = [];
    for (const [, entries] of res ?? []) {
      for (const [id, fields] of entries) {
        jobs.push(
          parseJobFields(id, fields) ?? {
            id,
            type: 'message.created',
            tenantId: '',
            sessionId: '',
            messageId: '',
            createdAt: '',
            payload: '',
          },
        );
      }
    }
    return jobs;
  }

  async claimStale(consumer: string, minIdleMs: number, count: number): Promise<{ jobs: WebhookJob[]; lost: string[] }> {
    let res: unknown;
    try {
      res = await this.opts.redis.xautoclaim(this.keys.jobs, WEBHOOK_GROUP, consumer, minIdleMs, '0-0', 'COUNT', count);
    } catch (err) {
      if (String((err as Error).message).includes('NOGROUP')) return { jobs: [], lost: [] };
      wrap(err, 'claiming stale webhook jobs');
    }
    // Redis 7: [nextCursor, [[id, fields]...], [deletedIds...]] (trimmed entries leave the PEL);
    // Redis 6.2 returns trimmed entries with nil fields and keeps them pending: acknowledge those.
    const [, entries, deleted] = res as [string, [string, string[] | null][], string[] | undefined];
    const live = entries.filter((e) => e[1] !== null);
    const nil = entries.filter((e) => e[1] === null).map((e) => e[0]);
    if (nil.length > 0) await this.ackMany(nil);
    return { jobs: this.jobsFrom([[this.keys.jobs, live]]), lost: [...(deleted ?? []), ...nil] };
  }

  private async ackMany(ids: readonly string[]): Promise<void> {
    try {
      await this.script(ACK_MANY, 1, this.keys.jobs, WEBHOOK_GROUP, ...ids);
    } catch (err) {
      wrap(err, 'acknowledging trimmed webhook jobs');
    }
  }

  async keepAlive(consumer: string, entryIds: readonly string[]): Promise<void> {
    if (entryIds.length === 0) return;
    try {
      // XCLAIM to ourselves with JUSTID resets the idle time without touching the delivery count.
      await this.opts.redis.xclaim(this.keys.jobs, WEBHOOK_GROUP, consumer, 0, ...entryIds, 'JUSTID');
    } catch (err) {
      wrap(err, 'refreshing in-flight webhook jobs');
    }
  }

  async settle(consumer: string, entryId: string, outcome: Settlement): Promise<boolean> {
    const args: (string | number)[] = [WEBHOOK_GROUP, consumer, entryId, this.opts.deadMaxLen, outcome.retries.length, outcome.dead.length];
    for (const r of outcome.retries) args.push(r.dueAt, encodeRetry(r.item));
    for (const d of outcome.dead) args.push(...deadArgs(d));
    try {
      const res = await this.script(SETTLE, 3, this.keys.jobs, this.keys.retry, this.keys.dead, ...args);
      return res === 1;
    } catch (err) {
      wrap(err, 'settling a webhook job');
    }
  }

  async claimDueRetries(now: number, leaseUntil: number, count: number): Promise<ClaimedRetry[]> {
    let members: string[];
    try {
      members = (await this.script(CLAIM_RETRIES, 1, this.keys.retry, now, leaseUntil, count)) as string[];
    } catch (err) {
      wrap(err, 'claiming due webhook retries');
    }
    const out: ClaimedRetry[] = [];
    for (const member of members) {
      const item = decodeRetry(member);
      // An unreadable member (written by a future version?) is left alone, leased; logged by the caller.
      if (item) out.push({ member, item });
    }
    return out;
  }

  async extendRetryLeases(members: readonly string[], leaseUntil: number): Promise<void> {
    if (members.length === 0) return;
    const args: (string | number)[] = [];
    for (const m of members) args.push(leaseUntil, m);
    try {
      await this.opts.redis.zadd(this.keys.retry, 'XX', ...args);
    } catch (err) {
      wrap(err, 'extending webhook retry leases');
    }
  }

  async settleRetry(member: string, next: { retry?: ScheduledRetry; dead?: DeadInput }): Promise<boolean> {
    const args: (string | number)[] = [member];
    if (next.retry) args.push('retry', this.opts.deadMaxLen, next.retry.dueAt, encodeRetry(next.retry.item));
    else if (next.dead) args.push('dead', this.opts.deadMaxLen, ...deadArgs(next.dead));
    else args.push('done', this.opts.deadMaxLen);
    try {
      return (await this.script(SETTLE_RETRY, 2, this.keys.retry, this.keys.dead, ...args)) === 1;
    } catch (err) {
      wrap(err, 'settling a webhook retry');
    }
  }

  async retrySize(): Promise<number> {
    try {
      return await this.opts.redis.zcard(this.keys.retry);
    } catch (err) {
      wrap(err, 'reading the webhook retry set');
    }
  }

  async deadSize(): Promise<number> {
    try {
      return await this.opts.redis.xlen(this.keys.dead);
    } catch (err) {
      wrap(err, 'reading the webhook dead stream');
    }
  }

  async listDead(count: number, afterId?: string): Promise<DeadEntry[]> {
    let rows: [string, string[]][];
    try {
      rows = await this.opts.redis.xrange(this.keys.dead, afterId ? `(${afterId}` : '-', '+', 'COUNT', count);
    } catch (err) {
      wrap(err, 'reading the webhook dead stream');
    }
    return parseDeadRows(rows);
  }

  async replayDead(ids: readonly string[] | 'all', now: number): Promise<string[]> {
    const replayed: string[] = [];
    const replayOne = async (e: DeadEntry) => {
      try {
        const res = await this.script(REPLAY, 2, this.keys.dead, this.keys.retry, e.id, now, encodeRetry(replayItem(e.item, now)));
        if (res === 1) replayed.push(e.id);
      } catch (err) {
        wrap(err, 'replaying a dead webhook delivery');
      }
    };
    if (ids === 'all') {
      // Only entries present when the replay started: a delivery that dies again meanwhile is not looped.
      const last = (await this.listDeadTail())?.id;
      if (!last) return [];
      let after: string | undefined;
      for (;;) {
        const page = (await this.listDead(200, after)).filter((e) => compareStreamIds(e.id, last) <= 0);
        for (const e of page) await replayOne(e);
        if (page.length < 200) break;
        after = page[page.length - 1]!.id;
      }
      return replayed;
    }
    for (const id of ids) {
      let rows: [string, string[]][];
      try {
        rows = await this.opts.redis.xrange(this.keys.dead, id, id);
      } catch (err) {
        wrap(err, 'reading the webhook dead stream');
      }
      if (rows.length === 0) continue;
      const [entry] = parseDeadRows(rows);
      if (entry) await replayOne(entry);
    }
    return replayed;
  }

  private async listDeadTail(): Promise<{ id: string } | undefined> {
    try {
      const rows = await this.opts.redis.xrevrange(this.keys.dead, '+', '-', 'COUNT', 1);
      return rows[0] ? { id: rows[0][0] } : undefined;
    } catch (err) {
      wrap(err, 'reading the webhook dead stream');
    }
  }

  async groupStats(): Promise<{ lag: number | null; pending: number }> {
    let groups: unknown[];
    try {
      groups = (await this.opts.redis.xinfo('GROUPS', this.keys.jobs)) as unknown[];
    } catch (err) {
      if (String((err as Error).message).includes('no such key')) return { lag: 0, pending: 0 };
      wrap(err, 'reading the webhook consumer group');
    }
    for (const g of groups) {
      const f: Record<string, unknown> = {};
      const arr = g as unknown[];
      for (let i = 0; i + 1 < arr.length; i += 2) f[String(arr[i])] = arr[i + 1];
      if (f.name === WEBHOOK_GROUP) {
        return { lag: f.lag === null || f.lag === undefined ? null : Number(f.lag), pending: Number(f.pending ?? 0) };
      }
    }
    return { lag: null, pending: 0 };
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    // The blocking connection may sit in XREADGROUP BLOCK: cut it rather than wait.
    this.opts.blocking.disconnect();
    await this.opts.redis.quit().catch(() => this.opts.redis.disconnect());
  }
}

function parseDeadRows(rows: readonly [string, string[]][]): DeadEntry[] {
  const out: DeadEntry[] = [];
  for (const [id, fields] of rows) {
    const f: Record<string, string> = {};
    for (let i = 0; i + 1 < fields.length; i += 2) f[fields[i]!] = fields[i + 1]!;
    const item = f.item ? decodeRetry(f.item) : undefined;
    if (item) out.push({ id, item, reason: f.reason as DeadReason, error: f.error ?? '', failedAt: Number(f.failedAt) });
  }
  return out;
}

/**
 * Opens the queue the way a dispatcher uses it: two connections of its own (one blocks on
 * XREADGROUP). Like the store, a node may start before its Redis: after a few seconds it returns
 * anyway and the dispatcher joins when Redis comes up.
 */
export async function openRedisWebhookQueue(
  conn: RedisConnectionConfig & { readonly prefix: string },
  opts: { readonly logger: Logger; readonly deadMaxLen: number },
): Promise<RedisWebhookQueue> {
  let redis: RedisClient;
  let blocking: RedisClient;
  if (conn.cluster) {
    const setup = clusterSetup(conn.cluster);
    redis = createClusterClient(setup, opts.logger, 'webhooks', { shardedSubscribers: false });
    // A Cluster of its own: its connection to the stream's shard blocks on XREADGROUP.
    blocking = createClusterClient(clusterSetup(conn.cluster, { commandTimeoutMs: undefined }), opts.logger, 'webhooks-blocking', {
      shardedSubscribers: false,
    });
  } else {
    const options = redisOptions({ url: conn.url, sentinel: conn.sentinel });
    redis = createRedisClient(options, opts.logger, 'webhooks');
    blocking = createRedisClient(options, opts.logger, 'webhooks-blocking');
  }
  await Promise.all([waitReady(redis, 5000), waitReady(blocking, 5000)]).catch((err: unknown) =>
    opts.logger.warn({ err: { message: (err as Error).message } }, 'redis not reachable for webhooks at start; continuing'),
  );
  return new RedisWebhookQueue({
    redis,
    blocking,
    prefix: conn.prefix,
    layout: conn.cluster ? 'cluster' : 'standalone',
    deadMaxLen: opts.deadMaxLen,
  });
}
