// The Lua scripts of the Redis adapter. Each one is a single atomic step (Redis runs a script
// without interleaving other commands), which is what makes presence exact across nodes, the
// session check-and-set safe, and publishMessage idempotent. Keys known in advance are passed as
// KEYS; keys derived from data inside a script (a user's or node's connection set) are built from a
// base that already carries `redis.prefix`, so no script ever touches an unprefixed key.
// Scripts rely on Redis ≥ 5 (effects replication: TIME, XADD * and PUBLISH inside scripts); the
// cluster layout's on Redis ≥ 7 (SPUBLISH inside a script, to a channel in the script's slot).

/** Name, key count and source: registered with ioredis's defineCommand (EVALSHA, EVAL on NOSCRIPT). */
export interface ScriptDef {
  readonly numberOfKeys: number;
  readonly lua: string;
}

/**
 * KEYS[1] session:{sid}. ARGV: tenantId, nowIso, ttlSeconds, recordJson (for a new record).
 * Returns 'created' | 'refreshed' | 'foreign'. A record that is not ours (another tenant, or not
 * parseable) is never overwritten.
 */
export const SESSION_UPSERT: ScriptDef = {
  numberOfKeys: 1,
  lua: `
local cur = redis.call('GET', KEYS[1])
if cur then
  local ok, rec = pcall(cjson.decode, cur)
  if not ok or type(rec) ~= 'table' or rec.tenantId ~= ARGV[1] then return 'foreign' end
  rec.lastActivity = ARGV[2]
  redis.call('SET', KEYS[1], cjson.encode(rec), 'EX', ARGV[3])
  return 'refreshed'
end
redis.call('SET', KEYS[1], ARGV[4], 'EX', ARGV[3])
return 'created'
`,
};

/** KEYS[1] t:{tid}:bind:{jti}. ARGV: sessionId, ttlSeconds. Returns the bound session id. */
export const BIND: ScriptDef = {
  numberOfKeys: 1,
  lua: `
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'EX', ARGV[2]) then return ARGV[1] end
return redis.call('GET', KEYS[1])
`,
};

/**
 * KEYS[1] the revocation key of one user. ARGV: instant (ms). Keeps the later of the stored and the
 * given instant in one step, so two revocations at once never leave the earlier one.
 */
export const REVOKE: ScriptDef = {
  numberOfKeys: 1,
  lua: `
local cur = tonumber(redis.call('GET', KEYS[1]))
if cur and cur >= tonumber(ARGV[1]) then return 0 end
redis.call('SET', KEYS[1], ARGV[1])
return 1
`,
};

/**
 * KEYS[1] the data epoch (`meta:webhook_epoch`, redis-data-epoch.ts). ARGV: candidate. Writes the
 * candidate unless an epoch is there; returns the epoch in place (the candidate when there was none).
 */
export const CLAIM_EPOCH: ScriptDef = {
  numberOfKeys: 1,
  lua: `
if redis.call('SET', KEYS[1], ARGV[1], 'NX') then return ARGV[1] end
return redis.call('GET', KEYS[1])
`,
};

type Layout = 'standalone' | 'cluster';

