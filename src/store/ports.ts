// What the roles need from the distributed engine. Two adapters implement every port: redis/
// (ioredis; many nodes) and memory/ (one process, the zero-config default). One contract test
// suite runs against both. Every key and channel goes through the configured prefix; the guide's
// names (`online_users:{tenantId}`, `session:{sessionId}`, `meta:webhook_jobs`) are kept exactly.
import type { Logger } from 'pino';
import type { ConversationUpdate } from '../chat/conversation.js';
import type { ChatMessage } from '../chat/message.js';
import type { Outbox } from '../db/ports.js';

// ---------------------------------------------------------------- sessions and token bindings

/** `session:{sessionId}`, the guide's record. */
export interface SessionRecord {
  readonly userId: string;
  readonly fingerprint: string;
  readonly tenantId: string;
  readonly createdAt: string;
  readonly lastActivity: string;
}

export type SessionUpsert = 'created' | 'refreshed' | 'foreign';

export interface SessionStore {
  /**
   * Check-and-set (one atomic step): create `session:{id}` or refresh its lastActivity and TTL —
   * unless it belongs to another tenant, which is never overwritten ('foreign'). A refresh keeps
   * the record's userId, fingerprint and createdAt (they describe who created the session).
   */
  upsert(sessionId: string, rec: { tenantId: string; userId: string; fingerprint: string }, ttlSeconds: number): Promise<SessionUpsert>;
  get(sessionId: string): Promise<SessionRecord | null>;
  delete(sessionId: string): Promise<void>;
  /**
   * Binds a token (`t:{tid}:bind:{jti}`) to a session if it has no binding yet (SET NX, TTL = the
   * token's remaining life). Returns the session the token is bound to: `sessionId`, or the earlier one.
   */
  bind(tenantId: string, jti: string, sessionId: string, ttlSeconds: number): Promise<string>;
  getBinding(tenantId: string, jti: string): Promise<string | null>;
}

// ---------------------------------------------------------------- presence

export interface PresenceConnection {
  /** Unique per connection (the Engine.IO sid). */
  readonly connId: string;
  readonly tenantId: string;
  /** The verified or claimed userId; the sessionId for an anonymous visitor. */
  readonly userId: string;
  readonly sessionId: string;
  readonly role: 'visitor' | 'user' | 'agent';
  /** ISO 8601. */
  readonly connectedAt: string;
  readonly domain: string;
  readonly origin: string;
  readonly url: string;
}

/** A field of `online_users:{tenantId}`, with its userId. */
export interface OnlineUser {
  readonly userId: string;
  readonly sessionId: string;
  readonly connectedAt: string;
  readonly domain: string;
  readonly origin: string;
  readonly url: string;
}

export interface PresenceChange {
  readonly tenantId: string;
  readonly userId: string;
  readonly sessionId: string;
}

export interface PresenceStore {
  /** Adds one connection; `firstForUser` when the user had none (online_users got its HSET). */
  add(nodeId: string, conn: PresenceConnection, ttlMs: number): Promise<{ firstForUser: boolean }>;
  /** Removes one connection; `lastForUser` when it was the user's last (online_users got its HDEL). */
  remove(nodeId: string, tenantId: string, connId: string): Promise<{ lastForUser: boolean } & Partial<PresenceChange>>;
  /**
   * Re-asserts every live connection of this node and extends their expiry (repairs a Redis restart
   * or FLUSHALL, and a node wrongly swept). Returns users that became online again through it.
   */
  heartbeat(nodeId: string, conns: readonly PresenceConnection[], ttlMs: number): Promise<PresenceChange[]>;
  /**
   * Removes connections whose expiry passed (their node went silent); returns users now offline.
   * Any node may sweep, concurrently: each departure is reported by exactly one sweep.
   */
  sweep(nowMs: number): Promise<PresenceChange[]>;
  list(tenantId: string): Promise<OnlineUser[]>;
  isOnline(tenantId: string, userId: string): Promise<boolean>;
  /**
   * Which of `userIds` are online (fields of `online_users:{tenantId}`): one read of those fields,
   * whatever the tenant's size — an inbox page asks about its 50 rows, not about everyone online.
   */
  onlineAmong(tenantId: string, userIds: readonly string[]): Promise<ReadonlySet<string>>;
  /**
   * Removes every connection of a node at once through the per-node index (a graceful stop, or an
   * operator evicting a node known dead before its timeout); returns users now offline.
   */
  removeNode(nodeId: string): Promise<PresenceChange[]>;
  /** The node registry: nodes whose last heartbeat (or add) has not expired at `nowMs`. */
  nodes(nowMs: number): Promise<{ nodeId: string; expiresAt: number }[]>;
}

