// The agent stream and the webhook job stream, appended by one script per event. publishMessage is
// the outbox relay's call: append to the tenant's agent stream (next offset by INCR, history bounded
// by MAXLEN ~), XADD one job to `meta:webhook_jobs`, PUBLISH the TenantEvent on the tenant channel,
// and leave a per-message marker — so a re-publish after a crash appends and publishes nothing.
// Because PUBLISH runs inside the script, a tenant channel carries events in agent offset order.
// In the cluster layout the agent append and the webhook append are two scripts (their streams are
// in different slots), each idempotent by its own marker; the agent one SPUBLISHes, in offset order.
import type { ConversationUpdate } from '../../chat/conversation.js';
import type { ChatMessage } from '../../chat/message.js';
import type { AgentStreamEntry, EventLog, PresenceEvent } from '../ports.js';
import { guard, type ScriptedRedis } from './connection.js';
import type { RedisKeys } from './keys.js';

export interface RedisEventLogOptions {
  /** Entries kept per tenant agent stream (`socketio.agentHistorySize`); trimmed with MAXLEN ~. */
  readonly agentHistorySize: number;
  /** MAXLEN ~ of `meta:webhook_jobs` (`webhooks.streamMaxLen`). */
  readonly webhookStreamMaxLen: number;
  /** How long the per-message marker outlives the publish: re-publishes within it are no-ops. */
  readonly markerTtlSeconds: number;
}

/** Reads an XRANGE entry `[id, [field, value, …]]` into a field map. */
export function entryFields(fields: readonly string[]): Record<string, string> {
  const out: Record<string, string> = {};
  for (let i = 0; i + 1 < fields.length; i += 2) out[fields[i]!] = fields[i + 1]!;
  return out;
}

export class RedisEventLog implements EventLog {
  constructor(
    private readonly redis: ScriptedRedis,
    private readonly keys: RedisKeys,
    private readonly opts: RedisEventLogOptions,
  ) {}

  publishMessage(message: ChatMessage): Promise<{ agentOffset: number; duplicate: boolean }> {
    const k = this.keys;
    const t = message.tenantId;
    if (k.cluster) return this.publishMessageSharded(message);
    return guard('publish message', async () => {
      const r = (await this.redis.chatdPublishMessage(
        k.published(t, message.id),
        k.agentOffset(t),
        k.agentStream(t),
        k.webhookJobs,
        k.tenantChannel(t),
        JSON.stringify(message),
        t,
        message.sessionId,
        message.id,
        message.createdAt,
        this.opts.agentHistorySize,
        this.opts.webhookStreamMaxLen,
        this.opts.markerTtlSeconds,
      )) as [number, number];
      return { agentOffset: Number(r[0]), duplicate: Number(r[1]) === 1 };
    });
  }

  private publishMessageSharded(message: ChatMessage): Promise<{ agentOffset: number; duplicate: boolean }> {
    const k = this.keys;
    const t = message.tenantId;
    const json = JSON.stringify(message);
    return guard('publish message', async () => {
      // Both are sent in one tick (auto-pipelined per shard); either failing fails the call, so the
      // outbox row stays undone and the relay re-publishes (the other's marker makes it a no-op).
      const [agent] = (await Promise.all([
        this.redis.chatdClusterAgentAppendMessage(
          k.published(t, message.id),
          k.agentOffset(t),
          k.agentStream(t),
          k.tenantChannel(t),
          json,
          this.opts.agentHistorySize,
          this.opts.markerTtlSeconds,
        ),
        this.redis.chatdClusterWebhookAppend(
          k.webhookMarker(message.id),
          k.webhookJobs,
          json,
          t,
          message.sessionId,
          message.id,
          message.createdAt,
          this.opts.webhookStreamMaxLen,
          this.opts.markerTtlSeconds,
        ),
      ])) as [[number, number], number];
      return { agentOffset: Number(agent[0]), duplicate: Number(agent[1]) === 1 };
    });
  }

