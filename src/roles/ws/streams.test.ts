// StreamHub scenarios on small in-process fakes of the ports (fast, deterministic). The same
// scenarios run on the real adapters in streams.int.test.ts.
import { randomUUID } from 'node:crypto';
import { afterAll, describe } from 'vitest';
import type { ConversationUpdate } from '../../chat/conversation.js';
import type { ChatMessage } from '../../chat/message.js';
import type { AcceptResult, Conversation, MessageStore, NewMessage } from '../../db/ports.js';
import type { AgentStreamEntry, Bus, EventLog, PresenceEvent, TenantEvent, Unsubscribe } from '../../store/ports.js';
import { streamScenarios, type StreamEnv } from './streams.scenarios.js';

class FakeBus implements Bus {
  private readonly handlers = new Map<string, Set<(e: TenantEvent) => void>>();
  private readonly resubscribed: (() => void)[] = [];
  async publish(tenantId: string, event: TenantEvent): Promise<void> {
    // Delivered asynchronously, like a network bus.
    const hs = [...(this.handlers.get(tenantId) ?? [])];
    setImmediate(() => hs.forEach((h) => h(event)));
  }
  async subscribe(tenantId: string, handler: (e: TenantEvent) => void): Promise<Unsubscribe> {
    let set = this.handlers.get(tenantId);
    if (!set) this.handlers.set(tenantId, (set = new Set()));
    const wrapped = (e: TenantEvent) => handler(e);
    set.add(wrapped);
    return async () => void set.delete(wrapped);
  }
  onResubscribed(handler: () => void): void {
    this.resubscribed.push(handler);
  }
}

class FakeEventLog implements Pick<EventLog, keyof EventLog> {
  private readonly tenants = new Map<string, { head: number; entries: AgentStreamEntry[] }>();
  private readonly published = new Map<string, number>();
  constructor(
    private readonly bus: FakeBus,
    private readonly size: number,
  ) {}
  private tenant(t: string) {
    let s = this.tenants.get(t);
    if (!s) this.tenants.set(t, (s = { head: 0, entries: [] }));
    return s;
  }
  private append(t: string, entry: (offset: number) => AgentStreamEntry): number {
    const s = this.tenant(t);
    s.head += 1;
    s.entries.push(entry(s.head));
    if (s.entries.length > this.size) s.entries.splice(0, s.entries.length - this.size);
    return s.head;
  }
  async publishMessage(message: ChatMessage) {
    const earlier = this.published.get(message.id);
    if (earlier !== undefined) return { agentOffset: earlier, duplicate: true };
    const agentOffset = this.append(message.tenantId, (offset) => ({ offset, type: 'message', message }));
    this.published.set(message.id, agentOffset);
    await this.bus.publish(message.tenantId, { type: 'message', message, agentOffset });
    return { agentOffset, duplicate: false };
  }
  async publishUpdate(update: ConversationUpdate) {
    const earlier = this.published.get(update.id);
    if (earlier !== undefined) return { agentOffset: earlier, duplicate: true };
    const agentOffset = this.append(update.tenantId, (offset) => ({ offset, type: 'conversation', update }));
    this.published.set(update.id, agentOffset);
    await this.bus.publish(update.tenantId, { type: 'conversation', update, agentOffset });
    return { agentOffset, duplicate: false };
  }
  async publishPresence(tenantId: string, presence: PresenceEvent) {
    const agentOffset = this.append(tenantId, (offset) => ({ offset, type: 'presence', presence }));
    await this.bus.publish(tenantId, { type: 'presence', presence, agentOffset });
    return agentOffset;
  }
  async agentRange(tenantId: string, after: number, limit: number) {
    const s = this.tenant(tenantId);
    if (after > s.head) return { entries: [], complete: false };
    if (after === s.head) return { entries: [], complete: true };
    const oldest = s.entries[0]?.offset ?? 0;
    return { entries: s.entries.filter((e) => e.offset > after).slice(0, limit), complete: oldest > 0 && oldest <= after + 1 };
  }
  async agentHead(tenantId: string) {
    return this.tenant(tenantId).head;
  }
}

class FakeMessages implements Pick<MessageStore, 'accept' | 'since' | 'getConversation'> {
  private readonly convs = new Map<string, ChatMessage[]>();
  async accept(msg: NewMessage): Promise<AcceptResult> {
    const key = `${msg.tenantId}/${msg.sessionId}`;
    let list = this.convs.get(key);
    if (!list) this.convs.set(key, (list = []));
    const message: ChatMessage = {
      id: randomUUID(),
      tenantId: msg.tenantId,
      sessionId: msg.sessionId,
      seq: list.length + 1,
      sender: msg.sender,
      text: msg.text,
      createdAt: new Date().toISOString(),
      meta: msg.meta,
    };
    list.push(message);
    const at = message.createdAt;
    const update: ConversationUpdate = {
      id: randomUUID(),
      tenantId: msg.tenantId,
      sessionId: msg.sessionId,
      version: message.seq,
      at,
      conversation: {
        sessionId: msg.sessionId,
        status: 'open',
        assignee: null,
        visitor: { type: 'visitor', id: msg.sessionId, verified: false },
        lastMessage: { id: message.id, text: message.text, sender: message.sender, createdAt: at },
        unreadCount: 0,
        messageCount: message.seq,
        online: false,
        createdAt: at,
        lastActivityAt: at,
      },
    };
    return { kind: 'created', message, outboxId: randomUUID(), before: [], update };
  }
  async since(tenantId: string, sessionId: string, afterSeq: number, limit: number) {
    return (this.convs.get(`${tenantId}/${sessionId}`) ?? []).filter((m) => m.seq > afterSeq).slice(0, limit);
  }
  async getConversation(tenantId: string, sessionId: string): Promise<Conversation | null> {
    const list = this.convs.get(`${tenantId}/${sessionId}`);
    if (!list) return null;
    const now = new Date().toISOString();
    return { tenantId, sessionId, userId: null, fingerprint: null, status: 'open', lastSeq: list.length, createdAt: now, updatedAt: now };
  }
}

function fakeEnv(): StreamEnv {
  const bus = new FakeBus();
  const agentHistorySize = 100;
  return {
    bus,
    events: new FakeEventLog(bus, agentHistorySize) as EventLog,
    messages: new FakeMessages() as unknown as MessageStore,
    agentHistorySize,
    async close() {},
  };
}

describe('StreamHub on in-process fakes', () => {
  const env = fakeEnv();
  afterAll(() => env.close());
  streamScenarios(() => env);
});