// Shared by the presence scripts.
// KEYS[1] t:{tid}:presence:exp (zset connId → expiry ms), KEYS[2] t:{tid}:presence:conn (hash
// connId → JSON), KEYS[3] online_users:{tid}, KEYS[4] presence:tenants (zset tenantId → earliest
// connection expiry), KEYS[5] presence:nodes.
// ARGV[1] base of per-user/per-node sets (`<prefix>t:{tid}:presence:`), ARGV[2] tenantId.
const presencePrelude = (layout: Layout) => `
local function userKey(u) return ARGV[1] .. 'user:' .. u end
local function nodeKey(n) return ARGV[1] .. 'node:' .. n end
-- Removes one connection; returns nil when unknown, else {conn, wasLastOfUser}.
local function removeConn(connId)
  redis.call('ZREM', KEYS[1], connId)
  local raw = redis.call('HGET', KEYS[2], connId)
  if not raw then return nil end
  redis.call('HDEL', KEYS[2], connId)
  local c = cjson.decode(raw)
  redis.call('SREM', nodeKey(c.nodeId), connId)
  redis.call('SREM', userKey(c.userId), connId)
  local last = redis.call('SCARD', userKey(c.userId)) == 0
  if last then
    redis.call('HDEL', KEYS[3], c.userId)
  else
    -- The user stays online: if online_users described this connection, describe a live one.
    local cur = redis.call('HGET', KEYS[3], c.userId)
    local ok, v = pcall(cjson.decode, cur or '')
    if ok and type(v) == 'table' and v.sessionId == c.sessionId and v.connectedAt == c.connectedAt then
      local other = redis.call('HGET', KEYS[2], redis.call('SRANDMEMBER', userKey(c.userId)))
      if other then
        local o = cjson.decode(other)
        redis.call('HSET', KEYS[3], c.userId, cjson.encode({
          sessionId = o.sessionId, connectedAt = o.connectedAt, domain = o.domain, origin = o.origin, url = o.url }))
      end
    end
  end
  return {c, last}
end
-- presence:tenants scores each tenant by its earliest connection expiry, so a sweep visits only
-- tenants with something expired. Called at the end of every presence script. In the cluster
-- layout presence:tenants and presence:nodes live in other slots: the script reports the earliest
-- expiry (the caller writes the index) and nodeAlive is the caller's job too.
${
  layout === 'standalone'
    ? `local function touchTenant()
  local first = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
  if first[2] then redis.call('ZADD', KEYS[4], first[2], ARGV[2]) else redis.call('ZREM', KEYS[4], ARGV[2]) end
end
local function nodeAlive(expiry, nodeId) redis.call('ZADD', KEYS[5], expiry, nodeId) end`
    : `local earliest = false
local function touchTenant()
  local first = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
  earliest = first[2] or false
end
local function nodeAlive() end`
}
-- Asserts one connection with its expiry; returns true when online_users got its HSET (the user
-- had no entry). Idempotent: a heartbeat calls it for every live connection of its node.
local function ensureConn(connId, userId, nodeId, expiry, connJson, onlineJson)
  local prev = redis.call('HGET', KEYS[2], connId)
  if prev == connJson and redis.call('HEXISTS', KEYS[3], userId) == 1 then
    -- Steady state (every heartbeat): the connection and its user are in place; only extend it.
    -- Its sets were written with it in one script, so they are in place too (barring eviction).
    redis.call('ZADD', KEYS[1], expiry, connId)
    return false
  end
  if prev ~= connJson then
    if prev then
      local p = cjson.decode(prev)
      if p.userId ~= userId then removeConn(connId)
      elseif p.nodeId ~= nodeId then redis.call('SREM', nodeKey(p.nodeId), connId) end
    end
    redis.call('HSET', KEYS[2], connId, connJson)
  end
  redis.call('ZADD', KEYS[1], expiry, connId)
  redis.call('SADD', nodeKey(nodeId), connId)
  redis.call('SADD', userKey(userId), connId)
  return redis.call('HSETNX', KEYS[3], userId, onlineJson) == 1
end
`;

/**
 * A presence script in both layouts. Standalone: KEYS exp, conn, online_users, presence:tenants,
 * presence:nodes; replies as documented per script. Cluster: KEYS exp, conn, online_users (one
 * slot); replies {reply, earliestExpiry|nil}, and the caller updates the global indexes.
 */
function presenceScript(body: string): Record<Layout, ScriptDef> {
  return {
    standalone: { numberOfKeys: 5, lua: `${presencePrelude('standalone')}${body}` },
    cluster: {
      numberOfKeys: 3,
      lua: `${presencePrelude('cluster')}
local function body()${body}end
local reply = body()
return {reply, earliest}
`,
    },
  };
}