// ---------------------------------------------------------------- agent presence

/** One authenticated agent socket (an agent JWT's connection), on some node. */
export interface AgentConnection {
  /** Unique per connection (the Engine.IO sid). */
  readonly connId: string;
  readonly tenantId: string;
  /** The agent JWT's `sub` (the agent id the conversations' assignee uses). */
  readonly agentId: string;
  /** ISO 8601. */
  readonly connectedAt: string;
}

/** An agent with at least one live connection on some node. */
export interface OnlineAgent {
  readonly agentId: string;
  /** ISO 8601: when the connection that brought the agent online was made. */
  readonly connectedAt: string;
}

export interface AgentPresenceChange {
  readonly tenantId: string;
  readonly agentId: string;
}

/**
 * Which agents are online, per tenant, across nodes (DESIGN.md "Offline continuity"): its own set,
 * never mixed into the visitors' `online_users:{tenantId}`. Same model as PresenceStore: one entry
 * per connection with an expiry, an agent online from its first connection to its last, each node
 * re-asserting its connections on its heartbeat, and a sweep removing what a silent node left.
 *
 * The query other parts use is `online(tenantId)` (availability, auto-assignment): the agents of
 * that tenant with a connection now, sorted by agentId. An agent whose node died stays listed until
 * a sweep removes it (at most `presence.nodeTimeoutMs` plus one heartbeat).
 */
export interface AgentPresenceStore {
  /** Adds one connection; `firstForAgent` when the agent had none (it just came online). */
  add(nodeId: string, conn: AgentConnection, ttlMs: number): Promise<{ firstForAgent: boolean }>;
  /** Removes one connection; `lastForAgent` (with its agentId) when it was the agent's last. */
  remove(nodeId: string, tenantId: string, connId: string): Promise<{ lastForAgent: boolean; agentId?: string }>;
  /** Re-asserts this node's live connections and extends them; returns agents online again through it. */
  heartbeat(nodeId: string, conns: readonly AgentConnection[], ttlMs: number): Promise<AgentPresenceChange[]>;
  /** Removes expired connections; returns agents now offline, each reported by exactly one sweep. */
  sweep(nowMs: number): Promise<AgentPresenceChange[]>;
  /** Removes every connection of a node (graceful stop, or an operator evicting a dead node). */
  removeNode(nodeId: string): Promise<AgentPresenceChange[]>;
  /** The tenant's online agents, sorted by agentId. */
  online(tenantId: string): Promise<OnlineAgent[]>;
  /** How many agents of the tenant are online (one O(1) read: what availability asks on every call). */
  count(tenantId: string): Promise<number>;
}

// ---------------------------------------------------------------- events, agent stream, bus

export interface PresenceEvent {
  readonly userId: string;
  readonly sessionId: string;
  readonly status: 'online' | 'offline';
  /** ISO 8601. */
  readonly at: string;
}

/** What travels between nodes on a tenant's bus channel. */
export type TenantEvent =
  /** A stored message: `seq` is its conversation offset, `agentOffset` its agent-stream offset. */
  | { readonly type: 'message'; readonly message: ChatMessage; readonly agentOffset: number }
  | { readonly type: 'presence'; readonly presence: PresenceEvent; readonly agentOffset: number }
  /** A conversation's new summary (conversation_updated), on the agent stream only. */
  | { readonly type: 'conversation'; readonly update: ConversationUpdate; readonly agentOffset: number }
  | {
      readonly type: 'typing';
      readonly sessionId: string;
      readonly sender: { type: string; id: string };
      readonly isTyping: boolean;
    }
  | {
      readonly type: 'read';
      readonly sessionId: string;
      readonly messageId: string;
      readonly reader: { type: string; id: string };
    }
  | { readonly type: 'broadcast'; readonly event: string; readonly data: unknown }
  /** Close a revoked agent's sockets, everywhere. */
  | { readonly type: 'revoke'; readonly userId: string }
  /** The tenant's online agents may have changed: each node re-reads availability for its sockets. */
  | { readonly type: 'availability' };