  /** publishMessage's twin for a conversation_updated event: idempotent per event id. */
  publishUpdate(update: ConversationUpdate): Promise<{ agentOffset: number; duplicate: boolean }> {
    const k = this.keys;
    const t = update.tenantId;
    if (k.cluster) return this.publishUpdateSharded(update);
    return guard('publish conversation update', async () => {
      const r = (await this.redis.chatdPublishUpdate(
        k.published(t, update.id),
        k.agentOffset(t),
        k.agentStream(t),
        k.webhookJobs,
        k.tenantChannel(t),
        JSON.stringify(update),
        t,
        update.sessionId,
        update.id,
        update.at,
        this.opts.agentHistorySize,
        this.opts.webhookStreamMaxLen,
        this.opts.markerTtlSeconds,
      )) as [number, number];
      return { agentOffset: Number(r[0]), duplicate: Number(r[1]) === 1 };
    });
  }

  private publishUpdateSharded(update: ConversationUpdate): Promise<{ agentOffset: number; duplicate: boolean }> {
    const k = this.keys;
    const t = update.tenantId;
    const json = JSON.stringify(update);
    return guard('publish conversation update', async () => {
      const [agent] = (await Promise.all([
        this.redis.chatdClusterAgentAppendUpdate(
          k.published(t, update.id),
          k.agentOffset(t),
          k.agentStream(t),
          k.tenantChannel(t),
          json,
          this.opts.agentHistorySize,
          this.opts.markerTtlSeconds,
        ),
        this.redis.chatdClusterWebhookAppendUpdate(
          k.webhookMarker(update.id),
          k.webhookJobs,
          json,
          t,
          update.sessionId,
          update.id,
          update.at,
          this.opts.webhookStreamMaxLen,
          this.opts.markerTtlSeconds,
        ),
      ])) as [[number, number], number];
      return { agentOffset: Number(agent[0]), duplicate: Number(agent[1]) === 1 };
    });
  }

  publishPresence(tenantId: string, event: PresenceEvent): Promise<number> {
    const k = this.keys;
    const script = k.cluster ? this.redis.chatdClusterPublishPresence : this.redis.chatdPublishPresence;
    return guard('publish presence', async () =>
      Number(
        await script.call(
          this.redis,
          k.agentOffset(tenantId),
          k.agentStream(tenantId),
          k.tenantChannel(tenantId),
          JSON.stringify(event),
          this.opts.agentHistorySize,
        ),
      ),
    );
  }

  agentRange(tenantId: string, after: number, limit: number): Promise<{ entries: AgentStreamEntry[]; complete: boolean }> {
    const k = this.keys;
    return guard('agent range', async () => {
      const [head, oldest, raw] = (await this.redis.chatdAgentRange(
        k.agentOffset(tenantId),
        k.agentStream(tenantId),
        Math.max(0, Math.floor(after)),
        Math.max(1, Math.floor(limit)),
      )) as [number, number, [string, string[]][]];
      // `after` beyond the head: the stream was reset (Redis flushed or restarted): not recoverable.
      if (after > head) return { entries: [], complete: false };
      if (after === head) return { entries: [], complete: true };
      // Entries after `after` were trimmed (or lost) when the oldest kept one is past after + 1.
      const complete = oldest > 0 && oldest <= after + 1;
      const entries: AgentStreamEntry[] = [];
      for (const [id, fields] of raw) {
        const offset = Number(id.slice(0, id.indexOf('-')));
        const f = entryFields(fields);
        const data = JSON.parse(f.data ?? 'null') as unknown;
        if (f.type === 'message') entries.push({ offset, type: 'message', message: data as ChatMessage });
        else if (f.type === 'presence') entries.push({ offset, type: 'presence', presence: data as PresenceEvent });
        else if (f.type === 'conversation') entries.push({ offset, type: 'conversation', update: data as ConversationUpdate });
      }
      return { entries, complete };
    });
  }

  agentHead(tenantId: string): Promise<number> {
    return guard('agent head', async () => Number((await this.redis.get(this.keys.agentOffset(tenantId))) ?? 0));
  }
}