/** ARGV[3..8]: connId, userId, nodeId, expiryMs, connJson, onlineJson. Returns 1 when first for the user. */
const PRESENCE_ADD = presenceScript(`
nodeAlive(ARGV[6], ARGV[5])
local first = ensureConn(ARGV[3], ARGV[4], ARGV[5], ARGV[6], ARGV[7], ARGV[8])
touchTenant()
if first then return 1 end
return 0
`);

/** ARGV[3] connId. Returns {} when unknown, else {last (0|1), userId, sessionId}. */
const PRESENCE_REMOVE = presenceScript(`
local r = removeConn(ARGV[3])
touchTenant()
if not r then return {} end
return {r[2] and 1 or 0, r[1].userId, r[1].sessionId}
`);

/**
 * ARGV[3] nodeId, ARGV[4] expiryMs, then groups of 4 from ARGV[5]: connId, userId, connJson,
 * onlineJson. Returns flat {userId, sessionId, …} of users whose online_users entry was re-created.
 */
const PRESENCE_HEARTBEAT = presenceScript(`
nodeAlive(ARGV[4], ARGV[3])
local out = {}
for i = 5, #ARGV, 4 do
  if ensureConn(ARGV[i], ARGV[i + 1], ARGV[3], ARGV[4], ARGV[i + 2], ARGV[i + 3]) then
    local c = cjson.decode(ARGV[i + 2])
    out[#out + 1] = ARGV[i + 1]
    out[#out + 1] = c.sessionId
  end
end
touchTenant()
return out
`);

// The end of sweep and remove-node: removes the connections in `ids` and replies
// {removedCount, userId, sessionId, …} for the users who went offline.
const REMOVE_IDS = `local out = {#ids}
for _, id in ipairs(ids) do
  local r = removeConn(id)
  if r and r[2] then
    out[#out + 1] = r[1].userId
    out[#out + 1] = r[1].sessionId
  end
end
touchTenant()
return out
`;

/**
 * ARGV[3] nowMs, ARGV[4] batch size. Removes up to a batch of expired connections. Returns
 * {removedCount, userId, sessionId, …} listing the users who went offline.
 */
const PRESENCE_SWEEP = presenceScript(`
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[3], 'LIMIT', 0, tonumber(ARGV[4]))
${REMOVE_IDS}`);

/** ARGV[3] nodeId. Removes every connection of a node in this tenant (graceful stop). Same reply as sweep. */
const PRESENCE_REMOVE_NODE = presenceScript(`
local ids = redis.call('SMEMBERS', nodeKey(ARGV[3]))
${REMOVE_IDS}`);

// Agent presence (DESIGN.md "Offline continuity"): every key of one call is the tenant's, tagged
// `{online_users:T}`, so a script stays in one Redis Cluster slot; the global tenants set is
// written by the caller in commands of its own.
// KEYS[1] …agents:exp (zset connId → expiry ms), KEYS[2] …agents:conn (hash connId → JSON),
// KEYS[3] …agents:online (hash agentId → JSON {connectedAt}). ARGV[1] the base of the per-agent
// sets (`…agents:`).
const AGENT_PRELUDE = `
local function agentKey(a) return ARGV[1] .. 'of:' .. a end
-- Removes one connection; nil when unknown, else {agentId, wasLastOfAgent}.
local function removeConn(connId)
  redis.call('ZREM', KEYS[1], connId)
  local raw = redis.call('HGET', KEYS[2], connId)
  if not raw then return nil end
  redis.call('HDEL', KEYS[2], connId)
  local c = cjson.decode(raw)
  redis.call('SREM', agentKey(c.agentId), connId)
  local last = redis.call('SCARD', agentKey(c.agentId)) == 0
  if last then redis.call('HDEL', KEYS[3], c.agentId) end
  return {c.agentId, last}
end
-- Asserts one connection; true when its agent came online through it. Idempotent.
local function ensureConn(connId, agentId, expiry, connJson, onlineJson)
  local prev = redis.call('HGET', KEYS[2], connId)
  if prev ~= connJson then
    if prev and cjson.decode(prev).agentId ~= agentId then removeConn(connId) end
    redis.call('HSET', KEYS[2], connId, connJson)
  end
  redis.call('ZADD', KEYS[1], expiry, connId)
  redis.call('SADD', agentKey(agentId), connId)
  return redis.call('HSETNX', KEYS[3], agentId, onlineJson) == 1
end
-- Removes the connections in ids; replies {remaining, agentId, …} with the agents now offline.
local function removeIds(ids)
  local out = {0}
  for _, id in ipairs(ids) do
    local r = removeConn(id)
    if r and r[2] then out[#out + 1] = r[1] end
  end
  out[1] = redis.call('ZCARD', KEYS[1])
  return out
end
`;