/** An entry of a tenant's agent stream (the agents' one recoverable stream). */
export type AgentStreamEntry =
  | { readonly offset: number; readonly type: 'message'; readonly message: ChatMessage }
  | { readonly offset: number; readonly type: 'presence'; readonly presence: PresenceEvent }
  | { readonly offset: number; readonly type: 'conversation'; readonly update: ConversationUpdate };

export interface EventLog {
  /**
   * After commit: append the message to its tenant's agent stream (assigning the next offset), XADD
   * one `message.created` job to `meta:webhook_jobs`, and publish the `message` TenantEvent on the
   * tenant's bus channel — all in one atomic, idempotent step per messageId: calling it again for
   * the same message appends nothing, publishes nothing, and returns the offset given the first time.
   */
  publishMessage(message: ChatMessage): Promise<{ agentOffset: number; duplicate: boolean }>;
  /**
   * The same for a conversation_updated event: the agent stream entry, one `conversation.updated`
   * webhook job (its `messageId` field is the event id), the `conversation` TenantEvent — once per
   * event id (its outbox row), however often it is called.
   */
  publishUpdate(update: ConversationUpdate): Promise<{ agentOffset: number; duplicate: boolean }>;
  /** Appends a presence event to the agent stream and publishes it; returns its offset. */
  publishPresence(tenantId: string, event: PresenceEvent): Promise<number>;
  /**
   * Agent-stream entries with offset > `after`, ascending, at most `limit`. `complete` is false when
   * the stream was trimmed past `after` (entries were lost to the bound: recovery is not possible).
   */
  agentRange(tenantId: string, after: number, limit: number): Promise<{ entries: AgentStreamEntry[]; complete: boolean }>;
  /** The newest offset of the tenant's agent stream (0 when empty). */
  agentHead(tenantId: string): Promise<number>;
}

export type Unsubscribe = () => Promise<void>;

export interface Bus {
  /** Publishes a non-stream event (typing, read, broadcast, revoke) on the tenant's channel. */
  publish(tenantId: string, event: TenantEvent): Promise<void>;
  /** Receives every TenantEvent of a tenant, in the order Redis delivered them. */
  subscribe(tenantId: string, handler: (event: TenantEvent) => void): Promise<Unsubscribe>;
  /**
   * Called after the subscription connection was lost and restored: events published meanwhile
   * were lost, so the ws role re-reads its streams from their offsets.
   */
  onResubscribed(handler: () => void): void;
}

// ---------------------------------------------------------------- webhook jobs stream

export type WebhookEventType = 'message.created' | 'conversation.updated';

export const WEBHOOK_EVENT_TYPES: readonly WebhookEventType[] = ['message.created', 'conversation.updated'];

/** An entry of `meta:webhook_jobs`. */
export interface WebhookJob {
  /** The stream entry id. */
  readonly id: string;
  readonly type: WebhookEventType;
  readonly tenantId: string;
  readonly sessionId: string;
  /** message.created: the message id; conversation.updated: the event id. */
  readonly messageId: string;
  readonly createdAt: string;
  /** The message JSON. */
  readonly payload: string;
}

export interface WebhookStream {
  /** Entries between two ids ('-' and '+' for the ends), at most `count`. */
  range(start: string, end: string, count: number): Promise<WebhookJob[]>;
  /**
   * Follows new entries after `fromId` ('$' = only new) until the signal aborts, then resolves.
   * Connection faults do not end it: it waits for Redis and continues after the last entry seen.
   */
  follow(fromId: string, onEntry: (job: WebhookJob) => void, signal: AbortSignal): Promise<void>;
  length(): Promise<number>;
  /**
   * A consumer group over the stream (Redis XREADGROUP/XACK/XAUTOCLAIM; the memory store keeps the
   * same semantics in process), so several dispatchers share the jobs and a dead one's are claimed.
   */
  group(name: string): WebhookConsumerGroup;
}

