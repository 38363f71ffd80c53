// The agent streams and publishMessage in process, with the Redis script's semantics: next offset
// per tenant, bounded history, one webhook job and one bus event per messageId (a per-message
// marker with a TTL makes a re-publish a no-op), and channel order equal to offset order.
import type { ConversationUpdate } from '../../chat/conversation.js';
import type { ChatMessage } from '../../chat/message.js';
import type { AgentStreamEntry, EventLog, PresenceEvent } from '../ports.js';
import type { MemoryBus } from './memory-bus.js';
import type { MemoryWebhookStream } from './memory-webhook-stream.js';

interface AgentStream {
  head: number;
  entries: AgentStreamEntry[];
}

export interface MemoryEventLogOptions {
  readonly agentHistorySize: number;
  readonly markerTtlSeconds: number;
}

export class MemoryEventLog implements EventLog {
  private readonly streams = new Map<string, AgentStream>();
  private readonly markers = new Map<string, { offset: number; expiresAt: number }>();

  constructor(
    private readonly bus: MemoryBus,
    private readonly webhooks: MemoryWebhookStream,
    private readonly opts: MemoryEventLogOptions,
    private readonly now: () => number = Date.now,
  ) {}

  private stream(tenantId: string): AgentStream {
    let s = this.streams.get(tenantId);
    if (!s) this.streams.set(tenantId, (s = { head: 0, entries: [] }));
    return s;
  }

  private append(tenantId: string, entry: (offset: number) => AgentStreamEntry): number {
    const s = this.stream(tenantId);
    const offset = ++s.head;
    s.entries.push(entry(offset));
    const max = this.opts.agentHistorySize;
    if (s.entries.length > max + Math.ceil(max / 10)) s.entries = s.entries.slice(-max);
    return offset;
  }

  async publishMessage(message: ChatMessage): Promise<{ agentOffset: number; duplicate: boolean }> {
    const key = `${message.tenantId}\n${message.id}`;
    const marker = this.markers.get(key);
    if (marker && marker.expiresAt > this.now()) return { agentOffset: marker.offset, duplicate: true };
    const offset = this.append(message.tenantId, (o) => ({ offset: o, type: 'message', message }));
    this.webhooks.append({
      type: 'message.created',
      tenantId: message.tenantId,
      sessionId: message.sessionId,
      messageId: message.id,
      createdAt: message.createdAt,
      payload: JSON.stringify(message),
    });
    this.markers.set(key, { offset, expiresAt: this.now() + this.opts.markerTtlSeconds * 1000 });
    this.bus.deliver(message.tenantId, { type: 'message', message, agentOffset: offset });
    return { agentOffset: offset, duplicate: false };
  }

  async publishUpdate(update: ConversationUpdate): Promise<{ agentOffset: number; duplicate: boolean }> {
    const key = `${update.tenantId}\n${update.id}`;
    const marker = this.markers.get(key);
    if (marker && marker.expiresAt > this.now()) return { agentOffset: marker.offset, duplicate: true };
    const offset = this.append(update.tenantId, (o) => ({ offset: o, type: 'conversation', update }));
    this.webhooks.append({
      type: 'conversation.updated',
      tenantId: update.tenantId,
      sessionId: update.sessionId,
      messageId: update.id,
      createdAt: update.at,
      payload: JSON.stringify(update),
    });
    this.markers.set(key, { offset, expiresAt: this.now() + this.opts.markerTtlSeconds * 1000 });
    this.bus.deliver(update.tenantId, { type: 'conversation', update, agentOffset: offset });
    return { agentOffset: offset, duplicate: false };
  }

  async publishPresence(tenantId: string, event: PresenceEvent): Promise<number> {
    const offset = this.append(tenantId, (o) => ({ offset: o, type: 'presence', presence: event }));
    this.bus.deliver(tenantId, { type: 'presence', presence: event, agentOffset: offset });
    return offset;
  }

  async agentRange(tenantId: string, after: number, limit: number): Promise<{ entries: AgentStreamEntry[]; complete: boolean }> {
    const s = this.streams.get(tenantId);
    const head = s?.head ?? 0;
    if (after > head) return { entries: [], complete: false };
    if (after === head || !s) return { entries: [], complete: true };
    const oldest = s.entries[0]?.offset ?? 0;
    const complete = oldest > 0 && oldest <= after + 1;
    const from = Math.max(0, after + 1 - oldest);
    // JSON round-trip: callers get copies, as from Redis.
    const entries = JSON.parse(JSON.stringify(s.entries.slice(from, from + Math.max(1, limit)))) as AgentStreamEntry[];
    return { entries, complete };
  }

  async agentHead(tenantId: string): Promise<number> {
    return this.streams.get(tenantId)?.head ?? 0;
  }

  /** Drops expired idempotency markers (called periodically). */
  purgeExpired(): void {
    const now = this.now();
    for (const [k, m] of this.markers) if (m.expiresAt <= now) this.markers.delete(k);
  }
}
