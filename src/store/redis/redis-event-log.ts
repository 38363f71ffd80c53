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
    return this.append('publish message', MESSAGE_SCRIPTS, {
      tenantId: message.tenantId,
      sessionId: message.sessionId,
      id: message.id,
      at: message.createdAt,
      json: JSON.stringify(message),
    });
  }

  /** publishMessage's twin for a conversation_updated event: idempotent per event id. */
  publishUpdate(update: ConversationUpdate): Promise<{ agentOffset: number; duplicate: boolean }> {
    return this.append('publish conversation update', UPDATE_SCRIPTS, {
      tenantId: update.tenantId,
      sessionId: update.sessionId,
      id: update.id,
      at: update.at,
      json: JSON.stringify(update),
    });
  }

  /**
   * One event appended to the agent stream and the webhook stream and published, idempotent per
   * event id: one script on a standalone Redis; in the cluster layout the agent append and the
   * webhook append, sent in one tick (auto-pipelined per shard). Either failing fails the call, so
   * the outbox row stays undone and the relay re-publishes (the other's marker makes it a no-op).
   */
  private append(what: string, scripts: EventScripts, e: AppendedEvent): Promise<{ agentOffset: number; duplicate: boolean }> {
    const k = this.keys;
    const t = e.tenantId;
    const { agentHistorySize, webhookStreamMaxLen, markerTtlSeconds } = this.opts;
    return guard(what, async () => {
      if (!k.cluster) {
        const r = (await this.redis[scripts.single](
          k.published(t, e.id),
          k.agentOffset(t),
          k.agentStream(t),
          k.webhookJobs,
          k.tenantChannel(t),
          e.json,
          t,
          e.sessionId,
          e.id,
          e.at,
          agentHistorySize,
          webhookStreamMaxLen,
          markerTtlSeconds,
        )) as [number, number];
        return { agentOffset: Number(r[0]), duplicate: Number(r[1]) === 1 };
      }
      const [agent] = (await Promise.all([
        this.redis[scripts.agent](
          k.published(t, e.id),
          k.agentOffset(t),
          k.agentStream(t),
          k.tenantChannel(t),
          e.json,
          agentHistorySize,
          markerTtlSeconds,
        ),
        this.redis[scripts.webhook](
          k.webhookMarker(e.id),
          k.webhookJobs,
          e.json,
          t,
          e.sessionId,
          e.id,
          e.at,
          webhookStreamMaxLen,
          markerTtlSeconds,
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

/** What an append writes: the event's JSON and the webhook job's fields. */
interface AppendedEvent {
  readonly tenantId: string;
  readonly sessionId: string;
  readonly id: string;
  /** ISO 8601: the job's createdAt. */
  readonly at: string;
  readonly json: string;
}

/** The scripts of one event type: standalone, and the cluster pair. */
interface EventScripts {
  readonly single: 'chatdPublishMessage' | 'chatdPublishUpdate';
  readonly agent: 'chatdClusterAgentAppendMessage' | 'chatdClusterAgentAppendUpdate';
  readonly webhook: 'chatdClusterWebhookAppend' | 'chatdClusterWebhookAppendUpdate';
}

const MESSAGE_SCRIPTS: EventScripts = {
  single: 'chatdPublishMessage',
  agent: 'chatdClusterAgentAppendMessage',
  webhook: 'chatdClusterWebhookAppend',
};
const UPDATE_SCRIPTS: EventScripts = {
  single: 'chatdPublishUpdate',
  agent: 'chatdClusterAgentAppendUpdate',
  webhook: 'chatdClusterWebhookAppendUpdate',
};