/** At-least-once consumption of `meta:webhook_jobs` by several consumers (the webhook dispatcher). */
export interface WebhookConsumerGroup {
  readonly name: string;
  /** Creates the group if missing: '0' (default) starts with every entry kept, '$' with new ones only. */
  ensure(startId?: '0' | '$'): Promise<void>;
  /**
   * Entries never delivered to this group (XREADGROUP '>'), at most `count`, waiting up to `blockMs`
   * (0 = do not wait) for one; [] on timeout or abort. They stay pending for `consumer` until acked.
   */
  read(consumer: string, count: number, blockMs: number, signal?: AbortSignal): Promise<WebhookJob[]>;
  /** Acknowledges entries: they leave the pending list. Returns how many were pending. */
  ack(ids: readonly string[]): Promise<number>;
  /**
   * Gives `consumer` the entries pending (unacked) longer than `minIdleMs` — a dead consumer's — and
   * resets their idle time. Pending entries trimmed from the stream meanwhile are dropped, not returned.
   */
  claimIdle(consumer: string, minIdleMs: number, count: number): Promise<WebhookJob[]>;
  /** `pending`: delivered, not acked; `lag`: entries not yet delivered to the group (null if unknown). */
  info(): Promise<{ pending: number; lag: number | null }>;
}

// ---------------------------------------------------------------- webhook queue

// What the webhook dispatcher needs from the engine that holds jobs, retries and dead deliveries.
// Redis: a consumer group on `meta:webhook_jobs` shared by every api node, the sorted set
// `meta:webhook_retry`, the stream `meta:webhook_dead`; memory: the same semantics inside one
// process, fed by the memory store's jobs stream. One contract suite (webhooks/queue.contract.ts)
// runs against both.

/**
 * One delivery (one message to one endpoint) that failed and waits for its next attempt. It is
 * self-contained — it holds the message payload — so trimming the jobs stream never loses it; it
 * holds the endpoint's id only, never its URL or secret (read from config at each attempt).
 */
export interface RetryItem {
  readonly v: 1;
  /** X-Chatd-Delivery: the same on every attempt. */
  readonly deliveryId: string;
  readonly tenantId: string;
  readonly endpointId: string;
  readonly messageId: string;
  readonly sessionId: string;
  readonly type: WebhookJob['type'];
  readonly createdAt: string;
  /** The message JSON, as the jobs stream held it. */
  readonly payload: string;
  /** Attempts made so far. */
  readonly attempt: number;
  /** Epoch ms of the first attempt: the retry window runs from here. */
  readonly firstAttemptAt: number;
  readonly lastError?: string;
}

export type DeadReason = 'retry_window_exhausted' | 'rejected' | 'malformed';

/** What goes to `meta:webhook_dead`. */
export interface DeadInput {
  readonly item: RetryItem;
  readonly reason: DeadReason;
  /** The last error: `HTTP 410`, `timeout after 5000 ms`, `ECONNREFUSED`, … */
  readonly error: string;
  /** Epoch ms. */
  readonly failedAt: number;
}

export interface DeadEntry extends DeadInput {
  /** The dead stream's entry id (what `chatd webhooks replay ID` takes). */
  readonly id: string;
}

export interface ScheduledRetry {
  readonly item: RetryItem;
  /** Epoch ms at which it becomes due. */
  readonly dueAt: number;
}

/** A due retry this dispatcher leased: `member` identifies it for settle and lease extension. */
export interface ClaimedRetry {
  readonly member: string;
  readonly item: RetryItem;
}

/** What a job (or a claimed retry) turned into. */
export interface Settlement {
  readonly retries: readonly ScheduledRetry[];
  readonly dead: readonly DeadInput[];
}