/** ARGV[2..6]: connId, agentId, expiryMs, connJson, onlineJson. Returns 1 when the agent came online. */
export const AGENT_ADD: ScriptDef = {
  numberOfKeys: 3,
  lua: `${AGENT_PRELUDE}
if ensureConn(ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6]) then return 1 end
return 0
`,
};

/** ARGV[2] connId. Returns {} when unknown, else {last (0|1), agentId}. */
export const AGENT_REMOVE: ScriptDef = {
  numberOfKeys: 3,
  lua: `${AGENT_PRELUDE}
local r = removeConn(ARGV[2])
if not r then return {} end
return {r[2] and 1 or 0, r[1]}
`,
};

/** ARGV[2] expiryMs, then groups of 4 from ARGV[3]: connId, agentId, connJson, onlineJson. Returns agents back online. */
export const AGENT_HEARTBEAT: ScriptDef = {
  numberOfKeys: 3,
  lua: `${AGENT_PRELUDE}
local out = {}
for i = 3, #ARGV, 4 do
  if ensureConn(ARGV[i], ARGV[i + 1], ARGV[2], ARGV[i + 2], ARGV[i + 3]) then out[#out + 1] = ARGV[i + 1] end
end
return out
`,
};

/** ARGV[2] nowMs. Removes the expired connections. Returns {remaining, agentId…} (agents now offline). */
export const AGENT_SWEEP: ScriptDef = {
  numberOfKeys: 3,
  lua: `${AGENT_PRELUDE}
return removeIds(redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[2]))
`,
};

/** ARGV[2] nodeId. Removes the node's connections in this tenant. Same reply as the sweep. */
export const AGENT_REMOVE_NODE: ScriptDef = {
  numberOfKeys: 3,
  lua: `${AGENT_PRELUDE}
local ids = {}
local all = redis.call('HGETALL', KEYS[2])
for i = 1, #all, 2 do
  if cjson.decode(all[i + 1]).nodeId == ARGV[2] then ids[#ids + 1] = all[i] end
end
return removeIds(ids)
`,
};

/**
 * KEYS[1] agents:tenants. ARGV: tenantId, nowMs. Forgets a tenant whose latest asserted expiry
 * has passed (an add or heartbeat since raised it above now, and then it stays).
 */
export const AGENT_FORGET_TENANT: ScriptDef = {
  numberOfKeys: 1,
  lua: `
local s = redis.call('ZSCORE', KEYS[1], ARGV[1])
if s and tonumber(s) <= tonumber(ARGV[2]) then return redis.call('ZREM', KEYS[1], ARGV[1]) end
return 0
`,
};

// Assigns the next agent-stream offset. Guards against a counter behind the stream (the counter
// key evicted or deleted while the stream survived): XADD with an id not above the last one fails.
const NEXT_OFFSET = `
local function nextOffset(counterKey, streamKey)
  local off = redis.call('INCR', counterKey)
  local last = redis.call('XREVRANGE', streamKey, '+', '-', 'COUNT', 1)
  if last[1] then
    local lastOff = tonumber(string.match(last[1][1], '^(%d+)-'))
    if lastOff and lastOff >= off then
      off = lastOff + 1
      redis.call('SET', counterKey, off)
    end
  end
  return off
end
`;

