// Every Redis key and pub/sub channel chatd uses, in one place. Each name starts with the
// configured `redis.prefix` (ioredis's keyPrefix is not used: it does not prefix channels, nor keys
// built inside Lua scripts). The guide's names — `online_users:{tenantId}`, `session:{sessionId}`,
// `meta:webhook_jobs` — are kept exactly after the prefix; every other key or channel holding tenant
// data starts with `t:{tenantId}:`. The global ones are the webhook stream and its retry/dead sets,
// the presence registries (tenants with connections, live nodes) and the rate-limit buckets.
// The "Redis keys" section of docs/operations.md lists the same names: keep them in sync.

export interface RedisKeys {
  readonly prefix: string;
  /** Guide: the visitor session record (JSON string, 24 h TTL). */
  session(sessionId: string): string;
  /** Guide: hash userId → JSON {sessionId, connectedAt, domain, origin, url}. */
  onlineUsers(tenantId: string): string;
  /** Guide: stream of `message.created` webhook jobs. */
  readonly webhookJobs: string;
  /** Reserved for the webhook dispatcher: sorted set of jobs waiting for a retry (score = due ms). */
  readonly webhookRetry: string;
  /** Reserved for the webhook dispatcher: jobs that ran out of retries. */
  readonly webhookDead: string;
  /** A visitor token's session binding (string, TTL = the token's remaining life). */
  binding(tenantId: string, jti: string): string;
  /** Presence: sorted set connId → expiry (ms since epoch). */
  presenceExpiry(tenantId: string): string;
  /** Presence: hash connId → JSON {nodeId, userId, sessionId, role, connectedAt, domain, origin, url}. */
  presenceConns(tenantId: string): string;
  /** Presence: the prefix of `…user:{userId}` (set of connIds) and `…node:{nodeId}` (set of connIds). */
  presenceBase(tenantId: string): string;
  presenceUser(tenantId: string, userId: string): string;
  presenceNode(tenantId: string, nodeId: string): string;
  /** Global: sorted set tenantId → earliest connection expiry (ms), so sweep visits only tenants with an expired one. */
  readonly presenceTenants: string;
  /** Global: node registry, sorted set nodeId → expiry of its last heartbeat (ms). */
  readonly presenceNodes: string;
  /**
   * Agent presence (never in online_users): per tenant, hash-tagged `{online_users:T}` so each
   * script's keys share one Redis Cluster slot. `…agents:exp` sorted set connId → expiry (ms),
   * `…agents:conn` hash connId → JSON {nodeId, agentId, connectedAt}, `…agents:online` hash
   * agentId → JSON {connectedAt}, and from `agentsBase`: `…agents:of:{agentId}` (set of connIds).
   */
  agentsExpiry(tenantId: string): string;
  agentsConns(tenantId: string): string;
  agentsOnline(tenantId: string): string;
  agentsBase(tenantId: string): string;
  /** Global: sorted set tenantId → latest connection expiry asserted (ms): the tenants a sweep visits. */
  readonly agentTenants: string;
  /** The tenant's agent stream: a Redis stream whose entry ids are `{offset}-0`. */
  agentStream(tenantId: string): string;
  /** The agent stream's last assigned offset (INCR). */
  agentOffset(tenantId: string): string;
  /** Marker that a message was published (value: its agent offset; TTL). */
  published(tenantId: string, messageId: string): string;
  /** The tenant's pub/sub channel (JSON TenantEvents). */
  tenantChannel(tenantId: string): string;
  /** A subject's revocation instant (ms since the epoch, string; no TTL). */
  revoked(tenantId: string, userId: string): string;
  /** A rate-limit bucket; `key` is the caller's (e.g. `ip:{ip}`, or `t:{tid}:…` for tenant data). */
  rateBucket(key: string): string;
}

export function redisKeys(prefix: string): RedisKeys {
  const p = prefix;
  const t = (tid: string) => `${p}t:${tid}:`;
  return {
    prefix: p,
    session: (sid) => `${p}session:${sid}`,
    onlineUsers: (tid) => `${p}online_users:${tid}`,
    webhookJobs: `${p}meta:webhook_jobs`,
    webhookRetry: `${p}meta:webhook_retry`,
    webhookDead: `${p}meta:webhook_dead`,
    binding: (tid, jti) => `${t(tid)}bind:${jti}`,
    presenceExpiry: (tid) => `${t(tid)}presence:exp`,
    presenceConns: (tid) => `${t(tid)}presence:conn`,
    presenceBase: (tid) => `${t(tid)}presence:`,
    presenceUser: (tid, uid) => `${t(tid)}presence:user:${uid}`,
    presenceNode: (tid, nid) => `${t(tid)}presence:node:${nid}`,
    presenceTenants: `${p}presence:tenants`,
    presenceNodes: `${p}presence:nodes`,
    agentsExpiry: (tid) => `${p}t:{online_users:${tid}}:agents:exp`,
    agentsConns: (tid) => `${p}t:{online_users:${tid}}:agents:conn`,
    agentsOnline: (tid) => `${p}t:{online_users:${tid}}:agents:online`,
    agentsBase: (tid) => `${p}t:{online_users:${tid}}:agents:`,
    agentTenants: `${p}agents:tenants`,
    agentStream: (tid) => `${t(tid)}agent`,
    agentOffset: (tid) => `${t(tid)}agent:offset`,
    published: (tid, mid) => `${t(tid)}pub:${mid}`,
    tenantChannel: (tid) => `${t(tid)}events`,
    revoked: (tid, uid) => `${t(tid)}revoked:${uid}`,
    rateBucket: (key) => `${p}rl:${key}`,
  };
}