export interface WebhookQueue {
  readonly kind: 'memory' | 'redis';
  /** Creates the consumer group if it does not exist (idempotent; every node calls it). */
  init(): Promise<void>;
  /** New jobs for `consumer` (never delivered to the group before), waiting up to `blockMs`. */
  readNew(consumer: string, count: number, blockMs: number): Promise<WebhookJob[]>;
  /**
   * Takes over jobs pending (read, not acknowledged) for longer than `minIdleMs` — their
   * dispatcher died or hung. `lost` are ids whose entry was trimmed from the stream meanwhile.
   */
  claimStale(consumer: string, minIdleMs: number, count: number): Promise<{ jobs: WebhookJob[]; lost: string[] }>;
  /** Resets the idle time of jobs this consumer is still working on, so nobody claims them. */
  keepAlive(consumer: string, entryIds: readonly string[]): Promise<void>;
  /**
   * Atomically: schedules the retries, appends the dead deliveries and acknowledges the job —
   * only if `consumer` still owns it (else another dispatcher took it over; nothing is written,
   * returns false, so one job never grows two retry chains).
   */
  settle(consumer: string, entryId: string, outcome: Settlement): Promise<boolean>;
  /**
   * Leases up to `count` retries due at `now` until `leaseUntil` (atomically: two dispatchers
   * never lease the same one). A lease not settled or extended in time makes it due again.
   */
  claimDueRetries(now: number, leaseUntil: number, count: number): Promise<ClaimedRetry[]>;
  extendRetryLeases(members: readonly string[], leaseUntil: number): Promise<void>;
  /** Removes a leased retry and, atomically, schedules its successor or dead-letters it. */
  settleRetry(member: string, next: { retry?: ScheduledRetry; dead?: DeadInput }): Promise<boolean>;
  retrySize(): Promise<number>;
  deadSize(): Promise<number>;
  /** Oldest first, after `afterId` (exclusive) when given. */
  listDead(count: number, afterId?: string): Promise<DeadEntry[]>;
  /**
   * Moves dead deliveries back into the retry set, due now, with a fresh retry window (and the
   * same delivery id). Returns the ids replayed (an unknown id is skipped).
   */
  replayDead(ids: readonly string[] | 'all', now: number): Promise<string[]>;
  /** Jobs in the stream not yet read by the group (null when unknown), and jobs read but unacknowledged. */
  groupStats(): Promise<{ lag: number | null; pending: number }>;
  close(): Promise<void>;
}

// ---------------------------------------------------------------- rate limits

export interface RateLimiter {
  /** Token bucket: takes `cost` tokens from bucket `key`. Shared by every node with Redis. */
  take(key: string, rate: number, burst: number, cost?: number): Promise<{ allowed: boolean; retryAfterMs: number }>;
}

// ---------------------------------------------------------------- node registry

/**
 * Where each ws node can be reached (nodeId → URL), so a request carrying an Engine.IO sid
 * (`<nodeId>.<random>`) can be sent to the node that owns it — by a gateway that did not route the
 * handshake itself, or by a ws node behind a plain L4 load balancer (cluster/sid-forwarder.ts).
 * Nodes advertise themselves with a TTL and re-advertise on a timer, so a node that dies drops out
 * by itself. Redis key: `{redis.prefix}node_url:{nodeId}` (string, the node's URL, PX = ttl).
 */
export interface NodeRegistry {
  /** Says node `nodeId` is reachable at `url` for the next `ttlMs`. */
  advertise(nodeId: string, url: string, ttlMs: number): Promise<void>;
  /** Removes the node (a clean shutdown). */
  withdraw(nodeId: string): Promise<void>;
  /** The URL of node `nodeId`, or undefined when it is unknown or its advertisement expired. */
  lookup(nodeId: string): Promise<string | undefined>;
}

// ---------------------------------------------------------------- erasure and revocation

/** What the store held (or, in a dry run, holds) for erased sessions: counts per kind. */
export interface StoreErasure {
  /** `session:{id}` records. */
  readonly sessionRecords: number;
  /** `t:{tid}:bind:{jti}` token bindings pointing at an erased session. */
  readonly tokenBindings: number;
  /** Presence connections (and their `online_users` fields) of an erased session. */
  readonly presenceEntries: number;
  /** Entries of `meta:webhook_jobs` about an erased session. */
  readonly webhookJobs: number;
  /** Scheduled webhook retries (`meta:webhook_retry`) about an erased session. */
  readonly webhookRetries: number;
}

/**
 * Erasure: removes what the distributed engine holds about some sessions of a tenant.
 * Never touches another tenant's keys, even for a session id that exists there.
 */