/**
 * KEYS[1] t:{tid}:pub:{messageId} (marker), KEYS[2] t:{tid}:agent:offset, KEYS[3] t:{tid}:agent,
 * KEYS[4] meta:webhook_jobs. ARGV: channel, messageJson, tenantId, sessionId, messageId, createdAt,
 * agentMaxLen, webhookMaxLen, markerTtlSeconds. Returns {offset, duplicate (0|1)}.
 */
export const PUBLISH_MESSAGE: ScriptDef = {
  numberOfKeys: 4,
  lua: `${NEXT_OFFSET}
local prev = redis.call('GET', KEYS[1])
if prev then return {tonumber(prev), 1} end
local off = nextOffset(KEYS[2], KEYS[3])
redis.call('XADD', KEYS[3], 'MAXLEN', '~', ARGV[7], off .. '-0', 'type', 'message', 'data', ARGV[2])
redis.call('XADD', KEYS[4], 'MAXLEN', '~', ARGV[8], '*', 'type', 'message.created', 'tenantId', ARGV[3],
  'sessionId', ARGV[4], 'messageId', ARGV[5], 'createdAt', ARGV[6], 'payload', ARGV[2])
redis.call('SET', KEYS[1], off, 'EX', ARGV[9])
redis.call('PUBLISH', ARGV[1], '{"type":"message","agentOffset":' .. off .. ',"message":' .. ARGV[2] .. '}')
return {off, 0}
`,
};

/**
 * PUBLISH_MESSAGE's twin for a conversation_updated event: KEYS[1] the per-event marker, KEYS[2]
 * t:{tid}:agent:offset, KEYS[3] t:{tid}:agent, KEYS[4] meta:webhook_jobs. ARGV: channel, updateJson,
 * tenantId, sessionId, eventId, at, agentMaxLen, webhookMaxLen, markerTtl. Returns {offset, duplicate}.
 */
export const PUBLISH_UPDATE: ScriptDef = {
  numberOfKeys: 4,
  lua: `${NEXT_OFFSET}
local prev = redis.call('GET', KEYS[1])
if prev then return {tonumber(prev), 1} end
local off = nextOffset(KEYS[2], KEYS[3])
redis.call('XADD', KEYS[3], 'MAXLEN', '~', ARGV[7], off .. '-0', 'type', 'conversation', 'data', ARGV[2])
redis.call('XADD', KEYS[4], 'MAXLEN', '~', ARGV[8], '*', 'type', 'conversation.updated', 'tenantId', ARGV[3],
  'sessionId', ARGV[4], 'messageId', ARGV[5], 'createdAt', ARGV[6], 'payload', ARGV[2])
redis.call('SET', KEYS[1], off, 'EX', ARGV[9])
redis.call('PUBLISH', ARGV[1], '{"type":"conversation","agentOffset":' .. off .. ',"update":' .. ARGV[2] .. '}')
return {off, 0}
`,
};

/** KEYS[1] t:{tid}:agent:offset, KEYS[2] t:{tid}:agent. ARGV: channel, presenceJson, agentMaxLen. Returns the offset. */
const publishPresence = (publish: 'PUBLISH' | 'SPUBLISH'): ScriptDef => ({
  numberOfKeys: 2,
  lua: `${NEXT_OFFSET}
local off = nextOffset(KEYS[1], KEYS[2])
redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[3], off .. '-0', 'type', 'presence', 'data', ARGV[2])
redis.call('${publish}', ARGV[1], '{"type":"presence","agentOffset":' .. off .. ',"presence":' .. ARGV[2] .. '}')
return off
`,
});
export const PUBLISH_PRESENCE = publishPresence('PUBLISH');

// Cluster layout: no script spans slots, so publishMessage is two idempotent scripts, each with
// its own marker in its own stream's slot. A crash between them leaves the outbox row undone; the
// relay's re-publish then finds the first marker (no second entry) and completes the other.

