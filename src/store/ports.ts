// What the roles need from the distributed engine. Two adapters implement every port: redis/
// (ioredis; many nodes) and memory/ (one process, the zero-config default). One contract test
// suite runs against both. Every key and channel goes through the configured prefix; the guide's
// names (`online_users:{tenantId}`, `session:{sessionId}`, `meta:webhook_jobs`) are kept exactly.
import type { ChatMessage } from '../chat/message.js';

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
  upsert(
    sessionId: string,
    rec: { tenantId: string; userId: string; fingerprint: string },
    ttlSeconds: number,
  ): Promise<SessionUpsert>;
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
   * Removes every connection of a node at once through the per-node index (a graceful stop, or an
   * operator evicting a node known dead before its timeout); returns users now offline.
   */
  removeNode(nodeId: string): Promise<PresenceChange[]>;
  /** The node registry: nodes whose last heartbeat (or add) has not expired at `nowMs`. */
  nodes(nowMs: number): Promise<{ nodeId: string; expiresAt: number }[]>;
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
  | { readonly type: 'revoke'; readonly userId: string };

/** An entry of a tenant's agent stream (the agents' one recoverable stream). */
export type AgentStreamEntry =
  | { readonly offset: number; readonly type: 'message'; readonly message: ChatMessage }
  | { readonly offset: number; readonly type: 'presence'; readonly presence: PresenceEvent };

export interface EventLog {
  /**
   * After commit: append the message to its tenant's agent stream (assigning the next offset), XADD
   * one `message.created` job to `meta:webhook_jobs`, and publish the `message` TenantEvent on the
   * tenant's bus channel — all in one atomic, idempotent step per messageId: calling it again for
   * the same message appends nothing, publishes nothing, and returns the offset given the first time.
   */
  publishMessage(message: ChatMessage): Promise<{ agentOffset: number; duplicate: boolean }>;
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

/** An entry of `meta:webhook_jobs`. */
export interface WebhookJob {
  /** The stream entry id. */
  readonly id: string;
  readonly type: 'message.created';
  readonly tenantId: string;
  readonly sessionId: string;
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

// ---------------------------------------------------------------- rate limits

export interface RateLimiter {
  /** Token bucket: takes `cost` tokens from bucket `key`. Shared by every node with Redis. */
  take(key: string, rate: number, burst: number, cost?: number): Promise<{ allowed: boolean; retryAfterMs: number }>;
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
 * Erasure (issue 12): removes what the distributed engine holds about some sessions of a tenant.
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

export interface Store {
  readonly kind: 'memory' | 'redis';
  readonly sessions: SessionStore;
  readonly presence: PresenceStore;
  readonly events: EventLog;
  readonly bus: Bus;
  readonly webhooks: WebhookStream;
  readonly rateLimiter: RateLimiter;
  readonly erasure: ErasureStore;
  readonly revocations: RevocationStore;
  /** Throws DependencyError when unreachable (for /readyz). */
  ping(): Promise<void>;
  close(): Promise<void>;
}