export interface ErasureStore {
  eraseSessions(tenantId: string, sessionIds: readonly string[], opts: { dryRun: boolean }): Promise<StoreErasure>;
}

/**
 * Per-subject token revocation, shared by every node (`t:{tid}:revoked:{userId}` = revocation time
 * in ms): tokens of that subject issued before it are refused with token_revoked.
 */
export interface RevocationStore {
  revoke(tenantId: string, userId: string, atMs: number): Promise<void>;
  /** The revocation instant (ms since the epoch), or null when the subject was never revoked. */
  revokedAt(tenantId: string, userId: string): Promise<number | null>;
}

// ---------------------------------------------------------------- the whole engine

/** What the dispatcher needs to open its queue (webhooks/start.ts). */
export interface WebhookQueueOptions {
  readonly logger: Logger;
  /** `webhooks.streamMaxLen`: the most jobs kept unread (memory), the MAXLEN ~ of re-appended jobs (Redis). */
  readonly streamMaxLen: number;
  /** `webhooks.deadMaxLen`. */
  readonly deadMaxLen: number;
  /**
   * What a dispatcher passes (a one-off admin command does not): where accepted messages are kept
   * durably, and the tenants with webhook endpoints now (read at each use, so a reload applies). An
   * engine that can lose its jobs (Redis restarted without its data) re-appends them from there.
   */
  readonly durable?: {
    readonly outbox: Pick<Outbox, 'createdSince'> & Partial<Pick<Outbox, 'activeSince'>>;
    readonly tenants: () => readonly string[];
  };
}

/** A webhook queue and, when the engine needs one, what runs beside the dispatcher to keep its promise. */
export interface OpenedWebhookQueue {
  readonly queue: WebhookQueue;
  /** Started and stopped with the dispatcher (Redis: the data-loss guard, redis/redis-loss-guard.ts). */
  readonly companion?: { start(): void; stop(): Promise<void> };
}

/**
 * The whole distributed engine, chosen once (store/index.ts): every part a role, the dispatcher or
 * a CLI command needs from it, so nothing outside store/ asks which adapter it is.
 */
export interface Store {
  /** Which adapter, for tests and logs: nothing in the code branches on it (engineOf decides once). */
  readonly kind: 'memory' | 'redis' | 'redis-cluster';
  /** The name of its /readyz check (`redis`, `memory-store`). */
  readonly readinessName: string;
  readonly sessions: SessionStore;
  readonly presence: PresenceStore;
  /** Agents online per tenant (availability, auto-assignment). */
  readonly agentPresence: AgentPresenceStore;
  readonly events: EventLog;
  readonly bus: Bus;
  readonly webhooks: WebhookStream;
  readonly rateLimiter: RateLimiter;
  readonly erasure: ErasureStore;
  readonly revocations: RevocationStore;
  readonly nodes: NodeRegistry;
  /**
   * Opens the webhook dispatcher's queue over this engine's jobs stream (Redis: its own two
   * connections, one of them blocking on XREADGROUP; closed by the queue's close()).
   */
  openWebhookQueue(opts: WebhookQueueOptions): Promise<OpenedWebhookQueue>;
  /**
   * Keeps the engine's copy of what the database records for it (revocations: src/ops/revocation.ts)
   * in place wherever the engine can lose it. `restore` writes every record back (idempotent: it
   * only moves instants forward) and resolves with how many. Memory: runs it once, now (a process
   * starts with an empty store), and rejects when it fails — the process must not serve without it.
   * Redis: runs it at the first look and after every restart without data that the data epoch shows
   * (redis/redis-data-epoch.ts); resolves after the first look and retries a failed restore each
   * second. stop() ends the watch.
   */
  keepRestored(restore: () => Promise<number>, logger: Logger): Promise<{ stop(): Promise<void> }>;
  /** Throws DependencyError when unreachable (for /readyz). */
  ping(): Promise<void>;
  close(): Promise<void>;
}

/** Online users sorted by connection time, then userId: a stable listing (CLI and admin endpoint). */
export const byConnectedAt = (users: readonly OnlineUser[]): OnlineUser[] =>
  [...users].sort((a, b) => a.connectedAt.localeCompare(b.connectedAt) || a.userId.localeCompare(b.userId));