/**
 * KEYS[1] t:{tid}:agent:m:{messageId} (marker), KEYS[2] t:{tid}:agent:offset, KEYS[3] t:{tid}:agent
 * (one slot, with the tenant's sharded channel). ARGV: channel, messageJson, agentMaxLen,
 * markerTtlSeconds. SPUBLISHes inside, so the channel carries the tenant's events in offset order.
 * Returns {offset, duplicate (0|1)}.
 */
export const AGENT_APPEND_MESSAGE: ScriptDef = {
  numberOfKeys: 3,
  lua: `${NEXT_OFFSET}
local prev = redis.call('GET', KEYS[1])
if prev then return {tonumber(prev), 1} end
local off = nextOffset(KEYS[2], KEYS[3])
redis.call('XADD', KEYS[3], 'MAXLEN', '~', ARGV[3], off .. '-0', 'type', 'message', 'data', ARGV[2])
redis.call('SET', KEYS[1], off, 'EX', ARGV[4])
redis.call('SPUBLISH', ARGV[1], '{"type":"message","agentOffset":' .. off .. ',"message":' .. ARGV[2] .. '}')
return {off, 0}
`,
};

/**
 * KEYS[1] x:{meta:webhook_jobs}:m:{messageId} (marker), KEYS[2] meta:webhook_jobs (one slot).
 * ARGV: messageJson, tenantId, sessionId, messageId, createdAt, webhookMaxLen, markerTtlSeconds.
 * Returns 1 when appended, 0 when the marker says it was already.
 */
export const WEBHOOK_APPEND: ScriptDef = {
  numberOfKeys: 2,
  lua: `
if redis.call('SET', KEYS[1], '1', 'NX', 'EX', ARGV[7]) == false then return 0 end
redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[6], '*', 'type', 'message.created', 'tenantId', ARGV[2],
  'sessionId', ARGV[3], 'messageId', ARGV[4], 'createdAt', ARGV[5], 'payload', ARGV[1])
return 1
`,
};

/** AGENT_APPEND_MESSAGE for a conversation_updated event (entry type `conversation`; marker per event id). */
export const AGENT_APPEND_UPDATE: ScriptDef = {
  numberOfKeys: 3,
  lua: `${NEXT_OFFSET}
local prev = redis.call('GET', KEYS[1])
if prev then return {tonumber(prev), 1} end
local off = nextOffset(KEYS[2], KEYS[3])
redis.call('XADD', KEYS[3], 'MAXLEN', '~', ARGV[3], off .. '-0', 'type', 'conversation', 'data', ARGV[2])
redis.call('SET', KEYS[1], off, 'EX', ARGV[4])
redis.call('SPUBLISH', ARGV[1], '{"type":"conversation","agentOffset":' .. off .. ',"update":' .. ARGV[2] .. '}')
return {off, 0}
`,
};

/** WEBHOOK_APPEND for a conversation_updated event (job type `conversation.updated`; `messageId` = the event id). */
export const WEBHOOK_APPEND_UPDATE: ScriptDef = {
  numberOfKeys: 2,
  lua: `
if redis.call('SET', KEYS[1], '1', 'NX', 'EX', ARGV[7]) == false then return 0 end
redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[6], '*', 'type', 'conversation.updated', 'tenantId', ARGV[2],
  'sessionId', ARGV[3], 'messageId', ARGV[4], 'createdAt', ARGV[5], 'payload', ARGV[1])
return 1
`,
};

/**
 * KEYS[1] t:{tid}:agent:offset, KEYS[2] t:{tid}:agent. ARGV: after, limit. One consistent snapshot:
 * {head, oldestOffset (0 = empty), entries} where entries are XRANGE replies after `after`.
 */
