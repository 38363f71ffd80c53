// A stand-in EventLog for the relay's own tests (the real ones live in src/store and have their own
// contract suite): records what was published, idempotent per messageId like the real one, and can
// be told to fail or hang to play "Redis is down".
import type { ConversationUpdate } from '../../../src/chat/conversation.js';
import type { ChatMessage } from '../../../src/chat/message.js';
import type { EventLog } from '../../../src/store/ports.js';

export class RecordingEventLog implements Pick<EventLog, 'publishMessage' | 'publishUpdate'> {
  readonly published: ChatMessage[] = [];
  /** conversation_updated events, each once. */
  readonly updates: ConversationUpdate[] = [];
  /** Every call, duplicates included. */
  calls = 0;
  mode: 'ok' | 'fail' | 'hang' = 'ok';
  readonly #offsets = new Map<string, number>();

  async publishMessage(message: ChatMessage): Promise<{ agentOffset: number; duplicate: boolean }> {
    this.calls++;
    if (this.mode === 'fail') throw new Error('event log unavailable (test)');
    if (this.mode === 'hang') return new Promise(() => undefined);
    const seen = this.#offsets.get(message.id);
    if (seen !== undefined) return { agentOffset: seen, duplicate: true };
    this.published.push(message);
    this.#offsets.set(message.id, this.published.length);
    return { agentOffset: this.published.length, duplicate: false };
  }

  async publishUpdate(update: ConversationUpdate): Promise<{ agentOffset: number; duplicate: boolean }> {
    this.calls++;
    if (this.mode === 'fail') throw new Error('event log unavailable (test)');
    if (this.mode === 'hang') return new Promise(() => undefined);
    const seen = this.#offsets.get(update.id);
    if (seen !== undefined) return { agentOffset: seen, duplicate: true };
    this.updates.push(update);
    this.#offsets.set(update.id, -this.updates.length);
    return { agentOffset: -this.updates.length, duplicate: false };
  }
}
