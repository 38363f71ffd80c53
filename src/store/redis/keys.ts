// Every Redis key and pub/sub channel chatd uses, in one place. Each name starts with the
// configured `redis.prefix` (ioredis's keyPrefix is not used: it does not prefix channels, nor keys
// built inside Lua scripts). The guide's names — `online_users:{tenantId}`, `session:{sessionId}`,
// `meta:webhook_jobs` — are kept exactly after the prefix; every other key or channel holding tenant
// data starts with `t:{tenantId}:`. The global ones are the webhook stream and its retry/dead sets,
// the presence registries (tenants with connections, live nodes) and the rate-limit buckets.
// The "Redis keys" section of docs/operations.md lists the same names: keep them in sync.
//
// Two layouts. `standalone` (one Redis, or Sentinel) is the historical one. `cluster` (Redis
// Cluster) names the same data so that every script and multi-key command touches one hash slot:
// a key's slot is the CRC16 of its `{tag}` when it has one, else of its whole name, so a companion
// key tagged with a guide name that has no braces lands in that name's slot:
//   - presence of tenant T: `t:{<prefix>online_users:T}:exp|conn|user:U|node:N` beside
//     `online_users:T` (one script changes them together);
//   - webhook queue: `x:{<prefix>meta:webhook_jobs}:retry|dead|epoch|m:<messageId>` beside the stream;
//   - agent stream of T: `t:{T}:agent`, `…:agent:offset`, `…:agent:m:<messageId>` and the tenant's
//     sharded channel `t:{T}:events` (its script SPUBLISHes in offset order);
//   - `t:{T:c<k>}:events`, k < CONVERSATION_CHANNELS: typing and read of a conversation, on the
//     channel its session id hashes to, so a big tenant's chatter spreads over the shards.
// The global indexes (`presence:tenants`, `presence:nodes`, `presence:node_tenants:N`) are written
// beside the scripts, never inside them. The prefix cannot hold braces (the config schema refuses them).

/** Per tenant, the number of sharded channels its conversations' typing and read are spread over (cluster). */
export const CONVERSATION_CHANNELS = 8;

export interface RedisKeys {
  readonly prefix: string;
  /** The cluster layout: every script's keys share a hash tag; channels are sharded (SPUBLISH). */
  readonly cluster: boolean;
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
  /** Cluster: marker that a message's webhook job was appended (in the jobs stream's slot; TTL). */
  webhookMarker(messageId: string): string;
  /** The tenant's pub/sub channel (JSON TenantEvents). */
  tenantChannel(tenantId: string): string;
  /** Cluster: the channel of a conversation's typing and read (one of CONVERSATION_CHANNELS per tenant). */
  conversationChannel(tenantId: string, sessionId: string): string;
  /** Every channel a subscriber of the tenant listens on (standalone: the tenant channel alone). */
  tenantChannels(tenantId: string): string[];
  /** Cluster: set of tenants where a node has (or had) connections, for removeNode. */
  presenceNodeTenants(nodeId: string): string;
  /** A subject's revocation instant (ms since the epoch, string; no TTL). */
  revoked(tenantId: string, userId: string): string;
  /** A rate-limit bucket; `key` is the caller's (e.g. `ip:{ip}`, or `t:{tid}:…` for tenant data). */
  rateBucket(key: string): string;
}

export function redisKeys(prefix: string, layout: 'standalone' | 'cluster' = 'standalone'): RedisKeys {
  if (/[{}]/.test(prefix)) throw new Error('redis.prefix cannot contain { or } (hash tags are chosen by chatd)');
  return layout === 'cluster' ? clusterKeys(prefix) : standaloneKeys(prefix);
}

/** Stable, cheap spread of session ids over the conversation channels (FNV-1a). */
function bucket(sessionId: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < sessionId.length; i++) h = Math.imul(h ^ sessionId.charCodeAt(i), 0x01000193);
  return (h >>> 0) % CONVERSATION_CHANNELS;
}

function clusterKeys(p: string): RedisKeys {
  const base = standaloneKeys(p);
  const presence = (tid: string) => `${p}t:{${p}online_users:${tid}}:`;
  const agent = (tid: string) => `${p}t:{${tid}}:`;
  const jobs = `${p}x:{${p}meta:webhook_jobs}:`;
  const conversationChannel = (tid: string, k: number) => `${p}t:{${tid}:c${k}}:events`;
  return {
    ...base,
    cluster: true,
    webhookRetry: `${jobs}retry`,
    webhookDead: `${jobs}dead`,
    presenceExpiry: (tid) => `${presence(tid)}exp`,
    presenceConns: (tid) => `${presence(tid)}conn`,
    presenceBase: (tid) => presence(tid),
    presenceUser: (tid, uid) => `${presence(tid)}user:${uid}`,
    presenceNode: (tid, nid) => `${presence(tid)}node:${nid}`,
    presenceNodeTenants: (nid) => `${p}presence:node_tenants:${nid}`,
    agentStream: (tid) => `${agent(tid)}agent`,
    agentOffset: (tid) => `${agent(tid)}agent:offset`,
    published: (tid, mid) => `${agent(tid)}agent:m:${mid}`,
    webhookMarker: (mid) => `${jobs}m:${mid}`,
    tenantChannel: (tid) => `${agent(tid)}events`,
    conversationChannel: (tid, sid) => conversationChannel(tid, bucket(sid)),
    tenantChannels: (tid) => [
      `${agent(tid)}events`,
      ...Array.from({ length: CONVERSATION_CHANNELS }, (_, k) => conversationChannel(tid, k)),
    ],
  };
}

function standaloneKeys(prefix: string): RedisKeys {
  const p = prefix;
  const t = (tid: string) => `${p}t:${tid}:`;
  return {
    prefix: p,
    cluster: false,
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
    // One script writes both the agent entry and the job in this layout; the agent marker covers both.
    webhookMarker: (mid) => `${p}meta:webhook_marker:${mid}`,
    tenantChannel: (tid) => `${t(tid)}events`,
    conversationChannel: (tid) => `${t(tid)}events`,
    tenantChannels: (tid) => [`${t(tid)}events`],
    presenceNodeTenants: (nid) => `${p}presence:node_tenants:${nid}`,
    revoked: (tid, uid) => `${t(tid)}revoked:${uid}`,
    rateBucket: (key) => `${p}rl:${key}`,
  };
}