export const AGENT_RANGE: ScriptDef = {
  numberOfKeys: 2,
  lua: `
local head = tonumber(redis.call('GET', KEYS[1]) or '0')
local first = redis.call('XRANGE', KEYS[2], '-', '+', 'COUNT', 1)
local oldest = 0
if first[1] then oldest = tonumber(string.match(first[1][1], '^(%d+)-')) end
local entries = {}
if tonumber(ARGV[1]) < head then
  entries = redis.call('XRANGE', KEYS[2], (tonumber(ARGV[1]) + 1) .. '-0', '+', 'COUNT', tonumber(ARGV[2]))
end
return {head, oldest, entries}
`,
};

/**
 * KEYS[1] rl:{key}. ARGV: rate (tokens/s), burst, cost. Token bucket on Redis's clock (so every
 * node agrees). Returns {allowed (0|1), retryAfterMs}.
 */
export const TOKEN_BUCKET: ScriptDef = {
  numberOfKeys: 1,
  lua: `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local cost = tonumber(ARGV[3])
local b = redis.call('HMGET', KEYS[1], 'tokens', 'ts')
local tokens = tonumber(b[1])
local ts = tonumber(b[2])
if tokens == nil or ts == nil then tokens = burst; ts = now end
if now > ts then tokens = math.min(burst, tokens + (now - ts) * rate / 1000) end
local allowed = 0
local retry = 0
if tokens >= cost then
  tokens = tokens - cost
  allowed = 1
else
  retry = math.ceil((cost - tokens) * 1000 / rate)
end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'ts', tostring(math.max(now, ts)))
redis.call('PEXPIRE', KEYS[1], math.ceil(burst * 1000 / rate) + 1000)
return {allowed, retry}
`,
};

/**
 * Every script by its ioredis command name. Both layouts' scripts are defined on every client
 * (definitions are local until first use); each adapter calls its own layout's names.
 */
export const SCRIPTS = {
  chatdSessionUpsert: SESSION_UPSERT,
  chatdBind: BIND,
  chatdRevoke: REVOKE,
  chatdClaimEpoch: CLAIM_EPOCH,
  chatdPresenceAdd: PRESENCE_ADD.standalone,
  chatdPresenceRemove: PRESENCE_REMOVE.standalone,
  chatdPresenceHeartbeat: PRESENCE_HEARTBEAT.standalone,
  chatdPresenceSweep: PRESENCE_SWEEP.standalone,
  chatdPresenceRemoveNode: PRESENCE_REMOVE_NODE.standalone,
  chatdAgentAdd: AGENT_ADD,
  chatdAgentRemove: AGENT_REMOVE,
  chatdAgentHeartbeat: AGENT_HEARTBEAT,
  chatdAgentSweep: AGENT_SWEEP,
  chatdAgentRemoveNode: AGENT_REMOVE_NODE,
  chatdAgentForgetTenant: AGENT_FORGET_TENANT,
  chatdPublishMessage: PUBLISH_MESSAGE,
  chatdPublishUpdate: PUBLISH_UPDATE,
  chatdPublishPresence: PUBLISH_PRESENCE,
  chatdClusterPresenceAdd: PRESENCE_ADD.cluster,
  chatdClusterPresenceRemove: PRESENCE_REMOVE.cluster,
  chatdClusterPresenceHeartbeat: PRESENCE_HEARTBEAT.cluster,
  chatdClusterPresenceSweep: PRESENCE_SWEEP.cluster,
  chatdClusterPresenceRemoveNode: PRESENCE_REMOVE_NODE.cluster,
  chatdClusterAgentAppendMessage: AGENT_APPEND_MESSAGE,
  chatdClusterWebhookAppend: WEBHOOK_APPEND,
  chatdClusterAgentAppendUpdate: AGENT_APPEND_UPDATE,
  chatdClusterWebhookAppendUpdate: WEBHOOK_APPEND_UPDATE,
  chatdClusterPublishPresence: publishPresence('SPUBLISH'),
  chatdAgentRange: AGENT_RANGE,
  chatdTokenBucket: TOKEN_BUCKET,
} as const;

export type ScriptName = keyof typeof SCRIPTS;
